//! Yes/no columns named as conditions: "courses with exams" (`has_exams`), "open businesses"
//! (`is_open`), "courses without exams", "closed businesses" (the same columns, no).
//!
//! A mention whose best columns are all flags is a condition, never an output, a measure or a
//! group; a negation right before it ("without", "no", "not", "non") or a word that is the
//! opposite of the flag's own word ("closed" for `is_open`) asks for no.

use super::{FlagHit, MentionKind, Parse};
use crate::generate::offline::schema::Schema;

/// Words and their opposites, for flags named by one of them.
const OPPOSITES: &[(&str, &str)] = &[
    ("closed", "open"),
    ("inactive", "active"),
    ("disabled", "enabled"),
    ("unverified", "verified"),
    ("unpaid", "paid"),
    ("offline", "online"),
    ("unavailable", "available"),
];

/// Words that may stand between a negation and the flag it negates ("do not have a …").
const BETWEEN: &[&str] = &["have", "has", "had", "a", "an", "any", "do", "does", "did", "be", "been", "is", "are"];

pub(super) fn find_flags(schema: &Schema, p: &mut Parse) {
    let mut kept = Vec::new();
    for m in std::mem::take(&mut p.mentions) {
        let flag = match &m.kind {
            MentionKind::Columns(cs) => {
                let best = cs.first().map(|c| c.1).unwrap_or(0.0);
                let top: Vec<_> = cs.iter().filter(|c| c.1 >= best - 1e-9).cloned().collect();
                (!top.is_empty() && top.iter().all(|(c, _)| schema.col(*c).flag)).then_some(top)
            }
            _ => None,
        };
        match flag {
            Some(cols) => {
                let neg = negation_before(p, m.start);
                p.flags.push(FlagHit { start: m.start, cols, yes: neg.is_none(), neg });
            }
            None => kept.push(m),
        }
    }
    p.mentions = kept;
    // "closed businesses": the opposite of a flag's own word.
    for i in 0..p.toks.len() {
        if p.used[i] {
            continue;
        }
        let Some((_, word)) = OPPOSITES.iter().find(|(o, _)| *o == p.low(i)) else { continue };
        let cols: Vec<_> = schema
            .cols()
            .filter(|(_, ci)| ci.flag && !ci.banned && ci.words.last().is_some_and(|w| w == word))
            .map(|(c, _)| (c, 1.0))
            .collect();
        if !cols.is_empty() {
            p.take(i, i + 1);
            p.flags.push(FlagHit { start: i, cols, yes: false, neg: None });
        }
    }
    p.flags.sort_by_key(|f| f.start);
}

/// The negation word before token `i`, looking past auxiliaries and articles.
fn negation_before(p: &Parse, i: usize) -> Option<usize> {
    let mut j = i;
    while j > 0 {
        j -= 1;
        let w = p.low(j);
        if matches!(w, "not" | "no" | "without" | "non" | "never") {
            return Some(j);
        }
        if !BETWEEN.contains(&w) {
            return None;
        }
    }
    None
}
