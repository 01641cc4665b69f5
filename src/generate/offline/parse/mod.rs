//! Parsing a text (a question or a piece of feedback) into recognised pieces: tokens, cue words,
//! dates, numeric comparisons, sample values and mentions of tables and columns ([`Parse`]).

mod cues;
mod dates;
mod flags;
mod mentions;
mod negation;
mod numbers;
mod values;

use chrono::NaiveDate;

use super::lexicon::{FILLER, UNSUPPORTED};
use super::schema::{Col, Schema};
use crate::catalog::retrieve;
use cues::find_cues;
use dates::find_dates;
use flags::find_flags;
use mentions::{find_compound_columns, find_mentions};
use negation::find_negations;
use numbers::find_numbers;
use values::find_values;

pub(super) use dates::ymd;

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub(super) struct Tok {
    pub(super) raw: String,
    pub(super) low: String,
    pub(super) stem: String,
    pub(super) quoted: bool,
    pub(super) num: Option<f64>,
    /// Punctuation that ends a clause (`,` `.` `;` `:` `?` `!` `)`) follows it.
    pub(super) stop: bool,
    /// A comma follows it.
    pub(super) comma: bool,
}

/// Splits text into tokens, keeping `Brand#13`, `1-URGENT`, `1995-03-15`, `0.05` and `400,000`
/// whole, quoted strings as one token, and dropping possessive `'s`.
pub(super) fn tokenize(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let make = |raw: String, quoted: bool| -> Tok {
        let low = raw.to_lowercase();
        let cleaned: String = low.chars().filter(|c| *c != ',' && *c != '$').collect();
        let num = if !quoted
            && cleaned.chars().all(|c| c.is_ascii_digit() || c == '.')
            && cleaned.chars().any(|c| c.is_ascii_digit())
        {
            cleaned.parse::<f64>().ok()
        } else {
            None
        };
        let stem = if quoted { low.clone() } else { retrieve::stem(&low) };
        Tok { raw, low, stem, quoted, num, stop: false, comma: false }
    };
    while i < chars.len() {
        let c = chars[i];
        let prev_alnum = i > 0 && chars[i - 1].is_alphanumeric();
        if matches!(c, '\'' | '"' | '‘' | '“' | '`') && !prev_alnum {
            let close = match c {
                '‘' => '’',
                '“' => '”',
                other => other,
            };
            if let Some(len) = chars[i + 1..].iter().position(|&d| d == close) {
                let inner: String = chars[i + 1..i + 1 + len].iter().collect();
                if !inner.trim().is_empty() {
                    out.push(make(inner.trim().to_string(), true));
                }
                i += len + 2;
                mark_stop(&mut out, &chars, i);
                continue;
            }
        }
        // Comparison signs ("rating > 4.5", ">= 3") are words of their own.
        if matches!(c, '<' | '>' | '=' | '≥' | '≤') {
            let mut raw = String::new();
            while i < chars.len() && matches!(chars[i], '<' | '>' | '=' | '≥' | '≤') {
                raw.push(chars[i]);
                i += 1;
            }
            out.push(make(raw, false));
            continue;
        }
        if c.is_alphanumeric() || (c == '$' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let mut raw = String::new();
            if c != '$' {
                raw.push(c);
            }
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                if d.is_alphanumeric() || d == '_' {
                    raw.push(d);
                    i += 1;
                } else if matches!(d, '#' | '-' | '.' | ',' | '/' | ':')
                    && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric())
                {
                    // A comma only inside a number (400,000); the others between any two word characters.
                    if d == ','
                        && !(raw.chars().last().is_some_and(|p| p.is_ascii_digit()) && chars[i + 1].is_ascii_digit())
                    {
                        break;
                    }
                    // Two words joined by a hyphen or a slash are two words ("round-trip",
                    // "he/she", "cities/landmarks"); a code keeps its parts ("1-URGENT", "AB-12").
                    if matches!(d, '-' | '/')
                        && raw.chars().all(char::is_alphabetic)
                        && chars[i + 1..].iter().take_while(|c| c.is_alphanumeric()).all(|c| c.is_alphabetic())
                    {
                        break;
                    }
                    raw.push(d);
                    i += 1;
                } else if (d == '\'' || d == '’')
                    && raw.ends_with(['n', 'N'])
                    && chars.get(i + 1).is_some_and(|n| *n == 't' || *n == 'T')
                    && !chars.get(i + 2).is_some_and(|n| n.is_alphanumeric())
                {
                    // "haven't" → have not, "can't" → can not, "won't" → will not.
                    i += 2;
                    let low = raw.to_lowercase();
                    let base = match low.as_str() {
                        "can" => "can".to_string(),
                        "won" => "will".to_string(),
                        _ => raw[..raw.len() - 1].to_string(),
                    };
                    out.push(make(base, false));
                    raw = "not".into();
                    break;
                } else if (d == '\'' || d == '’')
                    && chars.get(i + 1).is_some_and(|n| *n == 's' || *n == 'S')
                    && !chars.get(i + 2).is_some_and(|n| n.is_alphanumeric())
                {
                    i += 2; // possessive
                    break;
                } else {
                    break;
                }
            }
            out.push(make(raw, false));
            mark_stop(&mut out, &chars, i);
            continue;
        }
        i += 1;
    }
    out
}

