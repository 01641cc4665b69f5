//! Answers from verified queries, and the nearest ones as examples.
//!
//! A `VerifiedQuery` is a question a person approved the answer to, with its SQL as a template
//! whose typed parameters are the literals the question supplied. A new question that reads like
//! its question (or one of its paraphrases) with other values where those literals stood is
//! answered by the template with the new values bound ([`answer`]): the SQL is the template's,
//! so the answer is as trusted as the verified one, and the request says which verified query
//! and verifier it came from. Anything else — another word, a value of the wrong type, a string
//! that is not one of the column's known values — does not match, and the generator answers
//! instead; an LLM then sees the most similar verified queries as examples ([`nearest`]).
//!
//! Reading a question as a pattern: its words, compared without case or punctuation, with each
//! parameter's example (as the question wrote it) as a slot of the parameter's type. A year in
//! the question stands for a date parameter whose example falls in that year (`in 1995` for
//! `DATE '1995-01-01'`), and binds every date parameter whose example is the same day of a year
//! at the same distance (the `< DATE '1996-01-01'` end of a year range).

use std::collections::{BTreeMap, HashSet};

use crate::catalog::Table;
use crate::guard::template::{Bindings, Literal, instantiate};
use crate::spec::verified::{ParameterType, VerifiedQuery, is_date, is_number};

/// A question answered from a verified query.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedAnswer {
    /// The VerifiedQuery's name.
    pub name: String,
    /// Who verified it.
    pub verified_by: Option<String>,
    /// The template's digest (`status.templateDigest` of the verified query).
    pub template_digest: Option<String>,
    /// The canonical SQL with the question's values bound.
    pub sql: String,
    pub bindings: Bindings,
}

/// One verified query as an example for a prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub name: String,
    pub question: String,
    /// The SQL that was verified (its examples bound), as it ran.
    pub sql: String,
    pub verified_by: Option<String>,
}

/// Words that change nothing in a question's meaning, skipped on both sides.
const FILLER: &[&str] = &["the", "a", "an", "please"];

/// The longest string value a slot takes, in words.
const MAX_SLOT_WORDS: usize = 4;

/// A word of a question: its text as written and as compared.
#[derive(Clone, Debug, PartialEq)]
struct Word {
    raw: String,
    norm: String,
    /// Written in quotes: one value, never split.
    quoted: bool,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' || c == '"' {
            // A quoted value, when it closes: one word.
            if let Some(end) = chars[i + 1..].iter().position(|&d| d == c) {
                let raw: String = chars[i + 1..i + 1 + end].iter().collect();
                if !raw.trim().is_empty() {
                    out.push(Word { norm: raw.trim().to_lowercase(), raw: raw.trim().to_string(), quoted: true });
                }
                i += end + 2;
                continue;
            }
            i += 1;
            continue;
        }
        if c.is_alphanumeric() {
            let start = i;
            while i < chars.len() {
                let d = chars[i];
                let inner = matches!(d, '-' | '.' | '/' | '_' | '\'')
                    && i + 1 < chars.len()
                    && chars[i + 1].is_alphanumeric()
                    && i > start;
                if d.is_alphanumeric() || inner {
                    i += 1;
                } else {
                    break;
                }
            }
            let raw: String = chars[start..i].iter().collect();
            let norm = raw.to_lowercase();
            if !FILLER.contains(&norm.as_str()) {
                out.push(Word { raw, norm, quoted: false });
            }
            continue;
        }
        i += 1;
    }
    out
}

/// One part of a question read as a pattern.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Word(String),
    /// The parameter at this index of `spec.parameters`, as a value of its type.
    Slot(usize),
    /// A year standing for the date parameter at this index (its example's year).
    Year(usize),
}

