//! Cue words: counting, aggregates, superlatives, top N, grouping, listing, ordering.

use super::dates::year_of;
use super::{Agg, DatePart, Dir, Implied, Mention, MentionKind, Parse};
use crate::generate::offline::lexicon::number_word;

/// "in descending order", "in alphabetical order": the word "order" after a direction is part
/// of the cue, not a table or column named "order".
fn take_order_word(p: &mut Parse, i: usize) {
    if p.is(i + 1, &["order"]) && p.free(i + 1) {
        p.take(i + 1, i + 2);
        if i > 0 && p.is(i - 1, &["in"]) && p.free(i - 1) {
            p.take(i - 1, i);
        }
    }
}

/// Superlatives that can end an order range ("… to lowest").
const RANGE_ENDS: &[&str] = &[
    "highest", "lowest", "largest", "smallest", "most", "least", "best", "worst", "biggest", "fewest", "greatest",
    "top", "bottom", "oldest", "newest", "earliest", "latest", "cheapest", "priciest", "longest", "shortest",
    "heaviest", "lightest",
];

/// For a superlative at `i`: the tokens `[to, end)` of "… to (the) <superlative>" within four
/// words after it.
fn range_to(p: &Parse, i: usize) -> Option<(usize, usize)> {
    (i + 1..=i + 4).find_map(|j| {
        if !p.is(j, &["to"]) {
            return None;
        }
        let k = if p.is(j + 1, &["the"]) { j + 2 } else { j + 1 };
        (RANGE_ENDS.contains(&p.low(k)) && (j..=k).all(|x| p.free(x))).then_some((j, k + 1))
    })
}