/// Marks the last token when clause punctuation follows it (spaces skipped).
fn mark_stop(out: &mut [Tok], chars: &[char], mut i: usize) {
    while i < chars.len() && chars[i] == ' ' {
        i += 1;
    }
    if let (Some(t), Some(c)) = (out.last_mut(), chars.get(i))
        && matches!(c, ',' | '.' | ';' | ':' | '?' | '!' | ')')
    {
        t.stop = true;
        t.comma = *c == ',';
    }
}

pub(super) fn is_filler(t: &Tok) -> bool {
    FILLER.contains(&t.low.as_str()) || FILLER.contains(&t.stem.as_str())
}

/// A code such as `Brand#99` or `AB-12`: letters and digits in one token. Never a schema word.
pub(super) fn is_code(t: &Tok) -> bool {
    t.num.is_none() && t.raw.chars().any(|c| c.is_ascii_digit()) && t.raw.chars().any(|c| c.is_alphabetic())
}

// ---------------------------------------------------------------------------------------------
// Pieces
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dir {
    Asc,
    Desc,
}

impl Dir {
    pub(super) fn sql(self) -> &'static str {
        match self {
            Dir::Asc => "ASC",
            Dir::Desc => "DESC",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Agg {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl Agg {
    pub(super) fn sql(self) -> &'static str {
        match self {
            Agg::Count => "COUNT",
            Agg::Sum => "SUM",
            Agg::Avg => "AVG",
            Agg::Min => "MIN",
            Agg::Max => "MAX",
        }
    }
    pub(super) fn word(self) -> &'static str {
        match self {
            Agg::Count => "count",
            Agg::Sum => "total",
            Agg::Avg => "average",
            Agg::Min => "minimum",
            Agg::Max => "maximum",
        }
    }
}

/// What a superlative implies when no measure is named ("cheapest", "most recent").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Implied {
    None,
    Price,
    Size,
    Date,
    /// "most common/frequent/popular": count rows.
    Frequency,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DatePart {
    Year,
    Month,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum MentionKind {
    Table(usize),
    /// Candidate columns, best first, with scores.
    Columns(Vec<(Col, f64)>),
    /// "revenue", "sales": a money measure, net of discount where the schema has one.
    Revenue,
    /// "spent", "paid": a money column, preferably in a table that references the subject.
    Money,
    DatePart(DatePart),
}

#[derive(Clone, Debug)]
pub(super) struct Mention {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) kind: MentionKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct DateSpan {
    /// Inclusive lower bound.
    pub(super) lo: Option<NaiveDate>,
    /// Exclusive upper bound.
    pub(super) hi: Option<NaiveDate>,
}

#[derive(Clone, Debug)]
pub(super) struct ValueHit {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) value: String,
    pub(super) cols: Vec<Col>,
    /// Matched in the exact case of the data, or quoted.
    pub(super) strong: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Between(f64),
}

#[derive(Clone, Debug)]
pub(super) struct NumHit {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) op: Op,
    pub(super) value: f64,
    pub(super) raw: String,
}

