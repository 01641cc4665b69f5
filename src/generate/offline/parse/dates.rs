//! Date expressions: years, ISO dates, months, quarters, ranges and before/after/since.

use chrono::{Datelike, NaiveDate};

use super::{DateSpan, Parse, Tok};
use crate::generate::offline::lexicon::month_number;

fn iso_date(s: &str) -> Option<NaiveDate> {
    if s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-' {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
    } else {
        None
    }
}

pub(super) fn year_of(t: &Tok) -> Option<i32> {
    let y = t.num?;
    (t.raw.len() == 4 && y.fract() == 0.0 && (1900.0..=2100.0).contains(&y)).then_some(y as i32)
}

pub(in crate::generate::offline) fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

fn add_months(d: NaiveDate, months: u32) -> NaiveDate {
    let total = d.year() * 12 + d.month0() as i32 + months as i32;
    ymd(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1)
}

/// Years, dates, months, quarters, ranges and before/after/since.
pub(super) fn find_dates(p: &mut Parse) {
    let n = p.toks.len();
    // A point in time at token i: (start, end-exclusive, tokens used).
    let point = |p: &Parse, i: usize| -> Option<(NaiveDate, NaiveDate, usize)> {
        let t = p.toks.get(i)?;
        if p.used[i] {
            return None;
        }
        if let Some(d) = iso_date(&t.low) {
            return Some((d, d.succ_opt()?, 1));
        }
        if let Some(m) = month_number(&t.low) {
            // "March 1995", "March of 1995"
            let j = if p.low(i + 1) == "of" { i + 2 } else { i + 1 };
            if let Some(y) = p.toks.get(j).and_then(year_of) {
                let s = ymd(y, m, 1);
                return Some((s, add_months(s, 1), j + 1 - i));
            }
        }
        if let Some(q) = ["q1", "q2", "q3", "q4"].iter().position(|x| *x == t.low) {
            let j = if p.low(i + 1) == "of" { i + 2 } else { i + 1 };
            if let Some(y) = p.toks.get(j).and_then(year_of) {
                let s = ymd(y, q as u32 * 3 + 1, 1);
                return Some((s, add_months(s, 3), j + 1 - i));
            }
        }
        if let Some(q) = ["first", "second", "third", "fourth"].iter().position(|x| *x == t.low)
            && p.low(i + 1) == "quarter"
        {
            let j = if p.low(i + 2) == "of" { i + 3 } else { i + 2 };
            if let Some(y) = p.toks.get(j).and_then(year_of) {
                let s = ymd(y, q as u32 * 3 + 1, 1);
                return Some((s, add_months(s, 3), j + 1 - i));
            }
        }
        if let Some(y) = year_of(t) {
            return Some((ymd(y, 1, 1), ymd(y + 1, 1, 1), 1));
        }
        None
    };
    let mut i = 0;
    while let Some(at) = p.next_free(i) {
        i = at;
        let w = p.low(i).to_string();
        // between A and B / from A to B
        if (w == "between" || w == "from")
            && i + 1 < n
            && let Some((a, _, la)) = point(p, i + 1)
        {
            let k = i + 1 + la;
            if p.is(k, &["and", "to", "through", "until", "till"])
                && let Some((_, b_end, lb)) = point(p, k + 1)
            {
                p.dates.push(DateSpan { lo: Some(a), hi: Some(b_end) });
                p.take(i, k + 1 + lb);
                i = k + 1 + lb;
                continue;
            }
            if w == "from" {
                p.dates.push(DateSpan { lo: Some(a), hi: None });
                p.take(i, i + 1 + la);
                i += 1 + la;
                continue;
            }
        }
        let (cue_len, kind) = if p.is(i, &["before", "until", "till", "through"]) {
            (1, w.as_str())
        } else if w == "prior" && p.low(i + 1) == "to" {
            (2, "before")
        } else if (w == "earlier" || w == "later") && p.low(i + 1) == "than" {
            (2, if w == "earlier" { "before" } else { "after" })
        } else if w == "up" && p.low(i + 1) == "to" {
            (2, "until")
        } else if p.is(i, &["after", "since"]) {
            (1, w.as_str())
        } else if w == "on" && p.toks.get(i + 1).is_some_and(|t| iso_date(&t.low).is_some()) {
            (1, "on")
        } else {
            (0, "")
        };
        let kind = kind.to_string();
        if cue_len > 0
            && let Some((s, e, l)) = point(p, i + cue_len)
        {
            let span = match kind.as_str() {
                "before" => DateSpan { lo: None, hi: Some(s) },
                "until" | "till" | "through" => DateSpan { lo: None, hi: Some(e) },
                "after" => DateSpan { lo: Some(e), hi: None },
                "since" => DateSpan { lo: Some(s), hi: None },
                _ => DateSpan { lo: Some(s), hi: Some(e) },
            };
            p.dates.push(span);
            p.take(i, i + cue_len + l);
            i += cue_len + l;
            continue;
        }
        // A bare point, or "1994 to 1996" / "1994-1996".
        if let Some((s, e, l)) = point(p, i) {
            let k = i + l;
            if (p.is(k, &["to", "through", "until", "and"]) && !p.is(i.wrapping_sub(1), &["in", "during"])
                || p.is(k, &["to", "through", "until"]))
                && let Some((_, e2, l2)) = point(p, k + 1)
            {
                p.dates.push(DateSpan { lo: Some(s), hi: Some(e2) });
                p.take(i, k + 1 + l2);
                i = k + 1 + l2;
                continue;
            }
            p.dates.push(DateSpan { lo: Some(s), hi: Some(e) });
            p.take(i, k);
            // "in" / "during" before it belong to the date too.
            if i > 0 && p.is(i - 1, &["in", "during", "for", "of", "within"]) {
                p.used[i - 1] = true;
            }
            i = k;
            continue;
        }
        // "1994-1996"
        if let Some((a, b)) = w.split_once('-')
            && let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>())
            && (1900..=2100).contains(&a)
            && (1900..=2100).contains(&b)
            && a <= b
        {
            p.dates.push(DateSpan { lo: Some(ymd(a, 1, 1)), hi: Some(ymd(b + 1, 1, 1)) });
            p.take(i, i + 1);
        }
        i += 1;
    }
    // "all years", "any year", "all time", "no date filter", "remove the year filter"
    for i in 0..n {
        if p.is(i, &["all", "any", "every"]) && p.is(i + 1, &["years", "year", "time", "dates"]) {
            p.clear_dates = true;
            p.take(i, i + 2);
        }
        if p.is(i, &["remove", "drop", "without", "ignore", "no"])
            && let Some(j) = (i + 1..(i + 4).min(n)).find(|&j| p.is(j, &["year", "date", "time", "years", "dates"]))
        {
            p.clear_dates = true;
            p.take(i, j + 1);
            if p.is(j + 1, &["filter", "restriction", "condition"]) {
                p.take(j + 1, j + 2);
            }
        }
    }
}
