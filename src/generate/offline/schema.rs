//! The schema as the generator sees it: tables and columns with kinds, meaning-bearing words,
//! keys, labels and sample values, the join graph between them, and the steps of a walk along it.

use std::collections::HashSet;

use crate::catalog::Table;
use crate::catalog::retrieve::{self, JoinGraph};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Number,
    Date,
    Timestamp,
    Text,
    Other,
}

#[derive(Debug)]
pub(super) struct ColInfo {
    pub(super) name: String,
    pub(super) kind: Kind,
    /// Meaning-bearing words (prefix stripped, segmented, expanded, stemmed).
    pub(super) words: Vec<String>,
    pub(super) key: bool,
    pub(super) samples: Vec<String>,
    /// A yes/no column (BOOLEAN, or `is_*` / `has_*` holding 0/1 or yes/no): named in a question
    /// it is a condition, not an output.
    pub(super) flag: bool,
    /// How the column writes yes and no, for a flag.
    pub(super) truth: Option<Truth>,
    /// The planner rejected it last time.
    pub(super) banned: bool,
}

#[derive(Debug)]
pub(super) struct TableInfo {
    pub(super) name: String,
    pub(super) words: Vec<String>,
    /// Stemmed name without separators (`lineitem`), for "line items".
    pub(super) flat: String,
    pub(super) cols: Vec<ColInfo>,
    pub(super) pk: Option<usize>,
    pub(super) label: Option<usize>,
    /// The rest of a name kept in two columns (`last_name` beside `first_name`).
    pub(super) label_extra: Option<usize>,
}

/// A column by (table, column) index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Col {
    pub(super) t: usize,
    pub(super) c: usize,
}

pub(super) struct Schema {
    pub(super) tables: Vec<TableInfo>,
    pub(super) graph: JoinGraph,
}

fn kind_of(ty: &str) -> Kind {
    let u = ty.to_ascii_uppercase();
    if u.starts_with("TIMESTAMP") {
        Kind::Timestamp
    } else if u.starts_with("DATE") {
        Kind::Date
    } else if u.starts_with("ARRAY") || u.starts_with("MAP") || u.starts_with("STRUCT") || u.starts_with("INTERVAL") {
        Kind::Other
    } else if ["INT", "DECIMAL", "DOUBLE", "REAL", "FLOAT", "NUMERIC"].iter().any(|k| u.contains(k)) {
        Kind::Number
    } else if u.contains("CHAR") || u.contains("STRING") || u.contains("TEXT") {
        Kind::Text
    } else {
        Kind::Other
    }
}

/// How a yes/no column writes its two values.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Truth {
    /// BOOLEAN: TRUE / FALSE.
    Boolean,
    /// A number: 1 / 0.
    Number,
    /// Text: the samples' own spelling of yes and no (`'Yes'` / `'No'`).
    Text(String, String),
}

impl Truth {
    /// The SQL literal for yes (`true`) or no.
    pub(super) fn literal(&self, yes: bool) -> String {
        match (self, yes) {
            (Truth::Boolean, true) => "TRUE".into(),
            (Truth::Boolean, false) => "FALSE".into(),
            (Truth::Number, true) => "1".into(),
            (Truth::Number, false) => "0".into(),
            (Truth::Text(y, _), true) => format!("'{}'", y.replace('\'', "''")),
            (Truth::Text(_, n), false) => format!("'{}'", n.replace('\'', "''")),
        }
    }
}

/// Whether a column is a yes/no flag, and how it writes yes and no: BOOLEAN; or named `is_*`,
/// `has_*` (and the like) holding numbers or text whose samples are all yes/no words.
fn flag_kind(name: &str, data_type: &str, samples: &[String]) -> Option<Truth> {
    let ty = data_type.to_ascii_uppercase();
    if ty.starts_with("BOOL") {
        return Some(Truth::Boolean);
    }
    let lower = name.to_ascii_lowercase();
    let named = ["is_", "has_", "can_", "allow_", "allows_", "was_", "did_"].iter().any(|p| lower.starts_with(p))
        || lower.ends_with("_flag")
        || lower.ends_with("_required");
    match kind_of(data_type) {
        Kind::Number if named && !samples.iter().any(|v| v != "0" && v != "1") => Some(Truth::Number),
        Kind::Text if !samples.is_empty() => {
            let yes = samples.iter().find(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "y" | "true" | "t"));
            let no = samples.iter().find(|v| matches!(v.to_ascii_lowercase().as_str(), "no" | "n" | "false" | "f"));
            let all = samples.iter().all(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "yes" | "y" | "true" | "t" | "no" | "n" | "false" | "f")
            });
            match (yes, no) {
                (Some(y), Some(n)) if all => Some(Truth::Text(y.clone(), n.clone())),
                (Some(y), None) if all && named => Some(Truth::Text(y.clone(), "No".into())),
                _ => None,
            }
        }
        _ => None,
    }
}

impl ColInfo {
    /// How a date column keeps its dates, for explanations.
    pub(super) fn kind_word(&self) -> &'static str {
        match self.kind {
            Kind::Number => "a year number",
            Kind::Text => "ISO date text",
            Kind::Date => "a date",
            Kind::Timestamp => "a timestamp",
            Kind::Other => "a value",
        }
    }
}