/// Everything recognised in one text (a question or a piece of feedback).
#[derive(Debug, Default)]
pub(super) struct Parse {
    pub(super) toks: Vec<Tok>,
    pub(super) used: Vec<bool>,
    pub(super) count: Option<usize>,
    pub(super) how_much: bool,
    pub(super) aggs: Vec<(Agg, usize)>,
    pub(super) distinct: bool,
    pub(super) sup: Option<(Dir, usize, Implied)>,
    pub(super) limit: Option<usize>,
    pub(super) order_dir: Option<Dir>,
    /// "from highest to lowest": every row or group, ordered this way (no top N).
    pub(super) range_order: Option<Dir>,
    pub(super) group_cues: Vec<usize>,
    /// Tokens taken by values and dates (before cue words are read).
    pub(super) dated: Vec<bool>,
    /// Group cues that came from "by", which also introduces agents ("orders by customers").
    pub(super) by_cues: Vec<usize>,
    pub(super) sort_cues: Vec<usize>,
    pub(super) focus_cues: Vec<usize>,
    pub(super) dates: Vec<DateSpan>,
    pub(super) clear_dates: bool,
    pub(super) removals: Vec<usize>,
    pub(super) values: Vec<ValueHit>,
    pub(super) nums: Vec<NumHit>,
    pub(super) mentions: Vec<Mention>,
    /// Constructs the generator does not build, with the token that names each.
    pub(super) unsupported: Vec<(usize, String)>,
    /// "customers who have not placed any orders": rows of the subject with no rows of a table.
    pub(super) without: Vec<Without>,
    /// Yes/no columns named as conditions: "courses with exams", "closed businesses".
    pub(super) flags: Vec<FlagHit>,
}

/// A yes/no column named as a condition, and which of the two it asks for.
#[derive(Clone, Debug)]
pub(super) struct FlagHit {
    pub(super) start: usize,
    /// Candidate columns, best first.
    pub(super) cols: Vec<(Col, f64)>,
    pub(super) yes: bool,
    /// The negation word that turned it to no, if any.
    pub(super) neg: Option<usize>,
}

/// A negated relation: "(who have) not (placed) any <table>", "(that have) no <table>",
/// "without <table>" — the subject's rows that no row of `table` refers to (or, when the
/// subject refers to `table`, whose reference is empty).
#[derive(Clone, Debug)]
pub(super) struct Without {
    /// The negation word.
    pub(super) neg: usize,
    pub(super) table: usize,
}

impl Parse {
    pub(super) fn low(&self, i: usize) -> &str {
        self.toks.get(i).map(|t| t.low.as_str()).unwrap_or("")
    }

    pub(super) fn is(&self, i: usize, words: &[&str]) -> bool {
        words.contains(&self.low(i))
    }

    pub(super) fn take(&mut self, from: usize, to: usize) {
        for u in &mut self.used[from..to.min(self.toks.len())] {
            *u = true;
        }
    }

    pub(super) fn free(&self, i: usize) -> bool {
        i < self.toks.len() && !self.used[i]
    }

    /// The first token at or after `i` that no finder has taken yet: where a finder's scan
    /// goes on.
    pub(super) fn next_free(&self, i: usize) -> Option<usize> {
        (i..self.toks.len()).find(|&j| !self.used[j])
    }

    pub(super) fn mention_at(&self, i: usize) -> Option<&Mention> {
        self.mentions.iter().find(|m| m.start <= i && i < m.end)
    }

    pub(super) fn value_at(&self, i: usize) -> Option<&ValueHit> {
        self.values.iter().find(|v| v.start <= i && i < v.end)
    }

    /// The first mention at or after token `i`, skipping filler, numbers and cue words.
    pub(super) fn mention_after(&self, i: usize, max_skip: usize) -> Option<&Mention> {
        let mut j = i;
        let mut skipped = 0;
        while j < self.toks.len() && skipped <= max_skip {
            if let Some(m) = self.mention_at(j) {
                return Some(m);
            }
            if self.value_at(j).is_some() {
                return None;
            }
            j += 1;
            skipped += 1;
        }
        None
    }
}

/// Units of measure a question states ("in meters", "over 200 mph", "per square kilometer"):
/// they say how a value is written, not which value, so they are taken as read. Returns their
/// token indexes.
fn find_units(p: &mut Parse) -> Vec<usize> {
    const UNITS: &[&str] = &[
        "meter",
        "metre",
        "kilometer",
        "kilometre",
        "km",
        "mile",
        "mph",
        "kph",
        "kmh",
        "kg",
        "kilogram",
        "gram",
        "pound",
        "lb",
        "cm",
        "centimeter",
        "mm",
        "millimeter",
        "inch",
        "inche",
        "feet",
        "foot",
        "ft",
        "second",
        "sec",
        "minute",
        "min",
        "hour",
        "hr",
        "dollar",
        "usd",
        "euro",
        "eur",
    ];
    let mut out = Vec::new();
    for i in 0..p.toks.len() {
        if p.used[i] || !UNITS.contains(&p.toks[i].stem.as_str()) {
            continue;
        }
        // "in meters", "in square kilometers", "per square kilometer", "200 mph".
        let mut j = i;
        if j > 0 && p.is(j - 1, &["square", "cubic"]) {
            j -= 1;
        }
        let after_number = j > 0 && p.toks[j - 1].num.is_some();
        let after_cue = j > 0 && p.is(j - 1, &["in", "per", "of"]);
        if after_number || after_cue {
            let from = if after_cue { j - 1 } else { j };
            p.take(from, i + 1);
            out.push(i);
        }
    }
    out
}

