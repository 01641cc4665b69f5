//! BM25 ranking of tables for a question: the question's weighted terms ([`query_terms`]) and
//! the scores ([`bm25`]) over table names, column names, comments and sample values, with the
//! lexicon's fuzzy term matching.

use std::collections::HashMap;

use super::lexicon::{STOPWORDS, SYNONYMS, for_each_word, stem, stem_cow, strip_prefix, term_score, words};
use crate::catalog::Table;

/// Question terms for ranking: stemmed content words, with synonyms at lower weight.
pub(super) fn query_terms(question: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let push = |t: String, w: f64, out: &mut Vec<(String, f64)>| {
        if let Some(e) = out.iter_mut().find(|(x, _)| *x == t) {
            e.1 = e.1.max(w);
        } else {
            out.push((t, w));
        }
    };
    for w in words(question) {
        if w.chars().all(|c| c.is_ascii_digit()) || STOPWORDS.contains(&w.as_str()) {
            continue;
        }
        let s = stem(&w);
        if s.len() < 2 || STOPWORDS.contains(&s.as_str()) {
            continue;
        }
        for (a, b) in SYNONYMS {
            if *a == s {
                push(stem(b), 0.7, &mut out);
            } else if *b == s {
                push(stem(a), 0.7, &mut out);
            }
        }
        push(s, 1.0, &mut out);
    }
    out
}

/// BM25 scores of `tables` for `query` (weighted terms), with fuzzy term matching. Fields are
/// weighted: a table's own name counts three times, column names once, comments and sample
/// values half.
pub(super) fn bm25(query: &[(String, f64)], tables: &[&Table], prefixes: &[Option<String>]) -> Vec<f64> {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    let n = tables.len();
    // Inverted index over unique tokens: token -> [(table, weight)].
    let mut index: HashMap<String, Vec<(u32, f32)>> = HashMap::new();
    let mut lengths = vec![0f64; n];
    let mut add = |t: usize, word: &str, w: f32| {
        if word.bytes().all(|b| b.is_ascii_digit()) {
            return; // numbers are never query terms
        }
        let token = stem_cow(word);
        lengths[t] += w as f64;
        let postings = match index.get_mut(token.as_ref()) {
            Some(p) => p,
            None => index.entry(token.into_owned()).or_default(),
        };
        match postings.last_mut() {
            Some((d, x)) if *d == t as u32 => *x += w,
            _ => postings.push((t as u32, w)),
        }
    };
    let text_word = |w: &str| w.len() > 2 && !w.bytes().all(|c| c.is_ascii_digit());
    for (i, table) in tables.iter().enumerate() {
        for_each_word(&table.name, &mut |w| add(i, w, 3.0));
        let prefix = &prefixes[i];
        for c in table.columns.iter().chain(&table.partition_keys) {
            for_each_word(strip_prefix(&c.name, prefix.as_deref()), &mut |w| add(i, w, 1.0));
            for text in c.comment.iter().chain(&c.sample_values) {
                for_each_word(text, &mut |w| {
                    if text_word(w) {
                        add(i, w, 0.5)
                    }
                });
            }
        }
        if let Some(comment) = &table.comment {
            for_each_word(comment, &mut |w| {
                if text_word(w) {
                    add(i, w, 0.5)
                }
            });
        }
    }
    let avg = (lengths.iter().sum::<f64>() / n.max(1) as f64).max(1.0);
    let mut scores = vec![0f64; n];
    let mut tf = vec![0f64; n];
    let mut touched: Vec<usize> = Vec::new();
    for (q, qw) in query {
        for (token, postings) in &index {
            let s = term_score(q, token);
            if s == 0.0 {
                continue;
            }
            for &(d, w) in postings {
                let d = d as usize;
                if tf[d] == 0.0 {
                    touched.push(d);
                }
                tf[d] += s * w as f64;
            }
        }
        let df = touched.len() as f64;
        let idf = (1.0 + (n as f64 - df + 0.5) / (df + 0.5)).ln();
        for &d in &touched {
            let f = tf[d];
            scores[d] += qw * idf * f * (K1 + 1.0) / (f + K1 * (1.0 - B + B * lengths[d] / avg));
            tf[d] = 0.0;
        }
        touched.clear();
    }
    scores
}
