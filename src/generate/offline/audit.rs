//! The last look at a proposal before it leaves: does the SQL still carry everything the
//! question named?
//!
//! The interpreter reads a question piece by piece and can lose a piece on the way — a table
//! named only as a condition ("organizations *that have authors who wrote* …"), a column asked
//! for next to another ("the latitude *and longitude* of …"), a quoted value that no column's
//! samples list. Each loss turns the question into another one and the answer into a confident
//! wrong one, which is worse than none. So after rendering, the question is read once more and
//! the proposal is declined when:
//!
//! - a quoted phrase of the question is not in the SQL (it was a condition, and it was dropped);
//! - a table the question names is not read by the SQL, or a column it names appears nowhere
//!   in it (a dropped condition, group or output);
//! - the question asks a second question ("…, and how many …", "… and what is …"), which the
//!   one intent cannot answer;
//! - the question asks for a highest, lowest or top value and the SQL ranks nothing.
//!
//! It only ever declines; it never changes the SQL. Nothing here knows a schema: it compares the
//! parser's mentions with the rendered text.

use super::parse::{MentionKind, parse};
use super::schema::Schema;
use crate::generate::GenerateError;

/// Phrases that start a second question inside one.
const SECOND_QUESTION: &[&str] =
    &[" and what ", " and how many ", " and how much ", ", and which ", " and also ", " as well as the "];

/// Declines a proposal that lost part of the question (see the module docs).
pub(super) fn audit(schema: &Schema, question: &str, sql: &str, tables_used: &[String]) -> Result<(), GenerateError> {
    let decline = |why: String| Err(GenerateError::CannotAnswer(why));
    let low_sql = sql.to_lowercase();
    for phrase in quoted_phrases(question) {
        if !low_sql.contains(&phrase.to_lowercase()) {
            return decline(format!(
                "\"{phrase}\" is quoted in the question but no column's values or names place it, so the SQL would ignore it"
            ));
        }
    }
    let padded = format!(" {} ", question.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" "));
    // "Which users posted reviews, and how many have they posted?" is one grouped count (its
    // groups and their numbers); with a LIMIT or no groups the second ask is lost.
    let grouped_whole = low_sql.contains("group by") && !low_sql.contains("\nlimit ") && !low_sql.contains(" limit ");
    if let Some(s) = SECOND_QUESTION.iter().find(|s| padded.contains(*s)).filter(|_| !grouped_whole) {
        return decline(format!(
            "the question asks more than one thing (\"{}\"); ask one question at a time",
            s.trim_matches([' ', ','])
        ));
    }
    let p = parse(schema, question);
    // "highest", "earliest", "top 3": the SQL must rank or take an extreme.
    // "the highest-rated restaurant": a superlative inside a hyphenated word is a ranking the
    // parser did not read.
    if let Some(t) = p.toks.iter().find(|t| {
        t.low.contains('-')
            && t.low.split('-').any(|w| {
                matches!(w, "highest" | "lowest" | "top" | "best" | "worst" | "most" | "least" | "largest" | "smallest")
            })
    }) && p.sup.is_none()
    {
        return decline(format!("did not understand \"{}\": a ranking the offline generator cannot read", t.raw));
    }
    // ("at least 5" is a comparison, not a superlative.)
    let at_least = p.sup.is_some_and(|(_, after, _)| after >= 2 && p.toks[after - 2].low == "at");
    if p.sup.is_some()
        && !at_least
        && p.range_order.is_none()
        && !["max(", "min(", " desc", "\nlimit "].iter().any(|f| low_sql.contains(f))
    {
        return decline("the question asks for a highest, lowest or top value, but the query ranks nothing".into());
    }
    // "Return the description, drug id and name": every item of an explicit output list counts,
    // even one word of a longer column name.
    let listed_from = p.toks.iter().position(|t| matches!(t.low.as_str(), "return" | "give" | "show" | "list"));
    for m in &p.mentions {
        let listed = listed_from.is_some_and(|i| m.start > i);
        let words = p.toks[m.start..m.end].iter().map(|t| t.raw.as_str()).collect::<Vec<_>>().join(" ");
        match &m.kind {
            // Only a mention that names the whole table ("offer" for course_offering is a verb).
            MentionKind::Table(t) if schema.tables[*t].words.len() <= m.end - m.start => {
                let name = &schema.tables[*t].name;
                let used = |u: usize| tables_used.iter().any(|n| n.eq_ignore_ascii_case(&schema.tables[u].name));
                // A table whose rows each belong to one row of `t` speaks of it too ("parts
                // supplied by …" read from partsupp, which references part).
                let referenced = schema.graph.edges.iter().any(|e| e.many_to_one && e.to == *t && used(e.from));
                if !used(*t) && !referenced {
                    return decline(format!(
                        "the question names \"{words}\" (table {name}), but the offline generator could not place it in the query"
                    ));
                }
            }
            MentionKind::Table(_) => {}
            // Only a mention of two words or more ("monthly limit") or one that names every word
            // of its best column ("latitude"), not one word of a longer name ("major").
            MentionKind::Columns(cands)
                if listed
                    || m.end - m.start >= 2
                    || cands.first().is_some_and(|(c, _)| schema.col(*c).words.len() <= m.end - m.start) =>
            {
                let present =
                    cands.iter().any(|(c, _)| names_identifier(&low_sql, &schema.col(*c).name.to_lowercase()));
                if !present && !cands.is_empty() {
                    let best = &schema.col(cands[0].0).name;
                    return decline(format!(
                        "the question names \"{words}\" (column {best}, …), but the offline generator could not place it in the query"
                    ));
                }
            }
            MentionKind::Columns(_) => {}
            // "by total revenue": an amount of money, which a bare count is not.
            MentionKind::Revenue | MentionKind::Money => {
                if low_sql.contains("count(")
                    && !["sum(", "avg(", "max(", "min(", " * "].iter().any(|f| low_sql.contains(f))
                {
                    return decline(format!(
                        "the question asks about \"{words}\", but the offline generator could not place it in the query"
                    ));
                }
            }
            MentionKind::DatePart(_) => {}
        }
    }
    Ok(())
}

