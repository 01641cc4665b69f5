//! Mentions of tables and columns (by word overlap with their names) and of measures no column
//! is named after.

use super::{DatePart, Mention, MentionKind, Parse, Tok, is_code, is_filler};
use crate::catalog::retrieve;
use crate::generate::offline::lexicon::word_score;
use crate::generate::offline::schema::{Col, ColInfo, Schema, TableInfo};

/// Words for measures that no column is named after.
fn pseudo_mention(stem: &str) -> Option<MentionKind> {
    match stem {
        "revenue" | "sale" | "turnover" | "income" | "earning" => Some(MentionKind::Revenue),
        "spent" | "spend" | "paid" | "spending" | "pay" | "purchase" | "value" | "worth" => Some(MentionKind::Money),
        "year" => Some(MentionKind::DatePart(DatePart::Year)),
        "month" => Some(MentionKind::DatePart(DatePart::Month)),
        _ => None,
    }
}

/// How well `phrase` (stems) names table `t`.
fn table_match(t: &TableInfo, phrase: &[&str]) -> f64 {
    let flat: String = phrase.concat();
    if flat == t.flat || retrieve::stem(&flat) == t.flat {
        return 1.0;
    }
    if phrase.len() == 1 && t.words.len() == 1 && word_score(phrase[0], &t.words[0]) >= 0.8 {
        return word_score(phrase[0], &t.words[0]).min(0.95);
    }
    if t.words.len() >= 2
        && phrase.len() == t.words.len()
        && phrase.iter().zip(&t.words).all(|(q, w)| word_score(q, w) >= 0.8)
    {
        return 0.9;
    }
    // "items" for `lineitem`: the head word of a compound name.
    if phrase.len() == 1 && t.words.len() >= 2 && t.words.last().is_some_and(|w| w == phrase[0]) {
        return 0.8;
    }
    0.0
}

/// Trailing words of a column name that say what kind of value it holds, not what about: a
/// name, a count or a unit (`city_name`, `citation_num`, `height_cm`, `range_miles`).
pub(super) const KIND_WORDS: &[&str] = &[
    "name", "number", "count", "cm", "mm", "km", "kg", "lb", "lbs", "mile", "mph", "usd", "eur", "pct", "percent",
    "sec", "ms",
];

/// How well `phrase` names column `c` of table `t`; the table's own words may qualify it
/// ("customer name" ↔ `customer.c_name`).
fn column_match(t: &TableInfo, c: &ColInfo, phrase: &[&str]) -> f64 {
    if c.banned || c.words.is_empty() {
        return 0.0;
    }
    let wants_key = phrase.iter().any(|w| matches!(*w, "key" | "id" | "identifier" | "code"));
    if c.key && !wants_key {
        return 0.0;
    }
    let mut matched = vec![false; c.words.len()];
    let mut own = 0.0;
    let mut qualifier = 0;
    for q in phrase {
        let best = c
            .words
            .iter()
            .enumerate()
            .map(|(k, w)| (k, word_score(q, w)))
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
        match best {
            Some((k, s)) if s >= 0.7 => {
                matched[k] = true;
                own += s;
            }
            _ => {
                // A qualifier names the table before the column's own words ("lake name"),
                // never after them ("states border" is no column of `border_info`).
                if own == 0.0 && (t.words.iter().any(|w| word_score(q, w) >= 0.8) || t.flat == *q) {
                    qualifier += 1;
                } else {
                    return 0.0;
                }
            }
        }
    }
    if own == 0.0 {
        return 0.0;
    }
    let covered = matched.iter().filter(|m| **m).count();
    let full = covered == c.words.len();
    let head = *matched.last().unwrap_or(&false);
    // "each city" ↔ `city_name`, "citations" ↔ `citation_num`, "height" ↔ `height_cm`: all but
    // a trailing word that only says what kind of value the column holds (a name, a count, a
    // unit).
    let named_by_rest = c.words.len() >= 2
        && c.words.last().is_some_and(|w| KIND_WORDS.contains(&w.as_str()))
        && !matched[c.words.len() - 1]
        && covered + 1 == c.words.len();
    if !(full || head || named_by_rest) {
        return 0.0;
    }
    // Unmatched words that merely repeat the table's name ("order" in o_orderpriority) still fit.
    let implied = c.words.iter().zip(&matched).filter(|(w, m)| !**m && t.words.iter().any(|tw| tw == *w)).count();
    let coverage = (covered + implied) as f64 / c.words.len() as f64;
    // "customer ID" for the key of table customer names it as exactly as `customer_id` does.
    if c.key && full && qualifier > 0 {
        return coverage + 0.5 + 0.3 * phrase.len() as f64;
    }
    coverage + own / phrase.len() as f64 * 0.5 + 0.3 * (phrase.len() - qualifier) as f64 + 0.1 * qualifier as f64
}

