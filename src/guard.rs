//! The SQL guard: the first of two walls between generated SQL and the data (DESIGN §5).
//!
//! [`check`] accepts exactly one read-only query over known tables of the request's database and
//! refuses everything else with a reason a person (and the generator, which sees it once to
//! correct itself) can act on: DDL, DML, `COPY`/`UNLOAD`, `SET`/`RESET`, `EXPLAIN`, `SHOW`,
//! `SELECT INTO`, locking clauses, table functions, file or URL "tables", unknown tables and
//! tables outside the request's allow-list.
//!
//! It parses with DataFusion's own parser ([`DFParserBuilder`], with the dialect and recursion
//! limit of a default `SessionConfig`, exactly as `SessionContext::sql` does), so the guard and
//! the local engine never disagree about what a statement is. Table references are resolved the
//! way DataFusion's planner resolves them: unquoted identifiers are lower-cased, quoted ones kept
//! as written, and a one-part name is a CTE when a CTE of that name is in scope (CTEs of a query
//! are visible in its body, in later CTEs of the same `WITH` and in every nested subquery; a
//! non-recursive CTE does not see itself; a recursive one sees itself only in the recursive term
//! of its `UNION`). Where the two could differ the guard errs on the side of refusing.
//!
//! Deeply nested input never overflows the stack: the parser stops at its recursion limit, the
//! walk refuses expressions nested more than [`MAX_EXPR_DEPTH`] levels, and the whole check runs
//! on a thread of its own with a large stack, because left-deep chains (`1+1+…`, `UNION …`) that
//! the parser builds iteratively are still dropped recursively.

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;
use std::sync::LazyLock;

use datafusion::config::ConfigOptions;
use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, Query, Select, SetExpr, SetOperator, Statement, TableFactor, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::{GenericDialect, dialect_from_str};
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::spec::MAX_SQL_BYTES;

mod canonical;
pub mod template;

/// A query the guard accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The canonical text: the parsed statement re-rendered (no comments, single-quoted strings,
    /// one space between tokens), checked to re-parse to the same AST. This is the one text that
    /// is digested, shown to the approver and executed (DESIGN §5).
    pub sql: String,
    /// The tables the query reads (lower-case, unqualified, sorted, deduped).
    pub tables: Vec<String>,
}

/// Why a query was refused. `reason` is one sentence meant for the requester and the generator.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct GuardError {
    pub reason: String,
}

impl GuardError {
    fn new(reason: impl Into<String>) -> Self {
        GuardError { reason: reason.into() }
    }
}

/// Deepest expression nesting accepted. Real queries stay far below it (a 500-term `OR` chain
/// is 500 deep); it exists so hostile input is refused before it can exhaust a stack anywhere.
pub const MAX_EXPR_DEPTH: usize = 1_000;

/// Most set operations (`UNION`/`INTERSECT`/`EXCEPT`) accepted in one query expression.
pub const MAX_SET_OPERATIONS: usize = 1_000;

/// Stack of the thread the check runs on. Only touched pages are committed, so this costs
/// address space, not memory. The deepest AST 100,000 bytes can describe (a 50,000-term `1+1+…`
/// chain) is checked and dropped within 4 MiB in a debug build; this leaves a wide margin.
const GUARD_STACK_BYTES: usize = 64 << 20;

/// Most known table names quoted back in an "unknown table" reason.
const MAX_LISTED_TABLES: usize = 40;

/// Dialect name and recursion limit of a default DataFusion session: what the engine parses with.
static PARSER_SETTINGS: LazyLock<(String, usize)> = LazyLock::new(|| {
    let options = ConfigOptions::default();
    (options.sql_parser.dialect.to_string(), options.sql_parser.recursion_limit.get())
});

/// Checks that `sql` is exactly one read-only query over tables of `database`.
///
/// `known_tables` are the tables the catalog knows in `database` (lower-case); `allowed`, when
/// non-empty, is the request's allow-list (`spec.catalog.tables`) and narrows them further.
///
/// Returns the canonical text of the query and the tables it reads, or why it was refused.
pub fn check(sql: &str, database: &str, known_tables: &[String], allowed: &[String]) -> Result<Checked, GuardError> {
    check_with(sql, database, Some(known_tables), allowed)
}

/// Every check that needs no catalog: exactly one read-only query, no files, URLs or table
/// functions, names in `database` and in `allowed` when given. Table existence is left to the
/// controller, which knows the catalog. `apply` and `ask` use this to refuse SQL that can never
/// run before anything is written.
pub fn check_read_only(sql: &str, database: &str, allowed: &[String]) -> Result<Checked, GuardError> {
    check_with(sql, database, None, allowed)
}