/// `text` as a pattern over `vq`'s parameters: each parameter's example, where the text writes
/// it, becomes a slot (the first time only; a parameter the text does not write keeps its
/// example).
fn pattern(text: &str, vq: &VerifiedQuery) -> Vec<Part> {
    let ws = words(text);
    let mut parts: Vec<Option<Part>> = ws.iter().map(|w| Some(Part::Word(w.norm.clone()))).collect();
    let mut taken = vec![false; ws.len()];
    for (pi, p) in vq.spec.parameters.iter().enumerate() {
        let ex = words(&p.example);
        let ex_norm: Vec<&str> = ex.iter().map(|w| w.norm.as_str()).collect();
        let found = (0..ws.len()).find(|&i| {
            i + ex_norm.len() <= ws.len()
                && !ex_norm.is_empty()
                && (0..ex_norm.len()).all(|k| !taken[i + k] && ws[i + k].norm == ex_norm[k])
        });
        let found = found.or_else(|| {
            // A quoted example value written whole.
            ws.iter().position(|w| w.quoted && w.norm == p.example.to_lowercase()).filter(|&i| !taken[i])
        });
        if let Some(i) = found {
            let n = if ws[i].quoted { 1 } else { ex_norm.len().max(1) };
            parts[i] = Some(Part::Slot(pi));
            for k in 0..n {
                taken[i + k] = true;
                if k > 0 {
                    parts[i + k] = None;
                }
            }
            continue;
        }
        if p.type_ == ParameterType::Date && is_date(&p.example) {
            let year = &p.example[..4];
            if let Some(i) = (0..ws.len()).find(|&i| !taken[i] && ws[i].norm == year) {
                parts[i] = Some(Part::Year(pi));
                taken[i] = true;
            }
        }
    }
    parts.into_iter().flatten().collect()
}

/// Known values of a column (`table.column` or a bare name), from the catalog's samples.
fn known_values<'a>(tables: &'a [Table], column: &str) -> Option<&'a [String]> {
    let (t, c) = match column.split_once('.') {
        Some((t, c)) => (Some(t), c),
        None => (None, column),
    };
    tables
        .iter()
        .filter(|tb| t.is_none_or(|t| tb.name.eq_ignore_ascii_case(t)))
        .flat_map(|tb| tb.columns.iter())
        .find(|col| col.name.eq_ignore_ascii_case(c))
        .map(|col| col.sample_values.as_slice())
        .filter(|v| !v.is_empty())
}

/// `value` written in the letter case of `example` (all capitals, all small), when the column
/// has no known values to take it from.
fn like_example(value: &str, example: &str) -> String {
    let letters = |s: &str| s.chars().filter(|c| c.is_alphabetic()).collect::<String>();
    let ex = letters(example);
    if !ex.is_empty() && ex.chars().all(char::is_uppercase) {
        value.to_uppercase()
    } else if !ex.is_empty() && ex.chars().all(char::is_lowercase) {
        value.to_lowercase()
    } else {
        value.to_string()
    }
}

struct Matcher<'a> {
    vq: &'a VerifiedQuery,
    tables: &'a [Table],
    parts: &'a [Part],
    ws: &'a [Word],
}

impl Matcher<'_> {
    /// Matches `parts[pi..]` against `ws[wi..]`, filling `b`.
    fn go(&self, pi: usize, wi: usize, b: &mut BTreeMap<usize, String>, years: &mut BTreeMap<usize, i32>) -> bool {
        let Some(part) = self.parts.get(pi) else { return wi == self.ws.len() };
        match part {
            Part::Word(w) => {
                wi < self.ws.len() && !self.ws[wi].quoted && self.ws[wi].norm == *w && self.go(pi + 1, wi + 1, b, years)
            }
            Part::Year(p) => {
                let Some(w) = self.ws.get(wi) else { return false };
                let Ok(y) = w.norm.parse::<i32>() else { return false };
                if w.norm.len() != 4 || !(1000..=9999).contains(&y) {
                    return false;
                }
                years.insert(*p, y);
                if self.go(pi + 1, wi + 1, b, years) {
                    return true;
                }
                years.remove(p);
                false
            }
            Part::Slot(p) => {
                let param = &self.vq.spec.parameters[*p];
                let max = match param.type_ {
                    ParameterType::String => MAX_SLOT_WORDS,
                    _ => 1,
                };
                for n in 1..=max {
                    if wi + n > self.ws.len() {
                        break;
                    }
                    let span = &self.ws[wi..wi + n];
                    if n > 1 && span.iter().any(|w| w.quoted) {
                        break;
                    }
                    let raw = span.iter().map(|w| w.raw.as_str()).collect::<Vec<_>>().join(" ");
                    let Some(value) = self.value(param, &raw, span[0].quoted) else { continue };
                    b.insert(*p, value);
                    if self.go(pi + 1, wi + n, b, years) {
                        return true;
                    }
                    b.remove(p);
                }
                false
            }
        }
    }

    /// The value `raw` gives parameter `param`, if it is one of its type (and, for a string
    /// compared with a column whose values the catalog knows, one of those values).
    fn value(&self, param: &crate::spec::verified::TemplateParameter, raw: &str, quoted: bool) -> Option<String> {
        match param.type_ {
            ParameterType::Number => is_number(raw).then(|| raw.to_string()),
            ParameterType::Date => is_date(raw).then(|| raw.to_string()),
            ParameterType::String => {
                if !quoted
                    && raw.chars().all(|c| c.is_ascii_digit())
                    && !param.example.chars().all(|c| c.is_ascii_digit())
                {
                    return None;
                }
                match param.column.as_deref().and_then(|c| known_values(self.tables, c)) {
                    Some(values) => values.iter().find(|v| v.eq_ignore_ascii_case(raw)).cloned(),
                    None => Some(if quoted { raw.to_string() } else { like_example(raw, &param.example) }),
                }
            }
        }
    }
}

