//! The lexicon: how names and questions become comparable words — splitting ([`words`]),
//! stemming ([`stem`]), abbreviations ([`expand`], [`is_abbreviation`]), compound segmentation
//! ([`segment`]), per-table column prefixes ([`table_prefix`]), the words of a column or table
//! ([`column_words`], [`table_words`]), how well two words match ([`term_score`]), and the word
//! lists behind them (abbreviations, synonyms, vocabulary, stopwords).

use std::collections::HashSet;

use crate::catalog::Table;

/// Words of an identifier or a sentence, lower-cased: split at anything not alphanumeric, at
/// camelCase boundaries (`customerId` → customer, id; `HTTPServer` → http, server) and between
/// letters and digits (`brand13` → brand, 13).
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_word(text, &mut |w| out.push(w.to_string()));
    out
}

/// [`words`] without allocating a vector: calls `f` with each lower-cased word.
pub fn for_each_word(text: &str, f: &mut dyn FnMut(&str)) {
    let mut cur = String::new();
    let mut prev: Option<char> = None;
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                f(&cur);
                cur.clear();
            }
            prev = None;
            continue;
        }
        if let (false, Some(p)) = (cur.is_empty(), prev) {
            let boundary = (p.is_lowercase() && c.is_uppercase())
                || (p.is_alphabetic() != c.is_alphabetic())
                || (p.is_uppercase() && c.is_uppercase() && it.peek().is_some_and(|n| n.is_lowercase()));
            if boundary {
                f(&cur);
                cur.clear();
            }
        }
        if c.is_ascii() {
            cur.push(c.to_ascii_lowercase());
        } else {
            cur.extend(c.to_lowercase());
        }
        prev = Some(c);
    }
    if !cur.is_empty() {
        f(&cur);
    }
}

/// Folds plurals and common verb endings so `customers`, `shipped` and `shipping` meet
/// `customer` and `ship`. Deliberately light: it only has to make two spellings of one schema
/// word agree, not produce English.
pub fn stem(word: &str) -> String {
    stem_cow(word).into_owned()
}

/// [`stem`] that borrows when nothing changes (most words).
pub fn stem_cow(word: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if word.bytes().any(|b| b.is_ascii_uppercase()) || !word.is_ascii() {
        return Cow::Owned(stem_owned(&word.to_lowercase()));
    }
    let n = word.len();
    let last = word.as_bytes().last().copied();
    if word == "ids" {
        return Cow::Borrowed("id"); // "the ids of …": the one short plural that names a column
    }
    if n <= 3 || !(last == Some(b's') || word.ends_with("ing") || word.ends_with("ed")) {
        return Cow::Borrowed(word);
    }
    Cow::Owned(stem_owned(word))
}

fn stem_owned(word: &str) -> String {
    let w = word.to_string();
    let n = w.len();
    if w == "ids" {
        return "id".into();
    }
    if n <= 3 || !w.is_ascii() {
        return w;
    }
    if let Some(b) = w.strip_suffix("ies").or_else(|| w.strip_suffix("ied")).filter(|b| b.len() >= 2) {
        return format!("{b}y");
    }
    if w.ends_with("sses") {
        return w[..n - 2].to_string();
    }
    for suffix in ["xes", "ches", "shes", "zes"] {
        if let Some(b) = w.strip_suffix(suffix) {
            return format!("{b}{}", &suffix[..suffix.len() - 2]);
        }
    }
    if w.ends_with('s') && !(w.ends_with("ss") || w.ends_with("us") || w.ends_with("is")) {
        return w[..n - 1].to_string();
    }
    let undouble = |b: &str| -> String {
        let bytes = b.as_bytes();
        let l = bytes.len();
        if l >= 3 && bytes[l - 1] == bytes[l - 2] && !matches!(bytes[l - 1], b'l' | b's' | b'z' | b'e' | b'o') {
            b[..l - 1].to_string()
        } else {
            b.to_string()
        }
    };
    if n >= 6 {
        if let Some(b) = w.strip_suffix("ing").filter(|b| b.len() >= 4) {
            return undouble(b);
        }
        if let Some(b) = w.strip_suffix("ed").filter(|b| b.len() >= 4 && !b.ends_with('e')) {
            return undouble(b);
        }
    }
    w
}

