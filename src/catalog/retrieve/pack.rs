//! Packing and rendering: the schema text a prompt carries. Packing ([`pack`]) is a greedy
//! knapsack over rendered lines inside a token budget ([`estimate_tokens`]); [`render_schema`]
//! renders chosen tables whole in the same format.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::RetrieveOptions;
use super::joins::{JoinEdge, JoinGraph};
use super::lexicon::{column_words, stem, table_prefix, term_score, words};
use crate::catalog::{Column, Table};

/// A rough token estimate (about four characters per token for English and SQL identifiers).
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Room for the `  (N more columns not shown)` line a table may get.
const MORE_COLUMNS_LINE: usize = 34;

pub(super) struct Packed {
    pub(super) order: Vec<usize>,
    pub(super) text: String,
}

/// One line (or line suffix) that may go into the schema text.
struct Item {
    table: usize,
    /// Column position; `None` for the table header.
    column: Option<usize>,
    samples: bool,
    priority: f64,
    chars: usize,
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header_line(t: &Table) -> String {
    let mut out = format!("table {}", t.name);
    if let Some(comment) = t.comment.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let _ = write!(out, " -- {}", one_line(comment));
    }
    out.push('\n');
    out
}

fn column_line(c: &Column, partition: bool) -> String {
    let mut out = format!("  - {} {}", c.name, c.data_type);
    if partition {
        out.push_str(" [partition key]");
    }
    if let Some(comment) = c.comment.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        let _ = write!(out, " -- {}", one_line(comment));
    }
    out.push('\n');
    out
}

fn samples_suffix(c: &Column) -> String {
    let vals: Vec<String> = c.sample_values.iter().map(|v| format!("'{}'", one_line(v).replace('\'', "''"))).collect();
    format!(" (values include {})", vals.join(", "))
}

fn all_columns(t: &Table) -> impl Iterator<Item = (&Column, bool)> {
    t.columns.iter().map(|c| (c, false)).chain(t.partition_keys.iter().map(|c| (c, true)))
}

/// Whether a column is named in the question (some term matches one of its words well).
fn column_matches(c: &Column, prefix: Option<&str>, terms: &[&str]) -> bool {
    let ws = column_words(&c.name, prefix);
    terms.iter().any(|q| ws.iter().any(|w| term_score(q, w) >= 0.6))
        || terms.iter().any(|q| c.sample_values.iter().any(|v| words(v).iter().any(|w| stem(w) == *q)))
}