/// The bindings under which `question` reads as `text` (a verified question or paraphrase).
fn bind(question: &[Word], text: &str, vq: &VerifiedQuery, tables: &[Table]) -> Option<Bindings> {
    let parts = pattern(text, vq);
    let m = Matcher { vq, tables, parts: &parts, ws: question };
    let (mut b, mut years) = (BTreeMap::new(), BTreeMap::new());
    if !m.go(0, 0, &mut b, &mut years) {
        return None;
    }
    let mut out = Bindings::new();
    for (i, p) in vq.spec.parameters.iter().enumerate() {
        let value = if let Some(v) = b.get(&i) {
            v.clone()
        } else if let Some(y) = years.get(&i) {
            format!("{y:04}{}", &p.example[4..])
        } else if let Some((anchor, y)) =
            years.iter().next().filter(|_| p.type_ == ParameterType::Date && is_date(&p.example))
        {
            // Another date of the same year range moves with the year the question gave.
            let a = &vq.spec.parameters[*anchor].example;
            let (ay, py) = (a[..4].parse::<i32>().ok()?, p.example[..4].parse::<i32>().ok()?);
            if a[4..] == p.example[4..] && (0..=1).contains(&(py - ay)) {
                format!("{:04}{}", y + (py - ay), &p.example[4..])
            } else {
                p.example.clone()
            }
        } else {
            p.example.clone()
        };
        out.insert(p.name.clone(), Literal::typed(p.type_, &value)?);
    }
    Some(out)
}

/// The answer to `question` from the first of `candidates` (fresh, same database) whose question
/// or a paraphrase reads as it with other values bound, preferring the pattern with the most
/// words of its own; None when none does.
pub fn answer(
    question: &str,
    database: &str,
    candidates: &[VerifiedQuery],
    tables: &[Table],
) -> Option<VerifiedAnswer> {
    let q = words(question);
    if q.is_empty() {
        return None;
    }
    let mut best: Option<(usize, VerifiedAnswer)> = None;
    for vq in candidates.iter().filter(|v| v.spec.database == database && v.is_fresh()) {
        for text in std::iter::once(&vq.spec.question).chain(vq.spec.paraphrases.iter()) {
            let Some(bindings) = bind(&q, text, vq, tables) else { continue };
            let Ok(sql) = instantiate(vq, &bindings) else { continue };
            let own = pattern(text, vq).iter().filter(|p| matches!(p, Part::Word(_))).count();
            if best.as_ref().is_none_or(|(n, b)| own > *n || (own == *n && vq.metadata.name < b.name)) {
                best = Some((
                    own,
                    VerifiedAnswer {
                        name: vq.metadata.name.clone(),
                        verified_by: vq.spec.verified_by.clone(),
                        template_digest: vq.status.as_ref().and_then(|s| s.template_digest.clone()),
                        sql,
                        bindings,
                    },
                ));
            }
        }
    }
    best.map(|(_, a)| a)
}