/// Common abbreviations in column names and what they stand for. Generic database shorthand,
/// not any one schema's.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("acct", "account"),
    ("acc", "account"),
    ("addr", "address"),
    ("amt", "amount"),
    ("avail", "available"),
    ("bal", "balance"),
    ("cat", "category"),
    ("cnt", "count"),
    ("ctry", "country"),
    ("cust", "customer"),
    ("desc", "description"),
    ("dept", "department"),
    ("dob", "birthdate"),
    ("dt", "date"),
    ("emp", "employee"),
    ("ext", "extended"),
    ("instr", "instruction"),
    ("instruct", "instruction"),
    ("inv", "invoice"),
    ("mfgr", "manufacturer"),
    ("mfr", "manufacturer"),
    ("mgr", "manager"),
    ("mkt", "market"),
    ("nbr", "number"),
    ("num", "number"),
    ("ord", "order"),
    ("org", "organization"),
    ("pct", "percent"),
    ("prod", "product"),
    ("qty", "quantity"),
    ("supp", "supplier"),
    ("tot", "total"),
    ("ts", "timestamp"),
    ("txn", "transaction"),
    ("usr", "user"),
    ("val", "value"),
    ("yr", "year"),
];

/// Words that mean the same thing in questions and schemas (both directions).
pub(super) const SYNONYMS: &[(&str, &str)] = &[
    ("country", "nation"),
    ("client", "customer"),
    ("buyer", "customer"),
    ("vendor", "supplier"),
    ("product", "part"),
    ("item", "part"),
    ("sale", "revenue"),
    ("revenue", "price"),
    ("revenue", "amount"),
    ("cost", "price"),
    ("spend", "price"),
    ("spent", "price"),
    ("money", "price"),
    ("amount", "price"),
    ("value", "price"),
    ("quantity", "qty"),
    ("manufacturer", "mfgr"),
];

/// Words segmentation knows, so that `mktsegment` reads as market + segment. General
/// data-warehouse vocabulary plus the abbreviations above.
const VOCABULARY: &[&str] = &[
    "account",
    "active",
    "address",
    "age",
    "amount",
    "available",
    "avg",
    "balance",
    "bill",
    "billing",
    "birth",
    "brand",
    "budget",
    "category",
    "channel",
    "city",
    "class",
    "clerk",
    "click",
    "code",
    "comment",
    "commit",
    "company",
    "container",
    "cost",
    "count",
    "country",
    "created",
    "currency",
    "customer",
    "date",
    "day",
    "deleted",
    "delivery",
    "department",
    "description",
    "discount",
    "due",
    "email",
    "employee",
    "end",
    "event",
    "extended",
    "fee",
    "first",
    "flag",
    "from",
    "gender",
    "group",
    "hire",
    "hour",
    "id",
    "instruction",
    "invoice",
    "item",
    "key",
    "kind",
    "last",
    "level",
    "line",
    "list",
    "location",
    "manager",
    "manufacturer",
    "market",
    "max",
    "min",
    "mode",
    "month",
    "name",
    "nation",
    "net",
    "number",
    "order",
    "paid",
    "part",
    "payment",
    "percent",
    "phone",
    "price",
    "priority",
    "product",
    "profit",
    "quantity",
    "rank",
    "rate",
    "rating",
    "receipt",
    "region",
    "retail",
    "return",
    "revenue",
    "sale",
    "sales",
    "salary",
    "score",
    "segment",
    "session",
    "ship",
    "shipment",
    "size",
    "sku",
    "source",
    "start",
    "state",
    "status",
    "store",
    "sub",
    "supplier",
    "supply",
    "tax",
    "time",
    "timestamp",
    "title",
    "to",
    "total",
    "type",
    "unit",
    "updated",
    "user",
    "value",
    "vendor",
    "weight",
    "year",
    "zip",
];

/// The full word for an abbreviation (`cust` → customer), or the word itself.
pub fn expand(word: &str) -> &str {
    ABBREVIATIONS.iter().find(|(a, _)| *a == word).map(|(_, f)| *f).unwrap_or(word)
}