pub(super) fn pack(
    tables: &[&Table],
    graph: &JoinGraph,
    must: &[usize],
    optional: &[usize],
    terms: &[&str],
    opts: &RetrieveOptions<'_>,
) -> Packed {
    let budget_chars = opts.max_tokens.max(1) * 4;
    let joins_line = |e: &JoinEdge| {
        format!("  - {}.{} = {}.{}\n", tables[e.from].name, e.from_column, tables[e.to].name, e.to_column)
    };
    let mut items: Vec<Item> = Vec::new();
    let mut used = 0usize;
    let mut included_header: HashSet<usize> = HashSet::new();
    let mut included: HashSet<(usize, usize)> = HashSet::new();
    let mut included_samples: HashSet<(usize, usize)> = HashSet::new();

    // Must tables: header, keys and matching columns, unconditionally.
    let key_cols: HashSet<(usize, &str)> =
        graph.edges.iter().flat_map(|e| [(e.from, e.from_column.as_str()), (e.to, e.to_column.as_str())]).collect();
    for (rank, &t) in must.iter().enumerate() {
        let table = tables[t];
        used += header_line(table).len() + MORE_COLUMNS_LINE;
        included_header.insert(t);
        let prefix = table_prefix(table);
        for (pos, (c, part)) in all_columns(table).enumerate() {
            let essential =
                part || key_cols.contains(&(t, c.name.as_str())) || column_matches(c, prefix.as_deref(), terms);
            let line = column_line(c, part).len();
            if essential {
                used += line;
                included.insert((t, pos));
            } else {
                items.push(Item {
                    table: t,
                    column: Some(pos),
                    samples: false,
                    priority: 60.0 - rank as f64 - pos as f64 * 0.01,
                    chars: line,
                });
            }
            if !c.sample_values.is_empty() && opts.sample_values {
                let p = if essential { 70.0 } else { 59.0 } - rank as f64 - pos as f64 * 0.01;
                items.push(Item {
                    table: t,
                    column: Some(pos),
                    samples: true,
                    priority: p,
                    chars: samples_suffix(c).len(),
                });
            }
        }
    }
    // Join lines among must tables are essential too.
    let joins_header = "joins:\n".len();
    let mut join_chars = 0;
    for e in &graph.edges {
        if must.contains(&e.from) && must.contains(&e.to) {
            join_chars += joins_line(e).len();
        }
    }
    if join_chars > 0 {
        used += joins_header + join_chars;
    }
    for (k, &t) in optional.iter().enumerate() {
        let table = tables[t];
        let prefix = table_prefix(table);
        let base = 40.0 - k as f64 * 0.01;
        // Header plus the table's key columns come as one item.
        let mut chars = header_line(table).len() + MORE_COLUMNS_LINE;
        let mut keys = Vec::new();
        for (pos, (c, part)) in all_columns(table).enumerate() {
            if part || key_cols.contains(&(t, c.name.as_str())) {
                chars += column_line(c, part).len();
                keys.push(pos);
            }
        }
        items.push(Item { table: t, column: None, samples: false, priority: base, chars });
        for (pos, (c, part)) in all_columns(table).enumerate() {
            if keys.contains(&pos) {
                continue;
            }
            let matched = column_matches(c, prefix.as_deref(), terms);
            let p = if matched { base - 0.005 } else { 20.0 - k as f64 * 0.01 - pos as f64 * 0.0001 };
            items.push(Item {
                table: t,
                column: Some(pos),
                samples: false,
                priority: p,
                chars: column_line(c, part).len(),
            });
            if !c.sample_values.is_empty() && opts.sample_values {
                items.push(Item {
                    table: t,
                    column: Some(pos),
                    samples: true,
                    priority: 5.0 - k as f64 * 0.01,
                    chars: samples_suffix(c).len(),
                });
            }
        }
    }
    items.sort_by(|a, b| b.priority.partial_cmp(&a.priority).unwrap_or(Ordering::Equal));
    // A note line for omitted tables is reserved up front.
    let reserve = 80;
    let mut optional_keys: HashMap<usize, Vec<usize>> = HashMap::new();
    for item in &items {
        let extra_join = |t: usize, included_header: &HashSet<usize>| -> usize {
            graph
                .neighbours(t)
                .filter(|(o, _)| included_header.contains(o))
                .map(|(_, k)| joins_line(&graph.edges[k]).len())
                .sum::<usize>()
        };
        match (item.column, item.samples) {
            (None, _) => {
                let joins = extra_join(item.table, &included_header);
                let cost = item.chars + joins + if join_chars == 0 && joins > 0 { joins_header } else { 0 };
                if used + cost + reserve <= budget_chars {
                    used += cost;
                    join_chars += joins;
                    included_header.insert(item.table);
                    let table = tables[item.table];
                    let keys: Vec<usize> = all_columns(table)
                        .enumerate()
                        .filter(|(_, (c, part))| *part || key_cols.contains(&(item.table, c.name.as_str())))
                        .map(|(p, _)| p)
                        .collect();
                    for &p in &keys {
                        included.insert((item.table, p));
                    }
                    optional_keys.insert(item.table, keys);
                }
            }
            (Some(pos), false) => {
                if included_header.contains(&item.table) && used + item.chars + reserve <= budget_chars {
                    used += item.chars;
                    included.insert((item.table, pos));
                }
            }
            (Some(pos), true) => {
                if included.contains(&(item.table, pos)) && used + item.chars + reserve <= budget_chars {
                    used += item.chars;
                    included_samples.insert((item.table, pos));
                }
            }
        }
    }
    // Samples of columns added after their sample item was considered: one more pass.
    for item in &items {
        if let (Some(pos), true) = (item.column, item.samples)
            && included.contains(&(item.table, pos))
            && !included_samples.contains(&(item.table, pos))
            && used + item.chars + reserve <= budget_chars
        {
            used += item.chars;
            included_samples.insert((item.table, pos));
        }
    }

    let order: Vec<usize> = must.iter().chain(optional).copied().filter(|t| included_header.contains(t)).collect();
    let mut text = String::new();
    for &t in &order {
        let table = tables[t];
        text.push_str(&header_line(table));
        let total = all_columns(table).count();
        let mut shown = 0;
        for (pos, (c, part)) in all_columns(table).enumerate() {
            if !included.contains(&(t, pos)) {
                continue;
            }
            shown += 1;
            let mut line = column_line(c, part);
            if included_samples.contains(&(t, pos)) {
                line.pop();
                line.push_str(&samples_suffix(c));
                line.push('\n');
            }
            text.push_str(&line);
        }
        if shown < total {
            let _ = writeln!(text, "  ({} more columns not shown)", total - shown);
        }
    }
    let shown: HashSet<usize> = order.iter().copied().collect();
    let join_lines: Vec<String> =
        graph.edges.iter().filter(|e| shown.contains(&e.from) && shown.contains(&e.to)).map(joins_line).collect();
    if !join_lines.is_empty() {
        text.push_str("joins:\n");
        for l in join_lines {
            text.push_str(&l);
        }
    }
    let omitted = tables.len() - order.len();
    if omitted > 0 {
        let _ = writeln!(text, "({omitted} less relevant tables are not shown)");
    }
    Packed { order, text }
}

/// Renders `tables` whole, in the retriever's format (for callers that already chose them).
pub fn render_schema(tables: &[Table], sample_values: bool) -> String {
    let mut text = String::new();
    for t in tables {
        text.push_str(&header_line(t));
        for (c, part) in all_columns(t) {
            let mut line = column_line(c, part);
            if sample_values && !c.sample_values.is_empty() {
                line.pop();
                line.push_str(&samples_suffix(c));
                line.push('\n');
            }
            text.push_str(&line);
        }
    }
    text
}
