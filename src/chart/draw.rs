//! Drawing the chosen chart: bars, lines (with gaps at missing periods) and scatters, each
//! mark one cell of the result or the stated "other" sum.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::{Datelike, TimeZone, Utc};

use super::svg::*;
use super::*;

/// Series whose largest magnitude is at least 1/20 of the largest one; smaller ones would be
/// flat lines on the shared axis.
pub(super) fn visible(maxima: &[f64]) -> Vec<usize> {
    let top = maxima.iter().fold(0f64, |m, v| m.max(*v));
    (0..maxima.len()).filter(|i| top == 0.0 || maxima[*i] >= top / 20.0).collect()
}

/// Leaves out auto-chosen series too small to see next to the others; returns the kept indices
/// and a note naming the ones left out.
pub(super) fn drop_invisible(t: &Table, ys: &[usize], maxima: &[f64]) -> (Vec<usize>, Option<String>) {
    let keep = visible(maxima);
    if keep.len() == ys.len() {
        return (keep, None);
    }
    let dropped: Vec<&str> =
        (0..ys.len()).filter(|s| !keep.contains(s)).map(|s| t.columns[ys[s]].name.as_str()).collect();
    let note = format!("{} left out (too small on this scale)", dropped.join(", "));
    (keep, Some(note))
}

/// Values that only rise or only fall: the result is ordered by them.
pub(super) fn monotonic(values: impl Iterator<Item = f64> + Clone) -> bool {
    let pairs = || values.clone().zip(values.clone().skip(1));
    pairs().all(|(a, b)| a <= b) || pairs().all(|(a, b)| a >= b)
}

/// The subtitle: the row count, what was left out or summed, and where the other dimensions are.
pub(super) fn subtitle(t: &Table, notes: &[String], ctx: &Ctx) -> String {
    let mut parts = vec![format!("{} rows", value_text(t.rows as f64))];
    parts.extend(notes.iter().cloned());
    parts.extend(ctx.notes.iter().cloned());
    parts.join("; ")
}

/// The text for screen readers: the kind, the axes and every series.
pub(super) fn description(kind: &str, x: &str, series: &[String], subtitle: &str) -> String {
    format!("{kind} chart over {x}; series: {}; {subtitle}", series.join(", "))
}