/// Splits a compound word into known words (`acctbal` → acct, bal; `orderdate` → order, date)
/// by dynamic programming over [`VOCABULARY`] and [`ABBREVIATIONS`]; unknown stretches stay whole.
pub fn segment(word: &str) -> Vec<String> {
    let w = word.to_ascii_lowercase();
    let n = w.len();
    if n <= 3 || !w.is_ascii() || is_word(&w) {
        return vec![w];
    }
    // cost[i]: best cost of w[..i]; known piece 1, unknown char 3 (merged into runs after).
    let mut cost = vec![f64::INFINITY; n + 1];
    let mut back: Vec<(usize, bool)> = vec![(0, false); n + 1];
    cost[0] = 0.0;
    for i in 0..n {
        if cost[i].is_infinite() {
            continue;
        }
        for j in (i + 2)..=n.min(i + 14) {
            if is_word(&w[i..j]) && cost[i] + 1.0 < cost[j] {
                cost[j] = cost[i] + 1.0;
                back[j] = (i, true);
            }
        }
        if cost[i] + 3.0 < cost[i + 1] {
            cost[i + 1] = cost[i] + 3.0;
            back[i + 1] = (i, false);
        }
    }
    let mut pieces: Vec<(String, bool)> = Vec::new();
    let mut j = n;
    while j > 0 {
        let (i, known) = back[j];
        pieces.push((w[i..j].to_string(), known));
        j = i;
    }
    pieces.reverse();
    let mut out: Vec<String> = Vec::new();
    let mut unknown = String::new();
    for (p, known) in pieces {
        if known {
            if !unknown.is_empty() {
                out.push(std::mem::take(&mut unknown));
            }
            out.push(p);
        } else {
            unknown.push_str(&p);
        }
    }
    if !unknown.is_empty() {
        out.push(unknown);
    }
    // A segmentation that leaves short unknown scraps is worse than the whole word, and so is
    // a known word followed by a short unknown rest: that is one English word the vocabulary
    // lacks (`min` + `imum`, `part` + `ner`, `list` + `ing`), not a compound.
    if out.iter().any(|p| !is_word(p) && p.len() < 3)
        || out.windows(2).any(|w| is_word(&w[0]) && !is_word(&w[1]) && w[1].len() < 5)
    {
        return vec![w];
    }
    out
}

/// Whether `w` is a word of the vocabulary or an abbreviation it knows.
pub fn is_word(w: &str) -> bool {
    static WORDS: std::sync::LazyLock<HashSet<&'static str>> =
        std::sync::LazyLock::new(|| VOCABULARY.iter().copied().chain(ABBREVIATIONS.iter().map(|(a, _)| *a)).collect());
    WORDS.contains(w)
}

/// The column-name prefix shared by a table's columns (`c_` in `customer`), if most columns
/// carry one. Prefixes carry no meaning of their own and would otherwise match at random.
pub fn table_prefix(table: &Table) -> Option<String> {
    let cols = &table.columns;
    if cols.len() < 2 {
        return None;
    }
    let prefix_of =
        |name: &str| -> Option<usize> { name.find('_').filter(|&pos| (1..=4).contains(&pos) && pos + 1 < name.len()) };
    // The prefix of the first prefixed column is the only candidate worth counting in practice;
    // try the first two distinct ones to survive one odd column.
    let mut tried: Vec<&str> = Vec::new();
    for c in cols.iter().take(3) {
        let Some(pos) = prefix_of(&c.name) else { continue };
        let p = &c.name[..=pos];
        if tried.contains(&p) {
            continue;
        }
        tried.push(p);
        let n = cols.iter().filter(|c| has_prefix(&c.name, p)).count();
        if n >= 2 && n * 10 >= cols.len() * 6 {
            return Some(p.to_ascii_lowercase());
        }
    }
    joined_prefix(table)
}