/// Whether `ident` occurs in `sql` as a whole identifier (not inside a longer name).
fn names_identifier(sql: &str, ident: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    sql.match_indices(ident).any(|(i, _)| {
        let before = sql[..i].chars().next_back();
        let after = sql[i + ident.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Phrases in double quotes (straight or curly), and in single quotes that open after a space
/// and close before a space or punctuation (so apostrophes in "customer's" are not quotes).
fn quoted_phrases(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let close = match c {
            '"' => Some('"'),
            '\u{201c}' => Some('\u{201d}'),
            '\'' if i == 0 || chars[i - 1].is_whitespace() || chars[i - 1] == '(' => Some('\''),
            _ => None,
        };
        if let Some(close) = close
            && let Some(len) = chars[i + 1..].iter().position(|&x| x == close)
        {
            let end = i + 1 + len;
            let closes_word =
                close != '\'' || chars.get(end + 1).is_none_or(|n| n.is_whitespace() || ".,;:?!)".contains(*n));
            if closes_word {
                let phrase: String = chars[i + 1..end].iter().collect();
                if !phrase.trim().is_empty() {
                    out.push(phrase.trim().to_string());
                }
                i = end + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Column, Table};

    fn schema() -> Schema {
        let col = |n: &str, t: &str| Column { name: n.into(), data_type: t.into(), ..Default::default() };
        let tables = vec![
            Table {
                name: "business".into(),
                columns: vec![
                    col("business_id", "VARCHAR"),
                    col("name", "VARCHAR"),
                    col("latitude", "DOUBLE"),
                    col("longitude", "DOUBLE"),
                ],
                ..Default::default()
            },
            Table {
                name: "review".into(),
                columns: vec![col("review_id", "BIGINT"), col("business_id", "VARCHAR"), col("rating", "DOUBLE")],
                ..Default::default()
            },
        ];
        Schema::new(&tables, &Default::default())
    }

    #[test]
    fn quoted_phrases_are_found_and_apostrophes_are_not_quotes() {
        assert_eq!(
            quoted_phrases("in the domain \"Machine Learning\" and 'Data Science'?"),
            ["Machine Learning", "Data Science"]
        );
        assert_eq!(quoted_phrases("Anna's diner and the customer's orders"), Vec::<String>::new());
        assert_eq!(quoted_phrases("the \u{201c}Pizza\u{201d} category"), ["Pizza"]);
    }

    #[test]
    fn identifiers_match_whole_names_only() {
        assert!(names_identifier("select business.name from business", "name"));
        assert!(!names_identifier("select business.name_full from business", "name"));
        assert!(!names_identifier("select surname from t", "name"));
    }

    #[test]
    fn a_proposal_that_lost_a_named_column_table_or_quoted_value_is_declined() {
        let s = schema();
        let q = "What is the latitude and longitude of the business with the highest rating?";
        let join = "FROM business JOIN review ON review.business_id = business.business_id";
        let lost = format!("SELECT latitude {join} ORDER BY rating DESC\nLIMIT 1");
        let e = audit(&s, q, &lost, &["business".into(), "review".into()]).unwrap_err();
        assert!(e.to_string().contains("longitude"), "{e}");
        let kept = format!("SELECT latitude, longitude, rating {join} ORDER BY rating DESC\nLIMIT 1");
        assert!(audit(&s, q, &kept, &["business".into(), "review".into()]).is_ok());
        // "the highest rating" with nothing ranked is another question; "at least" is no superlative.
        let unranked = format!("SELECT latitude, longitude, rating {join}");
        let e = audit(&s, q, &unranked, &["business".into(), "review".into()]).unwrap_err();
        assert!(e.to_string().contains("ranks nothing"), "{e}");
        let at_least = format!("SELECT name, rating {join} WHERE rating >= 4");
        let q2 = "Which businesses have a rating of at least 4?";
        assert!(audit(&s, q2, &at_least, &["business".into(), "review".into()]).is_ok());
        let e = audit(&s, "How many reviews are there?", "SELECT COUNT(*) FROM business", &["business".into()])
            .unwrap_err();
        assert!(e.to_string().contains("table review"), "{e}");
        let e =
            audit(&s, "List businesses named \"Joe\"", "SELECT name FROM business", &["business".into()]).unwrap_err();
        assert!(e.to_string().contains("\"Joe\" is quoted"), "{e}");
    }

    #[test]
    fn a_second_question_inside_the_question_is_declined() {
        let s = schema();
        let q = "Which business has the most reviews, and how many reviews does it have?";
        let sql =
            "SELECT business.name, COUNT(*) FROM review JOIN business ON review.business_id = business.business_id";
        let e = audit(&s, q, sql, &["business".into(), "review".into()]).unwrap_err();
        assert!(e.to_string().contains("more than one thing"), "{e}");
    }
}