fn check_with(
    sql: &str,
    database: &str,
    known_tables: Option<&[String]>,
    allowed: &[String],
) -> Result<Checked, GuardError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(GuardError::new(format!("query is {} bytes; the limit is {MAX_SQL_BYTES} bytes", sql.len())));
    }
    if sql.trim().is_empty() {
        return Err(GuardError::new("empty query; submit exactly one SELECT query"));
    }
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("sqlctl-guard".into())
            .stack_size(GUARD_STACK_BYTES)
            .spawn_scoped(scope, || check_here(sql, database, known_tables, allowed))
            .map_err(|e| GuardError::new(format!("the SQL guard could not start its parser thread: {e}")))?;
        handle
            .join()
            .unwrap_or_else(|_| Err(GuardError::new("the SQL guard failed unexpectedly on this query; it was refused")))
    })
}

/// The check itself, on the current thread (which must have a large enough stack).
fn check_here(
    sql: &str,
    database: &str,
    known_tables: Option<&[String]>,
    allowed: &[String],
) -> Result<Checked, GuardError> {
    // A hidden character that breaks parsing is the better explanation of the failure.
    let mut statements = parse(sql).map_err(|e| canonical::hidden_character(sql).unwrap_or(e))?;
    match statements.len() {
        0 => return Err(GuardError::new("empty query (only comments or semicolons); submit exactly one SELECT query")),
        1 => {}
        n => return Err(GuardError::new(format!("{n} statements; submit exactly one query"))),
    }
    let statement = statements.pop().expect("one statement");
    let mut query = match statement {
        DFStatement::Statement(s) => match *s {
            Statement::Query(q) => q,
            other => return Err(GuardError::new(statement_refusal(&other))),
        },
        DFStatement::CreateExternalTable(_) => {
            return Err(GuardError::new(
                "CREATE EXTERNAL TABLE is DDL (it registers files as a table); only read-only SELECT queries are allowed",
            ));
        }
        DFStatement::CopyTo(_) => {
            return Err(GuardError::new("COPY writes files; only read-only SELECT queries are allowed"));
        }
        DFStatement::Explain(_) => {
            return Err(GuardError::new("EXPLAIN is not allowed; submit the SELECT query itself"));
        }
        DFStatement::Reset(_) => {
            return Err(GuardError::new("RESET changes session settings; only read-only SELECT queries are allowed"));
        }
    };

    let mut walker = Walker::new(database, known_tables.unwrap_or(&[]), allowed);
    walker.check_known = known_tables.is_some();
    if let ControlFlow::Break(reason) = query.visit(&mut walker) {
        return Err(GuardError::new(reason));
    }
    let sql = canonical::render(sql, &mut query)?;
    Ok(Checked { sql, tables: walker.tables.into_iter().collect() })
}

/// The dialect DataFusion parses with (and so the guard): the console's highlighter tokenizes
/// with it too, so what it colours as a comment or a string is what the engine reads as one.
pub fn dialect() -> Box<dyn datafusion::sql::sqlparser::dialect::Dialect> {
    dialect_from_str(&PARSER_SETTINGS.0).unwrap_or_else(|| Box::new(GenericDialect {}))
}

/// Parses with DataFusion's parser, dialect and recursion limit.
pub(crate) fn parse(sql: &str) -> Result<Vec<DFStatement>, GuardError> {
    let recursion_limit = &PARSER_SETTINGS.1;
    let dialect = dialect();
    let parsed = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(*recursion_limit)
        .build()
        .and_then(|mut parser| parser.parse_statements());
    match parsed {
        Ok(statements) => Ok(statements.into_iter().collect()),
        Err(e) if is_recursion_limit(&e) => Err(GuardError::new(format!(
            "query is nested too deeply (more than {recursion_limit} levels of parentheses or subqueries); simplify it"
        ))),
        Err(e) => Err(GuardError::new(format!("SQL does not parse: {}", parse_error_text(&e)))),
    }
}

fn is_recursion_limit(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::SQL(inner, _) => matches!(**inner, ParserError::RecursionLimitExceeded),
        other => other.to_string().contains("recursion limit"),
    }
}