/// A prefix every table name of a database shares and that means nothing (`sb` in
/// `sbcustomer`, `sbticker`, `sbtransaction`): two or three letters, not a word, in front of at
/// least three names that each go on for at least three more letters. Stripped, the names say
/// what the tables hold (`customer`), which is what key columns (`sbtxcustid`) refer to.
pub fn shared_table_prefix<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let names: Vec<String> = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
    if names.len() < 3 || names.iter().any(|n| !n.chars().all(|c| c.is_ascii_alphanumeric())) {
        return None;
    }
    let first = names[0].as_bytes();
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(first.iter().zip(n.as_bytes()).take_while(|(a, b)| a == b).count());
    }
    let p = &names[0][..len];
    if !(2..=3).contains(&len) || is_word(p) || names.iter().any(|n| n.len() < len + 3) {
        return None;
    }
    Some(p.to_string())
}

/// A prefix without a separator that every column shares (`sbcust` in `sbcustid`,
/// `sbcustname`, `sbcustemail`, as camelCase names read once folded to lower case): only when
/// no column has a separator, there are at least three, and every column goes on for at least
/// two more letters after it.
fn joined_prefix(table: &Table) -> Option<String> {
    let cols = &table.columns;
    if cols.len() < 3 || cols.iter().any(|c| !c.name.chars().all(|ch| ch.is_ascii_alphanumeric())) {
        return None;
    }
    let names: Vec<String> = cols.iter().map(|c| c.name.to_ascii_lowercase()).collect();
    let first = names[0].as_bytes();
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(first.iter().zip(n.as_bytes()).take_while(|(a, b)| a == b).count());
    }
    // The shared part must not be a whole word of a name (`home` in `homepage`, `homeaddr`).
    let p = &names[0][..len];
    if !(2..=8).contains(&len) || names.iter().any(|n| n.len() < len + 2) || is_word(p) || is_word(expand(p)) {
        return None;
    }
    Some(p.to_string())
}

/// A column's name without the table's shared prefix (`c_acctbal` → `acctbal`).
pub fn strip_prefix<'a>(name: &'a str, prefix: Option<&str>) -> &'a str {
    match prefix {
        Some(p) if has_prefix(name, p) => &name[p.len()..],
        _ => name,
    }
}

/// `name` is longer than `prefix` and starts with it, ignoring ASCII case. Byte offsets are
/// only used where they fall on a character boundary, so any Unicode identifier is safe.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() > prefix.len() && name.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// The meaning-bearing words of a column name: prefix stripped, split, compounds segmented,
/// abbreviations expanded and stemmed (`c_acctbal` → account, balance; `o_custkey` → customer,
/// key).
pub fn column_words(name: &str, prefix: Option<&str>) -> Vec<String> {
    words(strip_prefix(name, prefix)).iter().flat_map(|w| segment(w)).map(|w| stem(expand(&w))).collect()
}

/// The words of a table name, like [`column_words`] (`lineitem` → line, item).
pub fn table_words(name: &str) -> Vec<String> {
    column_words(name, None)
}

/// Whether `short` abbreviates `long`: same first letter, at least three letters, every letter
/// of `short` found in order in `long` (`acct` ↔ account, `qty` ↔ quantity, `bal` ↔ balance).
pub fn is_abbreviation(short: &str, long: &str) -> bool {
    if short.len() < 3 || short.len() >= long.len() || short.as_bytes()[0] != long.as_bytes()[0] {
        return false;
    }
    let mut it = long.bytes();
    short.bytes().all(|c| it.any(|l| l == c))
}

/// How well a (stemmed) question word `q` matches a (stemmed) name word `t`: 1 exact, 0.8 an
/// abbreviation either way, 0.7 a whole end of a compound (`price` in `totalprice`), 0.6 an
/// abbreviated end of a compound (`bal` in `acctbal` for balance), 0.5 inside a compound, else 0.
pub fn term_score(q: &str, t: &str) -> f64 {
    if q == t {
        return 1.0;
    }
    if q.len() < 3 || t.len() < 3 {
        return 0.0;
    }
    if is_abbreviation(t, q) || is_abbreviation(q, t) {
        return 0.8;
    }
    if t.len() > q.len() && (t.starts_with(q) || t.ends_with(q)) {
        return 0.7;
    }
    if t.len() >= 6 {
        // An abbreviated piece at either end of a compound: acct|bal.
        let bytes = t.as_bytes();
        for cut in 3..=(t.len() - 3) {
            if !t.is_char_boundary(cut) {
                continue;
            }
            let (head, tail) = (&t[..cut], &t[cut..]);
            let matches = (bytes[0] == q.as_bytes()[0] && is_abbreviation(head, q))
                || (tail.as_bytes()[0] == q.as_bytes()[0] && (tail == q || is_abbreviation(tail, q)));
            // Only where one side is a known word: acct|bal, not rev|iew.
            if matches && (is_word(head) || is_word(tail)) {
                return 0.6;
            }
        }
        if q.len() >= 4 && t.contains(q) {
            return 0.5;
        }
    }
    0.0
}