impl Schema {
    pub(super) fn new(tables: &[Table], banned: &HashSet<String>) -> Schema {
        // Only joins along a key to its owner: two tables that merely share a key concept
        // (`device_id` in sessions and in notifications) are not rows of one another.
        let graph = JoinGraph::build(tables).filtered(|e| e.many_to_one);
        let db_prefix = retrieve::shared_table_prefix(tables.iter().map(|t| t.name.as_str()));
        let infos = tables
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let prefix = retrieve::table_prefix(t);
                let cols: Vec<ColInfo> = t
                    .columns
                    .iter()
                    .chain(&t.partition_keys)
                    .map(|c| {
                        // A key by its name, or by the join graph (`paperid` → `paper`).
                        let key = retrieve::key_concept(t, &c.name, prefix.as_deref()).is_some()
                            || graph.primary_keys[ti].as_deref() == Some(c.name.as_str())
                            || graph.edges.iter().any(|e| {
                                !e.natural
                                    && ((e.from == ti && e.from_column == c.name)
                                        || (e.to == ti && e.to_column == c.name))
                            });
                        ColInfo {
                            name: c.name.clone(),
                            kind: kind_of(&c.data_type),
                            words: retrieve::column_words(&c.name, prefix.as_deref()),
                            key,
                            samples: c.sample_values.clone(),
                            flag: flag_kind(&c.name, &c.data_type, &c.sample_values).is_some(),
                            truth: flag_kind(&c.name, &c.data_type, &c.sample_values),
                            banned: banned.contains(&c.name.to_ascii_lowercase()),
                        }
                    })
                    .collect();
                // Without a prefix every table shares (`sb` in `sbcustomer`): "customers".
                let bare = match &db_prefix {
                    Some(p) => &t.name[p.len()..],
                    None => t.name.as_str(),
                };
                let words = retrieve::table_words(bare);
                let flat = retrieve::stem(&bare.replace('_', "").to_ascii_lowercase());
                let pk = graph.primary_keys[ti].as_ref().and_then(|k| cols.iter().position(|c| &c.name == k));
                let (first, last) = split_name(&cols);
                let label = first.or_else(|| label_column(&cols, &words)).or(pk);
                let label_extra = last.filter(|_| first.is_some());
                TableInfo { name: t.name.clone(), words, flat, cols, pk, label, label_extra }
            })
            .collect();
        Schema { tables: infos, graph }
    }

    pub(super) fn col(&self, c: Col) -> &ColInfo {
        &self.tables[c.t].cols[c.c]
    }

    pub(super) fn cols(&self) -> impl Iterator<Item = (Col, &ColInfo)> {
        self.tables
            .iter()
            .enumerate()
            .flat_map(|(t, ti)| ti.cols.iter().enumerate().map(move |(c, ci)| (Col { t, c }, ci)))
    }

    /// Join distance (edges) between two tables, if connected within 5 edges.
    pub(super) fn distance(&self, a: usize, b: usize) -> Option<usize> {
        self.graph.path_to_tree(&[a], b, 5).map(|p| p.len())
    }
}

/// A person's name kept in two text columns: (`first_name`, `last_name`), also `firstname` /
/// `lastname` and `given_name` / `family_name` / `surname`.
fn split_name(cols: &[ColInfo]) -> (Option<usize>, Option<usize>) {
    let find = |firsts: &[&str]| {
        cols.iter().position(|c| {
            c.kind == Kind::Text
                && !c.key
                && c.words.len() <= 2
                && c.words.first().is_some_and(|w| firsts.contains(&w.as_str()))
                && (c.words.len() == 1 || c.words[1] == "name")
        })
    };
    let first = find(&["first", "given", "fore"]).filter(|&c| cols[c].words.len() == 2);
    let last = find(&["last", "family", "sur", "surname"]);
    match (first, last) {
        (Some(f), Some(l)) => (Some(f), Some(l)),
        _ => (None, None),
    }
}

/// The column that names a row: `name`, `<table>_name`, `title`, else none.
fn label_column(cols: &[ColInfo], table_words: &[String]) -> Option<usize> {
    let text = |c: &&ColInfo| c.kind == Kind::Text && !c.key;
    cols.iter()
        .position(|c| {
            text(&c)
                && (c.words == ["name"]
                    || (c.words.last().is_some_and(|w| w == "name")
                        && c.words[..c.words.len() - 1].iter().all(|w| table_words.contains(w))))
        })
        .or_else(|| cols.iter().position(|c| text(&c) && c.words.iter().any(|w| w == "name")))
        .or_else(|| cols.iter().position(|c| text(&c) && c.words.iter().any(|w| w == "title")))
}

/// `table.column`, for explanations and doubts.
pub(super) fn qual_name(schema: &Schema, c: Col) -> String {
    format!("{}.{}", schema.tables[c.t].name, schema.col(c).name)
}

/// A join of the plan: `child` reached from `parent` along graph edge `edge`.
#[derive(Clone, Debug)]
pub(super) struct Step {
    pub(super) edge: usize,
    pub(super) parent: usize,
    pub(super) child: usize,
    /// Walking it multiplies the parent's rows (key → referencing rows).
    pub(super) fans_out: bool,
}

/// The index of column `name` in table `t` (the first column if there is none).
pub(super) fn col_index(schema: &Schema, t: usize, name: &str) -> usize {
    schema.tables[t].cols.iter().position(|c| c.name == name).unwrap_or(0)
}

/// Turns a path of edge indexes leaving `tree` into steps with directions.
pub(super) fn walk(schema: &Schema, tree: &[usize], path: &[usize]) -> Vec<Step> {
    let mut known: Vec<usize> = tree.to_vec();
    let mut out = Vec::new();
    for &k in path {
        let e = &schema.graph.edges[k];
        let (parent, child) = if known.contains(&e.from) { (e.from, e.to) } else { (e.to, e.from) };
        // Following a foreign key (from → to) keeps one row per row; the reverse multiplies.
        let fans_out = !e.many_to_one || parent == e.to;
        out.push(Step { edge: k, parent, child, fans_out });
        known.push(child);
    }
    out
}