/// "type of food" ↔ `food_type`, "cost of round trip fares" ↔ `round_trip_cost`: a column's
/// last word, "of", and the words before it in the column's name.
fn find_of_columns(schema: &Schema, p: &mut Parse) {
    let n = p.toks.len();
    let free_word = |p: &Parse, j: usize| {
        j < n && !p.used[j] && p.toks[j].num.is_none() && !p.toks[j].quoted && !is_filler(&p.toks[j])
    };
    for i in 0..n {
        if !free_word(p, i) || !p.is(i + 1, &["of"]) {
            continue;
        }
        let b = if p.is(i + 2, &["the", "a", "an"]) { i + 3 } else { i + 2 };
        for len in (1..=2).rev() {
            if !(b..b + len).all(|j| free_word(p, j)) {
                continue;
            }
            // "number of line items": the words after "of" begin a table's name, so it counts
            // rows of that table (not `l_linenumber`).
            let next = (b..(b + len + 1).min(n)).map(|j| p.toks[j].stem.as_str()).collect::<Vec<_>>();
            if schema.tables.iter().any(|t| table_match(t, &next) >= 0.9) && next.len() > len {
                continue;
            }
            // The words after "of" first (`food_type`), or in the order written
            // (`num_enrolled` for "number of enrolled").
            let mut after: Vec<&str> = (b..b + len).map(|j| p.toks[j].stem.as_str()).collect();
            let head = p.toks[i].stem.as_str();
            // "number of students enrolled": a count column (`num_enrolled`) counts the rows
            // the table's name says, so that name is not one of its words.
            if matches!(head, "number" | "count") && len == 2 {
                let names_table = |w: &str| schema.tables.iter().any(|t| table_match(t, &[w]) >= 0.9);
                if let Some(k) = (0..2).find(|&k| names_table(after[k]) && !names_table(after[1 - k])) {
                    after.remove(k);
                }
            }
            // "number of reviews" where reviews are a table: a count of its rows.
            if matches!(head, "number" | "count") && schema.tables.iter().any(|t| table_match(t, &after) >= 0.9) {
                continue;
            }
            let len_words = after.len();
            // "the altitudes of the mountains": the words after "of" name the table itself,
            // which stays a mention of its own.
            let own_table = |c: &Col| table_match(&schema.tables[c.t], &after) >= 0.9;
            // A count column may say "count" where the question says "number" (`page_count`).
            let heads: &[&str] = if head == "number" { &["number", "count"] } else { &[head] };
            let orders: Vec<Vec<&str>> = heads
                .iter()
                .flat_map(|h| [[after.as_slice(), &[*h]].concat(), [&[*h], after.as_slice()].concat()])
                .collect();
            let mut cols: Vec<(Col, f64)> = schema
                .cols()
                .filter(|(col, ci)| !ci.key && !ci.banned && ci.words.len() == len_words + 1 && !own_table(col))
                .filter_map(|(col, ci)| {
                    let phrase =
                        orders.iter().find(|o| o.iter().zip(&ci.words).all(|(q, w)| word_score(q, w) >= 0.8))?;
                    Some((col, column_match(&schema.tables[col.t], ci, phrase)))
                })
                .filter(|(_, s)| *s > 0.0)
                .collect();
            if cols.is_empty() {
                continue;
            }
            cols.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
            p.mentions.push(Mention { start: i, end: b + len, kind: MentionKind::Columns(cols) });
            p.take(i, b + len);
            break;
        }
    }
}

