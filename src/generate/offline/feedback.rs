//! Refine feedback, parsed like a question and applied on top of the question's intent ("only
//! 1995", "top 3 instead", "by nation instead", "ascending").

use super::filters::add_filters;
use super::intent::{Filter, Group, Intent, Measure, Shape};
use super::one_line;
use super::parse::{Agg, Dir, MentionKind, Parse, parse};
use super::resolve::{choose, date_column, is_measure_mention, measure_cols, text_cols};
use super::schema::{Col, Schema};
use crate::generate::GenerateError;

/// Applies refine feedback on top of the question's intent.
pub(super) fn apply_feedback(schema: &Schema, intent: &mut Intent, feedback: &str) -> Result<(), GenerateError> {
    let p = parse(schema, feedback);
    let mut changed = false;
    let mut doubts = Vec::new();
    let mut assumptions = Vec::new();
    let context: Vec<usize> = intent.named.clone();

    if p.clear_dates {
        let n = intent.filters.len();
        intent.filters.retain(|f| !matches!(f, Filter::Dates { .. }));
        changed |= n != intent.filters.len();
    }
    if !p.dates.is_empty() {
        let existing =
            intent.filters.iter().find_map(|f| if let Filter::Dates { col, .. } = f { Some(*col) } else { None });
        let col = match existing {
            Some(c) => c,
            None => {
                date_column(schema, &p, intent.subject, &context, &mut doubts).map(|(c, _)| c).ok_or_else(|| {
                    GenerateError::CannotAnswer("the feedback names a date, but the query has no date column".into())
                })?
            }
        };
        intent.filters.retain(|f| !matches!(f, Filter::Dates { .. }));
        for span in &p.dates {
            intent.filters.push(Filter::Dates { col, span: *span });
        }
        changed = true;
    }
    if let Some(k) = p.limit {
        match intent.shape {
            Shape::RankRows | Shape::List => intent.limit = Some(k),
            Shape::Aggregate if !intent.groups.is_empty() => {
                intent.limit = Some(k);
                intent.rank.get_or_insert(Dir::Desc);
            }
            Shape::Aggregate => {}
        }
        changed = true;
    }
    let dir = p.order_dir.or(p.sup.map(|s| s.0));
    let flip = p.sort_cues.contains(&usize::MAX);
    if dir.is_some() || flip {
        let new = |old: Dir| if flip { if old == Dir::Asc { Dir::Desc } else { Dir::Asc } } else { dir.unwrap_or(old) };
        match (intent.shape, intent.rank) {
            (_, Some(r)) => intent.rank = Some(new(r)),
            (Shape::Aggregate, None) if !intent.groups.is_empty() => intent.rank = Some(new(Dir::Asc)),
            (Shape::Aggregate, None) => {
                // "lowest instead" on a plain max.
                if intent.agg == Agg::Max && new(Dir::Desc) == Dir::Asc {
                    intent.agg = Agg::Min;
                } else if intent.agg == Agg::Min && new(Dir::Asc) == Dir::Desc {
                    intent.agg = Agg::Max;
                }
            }
            (Shape::List, None) => {
                intent.rank = Some(new(Dir::Asc));
            }
            _ => {}
        }
        changed = true;
    }
    // Grouping.
    let mut new_groups: Vec<Group> = Vec::new();
    for &g in &p.group_cues {
        let Some(m) = p.mention_after(g, 3) else { continue };
        match &m.kind {
            MentionKind::Table(t) => new_groups.push(Group::Entity(*t)),
            MentionKind::DatePart(part) => {
                let (col, _) = date_column(schema, &p, intent.subject, &context, &mut doubts)
                    .ok_or_else(|| GenerateError::CannotAnswer("grouping by year needs a date column".into()))?;
                new_groups.push(Group::Part(*part, col));
            }
            MentionKind::Columns(_) => {
                let tc = text_cols(schema, m);
                if !tc.is_empty() {
                    if let Some(c) = choose(schema, &tc, &context, "the grouping", &mut doubts) {
                        new_groups.push(Group::Column(c));
                    }
                } else if let Some(c) = measure_cols(schema, m).first().map(|c| c.0) {
                    // "by retail price instead": a new ranking measure.
                    if matches!(intent.measure, Measure::Column(_)) {
                        intent.measure = Measure::Column(c);
                        changed = true;
                    }
                }
            }
            _ => {}
        }
    }
    if !new_groups.is_empty() {
        if intent.shape == Shape::Aggregate {
            intent.groups = new_groups;
        } else {
            // A list or a ranking regrouped becomes an aggregate per group.
            intent.shape = Shape::Aggregate;
            intent.agg = if matches!(intent.measure, Measure::Column(_)) { Agg::Sum } else { Agg::Count };
            intent.groups = new_groups;
        }
        changed = true;
    }
    // Removals: "remove the segment filter", "without the nation".
    for &r in &p.removals {
        if let Some(m) = p.mention_after(r, 3) {
            let n = intent.filters.len();
            let cols: Vec<Col> = match &m.kind {
                MentionKind::Columns(cs) => cs.iter().map(|c| c.0).collect(),
                MentionKind::Table(t) => (0..schema.tables[*t].cols.len()).map(|c| Col { t: *t, c }).collect(),
                _ => vec![],
            };
            intent.filters.retain(
                |f| !matches!(f, Filter::Values { col, .. } | Filter::Compare { col, .. } if cols.contains(col)),
            );
            changed |= n != intent.filters.len();
        }
    }
    // Values: replace the filter on the same column, or add one.
    for v in &p.values {
        let cands: Vec<(Col, f64)> = v.cols.iter().map(|c| (*c, 1.0)).collect();
        let existing: Vec<Col> = intent
            .filters
            .iter()
            .filter_map(|f| if let Filter::Values { col, .. } = f { Some(*col) } else { None })
            .collect();
        let col = v
            .cols
            .iter()
            .find(|c| existing.contains(c))
            .copied()
            .or_else(|| choose(schema, &cands, &[intent.subject], "the value", &mut doubts));
        let Some(col) = col else { continue };
        let also = feedback.to_ascii_lowercase().contains("also") || feedback.to_ascii_lowercase().contains(" or ");
        match intent.filters.iter_mut().find(|f| matches!(f, Filter::Values { col: c, .. } if *c == col)) {
            Some(Filter::Values { values, .. }) if also => {
                if !values.contains(&v.value) {
                    values.push(v.value.clone());
                }
            }
            Some(Filter::Values { values, weak, .. }) => {
                *values = vec![v.value.clone()];
                *weak = !v.strong;
            }
            _ => intent.filters.push(Filter::Values { col, values: vec![v.value.clone()], weak: !v.strong }),
        }
        changed = true;
    }
    // Numeric comparisons: replace those on the same column.
    if !p.nums.is_empty() {
        let mut tmp = intent.clone();
        tmp.filters.clear();
        let mut d2 = Vec::new();
        if add_filters(
            schema,
            &Parse { values: vec![], dates: vec![], ..clone_parse_numbers(&p) },
            &mut tmp,
            &context,
            &mut d2,
            &mut assumptions,
        )
        .is_ok()
        {
            for f in tmp.filters {
                if let Filter::Compare { col, .. } = &f {
                    intent.filters.retain(|g| !matches!(g, Filter::Compare { col: c, .. } if c == col));
                }
                if let Filter::HavingCount { child, .. } = &f {
                    intent.filters.retain(|g| !matches!(g, Filter::HavingCount { child: c, .. } if c == child));
                }
                intent.filters.push(f);
                changed = true;
            }
        }
    }
    // Aggregate changes: "average instead", "count instead".
    if intent.shape == Shape::Aggregate {
        if let Some(&(agg, _)) = p.aggs.iter().find(|a| !(a.0 == Agg::Sum && p.how_much))
            && intent.agg != agg
            && intent.agg != Agg::Count
        {
            intent.agg = agg;
            changed = true;
        }
        if p.count.is_some() && intent.agg != Agg::Count {
            intent.agg = Agg::Count;
            intent.measure = Measure::Rows(intent.measure.table());
            changed = true;
        }
    }
    // A new measure named on its own ("use the retail price").
    if !changed && let Some(m) = p.mentions.iter().find(|m| is_measure_mention(schema, m)) {
        let cands = measure_cols(schema, m);
        if let (Some((c, _)), Measure::Column(_)) = (cands.first(), &intent.measure) {
            intent.measure = Measure::Column(*c);
            changed = true;
        }
    }
    if !changed {
        return Err(GenerateError::CannotAnswer(format!(
            "could not apply the feedback {:?}: the offline generator understands years and date ranges (\"only 1995\"), top N (\"top 3\"), ascending/descending, grouping (\"by nation instead\"), filters on known values (\"only BUILDING\") and total/average/count/min/max",
            feedback.trim()
        )));
    }
    for (pen, why) in doubts {
        intent.doubt(pen, why);
    }
    intent.assumptions.extend(assumptions);
    intent.assumptions.push(format!("applied feedback: {}", one_line(feedback, 120)));
    Ok(())
}

fn clone_parse_numbers(p: &Parse) -> Parse {
    Parse {
        toks: p.toks.clone(),
        used: p.used.clone(),
        nums: p.nums.clone(),
        mentions: p.mentions.clone(),
        ..Parse::default()
    }
}
