//! Scan estimates for a data lake described by a catalog (Glue) and stored in S3: what the
//! Athena engine shows before approval (`status.estimate`).
//!
//! # How
//!
//! 1. The SQL (already accepted by the guard, parsed with the same parser) is read for what it
//!    touches: every base-table reference, every column it names (qualified or not), `*` and
//!    `t.*` in select lists, and the simple conjuncts of each `WHERE` (`col op literal`,
//!    `col BETWEEN a AND b`, `col IN (…)`).
//! 2. For each table the catalog gives its layout (location, format, columns, partition keys).
//!    Conjuncts on partition keys become a Glue partition filter (`GetPartitions` with an
//!    expression): only the kept partitions' locations are listed. A table referenced twice
//!    is scanned twice, each reference with its own filter; one reference without a filter
//!    on the partition keys reads every partition.
//! 3. `ListObjectsV2` sums the object sizes under each kept location (hidden `_`/`.` files and
//!    folder markers skipped, as Athena does).
//! 4. Columnar formats read only the columns a query names: for Parquet the share is measured
//!    from the footer of the largest object (compressed bytes per column, summed over its row
//!    groups); for ORC, or when no footer can be read, a type-width heuristic weights the
//!    columns. Text formats are read whole. Partition keys are not in the files.
//! 5. Cost: `price_per_tb` per TB (2^40 bytes) with Athena's 10 MB minimum per query.
//!
//! What it does not model: row-group/stripe pruning inside files by min/max statistics (Athena
//! does it, so a selective filter on a sorted column reads less than estimated), `LIMIT`
//! stopping a scan early, and a CTE referenced twice (Athena inlines it and scans twice; it is
//! counted once). All of them make the estimate err high, never low, except the CTE case.
//! Table formats that keep history under the location (Iceberg, Delta) are listed whole, old
//! snapshots included, so they err high too.
//!
//! Layouts, partition lists, listings and footers are cached for a TTL (default 5 minutes):
//! a request is estimated once per approval round, but a refine loop or a burst of similar
//! questions would otherwise list the same prefixes again and again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::Hash;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::config::ConfigOptions;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, Statement, TableFactor, TableWithJoins, UnaryOperator, Value, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::{GenericDialect, dialect_from_str};
use futures::StreamExt;

use super::EngineError;
use crate::aws::{self, ErrorClass, S3Uri};
use crate::catalog::{Catalog, CatalogError, Column, DataFormat, Partition, TableLayout};
use crate::spec::Estimate;
use crate::spec::quantity::human_bytes;

/// How long layouts, partitions, listings and footers are reused.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Entries per cache map before expired ones are dropped (and, if still full, all of them).
const CACHE_CAP: usize = 4096;
/// S3 listings in flight at once for one estimate.
const LIST_CONCURRENCY: usize = 16;
/// Longest Glue partition filter sent; a longer one is dropped (every partition is listed).
const MAX_EXPRESSION_CHARS: usize = 2048;
/// Largest Parquet footer fetched to measure column shares.
const MAX_FOOTER_BYTES: u64 = 16 * 1024 * 1024;
/// Stack of the thread that parses and walks the SQL (see `guard`: deep ASTs drop recursively).
const ANALYZE_STACK_BYTES: usize = 64 << 20;
/// Longest `method` text kept (it is shown in status, the approval card and the console).
const MAX_METHOD_CHARS: usize = 900;

// ---------------------------------------------------------------------------------------------
// What the SQL touches

/// A comparison the partition filter can express.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Between,
    In,
}

/// A literal in a conjunct: a string (also `DATE '…'`, `TIMESTAMP '…'`) or a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    Str(String),
    Num(String),
}

/// `column op values` from a `WHERE`, with the column's qualifier if it had one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conjunct {
    pub qualifier: Option<String>,
    pub column: String,
    pub op: CmpOp,
    pub values: Vec<Literal>,
}

/// One base table in a `FROM`, with the name it is referred to by there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub table: String,
    pub alias: String,
}

/// One `SELECT` of the query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub tables: Vec<TableRef>,
    /// `SELECT *`
    pub wildcard: bool,
    /// `SELECT t.*`
    pub qualified_wildcards: Vec<String>,
    /// Simple top-level conjuncts of its `WHERE`.
    pub conjuncts: Vec<Conjunct>,
}

/// What a query touches, read from its text (names lower-cased unless quoted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryRefs {
    pub scopes: Vec<Scope>,
    /// Every column reference: `(qualifier, column)`.
    pub columns: Vec<(Option<String>, String)>,
}

impl QueryRefs {
    /// Base tables the query reads, deduplicated.
    pub fn tables(&self) -> BTreeSet<String> {
        self.scopes.iter().flat_map(|s| s.tables.iter().map(|t| t.table.clone())).collect()
    }
}

/// Reads `sql` for what it touches. Runs on a thread of its own with a large stack.
pub async fn analyze(sql: &str) -> Result<QueryRefs, EngineError> {
    let sql = sql.to_string();
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("sqlctl-estimate".into())
                .stack_size(ANALYZE_STACK_BYTES)
                .spawn_scoped(scope, || analyze_here(&sql))
                .map_err(|e| format!("could not start the estimate's parser thread: {e}"))?
                .join()
                .unwrap_or_else(|_| Err("reading the SQL failed unexpectedly".into()))
        })
    })
    .await
    .map_err(|e| EngineError::Transient(format!("estimating: {e}")))?
    .map_err(EngineError::Permanent)
}

