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

use super::parse::{MentionKind, Parse, is_filler, parse};
use super::render::ident;
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
    let low = question.trim().trim_end_matches(['?', '.', '!']).to_lowercase();
    let start = low.find("ratio of ")?;
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
    let rest = &low[start + "ratio of ".len()..];
    let (a_text, rest) = rest.split_once(" to ")?;
    let (b_text, group_text) = match [" for each ", " for every ", " per ", " in each "]
        .iter()
        .filter_map(|cue| rest.find(cue).map(|i| (i, cue.len())))
        .min()
    {
        Some((i, n)) => (&rest[..i], Some(&rest[i + n..])),
        None => (rest.strip_suffix(" in the database").unwrap_or(rest), None),
    };
    let a = side(schema, a_text)?;
    let b = side(schema, b_text)?;
    if a == b {
        return None;
    }
    match (a, b, group_text) {
        (Side::Column(x), Side::Column(y), Some(g)) if x.t == y.t => per_row(schema, x, y, g),
        (Side::Table(x), Side::Table(y), None) => of_counts(schema, x, y),
        _ => None,
    }
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
