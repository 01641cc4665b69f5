//! Self-correction: what the last error says to avoid, and the weakest guess to drop when it
//! says nothing more specific.

use std::collections::HashSet;

use super::intent::{Filter, Intent};
use crate::catalog::Table;

/// What the guard's or the planner's complaint about the previous attempt rules out.
#[derive(Debug, Default)]
pub(super) struct Correction {
    /// The allow-list quoted by the guard ("not in this request's allowed tables (a, b)").
    pub(super) allowed: HashSet<String>,
    /// Tables the guard says do not exist.
    pub(super) missing_tables: HashSet<String>,
    /// Columns the planner could not resolve.
    pub(super) bad_columns: HashSet<String>,
}

impl Correction {
    pub(super) fn from_error(err: Option<&str>, tables: &[Table]) -> Correction {
        let mut c = Correction::default();
        let Some(err) = err else { return c };
        let lower = err.to_ascii_lowercase();
        if let Some(pos) = lower.find("allowed tables (") {
            let rest = &lower[pos + "allowed tables (".len()..];
            let list = rest.split(')').next().unwrap_or("");
            c.allowed = list
                .split(',')
                .map(|s| s.trim().rsplit('.').next().unwrap_or("").to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if lower.contains("does not exist")
            && let Some(name) = quoted_after(&lower, "table ")
        {
            c.missing_tables.insert(name);
        }
        for cue in ["no field named ", "column ", "field "] {
            if let Some(name) = quoted_after(&lower, cue) {
                let name = name.rsplit('.').next().unwrap_or("").to_string();
                if tables.iter().any(|t| t.columns.iter().any(|c| c.name.eq_ignore_ascii_case(&name))) {
                    c.bad_columns.insert(name);
                }
            }
        }
        c
    }

    pub(super) fn changes_anything(&self) -> bool {
        !self.allowed.is_empty() || !self.missing_tables.is_empty() || !self.bad_columns.is_empty()
    }
}

/// The identifier after `cue` in `text`, with or without quotes.
fn quoted_after(text: &str, cue: &str) -> Option<String> {
    let pos = text.find(cue)?;
    let rest = text[pos + cue.len()..].trim_start_matches(['"', '\'', '`', ' ']);
    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.').collect();
    (!name.is_empty()).then_some(name)
}

impl Intent {
    /// Drops the least certain value filter (self-correction). False if there is none.
    pub(super) fn drop_weakest_filter(&mut self) -> bool {
        if let Some(k) = self.filters.iter().position(|f| matches!(f, Filter::Values { weak: true, .. })) {
            self.filters.remove(k);
            self.assumptions.push("dropped an uncertain filter after the previous attempt failed".into());
            self.penalty += 0.1;
            return true;
        }
        false
    }
}
