//! Filters from the parsed pieces: sample values, dates and numeric comparisons, and values the
//! samples do not list but the text writes as literals next to a column's name.

use super::intent::{Filter, Intent, Measure, Shape};
use super::parse::{DateSpan, Mention, MentionKind, Op, Parse, Tok, is_code, tokenize, ymd};
use super::resolve::{choose, date_cols, date_column, measure_cols, text_cols};
use super::schema::{Col, Kind, Schema};
use crate::generate::GenerateError;

/// Equality filters from values, date filters, numeric comparisons.
pub(super) fn add_filters(
    schema: &Schema,
    p: &Parse,
    intent: &mut Intent,
    context: &[usize],
    doubts: &mut Vec<(f64, String)>,
    assumptions: &mut Vec<String>,
) -> Result<(), GenerateError> {
    let mut ctx: Vec<usize> = vec![intent.subject];
    ctx.extend_from_slice(context);
    for v in &p.values {
        let cands: Vec<(Col, f64)> = v.cols.iter().map(|c| (*c, 1.0)).collect();
        // A column named right before or after the value decides ("segment BUILDING").
        let near: Vec<usize> = p
            .mentions
            .iter()
            .filter(|m| m.end + 2 >= v.start && m.start <= v.end + 2)
            .filter_map(|m| {
                if let MentionKind::Columns(cs) = &m.kind {
                    Some(cs.iter().map(|c| c.0.t).collect::<Vec<_>>())
                } else {
                    None
                }
            })
            .flatten()
            .collect();
        let named_cols: Vec<Col> = p
            .mentions
            .iter()
            .filter_map(|m| {
                if let MentionKind::Columns(cs) = &m.kind {
                    Some(cs.iter().map(|c| c.0).collect::<Vec<_>>())
                } else {
                    None
                }
            })
            .flatten()
            .collect();
        let mut direct: Vec<(Col, f64)> = cands.iter().filter(|(c, _)| named_cols.contains(c)).cloned().collect();
        // "from LAX to ORD": a direction word right before the value picks the column named
        // for that direction (`from_airport`, `to_airport`).
        if let Some(dir) = v.start.checked_sub(1).map(|i| p.low(i)).filter(|w| matches!(*w, "from" | "to")) {
            let directed: Vec<(Col, f64)> =
                cands.iter().filter(|(c, _)| schema.col(*c).words.iter().any(|w| w == dir)).cloned().collect();
            if !directed.is_empty() {
                direct = directed;
            }
        }
        // "active retail merchants": a value right before a table's name describes that table.
        let mut j = v.end;
        while j < p.toks.len() && p.value_at(j).is_some() {
            j += 1;
        }
        if let Some(MentionKind::Table(t)) = p.mention_at(j).filter(|m| m.start == j).map(|m| &m.kind) {
            let own: Vec<(Col, f64)> = cands.iter().filter(|(c, _)| c.t == *t).cloned().collect();
            if !own.is_empty() && direct.iter().all(|(c, _)| c.t == *t) {
                direct = own;
            }
        }
        // The subject first (the rows asked about), then tables named near the value.
        let mut local_ctx = vec![intent.subject];
        local_ctx.extend(near);
        local_ctx.extend_from_slice(&ctx);
        let col = choose(
            schema,
            if direct.is_empty() { &cands } else { &direct },
            &local_ctx,
            &format!("the value '{}'", v.value),
            doubts,
        )
        .ok_or_else(|| GenerateError::CannotAnswer("internal: value without a column".into()))?;
        let weak = !v.strong;
        if weak {
            doubts.push((0.03, format!("'{}' matched ignoring case", v.value)));
        }
        // "retail merchants" over 'Retail' and 'retail (hardware)': a word matched ignoring case
        // means every value of the column that has it as a word.
        let mut values = vec![v.value.clone()];
        if weak {
            let wanted: Vec<String> = tokenize(&v.value).into_iter().map(|t| t.low).collect();
            for other in &schema.col(col).samples {
                let ws: Vec<String> = tokenize(other).into_iter().map(|t| t.low).collect();
                if !values.contains(other) && wanted.iter().all(|w| ws.contains(w)) {
                    values.push(other.clone());
                }
            }
        }
        match intent.filters.iter_mut().find(|f| matches!(f, Filter::Values { col: c, .. } if *c == col)) {
            Some(Filter::Values { values: have, weak: w, .. }) => {
                for value in values {
                    if !have.contains(&value) {
                        have.push(value);
                    }
                }
                *w |= weak;
            }
            _ => intent.filters.push(Filter::Values { col, values, weak }),
        }
    }
    if !p.dates.is_empty() {
        let mut found = date_column(schema, p, intent.subject, context, doubts);
        if found.is_none() {
            if p.toks.iter().any(|t| t.low == "between") {
                return Err(GenerateError::CannotAnswer(
                    "a range between two dates needs a DATE or TIMESTAMP column, and no table it involves has one"
                        .into(),
                ));
            }
            found = stand_in_date_column(schema, intent.subject, context);
        }
        let (col, note) = found.ok_or_else(|| {
            GenerateError::CannotAnswer("the question names a date, but no table it involves has a date column".into())
        })?;
        if let Some(n) = note {
            assumptions.push(n);
        }
        for span in &p.dates {
            intent.filters.push(Filter::Dates { col, span: *span });
        }
    }
    for num in &p.nums {
        // A table right after the number: "more than 20 orders" → a count per subject row.
        if let Some(Mention { kind: MentionKind::Table(child), .. }) =
            p.mention_at(num.end).or_else(|| p.mention_after(num.end, 1))
            && *child != intent.subject
        {
            intent.filters.push(Filter::HavingCount { child: *child, op: num.op, raw: num.raw.clone() });
            continue;
        }
        // Else the nearest measure named before it (or after it).
        let before = p.mentions.iter().rev().find(|m| {
            m.end <= num.start
                && num.start - m.end <= 3
                && (!measure_cols(schema, m).is_empty() || !date_cols(schema, m).is_empty())
        });
        let after = p
            .mentions
            .iter()
            .find(|m| m.start >= num.end && m.start - num.end <= 1 && !measure_cols(schema, m).is_empty());
        let Some(m) = before.or(after) else {
            if num.op == Op::Eq {
                doubts.push((0.12, format!("did not understand \"{}\"", num.raw)));
                continue;
            }
            return Err(GenerateError::CannotAnswer(format!(
                "could not tell what should be compared with {}",
                num.raw
            )));
        };
        let mut cands = measure_cols(schema, m);
        if cands.is_empty() {
            cands = date_cols(schema, m);
        }
        let col = choose(schema, &cands, &ctx, "the compared column", doubts).unwrap_or(cands[0].0);
        if matches!(schema.col(col).kind, Kind::Date | Kind::Timestamp) {
            let y = num.value as i32;
            let span = match num.op {
                Op::Gt => DateSpan { lo: Some(ymd(y + 1, 1, 1)), hi: None },
                Op::Ge => DateSpan { lo: Some(ymd(y, 1, 1)), hi: None },
                Op::Lt => DateSpan { lo: None, hi: Some(ymd(y, 1, 1)) },
                Op::Le => DateSpan { lo: None, hi: Some(ymd(y + 1, 1, 1)) },
                Op::Eq => DateSpan { lo: Some(ymd(y, 1, 1)), hi: Some(ymd(y + 1, 1, 1)) },
                Op::Between(b) => DateSpan { lo: Some(ymd(y, 1, 1)), hi: Some(ymd(b as i32 + 1, 1, 1)) },
            };
            intent.filters.push(Filter::Dates { col, span });
        } else {
            intent.filters.push(Filter::Compare { col, op: num.op, raw: num.raw.clone() });
        }
        // The measure named for the comparison is not the question's measure.
        if intent.shape == Shape::RankRows && intent.measure == Measure::Column(col) && p.sup.is_none() {
            intent.shape = Shape::List;
        }
    }
    Ok(())
}