/// The parser's own message, without DataFusion's `SQL error: ParserError("…")` wrapping.
fn parse_error_text(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::SQL(inner, _) => match &**inner {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// The leading keywords of a statement (`CREATE TABLE`, `INSERT INTO`, `SET`), for messages.
fn leading_keywords(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take(2)
        .take_while(|w| ALL_KEYWORDS.binary_search(&w.to_ascii_uppercase().as_str()).is_ok())
        .collect();
    if words.is_empty() { "this".to_string() } else { words.join(" ").to_ascii_uppercase() }
}

/// A reason naming the kind of statement that was submitted instead of a query.
fn statement_refusal(statement: &Statement) -> String {
    let kw = leading_keywords(statement);
    let first = kw.split(' ').next().unwrap_or_default().to_string();
    match statement {
        Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) | Statement::Merge(_) => {
            format!("{kw} is DML (it modifies data); only read-only SELECT queries are allowed")
        }
        Statement::CreateTable(t) if t.query.is_some() => {
            "CREATE TABLE … AS SELECT (CTAS) writes a new table; submit only the SELECT query".to_string()
        }
        Statement::Unload { .. } => "UNLOAD writes query results to files; submit only the SELECT query".to_string(),
        Statement::Copy { .. } | Statement::CopyIntoSnowflake { .. } | Statement::ExportData(_) => {
            format!("{kw} writes or loads files; only read-only SELECT queries are allowed")
        }
        Statement::Set(_) | Statement::Reset(_) => {
            format!("{first} changes session settings; only read-only SELECT queries are allowed")
        }
        Statement::Explain { .. } | Statement::ExplainTable { .. } => {
            format!("{first} is not allowed; submit the SELECT query itself")
        }
        _ => match first.as_str() {
            "SHOW" | "DESCRIBE" | "DESC" => {
                format!("{kw} is not allowed; the catalog already provides table and column information")
            }
            "CREATE" | "DROP" | "ALTER" | "TRUNCATE" | "RENAME" | "COMMENT" | "ATTACH" | "DETACH" | "VACUUM"
            | "OPTIMIZE" | "MSCK" | "ANALYZE" | "CACHE" | "UNCACHE" => {
                format!("{kw} is DDL; only read-only SELECT queries are allowed")
            }
            "GRANT" | "REVOKE" | "DENY" => {
                format!("{kw} changes permissions; only read-only SELECT queries are allowed")
            }
            "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "REPLACE" | "LOAD" => {
                format!("{kw} is DML (it modifies data); only read-only SELECT queries are allowed")
            }
            _ => format!("{kw} statements are not allowed; submit exactly one read-only SELECT query"),
        },
    }
}

/// DataFusion's identifier normalisation: unquoted → ASCII lower-case, quoted → as written.
fn normalize(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// Does this name part look like a file path or URL rather than a table name?
fn looks_like_path(ident: &Ident) -> bool {
    let v = ident.value.as_str();
    ident.quote_style == Some('\'')
        || v.contains('/')
        || v.contains('\\')
        || v.contains("://")
        || v.starts_with('~')
        || [".parquet", ".csv", ".json", ".avro", ".arrow", ".gz", ".zst", ".txt", ".tbl"]
            .iter()
            .any(|ext| v.to_ascii_lowercase().ends_with(ext))
}

/// A short, single-line excerpt of some SQL for a message.
fn excerpt(node: &impl std::fmt::Display) -> String {
    let text = node.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 60 { format!("{}…", text.chars().take(60).collect::<String>()) } else { text }
}

/// Walks one query, resolving table references with CTE scoping.
///
/// Each [`Query`] is walked by hand ([`Walker::walk_query`]) so that its CTEs come into scope in
/// the planner's order; the pieces in between (expressions, joins, set operations) are walked by
/// sqlparser's visitor, which calls back into `walk_query` at every nested query. The visitor
/// then also descends into the nested query on its own: `suppress` makes that second pass a
/// no-op, so every node is checked once and no walk is exponential in the nesting depth.
struct Walker<'a> {
    database: String,
    known: HashSet<&'a str>,
    known_sorted: Vec<&'a str>,
    /// Lower-cased allow-list; `None` when the request has none.
    allowed: Option<HashSet<String>>,
    /// CTE names in scope, innermost last.
    ctes: Vec<String>,
    /// Tables read so far.
    tables: BTreeSet<String>,
    /// Current expression nesting.
    expr_depth: usize,
    /// > 0 inside the visitor's own descent into a query `walk_query` already checked.
    suppress: usize,
    /// Refuse tables the catalog does not know (off for the catalog-free `check_read_only`).
    check_known: bool,
}

type Flow = ControlFlow<String>;

impl<'a> Walker<'a> {
    fn new(database: &str, known_tables: &'a [String], allowed: &[String]) -> Self {
        let mut known_sorted: Vec<&str> = known_tables.iter().map(String::as_str).collect();
        known_sorted.sort_unstable();
        known_sorted.dedup();
        let allowed: HashSet<String> =
            allowed.iter().map(|t| t.trim().to_ascii_lowercase()).filter(|t| !t.is_empty()).collect();
        Walker {
            database: database.to_string(),
            known: known_sorted.iter().copied().collect(),
            known_sorted,
            allowed: if allowed.is_empty() { None } else { Some(allowed) },
            ctes: Vec::new(),
            tables: BTreeSet::new(),
            expr_depth: 0,
            suppress: 0,
            check_known: true,
        }
    }

