//! The canonical text of an accepted query (DESIGN §5, "One canonical SQL").
//!
//! What is digested, shown to the approver and executed is one text: the parsed statement
//! re-rendered with sqlparser's `Display`, which writes no comments, separates tokens with single
//! spaces, quotes strings with `'…'` (a quote doubled inside) and identifiers as they were quoted.
//! The rendering must re-parse, under the same parser and dialect the guard and DataFusion use,
//! to exactly the same AST, or the query is refused. So the guard's lexer and an engine's can
//! never read different statements from it: the constructs where lexers disagree (a `--` comment
//! ended by a carriage return, nested `/* */` comments, `$$` strings, `E'…'` escapes) are gone
//! from the text that runs, and hidden characters (see [`crate::spec::text`]) are refused
//! everywhere outside string literals, so a terminal or the console can never draw something
//! other than what runs.
//!
//! String literals are written in one form: `$$…$$`, `N'…'`, `E'…'` and `U&'…'` become the
//! single-quoted string of the same value (DataFusion reads them all as the same `Utf8` literal,
//! and Athena reads single-quoted strings only); forms no engine here reads the same way
//! (triple-quoted, raw, byte, `Q'…'` strings, double-quoted strings) and placeholders are refused.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Query, Statement, Value, ValueWithSpan, VisitMut, VisitorMut};

use super::{GuardError, parse};
use crate::spec::text::{describe_char, is_hidden};

/// Normalises `query`'s literals, checks `original` for hidden characters outside string
/// literals, and returns the canonical text (which re-parses to the normalised `query`).
pub(super) fn render(original: &str, query: &mut Query) -> Result<String, GuardError> {
    let mut literals = Literals::default();
    if let ControlFlow::Break(reason) = query.visit(&mut literals) {
        return Err(GuardError::new(reason));
    }
    refuse_hidden_outside_literals(original, &literals.credited)?;
    let text = query.to_string();
    let same = match parse(&text) {
        Ok(statements) => match statements.as_slice() {
            [DFStatement::Statement(s)] => matches!(s.as_ref(), Statement::Query(q) if **q == *query),
            _ => false,
        },
        Err(_) => false,
    };
    if !same {
        return Err(GuardError::new(
            "this query has no canonical form: re-rendered, it does not read back as the same statement, so what is approved could differ from what runs; write it more plainly (standard SQL, single-quoted strings)",
        ));
    }
    Ok(text)
}

/// Walks every literal: rewrites string forms to single-quoted strings, refuses forms without a
/// common reading, and counts the hidden characters each raw literal holds verbatim.
#[derive(Default)]
struct Literals {
    /// Hidden characters that appear verbatim inside string literals of the source text.
    credited: HashMap<char, usize>,
}

impl Literals {
    fn credit(&mut self, s: &str) {
        for c in s.chars().filter(|&c| is_hidden(c)) {
            *self.credited.entry(c).or_default() += 1;
        }
    }
}

impl VisitorMut for Literals {
    type Break = String;

    fn pre_visit_value(&mut self, v: &mut ValueWithSpan) -> ControlFlow<String> {
        let single = match &v.value {
            Value::SingleQuotedString(s) => {
                self.credit(s);
                return ControlFlow::Continue(());
            }
            Value::Number(..) | Value::Boolean(_) | Value::Null | Value::HexStringLiteral(_) => {
                return ControlFlow::Continue(());
            }
            // Raw forms: the value is the source text between the quotes.
            Value::DollarQuotedString(d) => {
                self.credit(&d.value);
                d.value.clone()
            }
            Value::NationalStringLiteral(s) => {
                self.credit(s);
                s.clone()
            }
            // Escape-processing forms: characters in the value may come from escapes, so none is
            // credited (a raw hidden character inside one is refused).
            Value::EscapedStringLiteral(s) | Value::UnicodeStringLiteral(s) => s.clone(),
            Value::Placeholder(p) => {
                return ControlFlow::Break(format!(
                    "placeholder `{p}` cannot be bound: write the value itself into the query"
                ));
            }
            other => {
                let shown: String = other.to_string().chars().take(40).collect();
                return ControlFlow::Break(format!(
                    "string literal `{}` is in a form the engines do not read alike; write strings in single quotes ('like this', with '' for a quote)",
                    crate::spec::text::escape_hidden(&shown)
                ));
            }
        };
        v.value = Value::SingleQuotedString(single);
        ControlFlow::Continue(())
    }
}

/// Why `sql` (which did not parse) holds a hidden character, if it does.
pub(super) fn hidden_character(sql: &str) -> Option<GuardError> {
    sql.chars().any(is_hidden).then(|| refuse_hidden_outside_literals(sql, &HashMap::new()).unwrap_err())
}

/// Refuses `original` when it holds a hidden character that no string literal accounts for.
///
/// Every hidden character inside a raw string literal appears verbatim in that literal's value,
/// so the hidden characters outside literals are exactly those whose count in the source exceeds
/// their count in the literals' values.
fn refuse_hidden_outside_literals(original: &str, credited: &HashMap<char, usize>) -> Result<(), GuardError> {
    let mut seen: HashMap<char, usize> = HashMap::new();
    for c in original.chars().filter(|&c| is_hidden(c)) {
        *seen.entry(c).or_default() += 1;
    }
    let Some(&bad) = seen.iter().filter(|(c, n)| **n > credited.get(c).copied().unwrap_or(0)).map(|(c, _)| c).min()
    else {
        return Ok(());
    };
    let (mut line, mut col) = (1usize, 0usize);
    for c in original.chars() {
        col += 1;
        if c == bad {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 0;
        }
    }
    let hint = if bad == '\r' { "; save the SQL with Unix (LF) line endings" } else { "" };
    Err(GuardError::new(format!(
        "the SQL contains {} outside a string literal (first at line {line}, column {col}): control, bidirectional and invisible characters are refused there because lexers and terminals read them differently{hint}",
        describe_char(bad)
    )))
}
