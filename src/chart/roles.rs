//! Column roles from the approved SQL's shape, not from the result's text.
//!
//! The query already says what each result column is. In an aggregating query (a `GROUP BY`, an
//! aggregate in the select list, or a `HAVING`) a select item that contains an aggregate
//! (`SUM(x)`, `SUM(a) / COUNT(*)`, `ROUND(AVG(x), 2)`) is a **measure**, and every other item (a
//! group key, a non-aggregated expression, `EXTRACT(YEAR FROM d)`, `date_trunc('month', d)`) is
//! a **dimension**. A query without aggregates returns raw rows: its items are left for the
//! engine's types to decide ([`Item::role`] is `None`): a number that is not a key is the row's
//! value, the rest dimensions (see the chart's module docs). Window aggregates (`SUM(x) OVER
//! (…)`) are measures, ranking functions (`RANK() OVER (…)`) dimensions.
//!
//! An outer query over a CTE or a derived table inherits what the inner query said of a column
//! it passes through by name. A set operation (`UNION`) takes its first branch's shape (the
//! branches line up by position). `SELECT *` of raw rows leaves every column to its type; a
//! shape this walk cannot line up with the result's columns (`VALUES`, a wildcard beside an
//! aggregate) is reported as `Err(why)`, and the chart falls back to the text rules.
//!
//! Time: `date_trunc(unit, t)` (and `CAST(t AS DATE)`, `to_date`) is a time axis in steps of
//! `unit`; `EXTRACT(YEAR|QUARTER|MONTH|… FROM t)`, `date_part`, `year(t)`, … are ordered periods.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Query, Select, SelectItem,
    SetExpr, Statement, TableFactor, Value, visit_expressions,
};

use crate::spec::ColumnRole;

/// How a result column relates to time, from the expression that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeUse {
    /// `date_trunc('month', d)` and friends: a time axis in steps of `unit` (lower case).
    Trunc(String),
    /// `EXTRACT(YEAR FROM d)`: an ordered period number of `field` (lower case).
    Extract(String),
}

/// What the SQL says of one select item.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Item {
    /// `None`: a raw row's column, decided by its type.
    pub role: Option<ColumnRole>,
    pub time: Option<TimeUse>,
}

/// The items of the query's select list, in result order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    Items(Vec<Item>),
    /// `SELECT *` (or `t.*`) of raw rows: every column is left to its type.
    AllRaw,
}

/// Most bytes of SQL this walk reads on its own thread's stack (the guard's stack size).
const STACK_BYTES: usize = 64 << 20;

/// The roles the approved `sql` gives its result columns, or why they cannot be read from it.
pub fn from_sql(sql: &str) -> Result<Shape, String> {
    // Deeply nested expressions are walked (and dropped) recursively: on a large stack, as the
    // guard parses.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("sqlctl-roles".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, || from_sql_here(sql))
            .map_err(|e| format!("no thread to read the SQL's shape: {e}"))?
            .join()
            .unwrap_or_else(|_| Err("reading the SQL's shape failed".into()))
    })
}

fn from_sql_here(sql: &str) -> Result<Shape, String> {
    let statements = crate::guard::parse(sql).map_err(|e| e.to_string())?;
    let [DFStatement::Statement(statement)] = statements.as_slice() else {
        return Err("the SQL is not one statement".into());
    };
    let Statement::Query(query) = statement.as_ref() else {
        return Err("the SQL is not a query".into());
    };
    query_shape(query, &HashMap::new())
}

/// Named columns of the CTEs and derived tables a query reads, with what their queries said.
type Scope = HashMap<String, Item>;

fn query_shape(q: &Query, outer: &Scope) -> Result<Shape, String> {
    let mut scope = outer.clone();
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            let columns: Vec<String> = cte.alias.columns.iter().map(|c| norm(&c.name.value)).collect();
            if let Ok(Shape::Items(items)) = query_shape(&cte.query, &scope) {
                let names = if columns.len() == items.len() { columns } else { output_names(&cte.query) };
                for (name, item) in names.into_iter().zip(items) {
                    scope.insert(name, item);
                }
            }
        }
    }
    set_shape(&q.body, &scope)
}