fn analyze_here(sql: &str) -> Result<QueryRefs, String> {
    let options = ConfigOptions::default();
    let dialect = dialect_from_str(options.sql_parser.dialect).unwrap_or_else(|| Box::new(GenericDialect {}));
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(options.sql_parser.recursion_limit.get())
        .build()
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("SQL does not parse: {e}"))?;
    let query = match statements.pop_front() {
        Some(DFStatement::Statement(s)) => match *s {
            Statement::Query(q) => q,
            _ => return Err("only a SELECT query can be estimated".into()),
        },
        _ => return Err("only a SELECT query can be estimated".into()),
    };
    let mut walker = RefWalker::default();
    let _ = query.visit(&mut walker);
    let mut refs = walker.refs;
    // A one-part name that is a CTE is not a base table.
    for scope in &mut refs.scopes {
        scope.tables.retain(|t| !walker.ctes.contains(&t.table) || t.qualified);
    }
    Ok(QueryRefs {
        scopes: refs
            .scopes
            .into_iter()
            .map(|s| Scope {
                tables: s.tables.into_iter().map(|t| TableRef { table: t.table, alias: t.alias }).collect(),
                wildcard: s.wildcard,
                qualified_wildcards: s.qualified_wildcards,
                conjuncts: s.conjuncts,
            })
            .collect(),
        columns: refs.columns,
    })
}

/// Unquoted identifiers are case-insensitive (lower-cased); quoted ones are kept.
fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() { i.value.clone() } else { i.value.to_ascii_lowercase() }
}

fn name_parts(n: &ObjectName) -> Vec<String> {
    n.0.iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => ident(i),
            other => other.to_string().to_ascii_lowercase(),
        })
        .collect()
}

#[derive(Default)]
struct RawTable {
    table: String,
    alias: String,
    /// Named with a schema (`db.t`): never a CTE.
    qualified: bool,
}

#[derive(Default)]
struct RawScope {
    tables: Vec<RawTable>,
    wildcard: bool,
    qualified_wildcards: Vec<String>,
    conjuncts: Vec<Conjunct>,
}

#[derive(Default)]
struct RawRefs {
    scopes: Vec<RawScope>,
    columns: Vec<(Option<String>, String)>,
}

#[derive(Default)]
struct RefWalker {
    refs: RawRefs,
    ctes: HashSet<String>,
}

impl Visitor for RefWalker {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(with.cte_tables.iter().map(|c| ident(&c.alias.name)));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        let mut scope = RawScope::default();
        for t in &select.from {
            collect_tables(t, &mut scope.tables);
        }
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) => scope.wildcard = true,
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
                    if let Some(last) = name_parts(n).pop() {
                        scope.qualified_wildcards.push(last);
                    }
                }
                _ => {}
            }
        }
        if let Some(w) = &select.selection {
            let mut parts = Vec::new();
            split_and(w, &mut parts);
            scope.conjuncts = parts.into_iter().filter_map(conjunct).collect();
        }
        self.refs.scopes.push(scope);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(i) => self.refs.columns.push((None, ident(i))),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let n = parts.len();
                self.refs.columns.push((Some(ident(&parts[n - 2])), ident(&parts[n - 1])));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn collect_tables(t: &TableWithJoins, out: &mut Vec<RawTable>) {
    collect_factor(&t.relation, out);
    for j in &t.joins {
        collect_factor(&j.relation, out);
    }
}

fn collect_factor(f: &TableFactor, out: &mut Vec<RawTable>) {
    match f {
        TableFactor::Table { name, alias, .. } => {
            let parts = name_parts(name);
            let Some(table) = parts.last().cloned() else { return };
            let alias = alias.as_ref().map(|a| ident(&a.name)).unwrap_or_else(|| table.clone());
            out.push(RawTable { table, alias, qualified: parts.len() > 1 });
        }
        TableFactor::NestedJoin { table_with_joins, .. } => collect_tables(table_with_joins, out),
        // Derived tables and the rest are visited as queries of their own.
        _ => {}
    }
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            split_and(left, out);
            split_and(right, out);
        }
        Expr::Nested(inner) => split_and(inner, out),
        other => out.push(other),
    }
}

fn column_ref(e: &Expr) -> Option<(Option<String>, String)> {
    match e {
        Expr::Identifier(i) => Some((None, ident(i))),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let n = parts.len();
            Some((Some(ident(&parts[n - 2])), ident(&parts[n - 1])))
        }
        Expr::Nested(inner) => column_ref(inner),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<Literal> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(Literal::Num(n.to_string())),
            Value::SingleQuotedString(s) => Some(Literal::Str(s.clone())),
            _ => None,
        },
        Expr::TypedString(t) => match &t.value.value {
            Value::SingleQuotedString(s) => Some(Literal::Str(s.clone())),
            _ => None,
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match literal(expr)? {
            Literal::Num(n) => Some(Literal::Num(format!("-{n}"))),
            Literal::Str(_) => None,
        },
        Expr::Nested(inner) => literal(inner),
        _ => None,
    }
}

