//! Other aggregates a question asks to return beside the one it ranks or groups by: "What are
//! the top 10 ticker symbols by total transaction amount? *Return the ticker symbol, number of
//! transactions and total transaction amount.*"
//!
//! The question is cut at the sentence (or ", showing …" clause) that lists what to return.
//! When the part before it reads as a grouped aggregate, each aggregate item of the list —
//! "number of <rows>", "number of distinct <things>", "total/average/highest/lowest <column>" —
//! becomes another aggregate over the same rows; the list's other items are the groups' own
//! columns. An item over other rows (another table's rows, a column the rows reach only through
//! a one-to-many join) is not read, and the audit then declines the question for what it lost.

use super::intent::{Group, Intent, Measure};
use super::parse::{Agg, MentionKind, Parse, parse};
use super::resolve::measure_cols;
use super::schema::{Col, Schema};
use crate::generate::GenerateError;

/// Words that open the sentence listing what to return.
const RETURN_CUES: &[&str] = &["return", "show", "give", "list", "include", "display", "output"];

/// The question cut before the sentence or clause that lists what to return, and that list.
pub(super) fn split_return_clause(question: &str) -> Option<(&str, &str)> {
    let low = question.to_ascii_lowercase();
    // ", showing the number of …" / ", returning …"
    for cue in [", showing ", ", returning ", ", including ", ", along with ", " along with "] {
        if let Some(i) = low.find(cue) {
            return Some((&question[..i], &question[i + cue.len()..]));
        }
    }
    let bytes = question.as_bytes();
    for (i, _) in low.match_indices(['.', '?', ';']) {
        let rest = low[i + 1..].trim_start();
        let first = rest.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
        if RETURN_CUES.contains(&first) && i > 0 && bytes[i - 1] != b'.' {
            let start = question.len() - rest.len();
            return Some((&question[..=i], &question[start..]));
        }
    }
    None
}

/// The extra aggregates a clause asks for, and the groups its other columns add.
type Extras = (Vec<(Measure, Agg)>, Vec<Group>);

/// The aggregates of `clause` other than the intent's own measure, over the intent's rows.
pub(super) fn extra_measures(schema: &Schema, intent: &Intent, clause: &str) -> Result<Extras, GenerateError> {
    let p = parse(schema, clause);
    let root = intent.measure.table();
    let mut out: Vec<(Measure, Agg)> = Vec::new();
    let push = |m: Measure, agg: Agg, out: &mut Vec<(Measure, Agg)>| {
        let same_as_main = m == intent.measure && agg == intent.agg;
        if !same_as_main && !out.contains(&(m.clone(), agg)) {
            out.push((m, agg));
        }
    };
    if let Some(i) = p.count {
        let m = p.mention_after(i, 4).ok_or_else(|| unplaced("a count"))?;
        match &m.kind {
            MentionKind::Table(t) if *t == root && !p.distinct => push(Measure::Rows(root), Agg::Count, &mut out),
            MentionKind::Table(t) => {
                // "the number of distinct customers": the rows' references to them.
                let e = schema
                    .graph
                    .edges
                    .iter()
                    .find(|e| e.from == root && e.to == *t && e.many_to_one)
                    .ok_or_else(|| unplaced("a count of other rows"))?;
                let c = Col { t: root, c: super::schema::col_index(schema, root, &e.from_column) };
                push(Measure::Distinct(c), Agg::Count, &mut out);
            }
            _ => return Err(unplaced("a count")),
        }
    }
    for &(agg, i) in &p.aggs {
        let Some(m) = p.mention_after(i, 3) else { continue };
        match &m.kind {
            MentionKind::Columns(_) => {
                let c = own_measure(schema, &p, m, root).ok_or_else(|| unplaced("an aggregate of other rows"))?;
                push(Measure::Column(c), agg, &mut out);
            }
            // "total revenue", "total amount": the intent's own money measure.
            MentionKind::Revenue | MentionKind::Money
                if agg == intent.agg && matches!(intent.measure, Measure::Column(_) | Measure::Revenue { .. }) => {}
            MentionKind::Table(t) if *t == root && agg == Agg::Sum => {}
            _ => return Err(unplaced("an aggregate")),
        }
    }
    // Other columns of a group's table named in the list are groups too ("the make, model").
    let mut groups = Vec::new();
    let group_tables: Vec<usize> = intent.groups.iter().map(|g| g.table()).collect();
    for m in &p.mentions {
        if let MentionKind::Columns(cs) = &m.kind
            && !p.aggs.iter().any(|(_, i)| p.mention_after(*i, 3).is_some_and(|x| x.start == m.start))
            && p.count.is_none_or(|i| p.mention_after(i, 4).is_none_or(|x| x.start != m.start))
            && let Some((c, _)) = cs.iter().find(|(c, _)| {
                // Not a table's name: "the country name" is the country, not the customers' names.
                group_tables.contains(&c.t)
                    && !schema.col(*c).key
                    && schema.col(*c).kind != super::schema::Kind::Number
                    && schema.tables[c.t].label != Some(c.c)
                    && schema.tables[c.t].label_extra != Some(c.c)
            })
            && !intent.groups.contains(&Group::Column(*c))
            && !intent.groups.iter().any(|g| matches!(g, Group::Entity(t) if *t == c.t))
        {
            groups.push(Group::Column(*c));
        }
    }
    Ok((out, groups))
}

/// The number column of the intent's rows a mention names.
fn own_measure(schema: &Schema, _p: &Parse, m: &super::parse::Mention, root: usize) -> Option<Col> {
    measure_cols(schema, m).into_iter().map(|(c, _)| c).find(|c| c.t == root)
}

fn unplaced(what: &str) -> GenerateError {
    GenerateError::CannotAnswer(format!(
        "the list of what to return asks for {what} the offline generator cannot place beside the main one"
    ))
}
