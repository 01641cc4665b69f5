//! Sample values named in the text.

use super::{Parse, Tok, ValueHit, is_filler, tokenize};
use crate::catalog::retrieve;
use crate::generate::offline::lexicon::CUE_WORDS;
use crate::generate::offline::schema::{Kind, Schema};

/// Sample values named in the text (`BUILDING`, `'MAIL'`, `asia`, "urgent" for `1-URGENT`).
pub(super) fn find_values(schema: &Schema, p: &mut Parse) {
    let n = p.toks.len();
    // Words the schema itself uses: a lower-case "ship" is the column word, not the value SHIP.
    let schema_word = |w: &str| -> bool {
        schema
            .tables
            .iter()
            .any(|t| t.words.iter().any(|x| x == w) || t.cols.iter().any(|c| c.words.iter().any(|x| x == w)))
    };
    let mut hits: Vec<ValueHit> = Vec::new();
    for (col, ci) in schema.cols() {
        if ci.kind != Kind::Text || ci.banned {
            continue;
        }
        for v in &ci.samples {
            let vt: Vec<Tok> = tokenize(v);
            if vt.is_empty() || vt.len() > 6 {
                continue;
            }
            // Whole value, then its core without a leading code ("1-URGENT" → URGENT).
            let mut forms: Vec<(Vec<String>, bool)> = vec![(vt.iter().map(|t| t.low.clone()).collect(), false)];
            if vt.len() == 1
                && let Some(pos) = vt[0].low.find('-')
                && vt[0].low[..pos].chars().all(|c| c.is_ascii_digit())
                && pos + 1 < vt[0].low.len()
            {
                forms.push((vec![vt[0].low[pos + 1..].to_string()], true));
            }
            for (form, core) in forms {
                let k = form.len();
                if k == 0 || k > n {
                    continue;
                }
                for i in 0..=n - k {
                    if !(0..k).all(|j| p.toks[i + j].low == form[j]) {
                        continue;
                    }
                    let quoted = k == 1 && p.toks[i].quoted;
                    // A value in lower case written in lower case says little: it is a word
                    // of the question as much as a value ("transaction amount" is not the
                    // notification type 'transaction').
                    let exact = (0..k).all(|j| p.toks[i + j].raw == vt.get(j).map(|t| t.raw.as_str()).unwrap_or(""))
                        && v.chars().any(|c| !c.is_lowercase() && c.is_alphanumeric());
                    let upper = (0..k).all(|j| {
                        p.toks[i + j].raw.chars().any(|c| c.is_alphabetic())
                            && p.toks[i + j].raw == p.toks[i + j].raw.to_uppercase()
                    });
                    let text_len: usize = form.iter().map(|f| f.len()).sum();
                    let col_named =
                        ci.words.iter().any(|w| p.toks.iter().any(|t| retrieve::term_score(&t.stem, w) >= 0.8));
                    let strong = quoted || exact || (core && upper);
                    let ok = if text_len <= 2 {
                        // Single letters ("F", "R") only when quoted or right after the column's name.
                        quoted
                            || (exact
                                && i > 0
                                && ci.words.iter().any(|w| retrieve::term_score(&p.toks[i - 1].stem, w) >= 0.8))
                    } else if core {
                        upper || col_named
                    } else {
                        // "transaction notifications": a schema word right before the name of
                        // its column's table is that table's value ('transaction' of
                        // `notifications.type`).
                        let before_own_table = p.toks.get(i + k).is_some_and(|t| {
                            let ti = &schema.tables[col.t];
                            t.stem == ti.flat || ti.words.last().is_some_and(|w| *w == t.stem)
                        });
                        strong
                            || (text_len >= 3
                                && !(k == 1
                                    && ((schema_word(&p.toks[i].stem) && !before_own_table)
                                        || CUE_WORDS.contains(&p.toks[i].low.as_str())))
                                && !is_filler(&p.toks[i]))
                    };
                    if !ok {
                        continue;
                    }
                    let value = v.clone();
                    match hits
                        .iter_mut()
                        .find(|h| h.start == i && h.end == i + k && h.value.eq_ignore_ascii_case(&value))
                    {
                        Some(h) => {
                            if !h.cols.contains(&col) {
                                h.cols.push(col);
                            }
                            h.strong |= strong;
                        }
                        None => hits.push(ValueHit { start: i, end: i + k, value, cols: vec![col], strong }),
                    }
                }
            }
        }
    }
    // Longest first, then left to right; no overlaps.
    hits.sort_by(|a, b| (b.end - b.start).cmp(&(a.end - a.start)).then(a.start.cmp(&b.start)));
    for h in hits {
        if (h.start..h.end).all(|i| !p.used[i]) {
            p.take(h.start, h.end);
            p.values.push(h);
        }
    }
    p.values.sort_by_key(|h| h.start);
}