pub(super) fn draw_bars(t: &Table, x: usize, ys: &[usize], split: Option<usize>, ctx: &Ctx) -> Result<Out, NoChart> {
    // Values per category (and series), in the order categories first appear (the query's
    // ORDER BY). `auto` only gets here with one row per bar; a forced chart may add rows up,
    // and then its title says so.
    let null = |c: &str| if c.is_empty() { "(null)".to_string() } else { c.to_string() };
    let mut order: Vec<String> = Vec::new();
    let mut series: Vec<String> = match split {
        Some(_) => Vec::new(),
        None => names(t, ys),
    };
    // Per category: how many rows fed each series, and their values.
    let mut sums: HashMap<String, (Vec<usize>, Vec<Option<f64>>)> = HashMap::new();
    for_each_row(t, |rec| {
        let cat = null(cell(rec, x));
        let width = series.len();
        let entry = sums.entry(cat.clone()).or_insert_with(|| {
            order.push(cat);
            (vec![0; width], vec![None; width])
        });
        let mut add = |at: usize, v: Option<f64>| {
            if entry.1.len() <= at {
                entry.0.resize(at + 1, 0);
                entry.1.resize(at + 1, None);
            }
            entry.0[at] += 1;
            if let Some(v) = v {
                *entry.1[at].get_or_insert(0.0) += v;
            }
        };
        match split {
            Some(s) => {
                let name = null(cell(rec, s));
                let at = match series.iter().position(|n| *n == name) {
                    Some(at) => at,
                    None => {
                        series.push(name);
                        series.len() - 1
                    }
                };
                add(at, parse_number(cell(rec, ys[0])));
            }
            None => {
                for (i, y) in ys.iter().enumerate() {
                    add(i, parse_number(cell(rec, *y)));
                }
            }
        }
    })?;
    let categories = order.len();
    let summed = sums.values().any(|(n, _)| n.iter().any(|n| *n > 1));
    let width = series.len();
    let mut bars: Vec<(String, Vec<Option<f64>>)> = order
        .into_iter()
        .map(|c| {
            let (_, mut v) = sums.remove(&c).unwrap_or_default();
            v.resize(width, None);
            (c, v)
        })
        .collect();
    let mut notes = Vec::new();
    let value = |v: &Option<f64>| v.unwrap_or(0.0);
    if !ctx.explicit && split.is_none() && series.len() > 1 {
        let maxima: Vec<f64> =
            (0..series.len()).map(|s| bars.iter().fold(0f64, |m, b| m.max(value(&b.1[s]).abs()))).collect();
        let (keep, dropped) = drop_invisible(t, ys, &maxima);
        if let Some(d) = dropped {
            notes.push(d);
            for b in &mut bars {
                b.1 = keep.iter().map(|s| b.1[*s]).collect();
            }
            series = keep.iter().map(|s| series[*s].clone()).collect();
        }
    }
    let mut other_at = None;
    if bars.len() > MAX_BARS {
        // A result ordered by a measure (ORDER BY … DESC) keeps its order: its first rows are
        // the ones asked for. Otherwise the largest of the first series are kept.
        let ordered = (0..series.len()).any(|s| monotonic(bars.iter().map(|b| value(&b.1[s]))));
        if !ordered {
            bars.sort_by(|a, b| value(&b.1[0]).abs().total_cmp(&value(&a.1[0]).abs()));
        }
        let rest = bars.split_off(MAX_BARS - 1);
        let mut other: Vec<Option<f64>> = vec![None; series.len()];
        for (_, v) in &rest {
            for (o, x) in other.iter_mut().zip(v) {
                if let Some(x) = x {
                    *o.get_or_insert(0.0) += x;
                }
            }
        }
        other_at = Some(bars.len());
        bars.push((format!("other ({} more)", rest.len()), other));
        let kept = if ordered { format!("first {}", MAX_BARS - 1) } else { format!("{} largest", MAX_BARS - 1) };
        notes.push(format!("the {kept} of {categories} categories, the rest summed as other"));
    }
    let y_names = names(t, ys).join(", ");
    if let Some(s) = split {
        notes.push(format!("{y_names} by {}", t.columns[s].name));
    }
    let title = if summed {
        notes.push(format!("sum of {y_names} over rows with the same {}", t.columns[x].name));
        format!("Sum of {y_names} by {} · {}", t.columns[x].name, ctx.title)
    } else {
        ctx.title.to_string()
    };
    let sub = subtitle(t, &notes, ctx);

    let legend_rows = Svg::legend_rows(&series);
    let longest = bars.iter().map(|(c, _)| c.chars().count().min(MAX_LABEL_CHARS)).max().unwrap_or(0) as f64;
    let band_guess = (WIDTH - 96.0) / bars.len() as f64;
    let rotate = longest * CHAR_W > band_guess * 0.95;
    let bottom = if rotate { 40.0 + (longest * CHAR_W * 0.66).min(150.0) } else { 56.0 };
    let f = Frame::new(legend_rows, bottom);

    let (lo, hi) =
        bars.iter().flat_map(|(_, v)| v.iter().flatten()).fold((0f64, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let ticks = nice_ticks(lo, hi, 6);
    let ys_scale = Scale { d0: ticks.lo, d1: ticks.hi, p0: f.bottom(), p1: f.top };

    let mut svg = Svg::new(&title, &description("bar", &t.columns[x].name, &series, &sub));
    svg.subtitle(&sub);
    svg.legend(&series);
    let y_title = match split {
        Some(_) => Some(y_names.clone()),
        None => (series.len() == 1).then(|| series[0].clone()),
    };
    let y_title = y_title.map(|n| if summed { format!("sum of {n}") } else { n });
    svg.y_axis(&f, &ticks, &ys_scale, y_title.as_deref());
    let band = f.width / bars.len() as f64;
    let group = band * 0.8;
    let w = group / series.len().max(1) as f64;
    let zero = ys_scale.map(0.0);
    let mut marks = 0;
    let mut drawn = Vec::new();
    svg.out.push_str(r#"<g class="bars">"#);
    let mut labels = Vec::with_capacity(bars.len());
    for (i, (cat, values)) in bars.iter().enumerate() {
        let x0 = f.left + band * i as f64 + (band - group) / 2.0;
        for (s, v) in values.iter().enumerate() {
            // NULL draws nothing: no bar stands for a value the result does not hold.
            let Some(v) = v else { continue };
            let y = ys_scale.map(*v);
            let (top, h) = if y < zero { (y, zero - y) } else { (zero, y - zero) };
            let label = match split {
                Some(_) => format!("{cat}, {}", series[s]),
                None => cat.clone(),
            };
            let _ = write!(
                svg.out,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
                px(x0 + w * s as f64),
                px(top),
                px((w - 1.0).max(1.0)),
                px(h.max(0.5)),
                PALETTE[s % PALETTE.len()],
                escape(&label, MAX_LABEL_CHARS * 2),
                escape(&value_text(*v), 40)
            );
            marks += 1;
            drawn.push((*v, other_at == Some(i)));
        }
        labels.push((f.left + band * (i as f64 + 0.5), cat.clone()));
    }
    svg.out.push_str("</g>");
    svg.x_axis(&f, &labels, rotate, &t.columns[x].name);
    Ok(Out { svg: svg.finish(), marks, drawn })
}

/// M4 downsampling: per pixel column, the first, last, lowest and highest point (in x order), so
/// the drawn line is the same as with every point. `points` must be sorted by x.
pub(super) fn downsample(points: &[(f64, f64)], x0: f64, x1: f64, buckets: usize) -> Vec<(f64, f64)> {
    if points.len() <= 4 * buckets.max(1) || x1 <= x0 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(4 * buckets);
    let bucket_of = |x: f64| (((x - x0) / (x1 - x0) * buckets as f64) as usize).min(buckets - 1);
    let mut i = 0;
    while i < points.len() {
        let b = bucket_of(points[i].0);
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < points.len() && bucket_of(points[j].0) == b {
            if points[j].1 < points[lo].1 {
                lo = j;
            }
            if points[j].1 > points[hi].1 {
                hi = j;
            }
            j += 1;
        }
        let mut keep = [i, lo, hi, j - 1];
        keep.sort_unstable();
        let mut last = usize::MAX;
        for k in keep {
            if k != last {
                out.push(points[k]);
                last = k;
            }
        }
        i = j;
    }
    out
}

/// The calendar slot of a time (seconds since the epoch) in steps of `unit`, so consecutive
/// periods differ by one and a missing one shows as a gap; `None` for units without slots.
pub(super) fn time_slot(secs: f64, unit: &str) -> Option<i64> {
    let t = Utc.timestamp_opt(secs.floor() as i64, 0).single()?;
    let months = i64::from(t.year()) * 12 + i64::from(t.month0());
    Some(match unit {
        "year" => i64::from(t.year()),
        "quarter" => months.div_euclid(3),
        "month" => months,
        "week" => (secs / DAY).floor() as i64 / 7,
        "day" => (secs / DAY).floor() as i64,
        "hour" => (secs / 3600.0).floor() as i64,
        "minute" => (secs / 60.0).floor() as i64,
        _ => return None,
    })
}

/// The step of a time axis: the `date_trunc` unit, else read from dates alone (all on the 1st
/// of January → years, on the 1st → months, else days); timestamps have none.
pub(super) fn time_unit(t: &Table, x: usize, xs: &[f64]) -> Option<String> {
    if let Some(TimeUse::Trunc(unit)) = &t.columns[x].time {
        return Some(unit.clone());
    }
    if !t.columns[x].dates_only {
        return None;
    }
    let dates: Vec<_> = xs.iter().filter_map(|v| Utc.timestamp_opt(*v as i64, 0).single()).collect();
    Some(
        if dates.iter().all(|d| d.day() == 1 && d.month() == 1) {
            "year"
        } else if dates.iter().all(|d| d.day() == 1) {
            "month"
        } else {
            "day"
        }
        .into(),
    )
}

/// Whole-number ticks for a period axis (every period when there are few).
pub(super) fn period_ticks(lo: f64, hi: f64) -> Ticks {
    let nice = nice_ticks(lo, hi, 8);
    let step = (nice.values.get(1).zip(nice.values.first()).map(|(b, a)| b - a).unwrap_or(1.0)).max(1.0).round();
    let (lo, hi) = (lo.floor(), hi.ceil());
    let start = (lo / step).ceil() * step;
    let values: Vec<f64> = (0..).map(|i| start + i as f64 * step).take_while(|v| *v <= hi).collect();
    let labels = values.iter().map(|v| format!("{v:.0}")).collect();
    // Half a slot of room on either side, so the first and last periods are not on the edge.
    Ticks { values, labels, lo: lo - 0.5, hi: hi + 0.5 }
}

pub(super) fn draw_lines(
    t: &Table,
    x: usize,
    axis: Axis,
    ys: &[usize],
    split: Option<usize>,
    ctx: &Ctx,
) -> Result<Out, NoChart> {
    let parse_x = |s: &str| if axis == Axis::Time { parse_time(s) } else { parse_number(s) };
    // Series: one per y column, or one per value of the split column.
    let mut series_names: Vec<String> = match split {
        Some(_) => Vec::new(),
        None => names(t, ys),
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut points: Vec<Vec<(f64, f64)>> = vec![Vec::new(); series_names.len()];
    for_each_row(t, |rec| {
        let Some(xv) = parse_x(cell(rec, x)) else { return };
        match split {
            Some(s) => {
                let Some(v) = parse_number(cell(rec, ys[0])) else { return };
                let key = match cell(rec, s) {
                    "" => "(null)",
                    k => k,
                };
                let i = *index.entry(key.to_string()).or_insert_with(|| {
                    series_names.push(key.to_string());
                    points.push(Vec::new());
                    points.len() - 1
                });
                points[i].push((xv, v));
            }
            None => {
                for (i, y) in ys.iter().enumerate() {
                    if let Some(v) = parse_number(cell(rec, *y)) {
                        points[i].push((xv, v));
                    }
                }
            }
        }
    })?;
    let mut notes = Vec::new();
    if series_names.len() > MAX_SERIES {
        // Keep the series with the largest totals.
        let mut order: Vec<usize> = (0..series_names.len()).collect();
        let total = |i: usize| points[i].iter().map(|p| p.1.abs()).sum::<f64>();
        order.sort_by(|a, b| total(*b).total_cmp(&total(*a)));
        order.truncate(MAX_SERIES);
        order.sort_unstable();
        notes.push(format!("the {MAX_SERIES} largest of {} series", series_names.len()));
        series_names = order.iter().map(|i| series_names[*i].clone()).collect();
        points = order.iter().map(|i| std::mem::take(&mut points[*i])).collect();
    }
    if let Some(s) = split {
        notes.push(format!("{} by {}", t.columns[ys[0]].name, t.columns[s].name));
    } else if !ctx.explicit && points.len() > 1 {
        let maxima: Vec<f64> = points.iter().map(|p| p.iter().fold(0f64, |m, v| m.max(v.1.abs()))).collect();
        let (keep, dropped) = drop_invisible(t, ys, &maxima);
        if let Some(d) = dropped {
            notes.push(d);
            series_names = keep.iter().map(|i| series_names[*i].clone()).collect();
            points = keep.iter().map(|i| std::mem::take(&mut points[*i])).collect();
        }
    }
    if points.iter().all(Vec::is_empty) {
        return Err(NoChart::Declined(format!("no row has both an x ({}) and a y value", t.columns[x].name)));
    }
    for p in &mut points {
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let (xlo, xhi) = bounds(points.iter().flatten().map(|p| p.0));
    let (ylo, yhi) = bounds(points.iter().flatten().map(|p| p.1));
    // Where a line breaks: between consecutive points more than one period apart.
    let all_x: Vec<f64> = points.iter().flatten().map(|p| p.0).collect();
    let slot: Box<dyn Fn(f64) -> Option<i64>> = match axis {
        Axis::Period if xhi - xlo <= MAX_PERIOD_SLOTS => Box::new(|v: f64| Some(v.round() as i64)),
        Axis::Time => match time_unit(t, x, &all_x) {
            Some(unit) => Box::new(move |v: f64| time_slot(v, &unit)),
            None => Box::new(|_| None),
        },
        _ => Box::new(|_| None),
    };
    let gap = |a: f64, b: f64| matches!((slot(a), slot(b)), (Some(a), Some(b)) if b - a > 1);

    let legend_rows = Svg::legend_rows(&series_names);
    let f = Frame::new(legend_rows, 56.0);
    let xt = match axis {
        Axis::Time => time_ticks(xlo, xhi, 7, t.columns[x].dates_only),
        Axis::Period => period_ticks(xlo, xhi),
        Axis::Number => nice_ticks(xlo, xhi, 7),
    };
    // Time spans exactly the data; numbers span whole ticks.
    let (xd0, xd1) = if axis == Axis::Time && xhi > xlo { (xlo, xhi) } else { (xt.lo, xt.hi) };
    let xs = Scale { d0: xd0, d1: xd1, p0: f.left, p1: f.right() };
    let yt = nice_ticks(ylo, yhi, 6);
    let ys_scale = Scale { d0: yt.lo, d1: yt.hi, p0: f.bottom(), p1: f.top };

    let sub = subtitle(t, &notes, ctx);
    let mut svg = Svg::new(ctx.title, &description("line", &t.columns[x].name, &series_names, &sub));
    svg.subtitle(&sub);
    svg.legend(&series_names);
    let single = (series_names.len() == 1).then(|| series_names[0].as_str());
    svg.y_axis(&f, &yt, &ys_scale, if split.is_some() { Some(t.columns[ys[0]].name.as_str()) } else { single });
    let mut marks = 0;
    let mut drawn = Vec::new();
    svg.out.push_str(r#"<g class="lines">"#);
    for (i, p) in points.iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        let kept = downsample(p, xd0, xd1, f.width as usize);
        marks += kept.len();
        drawn.extend(kept.iter().map(|(_, y)| (*y, false)));
        let color = PALETTE[i % PALETTE.len()];
        // One polyline per run of consecutive periods: a missing period is a gap, not a
        // straight line across it. A run of one point is a dot.
        let mut runs: Vec<&[(f64, f64)]> = Vec::new();
        let mut start = 0;
        for k in 1..=kept.len() {
            if k == kept.len() || gap(kept[k - 1].0, kept[k].0) {
                runs.push(&kept[start..k]);
                start = k;
            }
        }
        for run in runs {
            if run.len() == 1 {
                let _ = write!(
                    svg.out,
                    r#"<circle cx="{}" cy="{}" r="3" fill="{color}"/>"#,
                    px(xs.map(run[0].0)),
                    px(ys_scale.map(run[0].1))
                );
                continue;
            }
            let _ = write!(
                svg.out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" stroke-linejoin="round" points=""#
            );
            for (k, (xv, yv)) in run.iter().enumerate() {
                if k > 0 {
                    svg.out.push(' ');
                }
                let _ = write!(svg.out, "{},{}", px(xs.map(*xv)), px(ys_scale.map(*yv)));
            }
            svg.out.push_str(r#""/>"#);
        }
        // Few points: mark each one, so a reader sees where the data is.
        if kept.len() <= 60 {
            let _ = write!(svg.out, r#"<g fill="{color}">"#);
            for (xv, yv) in &kept {
                let _ = write!(svg.out, r#"<circle cx="{}" cy="{}" r="2.5"/>"#, px(xs.map(*xv)), px(ys_scale.map(*yv)));
            }
            svg.out.push_str("</g>");
        }
    }
    svg.out.push_str("</g>");
    let labels: Vec<(f64, String)> = xt
        .values
        .iter()
        .zip(&xt.labels)
        .filter(|(v, _)| **v >= xd0 - 1e-9 && **v <= xd1 + 1e-9)
        .map(|(v, l)| (xs.map(*v), l.clone()))
        .collect();
    svg.x_axis(&f, &labels, false, &t.columns[x].name);
    Ok(Out { svg: svg.finish(), marks, drawn })
}

pub(super) fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

pub(super) fn draw_scatter(t: &Table, x: usize, ys: &[usize], ctx: &Ctx) -> Result<Out, NoChart> {
    let mut points: Vec<Vec<(f64, f64)>> = vec![Vec::new(); ys.len()];
    for_each_row(t, |rec| {
        let Some(xv) = parse_number(cell(rec, x)) else { return };
        for (i, y) in ys.iter().enumerate() {
            if let Some(v) = parse_number(cell(rec, *y)) {
                points[i].push((xv, v));
            }
        }
    })?;
    if points.iter().all(Vec::is_empty) {
        return Err(NoChart::Declined(format!("no row has both an x ({}) and a y value", t.columns[x].name)));
    }
    let series = names(t, ys);
    let (xlo, xhi) = bounds(points.iter().flatten().map(|p| p.0));
    let (ylo, yhi) = bounds(points.iter().flatten().map(|p| p.1));
    let f = Frame::new(Svg::legend_rows(&series), 56.0);
    let xt = nice_ticks(xlo, xhi, 7);
    let yt = nice_ticks(ylo, yhi, 6);
    let xs = Scale { d0: xt.lo, d1: xt.hi, p0: f.left, p1: f.right() };
    let ys_scale = Scale { d0: yt.lo, d1: yt.hi, p0: f.bottom(), p1: f.top };
    let sub = subtitle(t, &[], ctx);
    let mut svg = Svg::new(ctx.title, &description("scatter", &t.columns[x].name, &series, &sub));
    svg.subtitle(&sub);
    svg.legend(&series);
    svg.y_axis(&f, &yt, &ys_scale, (series.len() == 1).then(|| series[0].as_str()));
    let mut marks = 0;
    let mut drawn = Vec::new();
    svg.out.push_str(r#"<g class="points">"#);
    for (i, p) in points.iter().enumerate() {
        // One point per 2×2 pixels and series: more would draw the same picture.
        let mut seen = HashSet::new();
        let color = PALETTE[i % PALETTE.len()];
        let _ = write!(svg.out, r#"<g fill="{color}" fill-opacity="0.7">"#);
        for (xv, yv) in p {
            let (cx, cy) = (xs.map(*xv), ys_scale.map(*yv));
            if !seen.insert(((cx / 2.0).round() as i64, (cy / 2.0).round() as i64)) {
                continue;
            }
            let _ = write!(svg.out, r#"<circle cx="{}" cy="{}" r="2.5"/>"#, px(cx), px(cy));
            marks += 1;
            drawn.push((*yv, false));
        }
        svg.out.push_str("</g>");
    }
    svg.out.push_str("</g>");
    let labels: Vec<(f64, String)> = xt.values.iter().zip(&xt.labels).map(|(v, l)| (xs.map(*v), l.clone())).collect();
    svg.x_axis(&f, &labels, false, &t.columns[x].name);
    Ok(Out { svg: svg.finish(), marks, drawn })
}