/// Question words that say nothing about which table is meant.
pub(super) const STOPWORDS: &[&str] = &[
    "a", "about", "all", "an", "and", "any", "are", "as", "at", "be", "been", "by", "can", "did", "do", "doe", "does",
    "each", "every", "for", "from", "give", "had", "has", "have", "how", "i", "in", "is", "it", "its", "list", "many",
    "me", "most", "much", "of", "on", "or", "our", "per", "please", "show", "than", "that", "the", "their", "there",
    "these", "they", "this", "those", "to", "top", "was", "we", "were", "what", "when", "where", "which", "who",
    "whose", "with", "within", "number", "count", "total", "average", "sum", "highest", "lowest", "largest",
    "smallest", "least", "between", "during", "after", "before", "since", "until", "more", "less", "over", "under",
    "above", "below", "greater", "fewer", "most", "into", "across", "ha", "get", "find", "tell", "name", "names",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::retrieve::tests::{table, tpch};

    #[test]
    fn words_split_snake_camel_and_digits() {
        assert_eq!(words("o_custkey"), ["o", "custkey"]);
        assert_eq!(words("customerId"), ["customer", "id"]);
        assert_eq!(words("HTTPServerName"), ["http", "server", "name"]);
        assert_eq!(words("Brand#13"), ["brand", "13"]);
        assert_eq!(words("How many customers?"), ["how", "many", "customers"]);
    }

    #[test]
    fn stems_fold_plurals_and_verb_endings() {
        for (w, s) in [
            ("customers", "customer"),
            ("countries", "country"),
            ("supplied", "supply"),
            ("boxes", "box"),
            ("status", "status"),
            ("shipped", "ship"),
            ("shipping", "ship"),
            ("ordered", "order"),
            ("class", "class"),
            ("nations", "nation"),
        ] {
            assert_eq!(stem(w), s, "{w}");
        }
    }

    #[test]
    fn compound_column_names_read_as_words() {
        assert_eq!(column_words("c_acctbal", Some("c_")), ["account", "balance"]);
        assert_eq!(column_words("o_orderdate", Some("o_")), ["order", "date"]);
        assert_eq!(column_words("l_extendedprice", Some("l_")), ["extend", "price"]);
        assert_eq!(column_words("c_mktsegment", Some("c_")), ["market", "segment"]);
        assert_eq!(column_words("ps_availqty", Some("ps_")), ["available", "quantity"]);
        assert_eq!(column_words("customer_id", None), ["customer", "id"]);
        assert_eq!(column_words("shipMode", None), ["ship", "mode"]);
        assert_eq!(table_words("lineitem"), ["line", "item"]);
    }

    #[test]
    fn terms_match_exactly_by_abbreviation_and_inside_compounds() {
        assert_eq!(term_score("customer", "customer"), 1.0);
        assert_eq!(term_score("customer", "cust"), 0.8);
        assert_eq!(term_score("price", "totalprice"), 0.7);
        assert_eq!(term_score("balance", "acctbal"), 0.6);
        assert_eq!(term_score("account", "acctbal"), 0.6);
        assert_eq!(term_score("order", "region"), 0.0);
        assert!(term_score("part", "department") < 0.6);
    }

    #[test]
    fn prefixes_are_found_only_when_most_columns_share_them() {
        let t = tpch();
        assert_eq!(table_prefix(&t[0]).as_deref(), Some("c_"));
        assert_eq!(table_prefix(&t[5]).as_deref(), Some("ps_"));
        assert_eq!(
            table_prefix(&table("events", &[("id", "BIGINT"), ("user_id", "BIGINT"), ("at", "TIMESTAMP")])),
            None
        );
    }
}
