//! Output helpers: aligned tables, YAML/JSON, ages and lists.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::spec::QueryRequest;

/// `-o` formats for objects.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
}

/// Renders rows as a left-aligned table with a header, two spaces between columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// kubectl-style age: 5s, 3m, 2h, 4d.
pub fn age(t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else { return "<unknown>".into() };
    let s = (Utc::now() - t).num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Truncates to `n` characters with an ellipsis, on one line.
pub fn short(s: &str, n: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= n {
        one
    } else {
        format!("{}…", one.chars().take(n.saturating_sub(1)).collect::<String>())
    }
}

pub fn to_yaml<T: Serialize>(v: &T) -> String {
    crate::spec::load::to_yaml(v)
}

pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serializable") + "\n"
}

/// A kubectl-style `List` of requests.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct List<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub items: &'a [QueryRequest],
}

pub fn request_rows(items: &[QueryRequest], wide: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut header = vec!["NAME", "PHASE", "DATABASE", "AGE"];
    if wide {
        header.extend(["GEN", "ENGINE", "DIGEST", "ROWS", "REQUESTER", "QUESTION/SQL"]);
    }
    let rows = items
        .iter()
        .map(|r| {
            let st = r.status.clone().unwrap_or_default();
            let mut row = vec![
                r.metadata.name.clone(),
                st.phase.to_string() + if r.metadata.deletion_timestamp.is_some() { " (deleting)" } else { "" },
                r.spec.catalog.database.clone(),
                age(r.metadata.creation_timestamp),
            ];
            if wide {
                row.push(r.generation().to_string());
                row.push(r.spec.engine.map(|e| e.as_str().to_string()).unwrap_or_else(|| "default".into()));
                row.push(
                    st.generated
                        .as_ref()
                        .map(|g| g.sql_digest[..g.sql_digest.len().min(12)].to_string())
                        .unwrap_or_else(|| "-".into()),
                );
                row.push(
                    st.execution.as_ref().and_then(|e| e.rows).map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                );
                row.push(r.requester().unwrap_or("-").to_string());
                row.push(short(r.spec.question.as_deref().or(r.spec.sql.as_deref()).unwrap_or(""), 60));
            }
            row
        })
        .collect();
    (header, rows)
}

/// Renders a preview as a table.
pub fn preview_table(columns: &[String], rows: &[Vec<Option<String>>]) -> String {
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> =
        rows.iter().map(|r| r.iter().map(|c| c.clone().unwrap_or_else(|| "NULL".into())).collect()).collect();
    table(&header, &rows)
}

/// Is standard input a terminal (so we may prompt)?
pub fn stdin_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

pub fn stderr_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Prompts on stderr and reads one line from stdin (None on EOF).
pub fn prompt(question: &str) -> Option<String> {
    use std::io::Write;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut s = String::new();
    match std::io::stdin().read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(s.trim().to_string()),
    }
}