    /// Checks one query: its own clauses, its CTEs in order, then its body.
    fn walk_query(&mut self, q: &Query) -> Flow {
        self.check_query_clauses(q)?;
        let mark = self.ctes.len();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = normalize(&cte.alias.name);
                match (&*cte.query.body, with.recursive) {
                    (SetExpr::SetOperation { op: SetOperator::Union, left, right, .. }, true) => {
                        // DataFusion plans the static term without the CTE in scope and the
                        // recursive term with it; the rest of the CTE's query is not planned,
                        // but is still checked here (with nothing extra in scope).
                        self.check_query_clauses(&cte.query)?;
                        if let Some(inner) = &cte.query.with {
                            for inner_cte in &inner.cte_tables {
                                self.walk_query(&inner_cte.query)?;
                            }
                        }
                        self.visit_part(&cte.query.order_by)?;
                        self.visit_part(&cte.query.limit_clause)?;
                        self.visit_part(left.as_ref())?;
                        self.ctes.push(name.clone());
                        let flow = self.visit_part(right.as_ref());
                        self.ctes.pop();
                        flow?;
                    }
                    _ => self.walk_query(&cte.query)?,
                }
                self.ctes.push(name);
            }
        }
        let flow = (|| {
            self.visit_part(q.body.as_ref())?;
            self.visit_part(&q.order_by)?;
            self.visit_part(&q.limit_clause)?;
            self.visit_part(&q.fetch)?;
            self.visit_part(&q.pipe_operators)
        })();
        self.ctes.truncate(mark);
        flow
    }

    /// Lets the visitor walk one part of a query (nested queries come back to `walk_query`).
    fn visit_part<V: Visit + ?Sized>(&mut self, node: &V) -> Flow {
        node.visit(self)
    }

    /// Clauses of a query that make it more than a read: locks, `INTO`, dialect extras; and
    /// the shape of its set operations (`TABLE x`, a chain too long to be a real query).
    fn check_query_clauses(&self, q: &Query) -> Flow {
        if let Some(lock) = q.locks.first() {
            return ControlFlow::Break(format!(
                "locking clause `{}` is not allowed; queries must be read-only",
                excerpt(lock)
            ));
        }
        if let Some(f) = &q.for_clause {
            return ControlFlow::Break(format!("`{}` is not supported; submit a plain SELECT query", excerpt(f)));
        }
        if q.settings.is_some() {
            return ControlFlow::Break("a SETTINGS clause is not allowed; submit a plain SELECT query".into());
        }
        if let Some(f) = &q.format_clause {
            return ControlFlow::Break(format!("`{}` is not supported; submit a plain SELECT query", excerpt(f)));
        }
        // Walk the set-operation tree iteratively: it can be thousands deep.
        let mut stack: Vec<&SetExpr> = vec![&q.body];
        let mut operations = 0usize;
        while let Some(e) = stack.pop() {
            match e {
                SetExpr::SetOperation { left, right, .. } => {
                    operations += 1;
                    if operations > MAX_SET_OPERATIONS {
                        return ControlFlow::Break(format!(
                            "query has more than {MAX_SET_OPERATIONS} UNION/INTERSECT/EXCEPT operations; simplify it"
                        ));
                    }
                    stack.push(left);
                    stack.push(right);
                }
                SetExpr::Table(t) => {
                    return ControlFlow::Break(format!(
                        "`{}` is not supported; write SELECT * FROM {} instead",
                        excerpt(t),
                        t.table_name.as_deref().unwrap_or("<table>")
                    ));
                }
                SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                    return ControlFlow::Break(statement_refusal(s));
                }
                SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn check_select(&self, select: &Select) -> Flow {
        if let Some(into) = &select.into {
            return ControlFlow::Break(format!(
                "SELECT … INTO {} writes a new table; remove the INTO clause",
                excerpt(&into.name)
            ));
        }
        if let Some(view) = select.lateral_views.first() {
            return ControlFlow::Break(format!(
                "`LATERAL VIEW {}` is not supported; use UNNEST or a join",
                excerpt(&view.lateral_view)
            ));
        }
        ControlFlow::Continue(())
    }

    fn check_table_factor(&self, factor: &TableFactor) -> Flow {
        match factor {
            TableFactor::Table { name, args: Some(_), .. } => ControlFlow::Break(format!(
                "table function `{}(…)` is not allowed; read tables of database {:?} by name",
                excerpt(name),
                self.database
            )),
            TableFactor::Table { .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. }
            | TableFactor::MatchRecognize { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!(
                "table function `{}` is not allowed; read tables of database {:?} by name",
                excerpt(other),
                self.database
            )),
        }
    }

    /// Resolves a table name the way DataFusion would and checks it is a known, allowed table
    /// of the request's database (or a CTE in scope).
    fn check_relation(&mut self, name: &ObjectName) -> Flow {
        let mut parts = Vec::with_capacity(name.0.len());
        for part in &name.0 {
            let Some(ident) = part.as_ident() else {
                return ControlFlow::Break(format!("table name `{}` is not a plain name", excerpt(name)));
            };
            if looks_like_path(ident) {
                return ControlFlow::Break(format!(
                    "`{}` looks like a file path or URL; only tables of database {:?} can be queried, by name",
                    excerpt(name),
                    self.database
                ));
            }
            parts.push(normalize(ident));
        }
        let table = match parts.as_slice() {
            [table] => {
                if self.ctes.iter().any(|c| c == table) {
                    return ControlFlow::Continue(());
                }
                table.clone()
            }
            [schema, table] if *schema == self.database => table.clone(),
            [schema, _] => {
                return ControlFlow::Break(format!(
                    "`{}` names schema {schema:?}; only tables of database {:?} can be queried (write `table` or `{}.table`)",
                    excerpt(name),
                    self.database,
                    self.database
                ));
            }
            _ => {
                return ControlFlow::Break(format!(
                    "`{}` has {} name parts; write `table` or `{}.table`",
                    excerpt(name),
                    parts.len(),
                    self.database
                ));
            }
        };
        if self.check_known && !self.known.contains(table.as_str()) {
            let listed: Vec<&str> = self.known_sorted.iter().take(MAX_LISTED_TABLES).copied().collect();
            let more = if self.known_sorted.len() > listed.len() { ", …" } else { "" };
            return ControlFlow::Break(if listed.is_empty() {
                format!("table {table:?} does not exist in database {:?} (it has no tables)", self.database)
            } else {
                format!(
                    "table {table:?} does not exist in database {:?}; known tables: {}{more}",
                    self.database,
                    listed.join(", ")
                )
            });
        }
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&table)
        {
            let mut list: Vec<&str> = allowed.iter().map(String::as_str).collect();
            list.sort_unstable();
            return ControlFlow::Break(format!(
                "table {table:?} is not in this request's allowed tables ({})",
                list.join(", ")
            ));
        }
        self.tables.insert(table);
        ControlFlow::Continue(())
    }
}

