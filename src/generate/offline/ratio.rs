//! Ratios: "the ratio of A to B", where the two sides are two number columns of one table
//! (per row, for each row of a group the question names) or two tables (their row counts).
//!
//! The general interpreter declines every ratio; this room answers the two shapes it can read
//! whole and leaves everything else declined:
//!
//! - *per row*: "the ratio of helpfulness scores to clarity scores for each course id" →
//!   `SELECT course_id, CAST(helpfulness_score AS DOUBLE) / NULLIF(clarity_score, 0) …`: both
//!   sides name a number column of one table, and "for each …" names that table or one of its
//!   columns;
//! - *of counts*: "the ratio of publications to authors" → the two tables' row counts divided.
//!
//! A side with anything else in it (an aggregate, a condition, a date, a value, a word nobody
//! understood) is not one of these shapes, so the question is declined as before. Division is
//! always by `NULLIF(…, 0)`: a zero denominator gives NULL, never an error.

use super::audit::audit;
use super::intent::{Intent, Shape};
use super::interpret::interpret;
use super::parse::{MentionKind, Parse, is_filler, parse};
use super::render::{Rendered, ident, render};
use super::schema::{Col, Kind, Schema, qual_name};
use crate::generate::SqlProposal;

/// Confidence of a ratio read whole: below a plain aggregate, as the two sides were matched by
/// name alone.
const CONFIDENCE: f64 = 0.7;

/// One side of a ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Column(Col),
    Table(usize),
}

/// The proposal for a ratio question of a shape this room reads, or `None` (the caller then
/// declines as for any ratio).
pub(super) fn ratio(schema: &Schema, question: &str) -> Option<SqlProposal> {
    let text = question.trim().trim_end_matches(['?', '.', '!']);
    // ASCII lower case keeps byte offsets, so pieces are cut from the original text (values
    // keep their case).
    let low = text.to_ascii_lowercase();
    let (start, cue) =
        ["ratio of ", "proportion of "].iter().filter_map(|c| low.find(c).map(|i| (i, c.len()))).min()?;
    let lead = &low[..start];
    // Only "what is / calculate / get / show the ratio of …" — no other ask before it.
    if lead.split_whitespace().any(|w| {
        !matches!(
            w,
            "what"
                | "is"
                | "was"
                | "the"
                | "calculate"
                | "get"
                | "show"
                | "compute"
                | "find"
                | "give"
                | "me"
                | "what's"
        )
    }) {
        return None;
    }
    let from = start + cue;
    let (a_end, b_start) = [" to ", " out of "]
        .iter()
        .filter_map(|sep| low[from..].find(sep).map(|i| (from + i, from + i + sep.len())))
        .min()?;
    let rest_low = &low[b_start..];
    let (b_end, group_text) = match [" for each ", " for every ", " per ", " in each "]
        .iter()
        .filter_map(|cue| rest_low.find(cue).map(|i| (i, cue.len())))
        .min()
    {
        Some((i, n)) => (b_start + i, Some(&low[b_start + i + n..])),
        None => (low.len(), None),
    };
    let (a_text, b_text) = (&text[from..a_end], &text[b_start..b_end]);
    let by_name = match (side(schema, &a_text.to_lowercase()), side(schema, &b_text.to_lowercase())) {
        (Some(a), Some(b)) if a != b => match (a, b, group_text) {
            (Side::Column(x), Side::Column(y), Some(g)) if x.t == y.t => per_row(schema, x, y, g),
            (Side::Table(x), Side::Table(y), None) => of_counts(schema, x, y),
            _ => None,
        },
        _ => None,
    };
    if by_name.is_some() || group_text.is_some() {
        return by_name;
    }
    of_aggregates(schema, a_text, b_text)
}