fn set_shape(body: &SetExpr, scope: &Scope) -> Result<Shape, String> {
    match body {
        SetExpr::Select(s) => select_shape(s, scope),
        SetExpr::Query(q) => query_shape(q, scope),
        SetExpr::SetOperation { left, .. } => set_shape(left, scope),
        SetExpr::Values(_) => Err("a VALUES list has no select items to read roles from".into()),
        other => Err(format!("the query's body ({}) has no select items to read roles from", kind_of(other))),
    }
}

fn kind_of(body: &SetExpr) -> &'static str {
    match body {
        SetExpr::Table(_) => "TABLE",
        _ => "not a SELECT",
    }
}

/// The output names of a query's first select (aliases, else the last identifier part).
fn output_names(q: &Query) -> Vec<String> {
    let mut body = q.body.as_ref();
    loop {
        match body {
            SetExpr::Select(s) => {
                return s
                    .projection
                    .iter()
                    .map(|item| match item {
                        SelectItem::ExprWithAlias { alias, .. } => norm(&alias.value),
                        SelectItem::UnnamedExpr(e) => expr_name(e).unwrap_or_default(),
                        _ => String::new(),
                    })
                    .collect();
            }
            SetExpr::Query(q) => body = q.body.as_ref(),
            SetExpr::SetOperation { left, .. } => body = left.as_ref(),
            _ => return Vec::new(),
        }
    }
}

fn select_shape(s: &Select, outer: &Scope) -> Result<Shape, String> {
    let mut scope = outer.clone();
    for t in &s.from {
        for factor in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Derived { subquery, .. } = factor
                && let Ok(Shape::Items(items)) = query_shape(subquery, outer)
            {
                for (name, item) in output_names(subquery).into_iter().zip(items) {
                    scope.insert(name, item);
                }
            }
        }
    }
    let grouped = match &s.group_by {
        datafusion::sql::sqlparser::ast::GroupByExpr::All(_) => true,
        datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) => !e.is_empty(),
    };
    let exprs: Vec<Option<&Expr>> = s
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            SelectItem::ExprWithAliases { expr, .. } => Some(expr),
            SelectItem::QualifiedWildcard(..) | SelectItem::Wildcard(_) => None,
        })
        .collect();
    let aggregating = grouped || s.having.is_some() || exprs.iter().flatten().any(|e| has_aggregate(e));
    if exprs.iter().any(Option::is_none) {
        if aggregating {
            return Err("a wildcard beside GROUP BY or aggregates cannot be lined up with the result's columns".into());
        }
        if exprs.iter().all(Option::is_none) {
            return Ok(Shape::AllRaw);
        }
        return Err("a wildcard among other select items cannot be lined up with the result's columns".into());
    }
    let items = exprs
        .into_iter()
        .flatten()
        .map(|e| {
            let time = time_use(e);
            let role = if has_aggregate(e) || has_window_aggregate(e) {
                Some(ColumnRole::Measure)
            } else if aggregating || time.is_some() || is_constant(e) || has_window(e) {
                Some(ColumnRole::Dimension)
            } else {
                // A raw row's column: what the inner query said of it, if it passes one through.
                match expr_name(e).and_then(|n| scope.get(&n)) {
                    Some(inner) => return inner.clone(),
                    None => None,
                }
            };
            Item { role, time }
        })
        .collect();
    Ok(Shape::Items(items))
}

/// The name a plain column reference has in the output (`o.o_orderdate` → `o_orderdate`).
fn expr_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(norm(&i.value)),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| norm(&i.value)),
        Expr::Nested(inner) => expr_name(inner),
        _ => None,
    }
}

/// Names compare case-insensitively here; quoting rules only decide what the engine resolves.
fn norm(name: &str) -> String {
    name.to_lowercase()
}