/// Multi-word phrases that name every word of a column (`total price` ↔ `o_totalprice`).
pub(super) fn find_compound_columns(schema: &Schema, p: &mut Parse) {
    find_of_columns(schema, p);
    let n = p.toks.len();
    let mut i = 0;
    while i + 1 < n {
        let mut advanced = false;
        for len in (2..=3).rev() {
            if i + len > n
                || (i..i + len).any(|j| {
                    p.used[j]
                        || p.toks[j].num.is_some()
                        || p.toks[j].quoted
                        || (is_filler(&p.toks[j]) && !is_schema_filler(schema, &p.toks[j]))
                })
            {
                continue;
            }
            let phrase: Vec<&str> = (i..i + len).map(|j| p.toks[j].stem.as_str()).collect();
            // Every phrase word must be a word of the column itself (no table qualifiers here).
            let mut cols: Vec<(Col, f64)> = schema
                .cols()
                .filter(|(_, ci)| !ci.key && !ci.banned && ci.words.len() == len)
                .filter(|(_, ci)| phrase.iter().zip(&ci.words).all(|(q, w)| word_score(q, w) >= 0.8))
                .map(|(col, ci)| (col, column_match(&schema.tables[col.t], ci, &phrase)))
                .filter(|(_, s)| *s > 0.0)
                .collect();
            if cols.is_empty() {
                continue;
            }
            cols.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
            p.mentions.push(Mention { start: i, end: i + len, kind: MentionKind::Columns(cols) });
            p.take(i, i + len);
            i += len;
            advanced = true;
            break;
        }
        if !advanced {
            i += 1;
        }
    }
}

/// Mentions of tables and columns: longest windows of up to three free words first.
pub(super) fn find_mentions(schema: &Schema, p: &mut Parse) {
    let n = p.toks.len();
    let mut i = 0;
    while i < n {
        if p.used[i]
            || p.toks[i].num.is_some()
            || p.toks[i].quoted
            || is_code(&p.toks[i])
            || (is_filler(&p.toks[i])
                && pseudo_mention(&p.toks[i].stem).is_none()
                && !is_schema_filler(schema, &p.toks[i])
                && !listed_column(schema, p, i))
        {
            i += 1;
            continue;
        }
        let mut found: Option<(usize, MentionKind)> = None;
        for len in (1..=3).rev() {
            if i + len > n
                || (i..i + len).any(|j| p.used[j] || p.toks[j].num.is_some() || p.toks[j].quoted || is_code(&p.toks[j]))
            {
                continue;
            }
            // Inner filler words break a phrase ("balance of customers" is two mentions).
            if len > 1 && (i + 1..i + len).any(|j| is_filler(&p.toks[j]) && !is_schema_filler(schema, &p.toks[j])) {
                continue;
            }
            let phrase: Vec<&str> = (i..i + len).map(|j| p.toks[j].stem.as_str()).collect();
            let best_table = schema
                .tables
                .iter()
                .enumerate()
                .map(|(t, ti)| (t, table_match(ti, &phrase)))
                .filter(|(_, s)| *s > 0.0)
                .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
            let mut cols: Vec<(Col, f64)> = schema
                .cols()
                .map(|(col, ci)| (col, column_match(&schema.tables[col.t], ci, &phrase)))
                .filter(|(_, s)| *s > 0.0)
                .collect();
            cols.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
            if let Some(best) = cols.first().map(|c| c.1) {
                cols.retain(|c| c.1 >= best - 0.25);
            }
            // A table named outright beats a column that only shares a word with it, and a
            // table named exactly beats a column of another table that the words name only in
            // part, or that is only named after the table (`flight_leg.leg_flight` for
            // "flights": a reference to table flight).
            let weaker = |c: &Col, t: usize| {
                let ci = schema.col(*c);
                !ci.words.iter().all(|w| phrase.iter().any(|q| word_score(q, w) >= 0.7))
                    || ci.words.iter().all(|w| schema.tables[t].words.contains(w))
            };
            let table_wins = best_table.is_some_and(|(t, ts)| {
                cols.first().is_none_or(|(c, cs)| {
                    (ts >= 1.0 && c.t != t && weaker(c, t))
                        || ts >= 0.9
                            && (*cs < 1.6
                                || schema.col(*c).words.len() == 1
                                    && len == 1
                                    && !schema.col(*c).words.iter().any(|w| w == phrase[0]))
                })
            });
            if let (true, Some((t, _))) = (table_wins, best_table) {
                found = Some((len, MentionKind::Table(t)));
                break;
            }
            if !cols.is_empty() {
                found = Some((len, MentionKind::Columns(cols)));
                break;
            }
            if len == 1
                && let Some(k) = pseudo_mention(phrase[0])
            {
                found = Some((1, k));
                break;
            }
        }
        match found {
            Some((len, kind)) => {
                p.mentions.push(Mention { start: i, end: i + len, kind });
                p.take(i, i + len);
                i += len;
            }
            None => i += 1,
        }
    }
    p.mentions.sort_by_key(|m| m.start);
    table_amounts(schema, p);
}