impl Visitor for Walker<'_> {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> Flow {
        if self.suppress > 0 {
            self.suppress += 1;
            return ControlFlow::Continue(());
        }
        self.walk_query(query)?;
        // The visitor now descends into `query` itself: already checked, so skip it.
        self.suppress = 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> Flow {
        self.suppress = self.suppress.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> Flow {
        if self.suppress > 0 {
            return ControlFlow::Continue(());
        }
        self.check_select(select)
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> Flow {
        if self.suppress > 0 {
            return ControlFlow::Continue(());
        }
        self.check_relation(relation)
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> Flow {
        if self.suppress > 0 {
            return ControlFlow::Continue(());
        }
        self.check_table_factor(factor)
    }

    fn pre_visit_expr(&mut self, _expr: &datafusion::sql::sqlparser::ast::Expr) -> Flow {
        if self.suppress > 0 {
            return ControlFlow::Continue(());
        }
        self.expr_depth += 1;
        if self.expr_depth > MAX_EXPR_DEPTH {
            return ControlFlow::Break(format!(
                "query is nested too deeply (expressions more than {MAX_EXPR_DEPTH} levels deep); simplify it"
            ));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &datafusion::sql::sqlparser::ast::Expr) -> Flow {
        if self.suppress == 0 {
            self.expr_depth = self.expr_depth.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> Flow {
        // The root is a query, never visited as a statement: any statement in here is nested
        // (`WITH … INSERT`, a data-modifying CTE) and is refused.
        if self.suppress > 0 {
            return ControlFlow::Continue(());
        }
        ControlFlow::Break(statement_refusal(statement))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "tpch";

    fn known() -> Vec<String> {
        ["customer", "orders", "lineitem", "part", "partsupp", "supplier", "nation", "region"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn run(sql: &str) -> Result<Vec<String>, GuardError> {
        check(sql, DB, &known(), &[]).map(|c| c.tables)
    }

    /// (sql, Ok(tables read) | Err(a fragment the reason must contain)).
    type Case = (&'static str, Result<&'static [&'static str], &'static str>);

    const CASES: &[Case] = &[
        // --- accepted ---
        ("select 1", Ok(&[])),
        ("select 1;", Ok(&[])),
        ("  select 1 ;  ", Ok(&[])),
        ("select 1; -- drop table orders", Ok(&[])),
        ("select 1; /* ; drop table orders */", Ok(&[])),
        ("select * from orders", Ok(&["orders"])),
        ("SELECT * FROM ORDERS", Ok(&["orders"])),
        ("select * from Tpch.Orders o", Ok(&["orders"])),
        ("select * from \"orders\"", Ok(&["orders"])),
        ("select * from \"tpch\".\"orders\"", Ok(&["orders"])),
        ("select 'drop table orders; delete from x' as s, ';' from orders", Ok(&["orders"])),
        ("select o.o_orderkey from orders o join customer c on o.o_custkey = c.c_custkey", Ok(&["customer", "orders"])),
        (
            "select * from orders o left join lateral (select * from lineitem l where l.l_orderkey = o.o_orderkey) x on true",
            Ok(&["lineitem", "orders"]),
        ),
        ("select * from (select * from (select * from nation) a) b", Ok(&["nation"])),
        ("select * from customer where c_custkey in (select o_custkey from orders)", Ok(&["customer", "orders"])),
        (
            "select * from customer c where exists (select 1 from orders o where o.o_custkey = c.c_custkey)",
            Ok(&["customer", "orders"]),
        ),
        ("select (select count(*) from region) as n from nation", Ok(&["nation", "region"])),
        (
            "select n_regionkey, count(*) from nation group by 1 having count(*) > (select count(*) from region)",
            Ok(&["nation", "region"]),
        ),
        ("select n_name from nation union select r_name from region", Ok(&["nation", "region"])),
        (
            "select n_name from nation intersect select r_name from region except select s_name from supplier",
            Ok(&["nation", "region", "supplier"]),
        ),
        ("with t as (select * from orders) select * from t", Ok(&["orders"])),
        // A CTE shadows a real table of the same name.
        ("with orders as (select * from nation) select * from orders", Ok(&["nation"])),
        // A non-recursive CTE does not see itself: the inner `nation` is the table.
        ("with nation as (select * from nation) select * from nation", Ok(&["nation"])),
        ("with a as (select * from nation), b as (select * from a) select * from b", Ok(&["nation"])),
        // CTEs of an outer query are visible in nested subqueries.
        (
            "with a as (select * from nation) select * from region where r_regionkey in (select n_regionkey from a)",
            Ok(&["nation", "region"]),
        ),
        ("with recursive t(n) as (select 1 union all select n + 1 from t where n < 10) select * from t", Ok(&[])),
        ("WITH RECURSIVE T(N) AS (SELECT 1 UNION ALL SELECT N + 1 FROM T WHERE N < 3) SELECT * FROM t", Ok(&[])),
        ("select * from tpch.orders, \"lineitem\" where o_orderkey = l_orderkey", Ok(&["lineitem", "orders"])),
        ("values (1), (2)", Ok(&[])),
        ("select * from unnest([1, 2, 3])", Ok(&[])),
        // --- refused: shape ---
        ("", Err("empty")),
        ("   \n ", Err("empty")),
        (";", Err("empty")),
        ("-- just a comment", Err("empty")),
        ("select 1; select 2", Err("2 statements; submit exactly one query")),
        ("select 1 -- x\n; drop table orders", Err("2 statements")),
        ("select 1; /* x */ drop table orders", Err("2 statements")),
        ("select * from orders; delete from orders", Err("2 statements")),
        ("select * from", Err("does not parse")),
        ("select 1 +", Err("does not parse")),
        // --- refused: DDL ---
        ("create table x (a int)", Err("DDL")),
        ("create table x as select * from orders", Err("CTAS")),
        ("create view v as select 1", Err("DDL")),
        ("create external table x stored as parquet location '/etc'", Err("CREATE EXTERNAL TABLE")),
        ("drop table orders", Err("DROP TABLE is DDL")),
        ("alter table orders add column x int", Err("DDL")),
        ("truncate table orders", Err("TRUNCATE")),
        // --- refused: DML and writes ---
        ("insert into orders select * from orders", Err("INSERT INTO is DML")),
        ("update orders set o_totalprice = 0", Err("DML")),
        ("delete from orders", Err("DML")),
        ("merge into orders using customer on true when matched then delete", Err("DML")),
        ("copy orders to '/tmp/x.csv'", Err("COPY")),
        ("copy (select 1) to '/tmp/x.csv'", Err("COPY")),
        ("unload ('select 1') to 's3://bucket/x' iam_role 'arn:aws:iam::1:role/r'", Err("UNLOAD")),
        ("with t as (select 1) insert into orders select * from t", Err("DML")),
        ("select * into newtable from orders", Err("INTO")),
        // --- refused: settings, explain, show ---
        ("set datafusion.execution.batch_size = 1", Err("SET changes session settings")),
        ("reset datafusion.execution.batch_size", Err("RESET")),
        ("explain select * from orders", Err("EXPLAIN")),
        ("explain analyze select * from orders", Err("EXPLAIN")),
        ("show tables", Err("SHOW")),
        ("describe orders", Err("not allowed")),
        // --- refused: locks, table functions, files ---
        ("select * from orders for update", Err("locking clause")),
        ("select * from orders for share", Err("locking clause")),
        ("select * from read_parquet('/etc/passwd')", Err("table function")),
        ("select * from generate_series(1, 10)", Err("table function")),
        ("select * from range(10)", Err("table function")),
        ("select * from \"/etc/passwd\"", Err("file path or URL")),
        ("select * from 's3://bucket/data.parquet'", Err("")),
        ("select * from \"s3://bucket/data.parquet\"", Err("file path or URL")),
        ("select * from \"orders.parquet\"", Err("file path or URL")),
        // --- refused: tables ---
        ("select * from secrets", Err("table \"secrets\" does not exist in database \"tpch\"")),
        ("select * from \"ORDERS\"", Err("table \"ORDERS\" does not exist")),
        ("select * from other.orders", Err("schema \"other\"")),
        ("select * from information_schema.tables", Err("schema \"information_schema\"")),
        ("select * from datafusion.tpch.orders", Err("3 name parts")),
        ("select * from orders where o_custkey in (select c_custkey from secrets)", Err("secrets")),
        ("select * from orders where exists (select 1 from secrets)", Err("secrets")),
        ("select (select max(x) from secrets) from orders", Err("secrets")),
        ("select * from orders join secrets on true", Err("secrets")),
        ("select * from (select * from secrets) s", Err("secrets")),
        ("select 1 from orders union all select 1 from secrets", Err("secrets")),
        ("with t as (select * from secrets) select * from orders", Err("secrets")),
        ("with t as (select * from secrets) select * from t", Err("secrets")),
        // A CTE defined later is not in scope for an earlier one.
        ("with a as (select * from b), b as (select 1) select * from a", Err("table \"b\" does not exist")),
        // A CTE is not visible outside the subquery that defines it.
        ("select * from (with t as (select 1) select * from t) x, t", Err("table \"t\" does not exist")),
        // A recursive CTE's static term does not see itself.
        ("with recursive t as (select * from t union all select 1) select * from t", Err("table \"t\" does not exist")),
        (
            "with recursive t(n) as (select 1 union all select n + 1 from t join secrets on true) select * from t",
            Err("secrets"),
        ),
        // A CTE name qualified with the database is a table, not the CTE.
        ("with t as (select 1) select * from tpch.t", Err("table \"t\" does not exist")),
        ("table orders", Err("does not parse")),
    ];

    #[test]
    fn the_case_table_holds() {
        let mut failures = Vec::new();
        for (sql, expected) in CASES {
            let got = run(sql);
            let ok = match (&got, expected) {
                (Ok(tables), Ok(want)) => tables.iter().map(String::as_str).eq(want.iter().copied()),
                (Err(e), Err(fragment)) => e.reason.contains(fragment),
                _ => false,
            };
            if !ok {
                failures.push(format!("{sql:?}\n    expected {expected:?}\n    got      {got:?}"));
            }
        }
        assert!(CASES.len() >= 40);
        assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
    }

    fn canonical(sql: &str) -> Result<Checked, GuardError> {
        check(sql, DB, &known(), &[])
    }

    #[test]
    fn accepted_queries_have_one_canonical_text_that_is_a_fixed_point() {
        for (sql, expected) in CASES {
            let Ok(_) = expected else { continue };
            let c = canonical(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"));
            assert!(!c.sql.contains("--") && !c.sql.contains("/*"), "{sql:?} -> {:?}", c.sql);
            let again = canonical(&c.sql).unwrap_or_else(|e| panic!("{:?}: {e}", c.sql));
            assert_eq!(again, c, "canonical text of {sql:?} is not a fixed point");
        }
        let c = canonical("select n_name -- the name\n from /* nation */ nation where n_name = 'it''s'").unwrap();
        assert_eq!(c.sql, "SELECT n_name FROM nation WHERE n_name = 'it''s'");
    }

    #[test]
    fn lexer_tricks_never_reach_an_engine() {
        // A `--` comment ended by a carriage return (Trino ends it there; sqlparser does not).
        let err = canonical("select n_name from nation --\r union all select c_phone from customer").unwrap_err();
        assert!(err.reason.contains("U+000D (carriage return) outside a string literal"), "{err}");
        // Nested comments: whatever a nest hides is gone from the text that runs.
        let c = canonical("select n_name from nation /* /* */ union all select c_phone from customer */").unwrap();
        assert_eq!((c.sql.as_str(), c.tables.as_slice()), ("SELECT n_name FROM nation", &["nation".to_string()][..]));
        // `$$ … $$` is a string: it becomes a single-quoted one, so no lexer reads a comment.
        let c = canonical("select c_name, $$ -- $$, c_phone from customer").unwrap();
        assert_eq!(c.sql, "SELECT c_name, ' -- ', c_phone FROM customer");
        let c = canonical("select E'a\\'' -- b', n_name from nation").unwrap();
        assert!(!c.sql.contains("E'"), "{}", c.sql);
        assert_eq!(canonical(&c.sql).unwrap(), c);
        // Placeholders and string forms without a common reading are refused.
        assert!(canonical("select * from nation where n_name = $1").unwrap_err().reason.contains("placeholder"));
        assert!(canonical("select * from nation where n_name = ?").unwrap_err().reason.contains("placeholder"));
    }

    #[test]
    fn hidden_characters_are_refused_outside_string_literals() {
        for (sql, what) in [
            ("select n_name\u{1b}[2K from nation", "U+001B"),
            ("select n_name from nation\u{202e} -- x", "U+202E"),
            ("select n_name from nation\r\nwhere n_nationkey = 1", "U+000D"),
            ("select \"n_\u{200b}name\" from nation", "U+200B"),
            ("select n_name from nation -- \u{2066} hidden", "U+2066"),
            ("select n_name from nation \u{85} where 1=1", "U+0085"),
        ] {
            let err = canonical(sql).unwrap_err();
            assert!(err.reason.contains(what) && err.reason.contains("outside a string literal"), "{sql:?}: {err}");
        }
        // Inside a string literal they are data (a Persian word needs its zero-width non-joiner).
        let c = canonical("select n_name from nation where n_name <> 'می\u{200c}خواهم' and n_comment <> 'a\u{1b}b'")
            .unwrap();
        assert!(c.sql.contains('\u{200c}') && c.sql.contains('\u{1b}'));
        // A hidden character both inside and outside a literal is still refused.
        assert!(canonical("select 'a\u{1b}' as x\u{1b} from nation").is_err());
        // Tab and newline are whitespace.
        assert!(canonical("select\tn_name\nfrom nation").is_ok());
    }

    #[test]
    fn the_allow_list_narrows_known_tables() {
        let allowed = vec!["orders".to_string(), "Customer".to_string()];
        let ok = check("select * from orders join customer on o_custkey = c_custkey", DB, &known(), &allowed)
            .unwrap()
            .tables;
        assert_eq!(ok, vec!["customer", "orders"]);
        let err = check("select * from orders join nation on true", DB, &known(), &allowed).unwrap_err();
        assert!(err.reason.contains("\"nation\" is not in this request's allowed tables (customer, orders)"), "{err}");
        // Known still applies: an allowed name that does not exist is refused as unknown.
        let err = check("select * from ghost", DB, &known(), &["ghost".to_string()]).unwrap_err();
        assert!(err.reason.contains("does not exist"), "{err}");
    }

    #[test]
    fn the_database_name_is_the_only_schema() {
        let ok = check("select * from sales.orders", "sales", &["orders".to_string()], &[]).unwrap().tables;
        assert_eq!(ok, vec!["orders"]);
        let err = check("select * from tpch.orders", "sales", &["orders".to_string()], &[]).unwrap_err();
        assert!(err.reason.contains("schema \"tpch\""), "{err}");
    }

    #[test]
    fn oversized_input_is_refused() {
        let sql = format!("select 1 {}", " ".repeat(MAX_SQL_BYTES));
        assert!(run(&sql).unwrap_err().reason.contains("bytes"));
    }

    /// Runs `f` on a thread with the default 2 MiB stack, as tokio's workers have.
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap()
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let parens = format!("select {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let subqueries = format!("select * from {}orders{}", "(select * from ".repeat(5_000), ") x".repeat(5_000));
        let scalar_subqueries = format!("select {}1{}", "(select ".repeat(5_000), ")".repeat(5_000));
        let negations = format!("select {}1", "- ".repeat(20_000));
        let plus_chain = format!("select 1{}", "+1".repeat(45_000));
        let casts = format!("select 1{}", "::int".repeat(18_000));
        let unions = format!("select 1{}", " union all select 1".repeat(4_000));
        for (label, sql) in [
            ("parens", parens),
            ("subqueries", subqueries),
            ("scalar subqueries", scalar_subqueries),
            ("negations", negations),
            ("plus chain", plus_chain),
            ("casts", casts),
            ("unions", unions),
        ] {
            let got = on_small_stack(move || run(&sql));
            let err = got.expect_err(label);
            assert!(err.reason.contains("nested too deeply") || err.reason.contains("UNION"), "{label}: {err}");
        }
    }

    #[test]
    fn moderately_long_chains_are_fine() {
        let ors = format!("select * from orders where {}", vec!["o_orderkey = 1"; 300].join(" or "));
        assert_eq!(run(&ors).unwrap(), vec!["orders"]);
        let unions = format!("select 1{}", " union all select 1".repeat(200));
        assert!(run(&unions).is_ok());
        let nested = format!("select * from {}orders{}", "(select * from ".repeat(10), ") x".repeat(10));
        assert_eq!(run(&nested).unwrap(), vec!["orders"]);
    }

    #[test]
    fn nested_ctes_are_walked_in_linear_time() {
        // 40 levels of WITH inside WITH: exponential re-walking would never finish.
        let mut sql = "select * from nation".to_string();
        for i in 0..40 {
            sql = format!("with c{i} as ({sql}) select * from c{i}");
        }
        let started = std::time::Instant::now();
        assert_eq!(run(&sql).unwrap(), vec!["nation"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn read_only_check_needs_no_catalog_but_refuses_everything_else() {
        assert_eq!(
            check_read_only("select * from anything a join tpch.other b on true", "tpch", &[]).unwrap().tables,
            vec!["anything", "other"]
        );
        for bad in [
            "drop table x",
            "select 1; select 2",
            "copy x to '/tmp/y'",
            "select * from other.x",
            "select * from read_parquet('/etc/x')",
        ] {
            assert!(check_read_only(bad, "tpch", &[]).is_err(), "{bad}");
        }
        assert!(check_read_only("select * from orders", "tpch", &["customer".to_string()]).is_err());
    }
}