/// "the ratio of restaurants with a rating above 4 to restaurants with a rating below 4 in New
/// York", "… of papers published in 2020 to the total number of papers", "… of the number of
/// businesses in each state to the total number of businesses": each side read as a question of
/// its own (a count or another aggregate, filtered), the first possibly grouped, the second one
/// value; a condition trailing the second side ("in New York") holds for both.
fn of_aggregates(schema: &Schema, a_text: &str, b_text: &str) -> Option<SqlProposal> {
    let trim = |t: &str| -> String {
        let mut t = t.trim().to_string();
        for tail in [" overall", " in the database", " in total", " in the table"] {
            if t.to_ascii_lowercase().ends_with(tail) {
                t.truncate(t.len() - tail.len());
            }
        }
        t
    };
    let (mut a_text, b_text) = (trim(a_text), trim(b_text));
    if let Some(global) = trailing_condition(schema, &b_text)
        && !a_text.to_ascii_lowercase().ends_with(&global.to_ascii_lowercase())
    {
        let a_cols: Vec<Col> = parse(schema, &a_text).values.iter().flat_map(|v| v.cols.clone()).collect();
        let g_cols: Vec<Col> = parse(schema, &global).values.iter().flat_map(|v| v.cols.clone()).collect();
        if !g_cols.iter().any(|c| a_cols.contains(c)) {
            a_text = format!("{a_text} {global}");
        }
    }
    let (a, ra) = aggregate_side(schema, &a_text)?;
    let (b, rb) = aggregate_side(schema, &b_text)?;
    if !b.groups.is_empty() || ra.sql == rb.sql {
        return None;
    }
    let alias = |r: &Rendered| -> Option<String> {
        let first = r.sql.lines().next()?;
        Some(first.rsplit(" AS ").next()?.trim().to_string())
    };
    let sql = if a.groups.is_empty() {
        format!("SELECT CAST(({}) AS DOUBLE) / NULLIF(({}), 0) AS ratio", one_line(&ra.sql), one_line(&rb.sql))
    } else {
        // The grouped side's rows, each divided by the one value of the other.
        let a_alias = alias(&ra)?;
        format!(
            "SELECT a.*, CAST(a.{a_alias} AS DOUBLE) / NULLIF(({}), 0) AS ratio\nFROM ({}) a",
            one_line(&rb.sql),
            one_line(&ra.sql)
        )
    };
    let mut tables = ra.tables.clone();
    tables.extend(rb.tables.clone());
    tables.sort();
    tables.dedup();
    let mut assumptions = a.assumptions.clone();
    assumptions.extend(b.assumptions.iter().cloned());
    assumptions.push("the ratio divides the first value by the second (NULL when the second is 0)".into());
    let confidence = ((a.confidence() - ra.penalty).min(b.confidence() - rb.penalty) - 0.15).clamp(0.0, CONFIDENCE);
    (confidence >= 0.45).then(|| SqlProposal {
        sql,
        explanation: format!(
            "Divides {} by {}.",
            ra.explanation.trim_end_matches('.').to_lowercase(),
            rb.explanation.trim_end_matches('.').to_lowercase()
        ),
        tables_used: tables,
        confidence: (confidence * 100.0).round() / 100.0,
        assumptions,
    })
}

/// One side of a ratio as a question of its own: "the total number of X …" and "the average …"
/// as asked, anything else as "how many …". It must read as one aggregate (no ranking) that
/// the audit finds whole.
fn aggregate_side(schema: &Schema, text: &str) -> Option<(Intent, Rendered)> {
    let low = text.to_ascii_lowercase();
    let asks_value =
        ["the ", "total ", "average ", "sum ", "number ", "count ", "mean "].iter().any(|p| low.starts_with(p))
            && !low.starts_with("the ratio");
    let question = if asks_value { format!("What is {text}") } else { format!("How many {text}") };
    let intent = interpret(schema, &question).ok()?;
    if intent.shape != Shape::Aggregate || intent.rank.is_some() || intent.limit.is_some() {
        return None;
    }
    let r = render(schema, &intent).ok()?;
    audit(schema, &question, &r.sql, &r.tables).ok()?;
    (intent.confidence() - r.penalty >= 0.6).then_some((intent, r))
}