fn conjunct(e: &Expr) -> Option<Conjunct> {
    let make = |(qualifier, column): (Option<String>, String), op, values| Conjunct { qualifier, column, op, values };
    match e {
        Expr::BinaryOp { left, op, right } => {
            let op_of = |op: &BinaryOperator, flipped: bool| -> Option<CmpOp> {
                Some(match (op, flipped) {
                    (BinaryOperator::Eq, _) => CmpOp::Eq,
                    (BinaryOperator::NotEq, _) => CmpOp::NotEq,
                    (BinaryOperator::Lt, false) | (BinaryOperator::Gt, true) => CmpOp::Lt,
                    (BinaryOperator::LtEq, false) | (BinaryOperator::GtEq, true) => CmpOp::LtEq,
                    (BinaryOperator::Gt, false) | (BinaryOperator::Lt, true) => CmpOp::Gt,
                    (BinaryOperator::GtEq, false) | (BinaryOperator::LtEq, true) => CmpOp::GtEq,
                    _ => return None,
                })
            };
            if let (Some(c), Some(v)) = (column_ref(left), literal(right)) {
                return Some(make(c, op_of(op, false)?, vec![v]));
            }
            if let (Some(v), Some(c)) = (literal(left), column_ref(right)) {
                return Some(make(c, op_of(op, true)?, vec![v]));
            }
            None
        }
        Expr::Between { expr, negated: false, low, high } => {
            Some(make(column_ref(expr)?, CmpOp::Between, vec![literal(low)?, literal(high)?]))
        }
        Expr::InList { expr, list, negated: false } if !list.is_empty() => {
            let values = list.iter().map(literal).collect::<Option<Vec<_>>>()?;
            Some(make(column_ref(expr)?, CmpOp::In, values))
        }
        Expr::Nested(inner) => conjunct(inner),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Resolving references against table layouts

/// What one table contributes to a query's scan.
#[derive(Clone, Debug, PartialEq)]
pub struct TableScan {
    pub table: String,
    /// All stored columns (a `*` reached it).
    pub all_columns: bool,
    /// Stored (non-partition) columns the query names.
    pub columns: BTreeSet<String>,
    /// One entry per reference: the Glue partition filter of that reference, or `None` when
    /// it reads every partition.
    pub filters: Vec<Option<String>>,
}

/// Resolves `refs` against `layouts` (every table of `refs.tables()` must be there). An
/// unqualified column counts for every table of the query that has it; a qualifier for every
/// table referred to by that name anywhere in the query: ambiguity errs towards reading more.
pub fn resolve(refs: &QueryRefs, layouts: &HashMap<String, TableLayout>) -> Vec<TableScan> {
    let lower = |cols: &[Column]| -> Vec<String> { cols.iter().map(|c| c.name.to_ascii_lowercase()).collect() };
    let stored: HashMap<&str, Vec<String>> = layouts.iter().map(|(k, l)| (k.as_str(), lower(&l.columns))).collect();
    let keys: HashMap<&str, Vec<String>> =
        layouts.iter().map(|(k, l)| (k.as_str(), lower(&l.partition_keys))).collect();
    let mut aliases: HashMap<&str, HashSet<&str>> = HashMap::new();
    for t in refs.scopes.iter().flat_map(|s| &s.tables) {
        aliases.entry(t.alias.as_str()).or_default().insert(t.table.as_str());
        aliases.entry(t.table.as_str()).or_default().insert(t.table.as_str());
    }
    let mut scans: HashMap<String, TableScan> = refs
        .tables()
        .into_iter()
        .filter(|t| layouts.contains_key(t))
        .map(|t| (t.clone(), TableScan { table: t, all_columns: false, columns: BTreeSet::new(), filters: vec![] }))
        .collect();

    for (qualifier, column) in &refs.columns {
        let candidates: Vec<String> = match qualifier {
            Some(q) => aliases.get(q.as_str()).map(|s| s.iter().map(|t| t.to_string()).collect()).unwrap_or_default(),
            None => scans.keys().cloned().collect(),
        };
        for t in candidates {
            if stored.get(t.as_str()).is_some_and(|cols| cols.contains(column))
                && let Some(scan) = scans.get_mut(&t)
            {
                scan.columns.insert(column.clone());
            }
        }
    }

    for scope in &refs.scopes {
        for t in &scope.tables {
            let star = scope.wildcard || scope.qualified_wildcards.iter().any(|q| q == &t.alias || q == &t.table);
            let Some(layout) = layouts.get(&t.table) else { continue };
            let Some(scan) = scans.get_mut(&t.table) else { continue };
            if star {
                scan.all_columns = true;
            }
            // Conjuncts of this scope that name one of this reference's partition keys.
            let table_keys = &keys[t.table.as_str()];
            let mine: Vec<&Conjunct> = scope
                .conjuncts
                .iter()
                .filter(|c| table_keys.contains(&c.column))
                .filter(|c| match &c.qualifier {
                    Some(q) => q == &t.alias,
                    // Unqualified: only when no other table of the scope has a column so named.
                    None => !scope.tables.iter().any(|o| {
                        !std::ptr::eq(o, t)
                            && (stored.get(o.table.as_str()).is_some_and(|c2| c2.contains(&c.column))
                                || keys.get(o.table.as_str()).is_some_and(|k| k.contains(&c.column)))
                    }),
                })
                .collect();
            scan.filters.push(partition_filter(&mine, &layout.partition_keys));
        }
    }
    let mut out: Vec<TableScan> = scans.into_values().collect();
    out.sort_by(|a, b| a.table.cmp(&b.table));
    out
}

/// The Glue partition filter for `conjuncts` (all on partition keys), or `None` when none can
/// be expressed. A conjunct whose literal does not fit its key's type is left out (the filter
/// then keeps more partitions, never fewer).
fn partition_filter(conjuncts: &[&Conjunct], keys: &[Column]) -> Option<String> {
    let mut parts = Vec::new();
    for c in conjuncts {
        let Some(key) = keys.iter().find(|k| k.name.eq_ignore_ascii_case(&c.column)) else { continue };
        if !key.name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            continue;
        }
        let Some(values) = c.values.iter().map(|v| glue_literal(v, &key.data_type)).collect::<Option<Vec<_>>>() else {
            continue;
        };
        let name = &key.name;
        let text = match c.op {
            CmpOp::Eq => format!("{name} = {}", values[0]),
            CmpOp::NotEq => format!("{name} <> {}", values[0]),
            CmpOp::Lt => format!("{name} < {}", values[0]),
            CmpOp::LtEq => format!("{name} <= {}", values[0]),
            CmpOp::Gt => format!("{name} > {}", values[0]),
            CmpOp::GtEq => format!("{name} >= {}", values[0]),
            CmpOp::Between => format!("{name} BETWEEN {} AND {}", values[0], values[1]),
            CmpOp::In => format!("{name} IN ({})", values.join(", ")),
        };
        parts.push(text);
    }
    if parts.is_empty() { None } else { Some(parts.join(" AND ")) }
}

/// A literal as Glue's filter wants it for a key of type `key_type`, or `None` when it does not
/// fit (then the conjunct is not used).
fn glue_literal(v: &Literal, key_type: &str) -> Option<String> {
    let t = key_type.trim().to_ascii_lowercase();
    let integer = ["tinyint", "smallint", "int", "integer", "bigint", "long"].contains(&t.as_str());
    let text = t == "string" || t.starts_with("varchar") || t.starts_with("char") || t == "date" || t == "timestamp";
    match v {
        Literal::Num(n) if integer && n.parse::<i64>().is_ok() => Some(n.clone()),
        Literal::Str(s) if integer && s.trim().parse::<i64>().is_ok() => Some(s.trim().to_string()),
        Literal::Str(s) if text && !s.contains('\'') && !s.contains('\\') => Some(format!("'{s}'")),
        Literal::Num(n) if text && t == "string" => Some(format!("'{n}'")),
        _ => None,
    }
}

/// Rough stored width of a Hive/Glue type, for the column share when no footer tells.
fn type_width(t: &str) -> f64 {
    let t = t.trim().to_ascii_lowercase();
    match t.as_str() {
        "boolean" | "tinyint" => 1.0,
        "smallint" => 2.0,
        "int" | "integer" | "float" | "real" | "date" => 4.0,
        "bigint" | "long" | "double" | "timestamp" => 8.0,
        _ if t.starts_with("decimal") => {
            let precision = t
                .trim_start_matches("decimal")
                .trim_start_matches('(')
                .split([',', ')'])
                .next()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .unwrap_or(38);
            if precision <= 18 { 8.0 } else { 16.0 }
        }
        _ if t.starts_with("array") || t.starts_with("map") || t.starts_with("struct") => 32.0,
        _ => 16.0,
    }
}

// ---------------------------------------------------------------------------------------------
// The estimator

/// A small TTL map; errors are never stored.
struct TtlMap<K, V> {
    entries: HashMap<K, (Instant, V)>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    fn new() -> Self {
        TtlMap { entries: HashMap::new() }
    }

    fn get(&self, k: &K, ttl: Duration) -> Option<V> {
        self.entries.get(k).filter(|(at, _)| at.elapsed() < ttl).map(|(_, v)| v.clone())
    }

    fn put(&mut self, k: K, v: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        if self.entries.len() >= CACHE_CAP {
            self.entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if self.entries.len() >= CACHE_CAP {
                self.entries.clear();
            }
        }
        self.entries.insert(k, (Instant::now(), v));
    }
}

/// Data objects under one location.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Listing {
    bytes: u64,
    objects: u64,
    /// The largest object (`s3://…` URI, size): the footer sample.
    largest: Option<(String, u64)>,
}

