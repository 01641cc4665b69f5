//! From mentions to columns: candidates of a kind, choosing among them by context, the columns
//! "revenue", "spent", a superlative or a date imply, and what a cue word points at.

use super::intent::Measure;
use super::parse::{Implied, Mention, MentionKind, Parse, is_filler};
use super::schema::{Col, ColInfo, Kind, Schema, qual_name, walk};

pub(super) fn measure_cols(schema: &Schema, m: &Mention) -> Vec<(Col, f64)> {
    match &m.kind {
        MentionKind::Columns(cs) => cs.iter().filter(|(c, _)| schema.col(*c).kind == Kind::Number).cloned().collect(),
        _ => Vec::new(),
    }
}

pub(super) fn is_measure_mention(schema: &Schema, m: &Mention) -> bool {
    matches!(m.kind, MentionKind::Revenue | MentionKind::Money) || !measure_cols(schema, m).is_empty()
}

pub(super) fn text_cols(schema: &Schema, m: &Mention) -> Vec<(Col, f64)> {
    match &m.kind {
        MentionKind::Columns(cs) => cs
            .iter()
            .filter(|(c, _)| matches!(schema.col(*c).kind, Kind::Text | Kind::Other) && !schema.col(*c).key)
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn date_cols(schema: &Schema, m: &Mention) -> Vec<(Col, f64)> {
    match &m.kind {
        MentionKind::Columns(cs) => {
            cs.iter().filter(|(c, _)| matches!(schema.col(*c).kind, Kind::Date | Kind::Timestamp)).cloned().collect()
        }
        _ => Vec::new(),
    }
}

/// Picks among candidate columns by context: tables the question names or the subject, then
/// join distance; says when it guessed.
pub(super) fn choose(
    schema: &Schema,
    cands: &[(Col, f64)],
    context: &[usize],
    what: &str,
    intent_doubts: &mut Vec<(f64, String)>,
) -> Option<Col> {
    let best = cands.first()?.1;
    let top: Vec<Col> = cands.iter().filter(|(_, s)| *s >= best - 1e-9).map(|(c, _)| *c).collect();
    if top.len() == 1 {
        return Some(top[0]);
    }
    let rank = |c: &Col| -> (usize, usize) {
        let named = context.iter().position(|t| *t == c.t).unwrap_or(usize::MAX);
        let dist = context.iter().filter_map(|t| schema.distance(*t, c.t)).min().unwrap_or(usize::MAX);
        (named, dist)
    };
    let mut sorted = top.clone();
    sorted.sort_by_key(|c| rank(c));
    if rank(&sorted[0]) == rank(&sorted[1]) {
        intent_doubts.push((
            0.15,
            format!("{what} could be {} or {}", qual_name(schema, sorted[0]), qual_name(schema, sorted[1])),
        ));
    }
    Some(sorted[0])
}

/// A money-like numeric column (price, amount, total, cost, value, revenue, sales).
fn money_score(c: &ColInfo) -> f64 {
    if c.kind != Kind::Number || c.key {
        return 0.0;
    }
    let mut s: f64 = 0.0;
    for w in &c.words {
        s += match w.as_str() {
            "price" | "amount" | "revenue" | "sale" | "sales" => 1.0,
            "total" | "value" => 0.5,
            "cost" | "balance" => 0.4,
            _ => 0.0,
        };
    }
    s
}

/// The revenue measure closest to `near`: price net of discount where a table has both.
pub(super) fn revenue_measure(schema: &Schema, near: &[usize]) -> Option<(Measure, String)> {
    let mut best: Option<(f64, Measure, String)> = None;
    for (t, ti) in schema.tables.iter().enumerate() {
        let discount = ti
            .cols
            .iter()
            .position(|c| c.kind == Kind::Number && c.words.iter().any(|w| w == "discount"))
            .map(|c| Col { t, c });
        for (c, ci) in ti.cols.iter().enumerate() {
            let m = money_score(ci);
            if m <= 0.0 || ci.words.iter().any(|w| w == "discount" || w == "balance" || w == "cost") {
                continue;
            }
            let dist = near.iter().filter_map(|n| schema.distance(*n, t)).min().unwrap_or(3) as f64;
            let score = m
                + if discount.is_some() { 1.0 } else { 0.0 }
                + if ci.words.iter().any(|w| w == "extend" || w == "net" || w == "revenue") { 0.5 } else { 0.0 }
                - 0.2 * dist;
            if best.as_ref().is_none_or(|b| score > b.0) {
                let col = Col { t, c };
                let desc = match discount {
                    Some(d) => format!("\"revenue\" read as SUM({} * (1 - {}))", ci.name, schema.col(d).name),
                    None => format!("\"revenue\" read as SUM({})", ci.name),
                };
                best = Some((score, Measure::Revenue { price: col, discount }, desc));
            }
        }
    }
    best.map(|(_, m, d)| (m, d))
}

/// A money column for "spent"/"paid": preferably in a table that references `subject`.
pub(super) fn money_measure(schema: &Schema, subject: Option<usize>, named: &[usize]) -> Option<Col> {
    let mut best: Option<(f64, Col)> = None;
    for (col, ci) in schema.cols() {
        let m = money_score(ci);
        if m <= 0.0 || ci.words.iter().any(|w| w == "balance" || w == "discount") {
            continue;
        }
        // "customers spent": money in a table that references the subject, one join away;
        // "order value": money in a table the text names.
        let dist = subject.and_then(|s| schema.distance(s, col.t)).unwrap_or(3) as f64;
        let own = if Some(col.t) == subject { 1.0 } else { 0.0 };
        let mentioned = if named.contains(&col.t) && Some(col.t) != subject { 1.0 } else { 0.0 };
        let score = m - 0.4 * (dist - 1.0).abs() - 0.6 * own
            + mentioned
            + if ci.words.iter().any(|w| w == "total") { 0.3 } else { 0.0 };
        if best.is_none_or(|b| score > b.0) {
            best = Some((score, col));
        }
    }
    best.map(|b| b.1)
}

/// A column of table `t` for an implied measure ("cheapest" → price, "largest" → size).
pub(super) fn implied_column(schema: &Schema, t: usize, implied: Implied) -> Option<Col> {
    let ti = &schema.tables[t];
    let pick = |f: &dyn Fn(&ColInfo) -> f64| -> Option<Col> {
        ti.cols
            .iter()
            .enumerate()
            .map(|(c, ci)| (c, f(ci)))
            .filter(|(_, s)| *s > 0.0)
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
            .map(|(c, _)| Col { t, c })
    };
    match implied {
        Implied::Price => pick(&|c| {
            if c.kind == Kind::Number && c.words.iter().any(|w| w == "price" || w == "cost") {
                1.0
            } else {
                money_score(c) * 0.5
            }
        }),
        Implied::Size => {
            pick(&|c| if c.kind == Kind::Number && c.words.iter().any(|w| w == "size") { 1.0 } else { 0.0 })
                .or_else(|| pick(&|c| money_score(c) * 0.5))
        }
        Implied::Date => pick(&|c| {
            if matches!(c.kind, Kind::Date | Kind::Timestamp) {
                1.0 + if c.words.iter().any(|w| ti.words.contains(w)) { 0.5 } else { 0.0 }
            } else {
                0.0
            }
        }),
        Implied::None | Implied::Frequency => None,
    }
}

/// The date column a date filter or a year group applies to.
pub(super) fn date_column(
    schema: &Schema,
    p: &Parse,
    root: usize,
    context: &[usize],
    doubts: &mut Vec<(f64, String)>,
) -> Option<(Col, Option<String>)> {
    // Explicit date-column mentions win.
    for m in &p.mentions {
        let ds = date_cols(schema, m);
        if !ds.is_empty() {
            let mut ctx = vec![root];
            ctx.extend_from_slice(context);
            return choose(schema, &ds, &ctx, "the date", doubts).map(|c| (c, None));
        }
    }
    const VERBS: &[(&str, &str)] = &[
        ("receiv", "receipt"),
        ("deliver", "receipt"),
        ("commit", "commit"),
        ("ship", "ship"),
        ("order", "order"),
        ("creat", "create"),
        ("updat", "update"),
        ("hire", "hire"),
        ("birth", "birth"),
    ];
    let hints: Vec<String> = p
        .toks
        .iter()
        .map(|t| {
            let s = t.stem.clone();
            VERBS.iter().find(|(v, _)| s.starts_with(v)).map(|(_, w)| w.to_string()).unwrap_or(s)
        })
        .collect();
    let mut cands: Vec<(f64, Col)> = Vec::new();
    for (col, ci) in schema.cols() {
        if !matches!(ci.kind, Kind::Date | Kind::Timestamp) || ci.banned {
            continue;
        }
        let Some(dist) = schema.distance(root, col.t) else { continue };
        let mut s = -(dist as f64) * 1.5;
        let hinted = ci.words.iter().filter(|w| *w != "date" && *w != "time").any(|w| hints.iter().any(|h| h == w));
        if hinted {
            s += 3.0;
        }
        if ci.words.iter().any(|w| schema.tables[col.t].words.contains(w)) {
            s += 0.5; // o_orderdate in orders: the table's own date
        }
        if context.contains(&col.t) {
            s += 0.3;
        }
        cands.push((s, col));
    }
    cands.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    let (s, col) = *cands.first()?;
    let note = if cands.len() > 1 {
        if cands[1].0 >= s - 0.6 {
            doubts.push((
                0.1,
                format!("the date could be {} or {}", qual_name(schema, col), qual_name(schema, cands[1].1)),
            ));
        }
        Some(format!("dates refer to {}", qual_name(schema, col)))
    } else {
        None
    };
    Some((col, note))
}

/// Follows "customer region"-style compounds: a table mention directly followed by a mention
/// of a table it references names the latter (the customer's region). Returns the last mention
/// and the tables passed on the way (they shape the join path).
pub(super) fn compound<'a>(schema: &Schema, p: &'a Parse, mut m: &'a Mention) -> (&'a Mention, Vec<usize>) {
    let mut via = Vec::new();
    while let (MentionKind::Table(t), Some(next)) = (&m.kind, p.mention_at(m.end)) {
        let refers = match next.kind {
            MentionKind::Table(t2) => schema
                .graph
                .path_to_tree(&[*t], t2, 4)
                .is_some_and(|path| walk(schema, &[*t], &path).iter().all(|s| !s.fans_out)),
            _ => false,
        };
        if !refers {
            break;
        }
        via.push(*t);
        m = next;
    }
    (m, via)
}

/// What a by/per/each cue groups by: the next mention, unless a count or aggregate cue, a
/// value or a number comes first ("by number of line items" ranks, it does not group).
pub(super) fn group_after(p: &Parse, i: usize) -> Option<&Mention> {
    let mut j = i;
    while j < p.toks.len() && j < i + 4 {
        if let Some(m) = p.mention_at(j) {
            return Some(m);
        }
        if p.value_at(j).is_some() {
            return None;
        }
        let t = &p.toks[j];
        if p.used[j] && !is_filler(t) {
            return None;
        }
        j += 1;
    }
    None
}

/// What a "which/list/top N" cue asks for: the next table or text-column mention, skipping
/// filler, numbers and superlatives; `None` when an aggregate or count cue comes first ("what is
/// the average …") or the next mention is a measure.
pub(super) fn focus_after<'a>(schema: &Schema, p: &'a Parse, i: usize) -> Option<&'a Mention> {
    let mut j = i;
    let mut skipped = 0;
    while j < p.toks.len() && skipped <= 4 {
        if let Some(m) = p.mention_at(j) {
            return match &m.kind {
                MentionKind::Table(_) => Some(m),
                MentionKind::Columns(_) if !text_cols(schema, m).is_empty() => Some(m),
                _ => None,
            };
        }
        if p.value_at(j).is_some() {
            return None;
        }
        let t = &p.toks[j];
        let sup_word = p.sup.is_some_and(|(_, end, _)| j < end && j + 2 >= end)
            || matches!(t.low.as_str(), "best" | "worst" | "top" | "most" | "least" | "highest" | "lowest");
        if p.used[j] && !is_filler(t) && t.num.is_none() && !sup_word {
            return None; // a count or aggregate cue
        }
        j += 1;
        skipped += 1;
    }
    None
}