/// Cue words: counting, aggregates, superlatives, top N, grouping, listing, ordering.
pub(super) fn find_cues(p: &mut Parse) {
    let mut i = 0;
    while let Some(at) = p.next_free(i) {
        i = at;
        let w = p.low(i).to_string();
        let next = p.low(i + 1).to_string();
        match w.as_str() {
            "how" if next == "many" => {
                p.count = Some(i + 2);
                p.take(i, i + 2);
                i += 2;
                continue;
            }
            "how" if next == "much" => {
                p.how_much = true;
                p.aggs.push((Agg::Sum, i + 2));
                p.take(i, i + 2);
                i += 2;
                continue;
            }
            "number" | "count" | "counts" if next == "of" || (w != "number" && i == 0) => {
                p.count = Some(i + if next == "of" { 2 } else { 1 });
                p.take(i, i + if next == "of" { 2 } else { 1 });
                i += 2;
                continue;
            }
            "count" | "counts" => {
                p.count = Some(i + 1);
                p.take(i, i + 1);
            }
            "total" | "sum" | "overall" if w != "overall" || next == "total" => {
                p.aggs.push((Agg::Sum, i + 1));
                p.take(i, i + 1);
            }
            "combined" | "altogether" => {
                p.aggs.push((Agg::Sum, i));
                p.take(i, i + 1);
            }
            "average" | "avg" | "mean" | "typical" => {
                p.aggs.push((Agg::Avg, i + 1));
                p.take(i, i + 1);
            }
            "maximum" | "max" => {
                p.aggs.push((Agg::Max, i + 1));
                p.take(i, i + 1);
            }
            "minimum" | "min" => {
                p.aggs.push((Agg::Min, i + 1));
                p.take(i, i + 1);
            }
            "distinct" | "different" | "unique" => {
                p.distinct = true;
                p.take(i, i + 1);
            }
            "most" | "least" => {
                let dir = if w == "most" { Dir::Desc } else { Dir::Asc };
                let (implied, len) = match next.as_str() {
                    "expensive" | "costly" | "valuable" => (Implied::Price, 2),
                    "recent" | "recently" => (Implied::Date, 2),
                    "common" | "frequent" | "frequently" | "popular" | "often" | "used" => (Implied::Frequency, 2),
                    _ => (Implied::None, 1),
                };
                let dir = if implied == Implied::Date { Dir::Desc } else { dir };
                // "the top 3 most common …": what "most" implies refines a bare "top".
                match p.sup {
                    Some((d, _, Implied::None)) if implied != Implied::None && d == dir => {
                        p.sup = Some((dir, i + len, implied));
                    }
                    _ => {
                        p.sup.get_or_insert((dir, i + len, implied));
                    }
                }
                // "most frequently used": the participle belongs to the cue.
                let len = if implied == Implied::Frequency && p.is(i + len, &["used", "bought", "sold", "ordered"]) {
                    len + 1
                } else {
                    len
                };
                if let Some(s) = p.sup.as_mut().filter(|s| s.2 == Implied::Frequency) {
                    s.1 = i + len;
                }
                p.take(i, i + len);
                i += len;
                continue;
            }
            "highest" | "largest" | "biggest" | "greatest" | "best" | "top" | "maximal" | "priciest" | "heaviest"
            | "longest" | "lowest" | "smallest" | "fewest" | "bottom" | "worst" | "cheapest" | "minimal"
            | "lightest" | "shortest" | "earliest" | "oldest" | "latest" | "newest" | "first" | "last" => {
                let dir = match w.as_str() {
                    "lowest" | "smallest" | "fewest" | "bottom" | "worst" | "cheapest" | "minimal" | "lightest"
                    | "shortest" | "earliest" | "oldest" | "first" => Dir::Asc,
                    _ => Dir::Desc,
                };
                // "from highest to lowest", "starting from the best ratings to the lowest": an
                // order over every row or group, not a pick of the top ones.
                if let Some((to, end)) = range_to(p, i) {
                    p.order_dir = Some(dir);
                    p.range_order = Some(dir);
                    p.sort_cues.push(i + 1);
                    if i > 0 && p.is(i - 1, &["from"]) && p.free(i - 1) {
                        p.take(i - 1, i);
                    }
                    p.take(i, i + 1);
                    p.take(to, end);
                    i += 1;
                    continue;
                }
                let implied = match w.as_str() {
                    "priciest" | "cheapest" => Implied::Price,
                    "largest" | "biggest" | "smallest" => Implied::Size,
                    "earliest" | "oldest" | "latest" | "newest" | "first" | "last" => Implied::Date,
                    _ => Implied::None,
                };
                // "first"/"last" only count as superlatives before a number or a date word.
                if (w == "first" || w == "last")
                    && !(p.toks.get(i + 1).is_some_and(|t| t.num.is_some() || number_word(&t.low).is_some()))
                {
                    i += 1;
                    continue;
                }
                let implied = if (w == "first" || w == "last")
                    && p.toks.get(i + 1).is_some_and(|t| t.num.is_some() || number_word(&t.low).is_some())
                {
                    Implied::None
                } else {
                    implied
                };
                p.sup.get_or_insert((dir, i + 1, implied));
                p.take(i, i + 1);
                if let Some(k) = p.toks.get(i + 1).and_then(|t| {
                    t.num
                        .filter(|v| v.fract() == 0.0 && *v >= 1.0 && *v <= 10_000.0 && year_of(t).is_none())
                        .map(|v| v as usize)
                        .or_else(|| number_word(&t.low))
                })
                    && p.free(i + 1) {
                        p.limit = Some(k);
                        p.take(i + 1, i + 2);
                        i += 2;
                        continue;
                    }
            }
            "expensive" | "costly" | "pricey" => {
                p.sup.get_or_insert((Dir::Desc, i + 1, Implied::Price));
                p.take(i, i + 1);
            }
            "cheap" | "inexpensive" => {
                p.sup.get_or_insert((Dir::Asc, i + 1, Implied::Price));
                p.take(i, i + 1);
            }
            "recent" | "recently" => {
                p.sup.get_or_insert((Dir::Desc, i + 1, Implied::Date));
                p.take(i, i + 1);
            }
            "ascending" | "asc" | "increasing" | "alphabetical" | "alphabetically" => {
                p.order_dir = Some(Dir::Asc);
                p.take(i, i + 1);
                take_order_word(p, i);
            }
            "descending" | "desc" | "decreasing" | "reverse" | "reversed" => {
                p.order_dir = Some(if w.starts_with("rev") { p.order_dir.map_or(Dir::Asc, |d| d) } else { Dir::Desc });
                if w.starts_with("rev") {
                    p.order_dir = None;
                    p.sort_cues.push(usize::MAX); // "reverse the order": flip
                }
                p.take(i, i + 1);
                take_order_word(p, i);
            }
            "per" | "each" | "every" => {
                p.group_cues.push(i + 1);
                p.take(i, i + 1);
            }
            "yearly" | "annual" | "annually" | "monthly" => {
                let part = if w == "monthly" { DatePart::Month } else { DatePart::Year };
                p.mentions.push(Mention { start: i, end: i + 1, kind: MentionKind::DatePart(part) });
                p.group_cues.push(i);
                p.take(i, i + 1);
            }
            "by" | "across" => {
                // The word before, looking past a date ("made in 1992 by customers …").
                let mut j = i;
                while j > 0 && (p.dated[j - 1] || p.is(j - 1, &["in", "during", "on", "at", "for"])) {
                    j -= 1;
                }
                // "Order the results by …", "sort them by …": past what is ordered.
                let mut k = j;
                while k > 0 && p.is(k - 1, &["the", "results", "result", "them", "it", "rows", "list", "these", "output"]) {
                    k -= 1;
                }
                if k < j && k > 0 && p.is(k - 1, &["order", "sort", "rank"]) {
                    p.take(k - 1, j);
                    j = k;
                }
                let prev = if j > 0 { p.low(j - 1).to_string() } else { String::new() };
                if matches!(prev.as_str(), "sorted" | "ordered" | "order" | "sort" | "ranked" | "rank") {
                    p.sort_cues.push(i + 1);
                } else if matches!(prev.as_str(), "grouped" | "group" | "broken" | "down" | "split" | "segmented")
                    || !(prev.ends_with("ed")
                        || matches!(
                            prev.as_str(),
                            "made" | "sold" | "paid" | "placed" | "bought" | "held" | "owned" | "run"
                        ))
                {
                    p.group_cues.push(i + 1);
                    if w == "by" {
                        p.by_cues.push(i + 1);
                    }
                }
                p.take(i, i + 1);
            }
            "remove" | "drop" | "without" | "ignore" | "clear" => {
                p.removals.push(i + 1);
                p.take(i, i + 1);
            }
            "list" | "show" | "which" | "what" | "who" | "name" | "find" | "give" | "display" | "return" | "get"
                // "name" is a cue only at the start ("name the suppliers in …"); "what is the …"
                // asks for a value, not for rows.
                if (w != "name" || i == 0) && !(w == "what" && matches!(next.as_str(), "is" | "was" | "s")) => {
                    p.focus_cues.push(i + 1);
                    p.take(i, i + 1);
                }
            "in" if next == "each" || next == "every" => {
                p.group_cues.push(i + 2);
                p.take(i, i + 2);
                i += 2;
                continue;
            }
            "for" if next == "each" || next == "every" => {
                p.group_cues.push(i + 2);
                p.take(i, i + 2);
                i += 2;
                continue;
            }
            _ => {}
        }
        // Top N / N largest / the 5 customers: a free small integer or number word.
        if p.free(i) && p.limit.is_none() {
            let t = &p.toks[i];
            let k = t
                .num
                .filter(|v| v.fract() == 0.0 && *v >= 1.0 && *v <= 10_000.0 && year_of(t).is_none())
                .map(|v| v as usize)
                .or_else(|| number_word(&t.low).filter(|_| i > 0));
            let before = if i > 0 { p.low(i - 1).to_string() } else { String::new() };
            if let Some(k) = k
                && (matches!(
                    before.as_str(),
                    "top"
                        | "which"
                        | "what"
                        | "the"
                        | "list"
                        | "show"
                        | "first"
                        | "bottom"
                        | "name"
                        | "find"
                        | "give"
                        | "are"
                        | "me"
                        | "only"
                        | "just"
                        | "last"
                ) || p.toks.get(i + 1).is_some_and(|t| matches!(t.low.as_str(), "instead" | "rows" | "results"))
                    || i == 0)
            {
                p.limit = Some(k);
                p.take(i, i + 1);
                if before == "bottom" {
                    p.sup.get_or_insert((Dir::Asc, i + 1, Implied::None));
                }
            }
        }
        i += 1;
    }
}
