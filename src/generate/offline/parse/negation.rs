//! Negated relations: "customers who have not placed any orders", "tickers that do not have
//! any daily price records", "cars that have no sales records", "authors without papers".
//!
//! Only the one shape is read: a negation, at most a few relating words (auxiliaries, a verb,
//! "any", "part of"), then the name of a table, then nothing but filler ("records", "rows") up to
//! the end of the question or of its clause. Anything else with "not" in it stays declined.

use super::{MentionKind, Parse, Without};
use crate::generate::offline::lexicon::looks_like_verb;

/// Words that may stand between the negation and the table ("have not *been used in any*").
const BETWEEN: &[&str] = &[
    "any", "a", "an", "single", "been", "be", "part", "of", "in", "on", "for", "with", "to", "by", "from", "yet",
    "ever", "have", "has", "had", "got", "get",
];

/// Words that may follow the table before the clause ends.
const AFTER: &[&str] = &["record", "records", "row", "rows", "entry", "entries", "at", "all", "yet", "ever"];

pub(super) fn find_negations(p: &mut Parse) {
    let n = p.toks.len();
    for i in 0..n {
        let w = p.low(i);
        let neg = matches!(w, "not" | "never" | "no" | "without");
        if !neg || p.toks[i].quoted {
            continue;
        }
        // The table: the first mention within four relating words.
        let mut j = i + 1;
        let mut verbs = 0;
        let table = loop {
            if j >= n || j > i + 5 {
                break None;
            }
            if let Some(m) = p.mention_at(j) {
                break match m.kind {
                    MentionKind::Table(t) if m.start == j => Some((t, m.end)),
                    _ => None,
                };
            }
            let t = &p.toks[j];
            if BETWEEN.contains(&t.low.as_str()) {
                j += 1;
                continue;
            }
            if verbs == 0 && looks_like_verb(&t.low) && !p.used[j] {
                verbs += 1;
                j += 1;
                continue;
            }
            break None;
        };
        let Some((table, end)) = table else { continue };
        // Nothing after it but filler up to the end of the clause.
        let mut k = end;
        while k < n && AFTER.contains(&p.low(k)) {
            k += 1;
        }
        if k < n && !is_clause_end(p, k) {
            continue;
        }
        p.take(i, k);
        p.without.push(Without { neg: i, table });
    }
}

/// Whether a clause ends before token `k`: punctuation after the previous token, or a word
/// that starts another request.
fn is_clause_end(p: &Parse, k: usize) -> bool {
    p.toks[k - 1].stop || matches!(p.low(k), "order" | "ordered" | "sorted" | "sort" | "return" | "show" | "list")
}
