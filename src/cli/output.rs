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
    table_aligned(header, rows, &[])
}

/// [`table`] with the columns `right[i]` marks right-aligned (numbers).
pub fn table_aligned(header: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    // Cells are for people: hidden characters (controls, bidi overrides, zero-width) show escaped.
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| crate::spec::text::escape_hidden(c).replace('\n', " ")).collect())
        .collect();
    let rows = &rows;
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
            let pad = widths[i] - c.chars().count();
            // Numbers are right-aligned (their header too), so digits line up by place.
            let right = right.get(i).copied().unwrap_or(false);
            if right {
                out.push_str(&" ".repeat(pad));
            }
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(if right { 2 } else { pad + 2 }));
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
    let s = crate::spec::text::escape_hidden(s);
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= n {
        one
    } else {
        format!("{}…", one.chars().take(n.saturating_sub(1)).collect::<String>())
    }
}

/// YAML output. Data stays exact, and no hidden character (bidi override, zero-width, control)
/// reaches a terminal raw: when the YAML would carry one, the object is written as JSON (which
/// is YAML too) with those characters as `\uXXXX` escapes.
pub fn to_yaml<T: Serialize>(v: &T) -> String {
    let yaml = crate::spec::load::to_yaml(v);
    if yaml.chars().any(crate::spec::text::is_hidden) { to_json(v) } else { yaml }
}

/// Pretty JSON with every hidden character written as a `\uXXXX` escape (the same string once
/// decoded; serde_json escapes only C0 controls itself).
pub fn to_json<T: Serialize>(v: &T) -> String {
    escape_hidden_json(serde_json::to_string_pretty(v).expect("serializable") + "\n")
}

/// JSON text with every hidden character written as a `\uXXXX` escape (for JSON written by
/// hand, such as the typed rows of `sqlctl results -o json`).
pub fn escape_hidden_json(json: String) -> String {
    if !json.chars().any(crate::spec::text::is_hidden) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if crate::spec::text::is_hidden(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A kubectl-style `List` of requests (or of objects of another kind).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct List<'a, T = QueryRequest> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub items: &'a [T],
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
    typed_preview_table(columns, rows, &[])
}

/// [`preview_table`] with the result's typed columns: numbers right-aligned, as the engine wrote
/// them (a decimal keeps its scale).
pub fn typed_preview_table(
    columns: &[String],
    rows: &[Vec<Option<String>>],
    typed: &[crate::spec::ResultColumn],
) -> String {
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> =
        rows.iter().map(|r| r.iter().map(|c| c.clone().unwrap_or_else(|| "NULL".into())).collect()).collect();
    table_aligned(&header, &rows, &numeric_columns(columns, typed))
}

/// Which of `columns` the typed columns say are numbers (none when they do not line up).
pub fn numeric_columns(columns: &[String], typed: &[crate::spec::ResultColumn]) -> Vec<bool> {
    if typed.len() != columns.len() || typed.iter().zip(columns).any(|(t, c)| &t.name != c) {
        return Vec::new();
    }
    typed.iter().map(|t| t.kind().is_numeric()).collect()
}

// ---------------------------------------------------------------------------------------------
// A closed stdout (`sqlctl … | head`)
//
// When whoever reads our output goes away, every command stops quietly with exit 0, as ripgrep
// does: no "Broken pipe" on stderr, no panic message. Rust ignores SIGPIPE, so a write to the
// closed pipe fails with EPIPE instead of killing the process: `println!` then panics ("failed
// printing to stdout"), which [`quiet_on_closed_stdout`]'s hook turns into the quiet exit, and
// an explicit write's error comes back to `main`, which asks [`is_closed_stdout`]. Only a broken
// pipe on stdout itself is quiet: EPIPE from a socket, with stdout still open, is reported.

/// Whether stdout is a pipe (or socket) whose reader has gone: `poll` reports an error or hang-up
/// on it.
pub fn stdout_closed() -> bool {
    let mut fd = libc::pollfd { fd: libc::STDOUT_FILENO, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Whether `err` is a broken pipe on stdout: some cause in its chain is a broken-pipe I/O error
/// (directly, or inside a JSON or CSV writer's error), and stdout's reader has gone.
pub fn is_closed_stdout(err: &anyhow::Error) -> bool {
    let broken = err.chain().any(|cause| {
        let kind = if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            Some(io.kind())
        } else if let Some(j) = cause.downcast_ref::<serde_json::Error>() {
            j.io_error_kind()
        } else if let Some(c) = cause.downcast_ref::<csv::Error>() {
            match c.kind() {
                csv::ErrorKind::Io(io) => Some(io.kind()),
                _ => None,
            }
        } else {
            None
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    });
    broken && stdout_closed()
}

/// Whether a panic is `print!`/`println!` failing on a closed stdout.
pub fn is_closed_stdout_panic(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    text.starts_with("failed printing to stdout") && (text.contains("Broken pipe") || stdout_closed())
}

/// Installs a panic hook that exits 0 at once when `println!` hits a closed stdout, and defers
/// to the previous hook for every other panic. For commands, not for the controller or console
/// (servers drain gracefully; their output is logs on stderr).
pub fn quiet_on_closed_stdout() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_closed_stdout_panic(info.payload()) {
            std::process::exit(0);
        }
        previous(info)
    }));
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

#[cfg(test)]
mod hidden_tests {
    #[test]
    fn machine_output_is_exact_and_shows_no_hidden_character_raw() {
        let v = serde_json::json!({"sql": "select 'c\u{202e}d', 'e\u{1b}' , '\u{e0041}'", "n": 1});
        for out in [super::to_json(&v), super::to_yaml(&v)] {
            assert!(!out.chars().any(crate::spec::text::is_hidden), "{out}");
            let back: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(back, v);
        }
        let plain = serde_json::json!({"sql": "select 1"});
        assert!(super::to_yaml(&plain).starts_with("sql:"));
    }
}