/// Content words of a text, for similarity.
fn content(text: &str) -> HashSet<String> {
    const STOP: &[&str] = &[
        "of", "in", "for", "by", "to", "and", "or", "is", "are", "was", "were", "what", "which", "who", "how", "me",
        "show", "list", "give", "with", "on", "at", "each", "per", "do", "does", "did",
    ];
    words(text).into_iter().map(|w| w.norm).filter(|w| !STOP.contains(&w.as_str())).collect()
}

/// Up to `k` fresh verified queries of `database` most like `question` (by the words they share
/// with it or a paraphrase), most similar first: examples for an LLM prompt.
pub fn nearest(question: &str, database: &str, candidates: &[VerifiedQuery], k: usize) -> Vec<Example> {
    let q = content(question);
    if q.is_empty() || k == 0 {
        return vec![];
    }
    let mut scored: Vec<(f64, &VerifiedQuery)> = candidates
        .iter()
        .filter(|v| v.spec.database == database && v.is_fresh())
        .filter_map(|vq| {
            let best = std::iter::once(&vq.spec.question)
                .chain(vq.spec.paraphrases.iter())
                .map(|t| {
                    let c = content(t);
                    let shared = q.intersection(&c).count() as f64;
                    shared / (q.len() + c.len()) as f64 * 2.0
                })
                .fold(0.0, f64::max);
            (best >= 0.25).then_some((best, vq))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.metadata.name.cmp(&b.1.metadata.name)));
    scored
        .into_iter()
        .take(k)
        .filter_map(|(_, vq)| {
            let examples = crate::guard::template::examples(vq).ok()?;
            Some(Example {
                name: vq.metadata.name.clone(),
                question: vq.spec.question.clone(),
                sql: instantiate(vq, &examples).ok()?,
                verified_by: vq.spec.verified_by.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Column;
    use crate::guard::template::check_template;
    use crate::spec::status::ObjectStatus;
    use crate::spec::verified::TemplateParameter;

    fn param(name: &str, type_: ParameterType, column: Option<&str>, example: &str) -> TemplateParameter {
        TemplateParameter {
            name: name.into(),
            type_,
            column: column.map(Into::into),
            example: example.into(),
            description: None,
        }
    }

    /// A verified query as the controller leaves it after planning: fresh.
    fn fresh(mut vq: VerifiedQuery) -> VerifiedQuery {
        vq.metadata.generation = Some(1);
        let t = check_template(&vq).unwrap_or_else(|e| panic!("{e}"));
        let mut st = ObjectStatus { observed_generation: 1, template_digest: Some(t.digest), ..Default::default() };
        st.set_condition("Stale", "False", "Planned", "");
        vq.status = Some(st);
        vq
    }

    fn by_region() -> VerifiedQuery {
        let mut vq = VerifiedQuery::new(
            "orders-by-region-year",
            "tpch",
            "How many orders came from ASIA in 1995?",
            "SELECT count(*) AS n FROM orders JOIN customer ON o_custkey = c_custkey JOIN nation ON c_nationkey = n_nationkey \
             JOIN region ON n_regionkey = r_regionkey WHERE r_name = :region AND o_orderdate >= :from AND o_orderdate < :to",
        );
        vq.spec.paraphrases = vec!["Number of ASIA orders in 1995".into()];
        vq.spec.parameters = vec![
            param("region", ParameterType::String, Some("region.r_name"), "ASIA"),
            param("from", ParameterType::Date, None, "1995-01-01"),
            param("to", ParameterType::Date, None, "1996-01-01"),
        ];
        vq.spec.verified_by = Some("alice".into());
        fresh(vq)
    }

    fn tables() -> Vec<Table> {
        let samples = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"].map(String::from).to_vec();
        vec![Table {
            name: "region".into(),
            columns: vec![
                Column { name: "r_regionkey".into(), data_type: "bigint".into(), ..Default::default() },
                Column {
                    name: "r_name".into(),
                    data_type: "varchar".into(),
                    sample_values: samples,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }]
    }

    #[test]
    fn a_paraphrase_with_other_values_binds_the_template() {
        let vqs = [by_region()];
        let a = answer("How many orders came from Europe in 1997?", "tpch", &vqs, &tables()).expect("a match");
        assert_eq!(a.name, "orders-by-region-year");
        assert_eq!(a.verified_by.as_deref(), Some("alice"));
        // The known value's spelling, the year range moved together.
        assert!(a.sql.contains("r_name = 'EUROPE'"), "{}", a.sql);
        assert!(a.sql.contains("DATE '1997-01-01'") && a.sql.contains("DATE '1998-01-01'"), "{}", a.sql);
        // The answer is exactly an instantiation of the template: auto-approval would accept it.
        assert_eq!(crate::guard::template::matches(&vqs[0], &a.sql), Some(a.bindings.clone()));
        // Through a paraphrase, a two-word value, case and punctuation ignored.
        let a = answer("number of middle east orders in 1994", "tpch", &vqs, &tables()).expect("a match");
        assert!(a.sql.contains("'MIDDLE EAST'") && a.sql.contains("DATE '1994-01-01'"), "{}", a.sql);
        // The question exactly as verified binds the examples.
        let a = answer("How many orders came from ASIA in 1995?", "tpch", &vqs, &tables()).unwrap();
        assert!(a.sql.contains("'ASIA'") && a.sql.contains("DATE '1995-01-01'"), "{}", a.sql);
    }

    #[test]
    fn any_other_difference_is_no_match() {
        let vqs = [by_region()];
        for q in [
            "How many orders came from ATLANTIS in 1997?", // not a known value of r_name
            "How many orders came from Europe in 97?",     // not a year
            "How many lineitems came from Europe in 1997?", // another word
            "How many orders came from Europe in 1997 by month?", // more words
            "How many orders came from Europe?",           // fewer words
            "",
        ] {
            assert_eq!(answer(q, "tpch", &vqs, &tables()), None, "{q}");
        }
        // Another database, or a verified query that is stale or not yet planned.
        assert_eq!(answer("How many orders came from Europe in 1997?", "other", &vqs, &tables()), None);
        let mut stale = by_region();
        stale.status.as_mut().unwrap().set_condition("Stale", "True", "PlanFailed", "no table orders");
        assert_eq!(answer("How many orders came from Europe in 1997?", "tpch", &[stale], &tables()), None);
        let mut unplanned = by_region();
        unplanned.status = None;
        assert_eq!(answer("How many orders came from Europe in 1997?", "tpch", &[unplanned], &tables()), None);
    }

    #[test]
    fn numbers_quoted_values_and_columns_without_samples() {
        let mut vq = VerifiedQuery::new(
            "top-customers",
            "tpch",
            "Which 5 customers in segment 'BUILDING' have the highest balance?",
            "SELECT c_name, c_acctbal FROM customer WHERE c_mktsegment = :segment ORDER BY c_acctbal DESC LIMIT :limit",
        );
        vq.spec.parameters = vec![
            param("segment", ParameterType::String, Some("customer.c_mktsegment"), "BUILDING"),
            param("limit", ParameterType::Number, None, "5"),
        ];
        let vqs = [fresh(vq)];
        // No samples for c_mktsegment: a bare word takes the example's capitals, a quoted one is kept as written.
        let a = answer("Which 10 customers in segment machinery have the highest balance?", "tpch", &vqs, &[]).unwrap();
        assert!(a.sql.contains("'MACHINERY'") && a.sql.ends_with("LIMIT 10"), "{}", a.sql);
        let a =
            answer("Which 3 customers in segment 'Household' have the highest balance?", "tpch", &vqs, &[]).unwrap();
        assert!(a.sql.contains("'Household'") && a.sql.ends_with("LIMIT 3"), "{}", a.sql);
        // A number where a number goes, nothing else.
        assert_eq!(
            answer("Which five customers in segment machinery have the highest balance?", "tpch", &vqs, &[]),
            None
        );
        assert_eq!(answer("Which 10 customers in segment 1995 have the highest balance?", "tpch", &vqs, &[]), None);
    }

    #[test]
    fn the_nearest_verified_queries_are_examples_with_their_sql_as_it_ran() {
        let vqs = [by_region()];
        let ex = nearest("How many orders did customers in Europe place in 1996 by month?", "tpch", &vqs, 3);
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].name, "orders-by-region-year");
        assert!(ex[0].sql.contains("'ASIA'") && ex[0].sql.contains("DATE '1995-01-01'"), "{}", ex[0].sql);
        assert!(nearest("What is the average supplier balance?", "tpch", &vqs, 3).is_empty());
        assert!(nearest("How many orders came from Europe?", "other", &vqs, 3).is_empty());
    }
}
