//! Choosing the chart: which columns go on the axis, in the legend, or nowhere (see the
//! module docs of [`super`] for the rules).

use std::collections::HashSet;

use super::*;

/// The chart chosen for a result: which columns go where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Plan {
    Bar {
        x: usize,
        ys: Vec<usize>,
    },
    /// Grouped bars of one measure, one series per value of `split`.
    SplitBar {
        x: usize,
        y: usize,
        split: usize,
    },
    Line {
        x: usize,
        time: bool,
        ys: Vec<usize>,
        split: Option<usize>,
    },
    /// Lines over ordered period numbers (`EXTRACT(YEAR …)`), one slot per period.
    Period {
        x: usize,
        ys: Vec<usize>,
        split: Option<usize>,
    },
    Scatter {
        x: usize,
        ys: Vec<usize>,
    },
}

impl Plan {
    pub(super) fn kind(&self) -> ChartKind {
        match self {
            Plan::Bar { .. } | Plan::SplitBar { .. } => ChartKind::Bar,
            Plan::Line { .. } | Plan::Period { .. } => ChartKind::Line,
            Plan::Scatter { .. } => ChartKind::Scatter,
        }
    }

    /// The columns on an axis or in the legend.
    pub(super) fn shown(&self) -> Vec<usize> {
        match self {
            Plan::Bar { x, ys } | Plan::Scatter { x, ys } => std::iter::once(*x).chain(ys.iter().copied()).collect(),
            Plan::SplitBar { x, y, split } => vec![*x, *y, *split],
            Plan::Line { x, ys, split, .. } | Plan::Period { x, ys, split } => {
                std::iter::once(*x).chain(ys.iter().copied()).chain(*split).collect()
            }
        }
    }
}

/// Most distinct periods a period axis gives a slot each.
pub(super) const MAX_PERIOD_SLOTS: f64 = 400.0;

/// Whether every row has its own value of `cols` (no two rows share one).
pub(super) fn unique_rows(t: &Table, cols: &[usize]) -> Result<bool, NoChart> {
    let mut seen: HashSet<Vec<String>> = HashSet::with_capacity(t.rows);
    let mut unique = true;
    for_each_row(t, |rec| {
        if unique {
            unique = seen.insert(cols.iter().map(|c| cell(rec, *c).to_string()).collect());
        }
    })?;
    Ok(unique)
}