/// "each day of the week" where a column's values are the names of weekdays: "of the week"
/// only says which days the column holds.
fn weekday_columns(schema: &Schema, p: &mut Parse) {
    const DAYS: &[&str] = &["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    let has_weekdays = schema.cols().any(|(_, c)| {
        c.samples.len() >= 2 && c.samples.iter().all(|v| DAYS.contains(&v.trim().to_ascii_lowercase().as_str()))
    });
    if !has_weekdays {
        return;
    }
    for i in 1..p.toks.len() {
        if p.is(i - 1, &["day", "days"]) && p.is(i, &["of"]) {
            let k = if p.is(i + 1, &["the"]) { i + 2 } else { i + 1 };
            if p.is(k, &["week"]) && (i..=k).all(|j| !p.used[j]) {
                p.take(i, k + 1);
            }
        }
    }
}

/// Parses `text` against `schema`.
pub(super) fn parse(schema: &Schema, text: &str) -> Parse {
    let toks = tokenize(text);
    let n = toks.len();
    let mut p = Parse { used: vec![false; n], toks, ..Parse::default() };

    // Unsupported constructs first: declining beats a confident wrong answer.
    for i in 0..n {
        let (low, stem) = (p.toks[i].low.clone(), p.toks[i].stem.clone());
        if p.toks[i].quoted {
            continue;
        }
        for (w, what) in UNSUPPORTED {
            if w.contains(' ') {
                let parts: Vec<&str> = w.split(' ').collect();
                if (0..parts.len())
                    .all(|k| p.low(i + k) == parts[k] || p.toks.get(i + k).is_some_and(|t| t.stem == parts[k]))
                {
                    p.unsupported.push((i, format!("{what} (\"{w}\")")));
                }
            } else if low == *w || stem == *w {
                p.unsupported.push((i, format!("{what} (\"{}\")", p.toks[i].raw)));
            }
        }
    }

    // Values from the data before anything else claims their words.
    find_values(schema, &mut p);
    find_dates(&mut p);
    p.dated = p.used.clone();
    // Column names of several words before cue words claim theirs ("total price" is a column,
    // not a sum of prices).
    find_compound_columns(schema, &mut p);
    find_cues(&mut p);
    find_numbers(&mut p);
    let units = find_units(&mut p);
    weekday_columns(schema, &mut p);
    find_mentions(schema, &mut p);
    find_negations(&mut p);
    find_flags(schema, &mut p);
    // "Give both city names and the population": "both" only pairs the outputs.
    let paired: Vec<usize> = (1..p.toks.len())
        .filter(|&i| {
            p.is(i, &["both"])
                && p.is(i - 1, &["give", "show", "return", "list", "get", "include", "display", "with"])
                && (i + 1..p.toks.len()).any(|j| p.is(j, &["and"]))
        })
        .collect();
    let negated: Vec<usize> = paired
        .into_iter()
        .chain(p.without.iter().map(|w| w.neg))
        .chain(p.flags.iter().filter_map(|f| f.neg))
        .chain(units)
        .collect();
    p.unsupported.retain(|(i, _)| !negated.contains(i));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_codes_dates_numbers_and_quotes_whole() {
        let t: Vec<String> =
            tokenize("Brand#13 1-URGENT 1995-03-15 0.05 400,000 'REG AIR' customer's $5, x. round-trip he/she AB-12")
                .into_iter()
                .map(|t| t.raw)
                .collect();
        assert_eq!(
            t,
            [
                "Brand#13",
                "1-URGENT",
                "1995-03-15",
                "0.05",
                "400,000",
                "REG AIR",
                "customer",
                "5",
                "x",
                "round",
                "trip",
                "he",
                "she",
                "AB-12"
            ]
        );
        assert_eq!(tokenize("400,000")[0].num, Some(400000.0));
    }
}