/// A condition at the end of a side that is only values (with their columns' names and
/// filler): "in New York", "in the city of San Francisco".
fn trailing_condition(schema: &Schema, text: &str) -> Option<String> {
    let low = text.to_ascii_lowercase();
    let at = [" in ", " for ", " from "].iter().filter_map(|c| low.rfind(c)).max()?;
    let tail = text[at..].trim();
    let p = parse(schema, tail);
    let only_values = !p.values.is_empty()
        && p.mentions.iter().all(|m| matches!(m.kind, MentionKind::Columns(_)))
        && all_understood(&p)
        && p.dates.is_empty()
        && p.nums.is_empty();
    only_values.then(|| tail.to_string())
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A side: exactly one mention of a number column or a table, every other word filler.
fn side(schema: &Schema, text: &str) -> Option<Side> {
    let p = parse(schema, text);
    if !p.unsupported.is_empty()
        || !p.aggs.is_empty()
        || p.count.is_some()
        || p.sup.is_some()
        || !p.values.is_empty()
        || !p.dates.is_empty()
        || !p.nums.is_empty()
        || p.mentions.is_empty()
        || !all_understood(&p)
    {
        return None;
    }
    // "aircraft capacity": a column, qualified by the name of its own table.
    let columns: Vec<&super::parse::Mention> =
        p.mentions.iter().filter(|m| matches!(m.kind, MentionKind::Columns(_))).collect();
    let main = match (columns.as_slice(), p.mentions.len()) {
        ([], 1) => &p.mentions[0],
        ([c], _) => *c,
        _ => return None,
    };
    if let MentionKind::Columns(cands) = &main.kind {
        let t = cands.first()?.0.t;
        if p.mentions.iter().any(|m| {
            matches!(m.kind, MentionKind::Table(x) if x != t)
                || matches!(m.kind, MentionKind::Revenue | MentionKind::Money | MentionKind::DatePart(_))
        }) {
            return None;
        }
    }
    match &main.kind {
        MentionKind::Table(t) => Some(Side::Table(*t)),
        MentionKind::Columns(cands) => {
            let (c, best) = *cands.first()?;
            // A tie between columns is a guess.
            if cands.iter().skip(1).any(|(_, s)| *s >= best - 1e-9) {
                return None;
            }
            let ci = schema.col(c);
            (ci.kind == Kind::Number && !ci.key).then_some(Side::Column(c))
        }
        _ => None,
    }
}

/// Every token is filler or taken by a recognised piece.
fn all_understood(p: &Parse) -> bool {
    (0..p.toks.len()).all(|i| p.used[i] || is_filler(&p.toks[i]) || p.toks[i].low.chars().all(|c| !c.is_alphanumeric()))
}

fn per_row(schema: &Schema, x: Col, y: Col, group: &str) -> Option<SqlProposal> {
    let t = x.t;
    let ti = &schema.tables[t];
    let p = parse(schema, group);
    if !p.unsupported.is_empty() || p.mentions.is_empty() || !all_understood(&p) || !p.values.is_empty() {
        return None;
    }
    // "for each course id": a column of the table; "for each aircraft": the table itself.
    let mut shown: Vec<usize> = Vec::new();
    for m in &p.mentions {
        match &m.kind {
            MentionKind::Table(g) if *g == t => shown.extend(ti.pk.into_iter().chain(ti.label)),
            MentionKind::Columns(cands) => {
                let c = cands.iter().find(|(c, _)| c.t == t)?.0;
                shown.push(c.c);
            }
            _ => return None,
        }
    }
    shown.dedup();
    if shown.is_empty() {
        return None;
    }
    let col = |c: usize| ident(&ti.cols[c].name);
    let mut select: Vec<String> = shown.iter().map(|&c| col(c)).collect();
    select.push(format!("CAST({} AS DOUBLE) / NULLIF({}, 0) AS ratio", col(x.c), col(y.c)));
    let sql = format!("SELECT {}\nFROM {}\nORDER BY {}", select.join(", "), ident(&ti.name), col(shown[0]));
    Some(SqlProposal {
        sql,
        explanation: format!(
            "Divides {} by {} for each row of {} (NULL where the divisor is 0).",
            qual_name(schema, x),
            qual_name(schema, y),
            ti.name
        ),
        tables_used: vec![ti.name.clone()],
        confidence: CONFIDENCE,
        assumptions: vec![format!("the ratio is {} / {} per row", ti.cols[x.c].name, ti.cols[y.c].name)],
    })
}

fn of_counts(schema: &Schema, x: usize, y: usize) -> Option<SqlProposal> {
    let (a, b) = (&schema.tables[x].name, &schema.tables[y].name);
    let sql = format!(
        "SELECT CAST((SELECT COUNT(*) FROM {}) AS DOUBLE) / NULLIF((SELECT COUNT(*) FROM {}), 0) AS ratio",
        ident(a),
        ident(b)
    );
    Some(SqlProposal {
        sql,
        explanation: format!("Divides the number of {a} rows by the number of {b} rows (NULL when there are none)."),
        tables_used: vec![a.clone(), b.clone()],
        confidence: CONFIDENCE,
        assumptions: vec![format!("each {a} and each {b} row counts once")],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Column, Table};

    fn schema() -> Schema {
        let col = |n: &str, t: &str| Column { name: n.into(), data_type: t.into(), ..Default::default() };
        let tables = vec![
            Table {
                name: "course".into(),
                columns: vec![
                    col("course_id", "BIGINT"),
                    col("name", "VARCHAR"),
                    col("helpfulness_score", "DOUBLE"),
                    col("clarity_score", "DOUBLE"),
                ],
                ..Default::default()
            },
            Table {
                name: "student".into(),
                columns: vec![col("student_id", "BIGINT"), col("lastname", "VARCHAR")],
                ..Default::default()
            },
        ];
        Schema::new(&tables, &Default::default())
    }

    #[test]
    fn a_ratio_of_two_columns_for_each_row_divides_them_safely() {
        let p =
            ratio(&schema(), "What is the ratio of helpfulness scores to clarity scores for each course ID?").unwrap();
        assert_eq!(
            p.sql,
            "SELECT course_id, CAST(helpfulness_score AS DOUBLE) / NULLIF(clarity_score, 0) AS ratio\nFROM course\nORDER BY course_id"
        );
        assert_eq!(p.tables_used, ["course"]);
    }

    #[test]
    fn a_side_may_name_its_own_table_but_no_other() {
        let s = schema();
        let p =
            ratio(&s, "What is the ratio of course helpfulness scores to its clarity scores for each course?").unwrap();
        assert!(p.sql.starts_with("SELECT course_id, name, CAST(helpfulness_score AS DOUBLE)"), "{}", p.sql);
        assert!(
            ratio(&s, "What is the ratio of student helpfulness scores to clarity scores for each course?").is_none()
        );
    }

    #[test]
    fn a_ratio_of_two_tables_divides_their_counts() {
        let p = ratio(&schema(), "What is the ratio of students to courses in the database?").unwrap();
        assert!(
            p.sql.contains("(SELECT COUNT(*) FROM student)")
                && p.sql.contains("NULLIF((SELECT COUNT(*) FROM course), 0)"),
            "{}",
            p.sql
        );
    }

    #[test]
    fn ratios_with_anything_else_in_them_are_not_read() {
        let s = schema();
        for q in [
            "What is the ratio of helpfulness scores to clarity scores?",
            "What is the ratio of the average helpfulness score to clarity scores for each course id?",
            "What is the ratio of helpfulness scores to clarity scores for each student?",
            "Which course has the highest ratio of helpfulness scores to clarity scores for each course id?",
            "What is the ratio of helpfulness scores of good courses to clarity scores for each course id?",
            "What percentage of courses are good?",
        ] {
            assert!(ratio(&s, q).is_none(), "{q}");
        }
    }
}