const AGGREGATES: &[&str] = &[
    "sum",
    "count",
    "avg",
    "mean",
    "min",
    "max",
    "median",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "var",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "approx_percentile",
    "percentile_cont",
    "percentile_disc",
    "array_agg",
    "string_agg",
    "listagg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "bit_xor",
    "corr",
    "covar",
    "covar_pop",
    "covar_samp",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "count_if",
    "any_value",
    "arbitrary",
    "max_by",
    "min_by",
    "geometric_mean",
    "grouping",
    "nth_value",
    "first_value",
    "last_value",
];

const RANKING: &[&str] = &["row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead"];

fn function_name(f: &Function) -> String {
    f.name.0.last().map(|p| p.to_string().trim_matches('"').to_lowercase()).unwrap_or_default()
}

fn any_function(e: &Expr, mut pred: impl FnMut(&Function) -> bool) -> bool {
    visit_expressions(e, |e| match e {
        Expr::Function(f) if pred(f) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// An aggregate outside a window (`SUM(x)`, `COUNT(*)`), anywhere in the expression.
fn has_aggregate(e: &Expr) -> bool {
    any_function(e, |f| f.over.is_none() && AGGREGATES.contains(&function_name(f).as_str()))
}

/// An aggregate over a window (`SUM(x) OVER (…)`).
fn has_window_aggregate(e: &Expr) -> bool {
    any_function(e, |f| f.over.is_some() && !RANKING.contains(&function_name(f).as_str()))
}

fn has_window(e: &Expr) -> bool {
    any_function(e, |f| f.over.is_some())
}

fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::Value(_) | Expr::TypedString(_) => true,
        Expr::Nested(inner) | Expr::UnaryOp { expr: inner, .. } => is_constant(inner),
        Expr::Cast { expr, .. } => is_constant(expr),
        _ => false,
    }
}

/// Period fields `EXTRACT` and `date_part` name, as the chart labels them.
fn period_field(name: &str) -> Option<String> {
    let n = name.trim_matches(['\'', '"']).to_lowercase();
    let n = n.strip_suffix('s').unwrap_or(&n).to_string();
    matches!(
        n.as_str(),
        "year" | "quarter" | "month" | "week" | "day" | "dow" | "doy" | "hour" | "minute" | "second" | "isoyear"
    )
    .then_some(n)
}

fn string_arg(f: &Function, i: usize) -> Option<String> {
    let FunctionArguments::List(list) = &f.args else { return None };
    match list.args.get(i)? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(i))) => Some(i.value.clone()),
        _ => None,
    }
}