type ColumnBytes = Arc<HashMap<String, u64>>;

struct Caches {
    layouts: TtlMap<(String, String), Option<TableLayout>>,
    partitions: TtlMap<(String, String, Option<String>), Arc<Vec<Partition>>>,
    listings: TtlMap<String, Listing>,
    footers: TtlMap<String, Option<ColumnBytes>>,
}

/// Estimates scans of tables described by a [`Catalog`] and stored in S3 (see the module docs).
pub struct LakeEstimator {
    catalog: Arc<dyn Catalog>,
    s3: aws_sdk_s3::Client,
    price_per_tb: f64,
    ttl: Duration,
    caches: Mutex<Caches>,
}

impl std::fmt::Debug for LakeEstimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeEstimator").field("price_per_tb", &self.price_per_tb).field("ttl", &self.ttl).finish()
    }
}

fn catalog_error(e: CatalogError) -> EngineError {
    if e.is_transient() { EngineError::Transient(e.to_string()) } else { EngineError::Permanent(e.to_string()) }
}

fn s3_error<E>(what: &str, e: aws::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> EngineError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let msg = aws::describe(&e);
    match aws::classify(&e) {
        ErrorClass::Transient => EngineError::Transient(format!("S3 {what}: {msg}")),
        ErrorClass::AccessDenied => EngineError::Permanent(format!(
            "S3 {what}: {msg}; estimating needs s3:ListBucket (and s3:GetObject for Parquet footers) on the table's location"
        )),
        _ => EngineError::Permanent(format!("S3 {what}: {msg}")),
    }
}

/// Does Athena read this object? Not folder markers, and nothing whose name (or a directory on
/// the way to it below the listed prefix) starts with `_` or `.` (`_SUCCESS`, `.crc`, `_temporary/`).
fn is_data_object(relative_key: &str) -> bool {
    !relative_key.is_empty()
        && !relative_key.ends_with('/')
        && !relative_key.ends_with("$folder$")
        && relative_key.split('/').all(|seg| !seg.starts_with('_') && !seg.starts_with('.'))
}

/// Per-table outcome, for the method text.
struct TableReport {
    table: String,
    format: DataFormat,
    partitioned: bool,
    partitions_total: Option<usize>,
    partitions_kept: usize,
    listed_bytes: u64,
    objects: u64,
    share: f64,
    share_from: &'static str,
    references: usize,
    filtered: bool,
    bytes: u64,
}

impl LakeEstimator {
    pub fn new(catalog: Arc<dyn Catalog>, s3: aws_sdk_s3::Client, price_per_tb: f64) -> Self {
        LakeEstimator {
            catalog,
            s3,
            price_per_tb,
            ttl: DEFAULT_CACHE_TTL,
            caches: Mutex::new(Caches {
                layouts: TtlMap::new(),
                partitions: TtlMap::new(),
                listings: TtlMap::new(),
                footers: TtlMap::new(),
            }),
        }
    }

    /// How long catalog and S3 answers are reused (zero disables the cache).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Estimates `sql` against `database` (see the module docs).
    pub async fn estimate(&self, database: &str, sql: &str) -> Result<Estimate, EngineError> {
        let refs = analyze(sql).await?;
        let mut layouts = HashMap::new();
        for table in refs.tables() {
            match self.layout(database, &table).await? {
                Some(l) => {
                    layouts.insert(table, l);
                }
                None => {
                    return Err(EngineError::Permanent(format!(
                        "table {database}.{table} is not in the catalog, so its scan cannot be estimated"
                    )));
                }
            }
        }
        let scans = resolve(&refs, &layouts);
        let mut reports = Vec::new();
        let mut total = 0u64;
        for scan in &scans {
            let layout = &layouts[&scan.table];
            let report = self.table_bytes(database, layout, scan).await?;
            total = total.saturating_add(report.bytes);
            reports.push(report);
        }
        Ok(Estimate { bytes: total, cost_usd: cost_usd(total, self.price_per_tb), method: self.method(&reports) })
    }

    async fn layout(&self, database: &str, table: &str) -> Result<Option<TableLayout>, EngineError> {
        let key = (database.to_string(), table.to_string());
        if let Some(l) = self.caches().layouts.get(&key, self.ttl) {
            return Ok(l);
        }
        let l = self.catalog.layout(database, table).await.map_err(catalog_error)?;
        self.caches().layouts.put(key, l.clone(), self.ttl);
        Ok(l)
    }