/// Runs of capitalised or quoted words no sample value explains, directly before or after a
/// mention of a text column: (column, value, token indexes).
pub(super) fn literal_values(
    schema: &Schema,
    p: &Parse,
    context: &[usize],
    doubts: &mut Vec<(f64, String)>,
) -> Vec<(Col, String, Vec<usize>)> {
    let caps = |t: &Tok| {
        t.quoted
            || is_code(t)
            || (t.raw.chars().any(|c| c.is_alphabetic())
                && t.raw.chars().all(|c| !c.is_lowercase())
                && t.raw.chars().filter(|c| c.is_alphabetic()).count() >= 2)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.toks.len() {
        if p.used[i] || !caps(&p.toks[i]) {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < p.toks.len() && !p.used[j] && caps(&p.toks[j]) && !(j > i && p.toks[j].quoted) {
            j += 1;
            if p.toks[j - 1].quoted {
                break;
            }
        }
        let mut column = |m: Option<&Mention>| -> Option<Col> {
            let tc = text_cols(schema, m?);
            choose(schema, &tc, context, "the value's column", doubts)
        };
        let after = p.mention_at(j).filter(|m| m.start == j);
        let before = if i > 0 { p.mention_at(i - 1).filter(|m| m.end == i) } else { None };
        if let Some(col) = column(after).or_else(|| column(before)) {
            let value = (i..j).map(|k| p.toks[k].raw.clone()).collect::<Vec<_>>().join(" ");
            out.push((col, value, (i..j).collect()));
        }
        i = j.max(i + 1);
    }
    out
}

/// Without a DATE or TIMESTAMP column, a column that stands in for one: a number column named
/// `year` (`publication.year`), or a text column whose sample values are ISO dates
/// (`'2023-04-01'`, which compare in date order as text). The nearest to the subject wins; two
/// at the same distance are a guess, so none.
fn stand_in_date_column(schema: &Schema, subject: usize, context: &[usize]) -> Option<(Col, Option<String>)> {
    let iso = |v: &str| {
        let b = v.as_bytes();
        b.len() >= 10
            && b[..10].iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
    };
    let mut cands: Vec<(usize, Col)> = schema
        .cols()
        .filter(|(_, ci)| !ci.banned && !ci.key)
        .filter(|(_, ci)| match ci.kind {
            Kind::Number => ci.words == ["year"],
            Kind::Text => !ci.samples.is_empty() && ci.samples.iter().all(|v| iso(v)),
            _ => false,
        })
        .filter_map(|(c, _)| {
            let d = schema.distance(subject, c.t)?;
            Some((if context.contains(&c.t) { d.saturating_sub(1) } else { d }, c))
        })
        .collect();
    cands.sort_by_key(|(d, _)| *d);
    match cands.as_slice() {
        [] => None,
        [(d0, _), (d1, _), ..] if d0 == d1 => None,
        [(_, c), ..] => Some((
            *c,
            Some(format!("dates refer to {} ({})", super::schema::qual_name(schema, *c), schema.col(*c).kind_word())),
        )),
    }
}