/// "sales amount", "order value": a table's name and a generic word for money name that
/// table's one money column (`sales.sale_price`), not another table's `*_amount`.
fn table_amounts(schema: &Schema, p: &mut Parse) {
    let money = |ci: &ColInfo| {
        ci.kind == crate::generate::offline::schema::Kind::Number
            && !ci.key
            && ci.words.iter().any(|w| matches!(w.as_str(), "price" | "amount" | "cost" | "revenue" | "sale" | "fee"))
    };
    let mut k = 0;
    while k + 1 < p.mentions.len() {
        let (a, b) = (&p.mentions[k], &p.mentions[k + 1]);
        let generic = b.end == b.start + 1 && matches!(p.toks[b.start].stem.as_str(), "amount" | "value");
        if let (MentionKind::Table(t), true) = (&a.kind, generic && a.end == b.start) {
            let own: Vec<(Col, f64)> = schema.tables[*t]
                .cols
                .iter()
                .enumerate()
                .filter(|(_, ci)| money(ci))
                .map(|(c, _)| (Col { t: *t, c }, 2.0))
                .collect();
            if own.len() == 1 {
                let start = a.start;
                let end = b.end;
                p.mentions.splice(k..k + 2, [Mention { start, end, kind: MentionKind::Columns(own) }]);
            }
        }
        k += 1;
    }
}

/// A filler word that is also a column word of this schema ("date", "value" …) may still be a
/// mention.
/// "Return the car ID, make, model and year": a filler word that is the whole name of a
/// column, as an item of a comma-separated list, is that column.
fn listed_column(schema: &Schema, p: &Parse, i: usize) -> bool {
    let t = &p.toks[i];
    let in_list = (i > 0 && p.toks[i - 1].comma) || t.comma;
    in_list && schema.cols().any(|(_, c)| !c.key && c.words.len() == 1 && c.words[0] == t.stem)
}

fn is_schema_filler(schema: &Schema, t: &Tok) -> bool {
    matches!(t.stem.as_str(), "date" | "value" | "amount" | "time" | "number" | "name" | "rate")
        && schema.cols().any(|(_, c)| !c.key && c.words.contains(&t.stem))
}