    async fn partitions(
        &self,
        database: &str,
        table: &str,
        expression: Option<&str>,
    ) -> Result<Arc<Vec<Partition>>, EngineError> {
        let key = (database.to_string(), table.to_string(), expression.map(str::to_string));
        if let Some(p) = self.caches().partitions.get(&key, self.ttl) {
            return Ok(p);
        }
        let p = Arc::new(self.catalog.partitions(database, table, expression).await.map_err(catalog_error)?);
        self.caches().partitions.put(key, Arc::clone(&p), self.ttl);
        Ok(p)
    }

    /// Bytes one table contributes: every reference's kept partitions, listed, times the share
    /// of column bytes the query reads.
    async fn table_bytes(
        &self,
        database: &str,
        layout: &TableLayout,
        scan: &TableScan,
    ) -> Result<TableReport, EngineError> {
        let partitioned = !layout.partition_keys.is_empty();
        if !partitioned && layout.location.is_empty() {
            return Err(EngineError::Permanent(format!(
                "table {database}.{} has no storage location (a view?), so its scan cannot be estimated",
                layout.name
            )));
        }
        let mut partitions_total = None;
        let mut kept_locations: Vec<Vec<String>> = Vec::new();
        let mut filtered = false;
        for filter in &scan.filters {
            if !partitioned {
                kept_locations.push(vec![layout.location.clone()]);
                continue;
            }
            let all = self.partitions(database, &layout.name, None).await?;
            partitions_total = Some(all.len());
            let kept = match filter.as_deref().filter(|f| f.len() <= MAX_EXPRESSION_CHARS) {
                None => all,
                Some(f) => match self.partitions(database, &layout.name, Some(f)).await {
                    Ok(p) => {
                        filtered = true;
                        p
                    }
                    // A filter Glue will not take (a type it compares differently): list them all.
                    Err(EngineError::Permanent(m)) => {
                        tracing::debug!(table = %layout.name, filter = f, error = %m, "partition filter refused; listing every partition");
                        all
                    }
                    Err(e) => return Err(e),
                },
            };
            kept_locations.push(kept.iter().map(|p| p.location.clone()).filter(|l| !l.is_empty()).collect());
        }
        let distinct: BTreeSet<String> = kept_locations.iter().flatten().cloned().collect();
        let listings: HashMap<String, Listing> = futures::stream::iter(distinct.into_iter().map(|loc| async move {
            let l = self.listing(&loc).await?;
            Ok::<_, EngineError>((loc, l))
        }))
        .buffer_unordered(LIST_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;

        let (share, share_from) = self.column_share(layout, scan, &listings).await;
        let mut bytes = 0f64;
        for locations in &kept_locations {
            let reference_bytes: u64 = locations.iter().filter_map(|l| listings.get(l)).map(|l| l.bytes).sum();
            bytes += reference_bytes as f64 * share;
        }
        Ok(TableReport {
            table: layout.name.clone(),
            format: layout.format,
            partitioned,
            partitions_total,
            partitions_kept: kept_locations.iter().map(Vec::len).max().unwrap_or(0),
            listed_bytes: listings.values().map(|l| l.bytes).sum(),
            objects: listings.values().map(|l| l.objects).sum(),
            share,
            share_from,
            references: scan.filters.len(),
            filtered,
            bytes: bytes.round() as u64,
        })
    }

    /// Sizes of the data objects under `location` (an `s3://` URI), paginated to the end.
    async fn listing(&self, location: &str) -> Result<Listing, EngineError> {
        if let Some(l) = self.caches().listings.get(&location.to_string(), self.ttl) {
            return Ok(l);
        }
        let uri = S3Uri::parse(location).map_err(|e| {
            EngineError::Permanent(format!("table location {location}: {e}; expected s3://bucket/prefix"))
        })?;
        let prefix = if uri.key.is_empty() { String::new() } else { format!("{}/", uri.key) };
        let mut listing = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&uri.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_error(&format!("ListObjectsV2 {location}"), e))?;
            for o in out.contents() {
                let key = o.key().unwrap_or_default();
                let size = o.size().unwrap_or(0).max(0) as u64;
                if !is_data_object(key.strip_prefix(&prefix).unwrap_or(key)) {
                    continue;
                }
                listing.bytes += size;
                listing.objects += 1;
                if listing.largest.as_ref().is_none_or(|(_, s)| size > *s) {
                    listing.largest = Some((format!("s3://{}/{key}", uri.bucket), size));
                }
            }
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) && !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        self.caches().listings.put(location.to_string(), listing.clone(), self.ttl);
        Ok(listing)
    }

    /// The share of a table's stored bytes the query reads, and where it came from.
    async fn column_share(
        &self,
        layout: &TableLayout,
        scan: &TableScan,
        listings: &HashMap<String, Listing>,
    ) -> (f64, &'static str) {
        if !layout.format.is_columnar() {
            return (1.0, "whole files");
        }
        if scan.all_columns {
            return (1.0, "all columns");
        }
        let read = |name: &str| scan.columns.contains(&name.to_ascii_lowercase());
        if layout.format == DataFormat::Parquet {
            let sample = listings.values().filter_map(|l| l.largest.clone()).max_by_key(|(_, size)| *size);
            if let Some((uri, size)) = sample
                && let Some(per_column) = self.footer(&uri, size).await
            {
                let total: u64 = per_column.values().sum();
                if total > 0 {
                    let read_bytes: u64 = per_column.iter().filter(|(c, _)| read(c)).map(|(_, b)| *b).sum();
                    return (read_bytes as f64 / total as f64, "Parquet footer");
                }
            }
        }
        let total: f64 = layout.columns.iter().map(|c| type_width(&c.data_type)).sum();
        if total <= 0.0 {
            return (1.0, "all columns");
        }
        let read_width: f64 = layout.columns.iter().filter(|c| read(&c.name)).map(|c| type_width(&c.data_type)).sum();
        (read_width / total, "column types")
    }

    /// Compressed bytes per top-level column (lower-cased) from the footer of the Parquet object
    /// at `uri`; `None` when it cannot be read (the caller falls back to type widths).
    async fn footer(&self, uri: &str, size: u64) -> Option<ColumnBytes> {
        if let Some(f) = self.caches().footers.get(&uri.to_string(), self.ttl) {
            return f;
        }
        let read = self.read_footer(uri, size).await;
        if let Err(e) = &read {
            tracing::debug!(object = uri, error = %e, "could not read a Parquet footer for the estimate");
        }
        let value = read.ok().map(Arc::new);
        self.caches().footers.put(uri.to_string(), value.clone(), self.ttl);
        value
    }

    async fn read_footer(&self, uri: &str, size: u64) -> Result<HashMap<String, u64>, String> {
        if size < 12 {
            return Err("too small to be Parquet".into());
        }
        let u = S3Uri::parse(uri)?;
        let get = |range: String| {
            let s3 = self.s3.clone();
            let (bucket, key) = (u.bucket.clone(), u.key.clone());
            async move {
                let out =
                    s3.get_object().bucket(bucket).key(key).range(range).send().await.map_err(|e| aws::describe(&e))?;
                out.body.collect().await.map(|b| b.into_bytes()).map_err(|e| e.to_string())
            }
        };
        let tail = get(format!("bytes={}-{}", size - 8, size - 1)).await?;
        if tail.len() != 8 || &tail[4..] != b"PAR1" {
            return Err("no Parquet magic at the end".into());
        }
        let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if len == 0 || len > MAX_FOOTER_BYTES || len + 8 > size {
            return Err(format!("implausible footer length {len}"));
        }
        let footer = get(format!("bytes={}-{}", size - 8 - len, size - 9)).await?;
        let meta = ParquetMetaDataReader::decode_metadata(&footer).map_err(|e| e.to_string())?;
        let mut per_column: HashMap<String, u64> = HashMap::new();
        for rg in meta.row_groups() {
            for chunk in rg.columns() {
                if let Some(top) = chunk.column_path().parts().first() {
                    *per_column.entry(top.to_ascii_lowercase()).or_default() += chunk.compressed_size().max(0) as u64;
                }
            }
        }
        Ok(per_column)
    }

    fn method(&self, reports: &[TableReport]) -> String {
        let mut parts = Vec::new();
        for r in reports {
            let mut s = format!("{} ({}", r.table, r.format.as_str());
            if r.partitioned {
                match r.partitions_total {
                    Some(total) if r.filtered => {
                        s.push_str(&format!(", {} of {total} partitions kept by the filter", r.partitions_kept))
                    }
                    Some(total) => s.push_str(&format!(", all {total} partitions")),
                    None => {}
                }
            }
            s.push_str(&format!(", {} in {} objects", human_bytes(r.listed_bytes), r.objects));
            if r.format.is_columnar() {
                s.push_str(&format!(" × {:.0}% of column bytes by {}", r.share * 100.0, r.share_from));
            }
            if r.references > 1 {
                s.push_str(&format!(", scanned {} times", r.references));
            }
            s.push(')');
            parts.push(s);
        }
        let tables = if parts.is_empty() { "no tables".to_string() } else { parts.join("; ") };
        let mut text = format!(
            "athena: Glue layout and S3 object sizes: {tables}; US${}/TB, 10 MB minimum; no pruning inside files",
            self.price_per_tb
        );
        if text.chars().count() > MAX_METHOD_CHARS {
            text = text.chars().take(MAX_METHOD_CHARS - 1).collect::<String>() + "…";
        }
        text
    }
}