/// `auto` with no columns named: a chart of exactly what the result says, from the columns'
/// roles (see the module docs), or the reason there is none.
pub(super) fn choose_auto(t: &Table) -> Result<Plan, NoChart> {
    let declined = |why: String| Err(NoChart::Declined(why));
    let name = |i: usize| t.columns[i].name.as_str();
    let measures: Vec<usize> = (0..t.columns.len())
        .filter(|i| t.columns[*i].role == ColumnRole::Measure && t.kind(*i) == ColumnKind::Number)
        .collect();
    if let Some(m) = measures.iter().find(|m| t.columns[**m].non_finite > 0) {
        return declined(format!("{} holds NaN or infinite values, which no axis can place", name(*m)));
    }
    if measures.is_empty() {
        let empty: Vec<&str> = (0..t.columns.len())
            .filter(|i| t.columns[*i].role == ColumnRole::Measure && t.kind(*i) == ColumnKind::Empty)
            .map(name)
            .collect();
        if !empty.is_empty() {
            return declined(format!("{} is NULL in every row", empty.join(", ")));
        }
        return Err(NoChart::NotApplicable(format!("no measure to draw ({})", describe_columns(t))));
    }
    // Dimensions that vary; the fixed ones (one value, or NULL throughout) go in the subtitle.
    let dims: Vec<usize> =
        (0..t.columns.len()).filter(|i| t.columns[*i].role == ColumnRole::Dimension && t.values(*i) > 1).collect();
    let mut ys = measures.clone();
    ys.truncate(MAX_SERIES);
    if t.rows == 1 {
        return Err(NoChart::NotApplicable("one row: its answer line says it".into()));
    }
    match dims.as_slice() {
        [] if measures.len() >= 2 => {
            Ok(Plan::Scatter { x: measures[0], ys: measures[1..].iter().copied().take(MAX_SERIES).collect() })
        }
        [] => declined(format!("{} rows of {} and no dimension to tell them apart", t.rows, name(measures[0]))),
        [x] => {
            let x = *x;
            if !unique_rows(t, &[x])? {
                return declined(format!(
                    "rows repeat values of {} and no other dimension tells them apart; a chart would have to add them up",
                    name(x)
                ));
            }
            one_dimension(t, x, None, ys)
        }
        [a, b] => {
            let (a, b) = (*a, *b);
            // Two names of the same rows (a key and its name): one is the axis, the other
            // follows it (and the subtitle says so).
            if unique_rows(t, &[a])? && unique_rows(t, &[b])? {
                let label = |i: usize| t.kind(i) == ColumnKind::Text && !looks_like_identifier(name(i));
                let x = if label(b) && !label(a) { b } else { a };
                return one_dimension(t, x, None, ys);
            }
            let (small, large) = if t.columns[a].distinct <= t.columns[b].distinct { (a, b) } else { (b, a) };
            // A time or period is the x axis whatever its count; the other one is the series.
            let (x, split) = match (is_axis(t, small), is_axis(t, large)) {
                (true, false) => (small, large),
                _ => (large, small),
            };
            // Unless that leaves too many series where the other way round would not.
            let (x, split) = if t.columns[split].distinct > MAX_SERIES && t.columns[x].distinct <= MAX_SERIES {
                (split, x)
            } else {
                (x, split)
            };
            if measures.len() > 1 {
                return declined(format!(
                    "two dimensions ({}, {}) and {} measures; name one in spec.chart.y",
                    name(x),
                    name(split),
                    measures.len()
                ));
            }
            if t.columns[split].distinct > MAX_SERIES {
                return declined(format!(
                    "two dimensions with many values: {} has {}{} values and {} has {}{}, more than {MAX_SERIES} series",
                    name(split),
                    if t.columns[split].distinct > AUTO_BAR_MAX_CATEGORIES { "over " } else { "" },
                    t.columns[split].distinct.min(AUTO_BAR_MAX_CATEGORIES),
                    name(x),
                    if t.columns[x].distinct > AUTO_BAR_MAX_CATEGORIES { "over " } else { "" },
                    t.columns[x].distinct.min(AUTO_BAR_MAX_CATEGORIES),
                ));
            }
            if !unique_rows(t, &[x, split])? {
                return declined(format!(
                    "rows repeat pairs of {} and {}; a chart would have to add them up",
                    name(x),
                    name(split)
                ));
            }
            one_dimension(t, x, Some(split), vec![measures[0]])
        }
        more => declined(format!(
            "{} dimensions vary ({}); a chart shows at most two",
            more.len(),
            more.iter().map(|i| name(*i)).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A time, a period or an ordered number: drawn as an axis, not as categories.
pub(super) fn is_axis(t: &Table, i: usize) -> bool {
    let c = &t.columns[i];
    c.kind == ColumnKind::Time || (c.kind == ColumnKind::Number && matches!(c.time, Some(TimeUse::Extract(_))))
}

/// The chart of measures `ys` over dimension `x` (each row unique in `x`, or in `x` and `split`).
pub(super) fn one_dimension(t: &Table, x: usize, split: Option<usize>, ys: Vec<usize>) -> Result<Plan, NoChart> {
    let c = &t.columns[x];
    if c.kind == ColumnKind::Time {
        return Ok(Plan::Line { x, time: true, ys, split });
    }
    let period = c.kind == ColumnKind::Number
        && (matches!(c.time, Some(TimeUse::Extract(_))) || (!t.typed && looks_like_period(&c.name)));
    if period {
        return Ok(Plan::Period { x, ys, split });
    }
    if c.distinct > AUTO_BAR_MAX_CATEGORIES {
        return Err(NoChart::Declined(format!(
            "{} has more than {AUTO_BAR_MAX_CATEGORIES} values, too many to draw as bars",
            c.name
        )));
    }
    Ok(match split {
        Some(split) => Plan::SplitBar { x, y: ys[0], split },
        None => Plan::Bar { x, ys },
    })
}

/// Picks the chart for `t` as `spec` asks (see the module docs).
pub(super) fn choose(t: &Table, spec: &ChartSpec) -> Result<Plan, NoChart> {
    if spec.type_ == ChartType::Auto && spec.x.is_none() && spec.y.is_empty() {
        if t.rows == 0 {
            return Err(NoChart::NotApplicable("the result has no rows".into()));
        }
        return choose_auto(t);
    }
    let x = spec.x.as_deref().map(|x| t.find(x, "spec.chart.x")).transpose()?;
    let explicit_ys = !spec.y.is_empty();
    let ys = if explicit_ys {
        let mut ys = Vec::new();
        for y in &spec.y {
            let i = t.find(y, "spec.chart.y")?;
            if t.kind(i) != ColumnKind::Number {
                return Err(NoChart::Unfit(format!("spec.chart.y column {y:?} is not numeric")));
            }
            ys.push(i);
        }
        ys
    } else {
        Vec::new()
    };
    // Numeric columns other than `except`, keys left out when measures exist.
    let measures = |except: &[usize]| -> Vec<usize> {
        if explicit_ys {
            return ys.clone();
        }
        let all: Vec<usize> =
            (0..t.columns.len()).filter(|i| t.kind(*i) == ColumnKind::Number && !except.contains(i)).collect();
        // The query's measures first; then numbers that are not keys; then any number.
        let by_role: Vec<usize> = all.iter().copied().filter(|i| t.columns[*i].role == ColumnRole::Measure).collect();
        let values: Vec<usize> = all.iter().copied().filter(|i| !looks_like_identifier(&t.columns[*i].name)).collect();
        let mut chosen = if !by_role.is_empty() {
            by_role
        } else if values.is_empty() {
            all
        } else {
            values
        };
        chosen.truncate(MAX_SERIES);
        chosen
    };
    let line = |x: usize, time: bool| -> Result<Plan, NoChart> {
        let mut ys = measures(&[x]);
        if ys.is_empty() {
            return Err(NoChart::Unfit(format!("no numeric column to draw over {:?}", t.columns[x].name)));
        }
        // The long shape `x, category, value`: one line per category.
        let split = (ys.len() == 1 || !explicit_ys)
            .then(|| {
                (0..t.columns.len()).find(|i| {
                    *i != x
                        && t.kind(*i) == ColumnKind::Text
                        && (2..=AUTO_BAR_MAX_CATEGORIES).contains(&t.columns[*i].distinct)
                })
            })
            .flatten();
        if split.is_some() {
            ys.truncate(1);
        }
        Ok(Plan::Line { x, time, ys, split })
    };
    let numeric_x = |x: usize| -> Result<Plan, NoChart> {
        let ys = measures(&[x]);
        if ys.is_empty() {
            return Err(NoChart::Unfit(format!("no numeric column to draw against {:?}", t.columns[x].name)));
        }
        if t.columns[x].increasing { line(x, false) } else { Ok(Plan::Scatter { x, ys }) }
    };
    let unfit = |what: &str| NoChart::Unfit(format!("spec.chart.type {what}: {}", describe_columns(t)));

    match spec.type_ {
        ChartType::None => Err(NoChart::NotApplicable("spec.chart.type is none".into())),
        ChartType::Auto => {
            if t.rows == 0 {
                return Err(NoChart::NotApplicable("the result has no rows".into()));
            }
            if let Some(x) = x {
                return match t.kind(x) {
                    ColumnKind::Time => line(x, true),
                    ColumnKind::Number => numeric_x(x),
                    ColumnKind::Text => bar(x, measures(&[x])),
                    ColumnKind::Empty => {
                        Err(NoChart::Unfit(format!("spec.chart.x column {:?} is empty", t.columns[x].name)))
                    }
                };
            }
            if let Some(x) = t.first(ColumnKind::Time, &[])
                && !measures(&[x]).is_empty()
            {
                return line(x, true);
            }
            if let Some(x) = (0..t.columns.len())
                .find(|i| t.kind(*i) == ColumnKind::Text && t.columns[*i].distinct <= AUTO_BAR_MAX_CATEGORIES)
                && !measures(&[x]).is_empty()
            {
                return bar(x, measures(&[x]));
            }
            let numbers: Vec<usize> = (0..t.columns.len()).filter(|i| t.kind(*i) == ColumnKind::Number).collect();
            if numbers.len() >= 2 {
                return numeric_x(numbers[0]);
            }
            Err(NoChart::NotApplicable(format!(
                "no date/time or category column with numbers, and fewer than two numeric columns ({})",
                describe_columns(t)
            )))
        }
        ChartType::Bar => {
            let x = x
                .or_else(|| t.first(ColumnKind::Text, &ys))
                .or_else(|| t.first(ColumnKind::Time, &ys))
                .or_else(|| (0..t.columns.len()).find(|i| !ys.contains(i) && t.kind(*i) != ColumnKind::Empty))
                .ok_or_else(|| unfit("bar needs a category column"))?;
            bar(x, measures(&[x]))
        }
        ChartType::Line => match x {
            Some(x) if t.kind(x) == ColumnKind::Time => line(x, true),
            Some(x) if t.kind(x) == ColumnKind::Number => line(x, false),
            Some(x) => Err(NoChart::Unfit(format!(
                "spec.chart.type line needs a date/time or numeric x; {:?} holds text",
                t.columns[x].name
            ))),
            None => match t.first(ColumnKind::Time, &ys) {
                Some(x) => line(x, true),
                None => {
                    let x = (0..t.columns.len())
                        .filter(|i| t.kind(*i) == ColumnKind::Number && !ys.contains(i))
                        .find(|i| t.columns[*i].increasing)
                        .or_else(|| t.first(ColumnKind::Number, &ys))
                        .ok_or_else(|| unfit("line needs a date/time or numeric column for x"))?;
                    line(x, false)
                }
            },
        },
        ChartType::Scatter => {
            let x = match x {
                Some(x) if t.kind(x) == ColumnKind::Number => x,
                Some(x) => {
                    return Err(NoChart::Unfit(format!(
                        "spec.chart.type scatter needs a numeric x; {:?} is not numeric",
                        t.columns[x].name
                    )));
                }
                None => t.first(ColumnKind::Number, &ys).ok_or_else(|| unfit("scatter needs two numeric columns"))?,
            };
            let ys = measures(&[x]);
            if ys.is_empty() {
                return Err(unfit("scatter needs two numeric columns"));
            }
            Ok(Plan::Scatter { x, ys })
        }
    }
}

pub(super) fn bar(x: usize, ys: Vec<usize>) -> Result<Plan, NoChart> {
    if ys.is_empty() {
        return Err(NoChart::Unfit("no numeric column to draw bars of".into()));
    }
    Ok(Plan::Bar { x, ys })
}

pub(super) fn describe_columns(t: &Table) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let kind = match c.kind {
                ColumnKind::Number => "number",
                ColumnKind::Time => "date/time",
                ColumnKind::Text => "text",
                ColumnKind::Empty => "empty",
            };
            format!("{} {kind}", c.name)
        })
        .collect();
    format!("columns: {}", cols.join(", "))
}