/// How the expression that makes a column relates to time (outermost first: `CAST(EXTRACT(…)
/// AS INT)` is still a period).
fn time_use(e: &Expr) -> Option<TimeUse> {
    match e {
        Expr::Extract { field, .. } => period_field(&field.to_string()).map(TimeUse::Extract),
        Expr::Nested(inner) => time_use(inner),
        Expr::Cast { expr, data_type, kind, .. } => {
            if matches!(data_type, DataType::Date) && matches!(kind, CastKind::Cast | CastKind::DoubleColon) {
                return Some(TimeUse::Trunc("day".into()));
            }
            time_use(expr)
        }
        Expr::Function(f) if f.over.is_none() => match function_name(f).as_str() {
            "date_trunc" | "datetrunc" => string_arg(f, 0).map(|u| TimeUse::Trunc(u.to_lowercase())),
            "date_part" | "datepart" | "extract" => {
                string_arg(f, 0).and_then(|u| period_field(&u)).map(TimeUse::Extract)
            }
            "to_date" => Some(TimeUse::Trunc("day".into())),
            name @ ("year" | "quarter" | "month" | "week" | "day" | "hour" | "day_of_week" | "dayofweek") => {
                let field = match name {
                    "day_of_week" | "dayofweek" => "dow",
                    other => other,
                };
                Some(TimeUse::Extract(field.into()))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnRole::{Dimension as D, Measure as M};

    fn roles(sql: &str) -> Vec<Option<ColumnRole>> {
        match from_sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
            Shape::Items(items) => items.into_iter().map(|i| i.role).collect(),
            Shape::AllRaw => panic!("{sql}: all raw"),
        }
    }

    #[test]
    fn group_keys_and_plain_items_are_dimensions_and_aggregates_measures() {
        // The shapes of issue 16: the year is a dimension, never a measure.
        let sql = "SELECT EXTRACT(YEAR FROM o_orderdate) AS yr, r_name, SUM(o_totalprice) AS revenue FROM orders GROUP BY 1, 2";
        assert_eq!(roles(sql), [Some(D), Some(D), Some(M)]);
        let sql =
            "SELECT o_orderpriority, EXTRACT(YEAR FROM o_orderdate) AS yr, COUNT(*) AS n FROM orders GROUP BY 1, 2";
        assert_eq!(roles(sql), [Some(D), Some(D), Some(M)]);
        assert_eq!(roles("SELECT SUM(o_totalprice) AS revenue FROM orders"), [Some(M)]);
        // Arithmetic over aggregates is a measure; a constant beside aggregates a dimension.
        let sql = "SELECT n_name, 'x' AS tag, ROUND(SUM(a) / COUNT(*), 2) AS avg_a, CAST(SUM(b) AS DOUBLE) * 100 AS pct FROM t GROUP BY n_name";
        assert_eq!(roles(sql), [Some(D), Some(D), Some(M), Some(M)]);
        // HAVING without GROUP BY still aggregates.
        assert_eq!(roles("SELECT COUNT(*) AS n FROM t HAVING COUNT(*) > 1"), [Some(M)]);
    }

    #[test]
    fn raw_rows_are_left_to_their_types_and_time_is_recognised() {
        assert_eq!(roles("SELECT c_name, c_acctbal FROM customer ORDER BY c_acctbal DESC LIMIT 5"), [None, None]);
        assert_eq!(from_sql("SELECT * FROM nation").unwrap(), Shape::AllRaw);
        let Shape::Items(items) =
            from_sql("SELECT date_trunc('month', o_orderdate) AS m, EXTRACT(QUARTER FROM d) q, year(d) y, COUNT(*) FROM orders GROUP BY 1, 2, 3").unwrap()
        else {
            panic!()
        };
        assert_eq!(items[0].time, Some(TimeUse::Trunc("month".into())));
        assert_eq!(items[1].time, Some(TimeUse::Extract("quarter".into())));
        assert_eq!(items[2].time, Some(TimeUse::Extract("year".into())));
        assert_eq!(items[3].role, Some(M));
        // A period in a raw query is still a dimension.
        assert_eq!(roles("SELECT EXTRACT(YEAR FROM o_orderdate) AS y, o_totalprice FROM orders"), [Some(D), None]);
        // Windows: running totals are measures, ranks dimensions.
        let sql = "SELECT d, SUM(x) OVER (ORDER BY d) AS running, RANK() OVER (ORDER BY x) AS r FROM t";
        assert_eq!(roles(sql), [None, Some(M), Some(D)]);
    }

    #[test]
    fn outer_queries_inherit_roles_from_ctes_and_subqueries_and_odd_shapes_say_why() {
        let sql = "WITH s AS (SELECT n_name, SUM(c_acctbal) AS bal FROM customer JOIN nation ON c_nationkey = n_nationkey GROUP BY n_name) \
                   SELECT n_name, bal FROM s ORDER BY bal DESC LIMIT 3";
        assert_eq!(roles(sql), [Some(D), Some(M)]);
        let sql = "SELECT yr, total FROM (SELECT EXTRACT(YEAR FROM o_orderdate) AS yr, SUM(o_totalprice) AS total FROM orders GROUP BY 1) t";
        assert_eq!(roles(sql), [Some(D), Some(M)]);
        // UNION: the first branch's shape.
        assert_eq!(
            roles("SELECT a, COUNT(*) FROM t GROUP BY a UNION ALL SELECT b, COUNT(*) FROM u GROUP BY b"),
            [Some(D), Some(M)]
        );
        assert!(from_sql("VALUES (1, 2)").is_err());
        assert!(from_sql("SELECT *, COUNT(*) FROM t GROUP BY a").is_err());
    }
}