/// Bytes in the TB Athena prices by.
pub(crate) const TB: f64 = 1_099_511_627_776.0;
/// Athena bills at least this many bytes per query.
const MIN_BILLED_BYTES: u64 = 10 * 1024 * 1024;

/// US$ Athena bills for `bytes` scanned at `price_per_tb`: rounded up to the MB, 10 MB minimum.
pub fn cost_usd(bytes: u64, price_per_tb: f64) -> f64 {
    let mb = 1024 * 1024;
    let billed = bytes.div_ceil(mb) * mb;
    billed.max(MIN_BILLED_BYTES) as f64 / TB * price_per_tb
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(sql: &str) -> QueryRefs {
        analyze_here(sql).unwrap()
    }

    fn col(name: &str, t: &str) -> Column {
        Column { name: name.into(), data_type: t.into(), ..Default::default() }
    }

    fn layouts() -> HashMap<String, TableLayout> {
        let events = TableLayout {
            name: "events".into(),
            location: "s3://lake/events/".into(),
            format: DataFormat::Parquet,
            columns: vec![col("id", "bigint"), col("payload", "string"), col("amount", "decimal(12,2)")],
            partition_keys: vec![col("dt", "date"), col("region", "string"), col("hour", "int")],
        };
        let users = TableLayout {
            name: "users".into(),
            location: "s3://lake/users/".into(),
            format: DataFormat::Orc,
            columns: vec![col("id", "bigint"), col("name", "string"), col("region", "string")],
            partition_keys: vec![],
        };
        HashMap::from([("events".to_string(), events), ("users".to_string(), users)])
    }

    #[test]
    fn columns_wildcards_and_partition_filters_are_read_from_the_sql() {
        let r = refs(
            "select e.id, count(*) from lake.events e join users u on e.id = u.id \
             where e.dt >= date '2024-01-01' and e.region in ('eu', 'us') and 3 > hour and u.name like 'a%' \
             group by e.id",
        );
        let scans = resolve(&r, &layouts());
        assert_eq!(scans.len(), 2);
        let events = &scans[0];
        assert_eq!(events.table, "events");
        assert!(!events.all_columns);
        assert_eq!(events.columns.iter().map(String::as_str).collect::<Vec<_>>(), ["id"]);
        assert_eq!(
            events.filters,
            [Some("dt >= '2024-01-01' AND region IN ('eu', 'us') AND hour < 3".to_string())],
            "qualified and unambiguous unqualified keys, literal first flipped"
        );
        let users = &scans[1];
        assert_eq!(users.columns.iter().map(String::as_str).collect::<Vec<_>>(), ["id", "name"]);
        assert_eq!(users.filters, [None]);
    }

    #[test]
    fn count_star_is_no_wildcard_but_select_star_is() {
        let scans = resolve(&refs("select count(*) from events"), &layouts());
        assert!(!scans[0].all_columns && scans[0].columns.is_empty());
        let scans = resolve(&refs("select u.* from users u join events e on u.id = e.id"), &layouts());
        assert!(!scans[0].all_columns, "events is not reached by u.*");
        assert!(scans[1].all_columns);
        let scans = resolve(
            &refs("with x as (select * from events where dt = '2024-05-01') select count(*) from x"),
            &layouts(),
        );
        assert_eq!(scans.len(), 1, "the CTE is not a table");
        assert!(scans[0].all_columns);
        assert_eq!(scans[0].filters, [Some("dt = '2024-05-01'".to_string())]);
    }

    #[test]
    fn each_reference_keeps_its_own_partitions_and_an_unfiltered_one_reads_all() {
        let scans = resolve(
            &refs(
                "select a.id from events a join events b on a.id = b.id where a.dt = '2024-01-01' and b.region = 'eu'",
            ),
            &layouts(),
        );
        assert_eq!(scans[0].filters, [Some("dt = '2024-01-01'".to_string()), Some("region = 'eu'".to_string())]);
        let scans =
            resolve(&refs("select id from events where dt = '2024-01-01' union all select id from events"), &layouts());
        assert_eq!(scans[0].filters, [Some("dt = '2024-01-01'".to_string()), None]);
        // Ambiguous unqualified key (region is also a users column), OR, functions: no filter.
        let scans = resolve(
            &refs("select e.id from events e join users u on e.id = u.id where region = 'eu' or year(dt) = 2024"),
            &layouts(),
        );
        assert_eq!(scans[0].filters, [None]);
        let scans =
            resolve(&refs("select e.id from events e join users u on e.id = u.id where region = 'eu'"), &layouts());
        assert_eq!(scans[0].filters, [None], "region is ambiguous between events (key) and users (column)");
    }

    #[test]
    fn literals_that_do_not_fit_the_key_type_are_left_out() {
        let keys = [col("dt", "date"), col("hour", "int"), col("name", "string")];
        let c =
            |column: &str, op, values: Vec<Literal>| Conjunct { qualifier: None, column: column.into(), op, values };
        let hour_text = c("hour", CmpOp::Eq, vec![Literal::Str("7".into())]);
        let hour_word = c("hour", CmpOp::Eq, vec![Literal::Str("seven".into())]);
        let quote = c("name", CmpOp::Eq, vec![Literal::Str("o'brien".into())]);
        let between =
            c("dt", CmpOp::Between, vec![Literal::Str("2024-01-01".into()), Literal::Str("2024-02-01".into())]);
        assert_eq!(partition_filter(&[&hour_text], &keys).as_deref(), Some("hour = 7"));
        assert_eq!(partition_filter(&[&hour_word, &quote], &keys), None);
        assert_eq!(
            partition_filter(&[&between, &hour_word], &keys).as_deref(),
            Some("dt BETWEEN '2024-01-01' AND '2024-02-01'")
        );
    }

    #[test]
    fn hidden_files_and_folder_markers_are_not_data() {
        assert!(is_data_object("part-0001.parquet"));
        assert!(is_data_object("dt=2024-01-01/part-0.parquet"));
        for hidden in ["_SUCCESS", ".part-0.crc", "_temporary/0/part", "dt=2024-01-01/", "x_$folder$", ""] {
            assert!(!is_data_object(hidden), "{hidden}");
        }
    }

    #[test]
    fn type_widths_order_the_columns_sensibly() {
        assert!(type_width("boolean") < type_width("int"));
        assert!(type_width("int") < type_width("bigint"));
        assert_eq!(type_width("decimal(12,2)"), 8.0);
        assert_eq!(type_width("decimal(38, 6)"), 16.0);
        assert!(type_width("string") > type_width("bigint"));
    }

    #[test]
    fn a_cache_entry_expires_and_a_full_cache_is_emptied() {
        let mut m: TtlMap<u32, u32> = TtlMap::new();
        m.put(1, 10, Duration::from_secs(60));
        assert_eq!(m.get(&1, Duration::from_secs(60)), Some(10));
        assert_eq!(m.get(&1, Duration::ZERO), None);
        m.put(2, 20, Duration::ZERO);
        assert_eq!(m.get(&2, Duration::from_secs(60)), None, "a zero TTL stores nothing");
        for i in 0..(CACHE_CAP as u32 + 10) {
            m.put(i, i, Duration::from_secs(60));
        }
        assert!(m.entries.len() <= CACHE_CAP);
    }

    /// Against moto: a partitioned Parquet table and a CSV table in Glue, their files in S3.
    mod against_moto {
        use aws_sdk_glue::types::{
            Column as GlueColumn, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
        };
        use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::parquet::arrow::ArrowWriter;

        use super::*;
        use crate::aws::testing::{config_for, moto_url, unique};
        use crate::catalog::glue::GlueCatalog;
        use crate::engine::Engine;
        use crate::engine::athena::{AthenaEngine, AthenaOptions};

        /// A Parquet file of `rows` rows: a small `id` column and a wide `payload` one.
        fn parquet(rows: i64) -> Vec<u8> {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("payload", DataType::Utf8, false),
            ]));
            let ids: Vec<i64> = (0..rows).collect();
            let payloads: Vec<String> = ids.iter().map(|i| format!("{i}-{}", "p".repeat(200))).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(payloads))],
            )
            .unwrap();
            let mut out = Vec::new();
            let mut w = ArrowWriter::try_new(&mut out, schema, None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            out
        }

        /// Compressed bytes of `id` and of all columns in a Parquet file.
        fn id_share(file: &[u8]) -> f64 {
            let n = file.len();
            let len = u32::from_le_bytes(file[n - 8..n - 4].try_into().unwrap()) as usize;
            let meta = ParquetMetaDataReader::decode_metadata(&file[n - 8 - len..n - 8]).unwrap();
            let (mut id, mut all) = (0i64, 0i64);
            for rg in meta.row_groups() {
                for c in rg.columns() {
                    all += c.compressed_size();
                    if c.column_path().parts()[0] == "id" {
                        id += c.compressed_size();
                    }
                }
            }
            id as f64 / all as f64
        }

        fn sd(location: &str, parquet: bool) -> StorageDescriptor {
            let (input, serde) = if parquet {
                (
                    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                )
            } else {
                ("org.apache.hadoop.mapred.TextInputFormat", "org.apache.hadoop.hive.serde2.OpenCSVSerde")
            };
            StorageDescriptor::builder()
                .location(location)
                .input_format(input)
                .serde_info(SerDeInfo::builder().serialization_library(serde).build())
                .columns(GlueColumn::builder().name("id").r#type("bigint").build().unwrap())
                .columns(GlueColumn::builder().name("payload").r#type("string").build().unwrap())
                .build()
        }

        #[tokio::test]
        async fn partitions_kept_by_the_filter_are_listed_and_scaled_by_the_footer_share() {
            let Some(url) = moto_url() else { return };
            let conf = config_for(&url).await;
            let (s3, glue) = (aws::s3(&conf), aws::glue(&conf));
            let bucket = unique("lake");
            let db = unique("db").replace('-', "_");
            s3.create_bucket().bucket(&bucket).send().await.unwrap();
            let days = [("2024-01-01", 500i64), ("2024-01-02", 2000), ("2024-01-03", 1000)];
            let mut files = HashMap::new();
            for (day, rows) in days {
                let body = parquet(rows);
                let key = format!("events/dt={day}/part-0.parquet");
                s3.put_object().bucket(&bucket).key(&key).body(body.clone().into()).send().await.unwrap();
                // Hidden files are not data.
                let marker = format!("events/dt={day}/_SUCCESS");
                s3.put_object().bucket(&bucket).key(marker).body(vec![0u8; 4096].into()).send().await.unwrap();
                files.insert(day, body);
            }
            let notes = "id,payload\n1,a\n2,b\n".repeat(100);
            s3.put_object()
                .bucket(&bucket)
                .key("notes/notes.csv")
                .body(notes.clone().into_bytes().into())
                .send()
                .await
                .unwrap();

            glue.create_database()
                .database_input(DatabaseInput::builder().name(&db).build().unwrap())
                .send()
                .await
                .unwrap();
            let events = TableInput::builder()
                .name("events")
                .storage_descriptor(sd(&format!("s3://{bucket}/events/"), true))
                .partition_keys(GlueColumn::builder().name("dt").r#type("string").build().unwrap())
                .build()
                .unwrap();
            glue.create_table().database_name(&db).table_input(events).send().await.unwrap();
            for (day, _) in days {
                let p = PartitionInput::builder()
                    .values(day)
                    .storage_descriptor(sd(&format!("s3://{bucket}/events/dt={day}/"), true))
                    .build();
                glue.create_partition()
                    .database_name(&db)
                    .table_name("events")
                    .partition_input(p)
                    .send()
                    .await
                    .unwrap();
            }
            let notes_table = TableInput::builder()
                .name("notes")
                .storage_descriptor(sd(&format!("s3://{bucket}/notes/"), false))
                .build()
                .unwrap();
            glue.create_table().database_name(&db).table_input(notes_table).send().await.unwrap();

            let catalog: Arc<dyn Catalog> = Arc::new(GlueCatalog::new(glue.clone(), None));
            let engine = AthenaEngine::new(aws::athena(&conf), s3.clone(), AthenaOptions::default())
                .with_catalog(Arc::clone(&catalog));
            let size = |day: &str| files[day].len() as u64;

            // One partition, one narrow column: that partition's bytes × the id share of its footer.
            let e = engine.estimate(&db, "select id from events where dt = '2024-01-02'").await.unwrap();
            let expected = (size("2024-01-02") as f64 * id_share(&files["2024-01-02"])).round() as u64;
            assert_eq!(e.bytes, expected, "{e:?}");
            assert!(e.method.contains("1 of 3 partitions kept") && e.method.contains("Parquet footer"), "{}", e.method);
            assert_eq!(e.cost_usd, cost_usd(0, 5.0), "under 10 MB the minimum is billed");
            assert!((e.cost_usd - 10.0 * 1024.0 * 1024.0 / (1u64 << 40) as f64 * 5.0).abs() < 1e-12);

            // Every column of two partitions (BETWEEN on the key); the hidden files never count.
            let e = engine
                .estimate(&db, "select * from events where dt between '2024-01-02' and '2024-01-03'")
                .await
                .unwrap();
            assert_eq!(e.bytes, size("2024-01-02") + size("2024-01-03"), "{e:?}");
            // No filter on the key: every partition.
            let e = engine.estimate(&db, "select e.payload from events e where e.payload like '1%'").await.unwrap();
            let all: u64 = days.iter().map(|(d, _)| size(d)).sum();
            assert!(e.bytes > all / 2 && e.bytes < all, "{e:?} of {all}");
            assert!(e.method.contains("all 3 partitions"), "{}", e.method);
            // A text table is read whole, whatever the columns.
            let e = engine.estimate(&db, "select count(id) from notes").await.unwrap();
            assert_eq!(e.bytes, notes.len() as u64);
            assert!(e.method.contains("notes (text"), "{}", e.method);
            // A table the catalog does not know cannot be estimated.
            let err = engine.estimate(&db, "select * from nope").await.unwrap_err();
            assert!(err.to_string().contains("not in the catalog"), "{err}");

            // Listings are cached: a new object is seen only by an estimator without a cache.
            let extra = parquet(100);
            s3.put_object()
                .bucket(&bucket)
                .key("events/dt=2024-01-02/part-1.parquet")
                .body(extra.clone().into())
                .send()
                .await
                .unwrap();
            let sql = "select * from events where dt = '2024-01-02'";
            assert_eq!(engine.estimate(&db, sql).await.unwrap().bytes, size("2024-01-02"));
            let fresh = LakeEstimator::new(catalog, s3, 5.0).with_ttl(Duration::ZERO);
            assert_eq!(fresh.estimate(&db, sql).await.unwrap().bytes, size("2024-01-02") + extra.len() as u64);
        }
    }
}
