//! The benchmark scoring rule (the defog set's README): whether a generated result answers like
//! a gold one.
//!
//! - every gold column maps to a distinct generated column holding the same values (extra
//!   generated columns and another column order are fine);
//! - rows equal as multisets, or in order when the case is `ordered` — where rows tied on the
//!   gold query's `ORDER BY` keys may come in any order;
//! - with `ORDER BY … LIMIT n`, rows tied with the last kept row at the cut-off may be any of the
//!   tied rows (so the gold query is also run without its `LIMIT` to know them);
//! - numbers equal within 1e-6 relative, a `DATE` equal to the `TIMESTAMP` at its midnight,
//!   `NULL` equal only to `NULL`.
//!
//! The gold query's keys are found by parsing it ([`GoldPlan::of`]): an `ORDER BY` item names an
//! output column by position, alias or the same expression; an item that is not an output
//! column is appended to the projection as a hidden key column (dropped from the comparison).

use std::cmp::Ordering;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, LimitClause, OrderByKind, Query, SelectItem, SetExpr, Statement, Value,
};
use datafusion::sql::sqlparser::parser::Parser;

/// Relative tolerance between two numbers.
const REL_TOLERANCE: f64 = 1e-6;

/// Prefix of the hidden key columns appended to a gold query.
const HIDDEN_KEY: &str = "__sqlctl_order_key";

/// A result as the engine returns it: rows of text cells, `None` for NULL.
pub type Rows = Vec<Vec<Option<String>>>;

/// How to run one gold query so that its result can be compared by the rule.
#[derive(Clone, Debug, PartialEq)]
pub struct GoldPlan {
    /// The SQL to run: the gold query, with hidden key columns appended when needed.
    pub sql: String,
    /// The same without its `LIMIT`, when it has `ORDER BY … LIMIT n` (ties at the cut-off).
    pub unlimited_sql: Option<String>,
    /// The `LIMIT`, when `unlimited_sql` is set.
    pub limit: Option<usize>,
    /// Output columns of `sql` that hold the `ORDER BY` keys (in order); empty when unknown.
    pub keys: Vec<usize>,
    /// How many hidden key columns `sql` appends after the gold columns.
    pub hidden: usize,
}

impl GoldPlan {
    /// Reads the gold query's `ORDER BY` keys and `LIMIT`. A query it cannot read is run as is,
    /// with no keys (rows then compare strictly in order when the case is ordered).
    pub fn of(sql: &str) -> GoldPlan {
        let plain = GoldPlan { sql: sql.to_string(), unlimited_sql: None, limit: None, keys: vec![], hidden: 0 };
        let dialect = crate::guard::dialect();
        let Ok(mut statements) = Parser::parse_sql(dialect.as_ref(), sql) else {
            return plain;
        };
        if statements.len() != 1 {
            return plain;
        }
        let Statement::Query(query) = &mut statements[0] else {
            return plain;
        };
        let Some(order) = query.order_by.as_ref() else {
            return plain;
        };
        let OrderByKind::Expressions(items) = &order.kind else {
            return plain;
        };
        let items: Vec<Expr> = items.iter().map(|o| o.expr.clone()).collect();
        let mut keys = Vec::with_capacity(items.len());
        let mut hidden = 0;
        match query.body.as_mut() {
            SetExpr::Select(select) => {
                let can_add = select.distinct.is_none()
                    && !select
                        .projection
                        .iter()
                        .any(|p| matches!(p, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)));
                let width = select.projection.len();
                for (i, e) in items.iter().enumerate() {
                    match output_column(&select.projection, e) {
                        Some(c) => keys.push(c),
                        None if can_add => {
                            select.projection.push(SelectItem::ExprWithAlias {
                                expr: e.clone(),
                                alias: Ident::new(format!("{HIDDEN_KEY}{i}")),
                            });
                            keys.push(width + hidden);
                            hidden += 1;
                        }
                        None => return plain,
                    }
                }
            }
            _ => {
                // A set operation: only positions name its columns.
                for e in &items {
                    match position(e) {
                        Some(c) => keys.push(c),
                        None => return plain,
                    }
                }
            }
        }
        let keyed_sql = statements[0].to_string();
        let (unlimited_sql, limit) = match unlimited(&mut statements[0]) {
            Some(n) => (Some(statements[0].to_string()), Some(n)),
            None => (None, None),
        };
        GoldPlan { sql: keyed_sql, unlimited_sql, limit, keys, hidden }
    }
}

/// Removes a plain `LIMIT n` (no `OFFSET`) from the statement, returning `n`.
fn unlimited(statement: &mut Statement) -> Option<usize> {
    let Statement::Query(query) = statement else { return None };
    let n = plain_limit(query)?;
    query.limit_clause = None;
    Some(n)
}

fn plain_limit(query: &Query) -> Option<usize> {
    match query.limit_clause.as_ref()? {
        LimitClause::LimitOffset { limit: Some(Expr::Value(v)), offset: None, limit_by } if limit_by.is_empty() => {
            match &v.value {
                Value::Number(n, _) => n.parse().ok(),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `ORDER BY 2`: the second output column.
fn position(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<usize>().ok().filter(|&n| n >= 1).map(|n| n - 1),
            _ => None,
        },
        _ => None,
    }
}

/// The output column an `ORDER BY` item names: by position, by alias, or the same expression
/// (a bare column name also matches a qualified one in the select list).
fn output_column(projection: &[SelectItem], e: &Expr) -> Option<usize> {
    if let Some(p) = position(e) {
        return (p < projection.len()).then_some(p);
    }
    let same = |a: &Expr, b: &Expr| a.to_string().eq_ignore_ascii_case(&b.to_string());
    let last = |x: &Expr| match x {
        Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(p) => p.last().map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    };
    if let Expr::Identifier(name) = e {
        let alias = projection.iter().position(|p| match p {
            SelectItem::ExprWithAlias { alias, .. } => alias.value.eq_ignore_ascii_case(&name.value),
            _ => false,
        });
        if alias.is_some() {
            return alias;
        }
    }
    if let Some(found) = projection.iter().position(|p| match p {
        SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } => same(x, e),
        _ => false,
    }) {
        return Some(found);
    }
    // `ORDER BY name` against `SELECT t.name` (or the other way round), when only one matches.
    let want = last(e)?;
    let hits: Vec<usize> = projection
        .iter()
        .enumerate()
        .filter(|(_, p)| match p {
            SelectItem::UnnamedExpr(x) => last(x).as_deref() == Some(want.as_str()),
            _ => false,
        })
        .map(|(i, _)| i)
        .collect();
    (hits.len() == 1).then(|| hits[0])
}

/// A cell as compared.
#[derive(Clone, Debug)]
enum Cell {
    Null,
    Num(f64),
    Text(String),
}

impl Cell {
    fn of(raw: &Option<String>) -> Cell {
        let Some(s) = raw else { return Cell::Null };
        let t = s.trim();
        if let Ok(v) = t.parse::<f64>()
            && v.is_finite()
            && !t.is_empty()
        {
            return Cell::Num(if v == 0.0 { 0.0 } else { v });
        }
        Cell::Text(midnight_as_date(t).to_string())
    }

    fn eq(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Null, Cell::Null) => true,
            (Cell::Num(a), Cell::Num(b)) => close(*a, *b),
            (Cell::Text(a), Cell::Text(b)) => a == b,
            _ => false,
        }
    }

    /// A total order that keeps close numbers next to each other.
    fn cmp(&self, other: &Cell) -> Ordering {
        match (self, other) {
            (Cell::Null, Cell::Null) => Ordering::Equal,
            (Cell::Null, _) => Ordering::Less,
            (_, Cell::Null) => Ordering::Greater,
            (Cell::Num(a), Cell::Num(b)) => a.total_cmp(b),
            (Cell::Num(_), Cell::Text(_)) => Ordering::Less,
            (Cell::Text(_), Cell::Num(_)) => Ordering::Greater,
            (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
        }
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= REL_TOLERANCE * a.abs().max(b.abs())
}

/// `2024-01-05T00:00:00` and `2024-01-05 00:00:00.000` as the date `2024-01-05`.
fn midnight_as_date(t: &str) -> &str {
    let b = t.as_bytes();
    let is_date = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    if !is_date || b.len() == 10 {
        return t;
    }
    let rest = &t[10..];
    let Some(time) = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' ')) else { return t };
    let midnight = time
        .strip_prefix("00:00:00")
        .is_some_and(|f| f.is_empty() || (f.starts_with('.') && f[1..].bytes().all(|c| c == b'0')) || f == "Z")
        || time == "00:00";
    if midnight { &t[..10] } else { t }
}

type Row = Vec<Cell>;

fn row_eq(a: &Row, b: &Row) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq(y))
}

fn row_cmp(a: &Row, b: &Row) -> Ordering {
    a.iter().zip(b).map(|(x, y)| x.cmp(y)).find(|o| *o != Ordering::Equal).unwrap_or(a.len().cmp(&b.len()))
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort_by(row_cmp);
    rows
}

/// Equal as multisets.
fn same_multiset(a: &[Row], b: &[Row]) -> bool {
    a.len() == b.len() && sorted(a.to_vec()).iter().zip(sorted(b.to_vec()).iter()).all(|(x, y)| row_eq(x, y))
}

/// Removes one row equal to each of `items` from `pool`; false when one is missing.
fn remove_each(pool: &mut Vec<Row>, items: &[Row]) -> bool {
    for item in items {
        match pool.iter().position(|r| row_eq(r, item)) {
            Some(i) => {
                pool.swap_remove(i);
            }
            None => return false,
        }
    }
    true
}

/// Runs of equal keys in `rows` (sorted as the query sorted them): `[start, end)` ranges.
fn blocks(rows: &[Row], keys: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=rows.len() {
        let same = i < rows.len() && keys.iter().all(|&k| rows[i][k].eq(&rows[start][k]));
        if !same {
            out.push((start, i));
            start = i;
        }
    }
    out
}

/// A gold result ready to compare against: its rows (with hidden key columns) and, for
/// `ORDER BY … LIMIT n`, every row of the query without its `LIMIT`.
pub struct Gold<'a> {
    pub plan: &'a GoldPlan,
    pub rows: &'a Rows,
    pub unlimited: Option<&'a Rows>,
}

/// Whether `got` answers like the gold result by the benchmark's rule; why not otherwise.
pub fn matches(gold: &Gold<'_>, got: &Rows, ordered: bool) -> Result<(), String> {
    let plan = gold.plan;
    let to_cells = |rows: &Rows| -> Vec<Row> { rows.iter().map(|r| r.iter().map(Cell::of).collect()).collect() };
    let gold_rows = to_cells(gold.rows);
    let got_rows = to_cells(got);
    if gold_rows.len() != got_rows.len() {
        return Err(format!("{} rows, expected {}", got_rows.len(), gold_rows.len()));
    }
    if gold_rows.is_empty() {
        return Ok(());
    }
    let width = gold_rows[0].len().saturating_sub(plan.hidden);
    let keys: Vec<usize> = if plan.keys.iter().all(|&k| k < gold_rows[0].len()) { plan.keys.clone() } else { vec![] };
    let o_cols = got_rows[0].len();
    if o_cols < width {
        return Err(format!("{o_cols} columns, expected {width}"));
    }
    // The cut-off: full (unlimited) rows and where the tied block at the limit starts.
    let cutoff = match (gold.unlimited, plan.limit) {
        (Some(full), Some(n)) if !keys.is_empty() && full.len() > n && gold_rows.len() == n => {
            let full = to_cells(full);
            let block = blocks(&full, &keys).into_iter().find(|(s, e)| *s < n && n <= *e);
            match block {
                Some((s, e)) if e > n => Some((full, s, e)),
                _ => None,
            }
        }
        _ => None,
    };
    let visible = |rows: &[Row]| -> Vec<Row> { rows.iter().map(|r| r[..width].to_vec()).collect() };
    let column = |rows: &[Row], c: usize| -> Vec<Row> { rows.iter().map(|r| vec![r[c].clone()]).collect() };
    // Candidate generated columns per gold column, by content.
    let candidates: Vec<Vec<usize>> = (0..width)
        .map(|gc| {
            (0..o_cols)
                .filter(|&oc| match &cutoff {
                    None => same_multiset(&column(&gold_rows, gc), &column(&got_rows, oc)),
                    Some((full, _, _)) => {
                        let mut pool = column(full, gc);
                        remove_each(&mut pool, &column(&got_rows, oc))
                    }
                })
                .collect()
        })
        .collect();
    if let Some(gc) = candidates.iter().position(|c| c.is_empty()) {
        return Err(format!("no generated column matches gold column {}", gc + 1));
    }
    let gold_blocks = blocks(&gold_rows, &keys);
    let check = |mapping: &[usize]| -> bool {
        let projected: Vec<Row> = got_rows.iter().map(|r| mapping.iter().map(|&c| r[c].clone()).collect()).collect();
        match &cutoff {
            None if !ordered => same_multiset(&visible(&gold_rows), &projected),
            None if keys.is_empty() => visible(&gold_rows).iter().zip(&projected).all(|(a, b)| row_eq(a, b)),
            None => gold_blocks.iter().all(|&(s, e)| same_multiset(&visible(&gold_rows[s..e]), &projected[s..e])),
            Some((full, s, e)) => {
                let (s, e) = (*s, *e);
                if ordered {
                    blocks(&full[..s], &keys)
                        .iter()
                        .all(|&(a, b)| same_multiset(&visible(&full[a..b]), &projected[a..b]))
                        && {
                            let mut pool = visible(&full[s..e]);
                            remove_each(&mut pool, &projected[s..])
                        }
                } else {
                    let mut rest = projected.clone();
                    remove_each(&mut rest, &visible(&full[..s])) && {
                        let mut pool = visible(&full[s..e]);
                        remove_each(&mut pool, &rest)
                    }
                }
            }
        }
    };
    if search(0, &candidates, &mut Vec::new(), &check) {
        Ok(())
    } else {
        Err(if ordered { "rows differ (or differ in order)".into() } else { "rows differ".into() })
    }
}

/// Backtracking over assignments of distinct generated columns (a handful of columns).
pub(super) fn search(
    k: usize,
    candidates: &[Vec<usize>],
    chosen: &mut Vec<usize>,
    check: &dyn Fn(&[usize]) -> bool,
) -> bool {
    if k == candidates.len() {
        return check(chosen);
    }
    for &c in &candidates[k] {
        if chosen.contains(&c) {
            continue;
        }
        chosen.push(c);
        if search(k + 1, candidates, chosen, check) {
            return true;
        }
        chosen.pop();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&[&str]]) -> Rows {
        v.iter().map(|r| r.iter().map(|c| if *c == "NULL" { None } else { Some(c.to_string()) }).collect()).collect()
    }

    fn plain() -> GoldPlan {
        GoldPlan::of("SELECT 1")
    }

    fn check(plan: &GoldPlan, gold: &Rows, got: &Rows, ordered: bool) -> Result<(), String> {
        matches(&Gold { plan, rows: gold, unlimited: None }, got, ordered)
    }

    #[test]
    fn numbers_agree_within_a_millionth_and_dates_equal_midnight_timestamps() {
        let p = plain();
        assert!(check(&p, &rows(&[&["0.333333"]]), &rows(&[&["0.3333333333"]]), false).is_ok());
        assert!(check(&p, &rows(&[&["0.3333"]]), &rows(&[&["0.3333333333"]]), false).is_err());
        assert!(check(&p, &rows(&[&["12"]]), &rows(&[&["12.0000"]]), false).is_ok());
        assert!(check(&p, &rows(&[&["2024-01-05"]]), &rows(&[&["2024-01-05T00:00:00"]]), false).is_ok());
        assert!(check(&p, &rows(&[&["2024-01-05"]]), &rows(&[&["2024-01-05 00:00:00.000"]]), false).is_ok());
        assert!(check(&p, &rows(&[&["2024-01-05"]]), &rows(&[&["2024-01-05T00:00:01"]]), false).is_err());
        assert!(check(&p, &rows(&[&["NULL"]]), &rows(&[&["0"]]), false).is_err());
        assert!(check(&p, &rows(&[&["NULL"]]), &rows(&[&["NULL"]]), false).is_ok());
    }

    #[test]
    fn gold_columns_map_to_distinct_generated_columns_and_extra_ones_are_fine() {
        let p = plain();
        let gold = rows(&[&["5", "a"], &["7", "b"]]);
        assert!(check(&p, &gold, &rows(&[&["x", "b", "7"], &["y", "a", "5"]]), false).is_ok());
        assert!(check(&p, &gold, &rows(&[&["5", "b"], &["7", "a"]]), false).is_err(), "rows pair differently");
        assert!(check(&p, &rows(&[&["1", "1"]]), &rows(&[&["1"]]), false).is_err(), "one column cannot serve two");
        assert!(check(&p, &gold, &rows(&[&["5", "a"]]), false).is_err());
    }

    #[test]
    fn order_by_keys_are_read_from_the_gold_query() {
        let p = GoldPlan::of("SELECT name, total FROM t ORDER BY total DESC, 1");
        assert_eq!((p.keys.clone(), p.hidden, p.limit), (vec![1, 0], 0, None));
        let p = GoldPlan::of("SELECT t.name, COUNT(*) AS n FROM t GROUP BY t.name ORDER BY n DESC LIMIT 3");
        assert_eq!((p.keys.clone(), p.hidden, p.limit), (vec![1], 0, Some(3)));
        assert!(!p.unlimited_sql.as_deref().unwrap().to_ascii_uppercase().contains("LIMIT"));
        let p = GoldPlan::of("SELECT name FROM t GROUP BY name ORDER BY COUNT(*) DESC");
        assert_eq!((p.keys.clone(), p.hidden), (vec![1], 1));
        assert!(p.sql.contains(HIDDEN_KEY), "{}", p.sql);
        let p = GoldPlan::of("SELECT name FROM t ORDER BY name LIMIT 2 OFFSET 1");
        assert_eq!((p.keys.clone(), p.limit), (vec![0], None), "an OFFSET keeps the cut-off strict");
    }

    #[test]
    fn rows_tied_on_the_order_keys_may_come_in_any_order() {
        let p = GoldPlan::of("SELECT name, n FROM t ORDER BY n DESC");
        let gold = rows(&[&["a", "3"], &["b", "2"], &["c", "2"], &["d", "1"]]);
        assert!(check(&p, &gold, &rows(&[&["a", "3"], &["c", "2"], &["b", "2"], &["d", "1"]]), true).is_ok());
        assert!(check(&p, &gold, &rows(&[&["b", "2"], &["a", "3"], &["c", "2"], &["d", "1"]]), true).is_err());
        // Without known keys the order is strict.
        assert!(check(&plain(), &gold, &rows(&[&["a", "3"], &["c", "2"], &["b", "2"], &["d", "1"]]), true).is_err());
        // Hidden keys are used and not compared.
        let p = GoldPlan::of("SELECT name FROM t ORDER BY n DESC");
        let gold = rows(&[&["a", "3"], &["b", "2"], &["c", "2"]]);
        assert!(check(&p, &gold, &rows(&[&["a"], &["c"], &["b"]]), true).is_ok());
        assert!(check(&p, &gold, &rows(&[&["c"], &["a"], &["b"]]), true).is_err());
    }

    #[test]
    fn with_a_limit_any_row_tied_at_the_cut_off_is_accepted() {
        let p = GoldPlan::of("SELECT name, n FROM t ORDER BY n DESC LIMIT 2");
        let full = rows(&[&["a", "3"], &["b", "2"], &["c", "2"], &["d", "1"]]);
        let gold = rows(&[&["a", "3"], &["b", "2"]]);
        let g = Gold { plan: &p, rows: &gold, unlimited: Some(&full) };
        assert!(matches(&g, &rows(&[&["a", "3"], &["c", "2"]]), true).is_ok());
        assert!(matches(&g, &rows(&[&["c", "2"], &["a", "3"]]), false).is_ok());
        assert!(matches(&g, &rows(&[&["c", "2"], &["a", "3"]]), true).is_err(), "the order still counts");
        assert!(matches(&g, &rows(&[&["a", "3"], &["d", "1"]]), true).is_err());
        assert!(matches(&g, &rows(&[&["b", "2"], &["c", "2"]]), false).is_err(), "the head is not optional");
        assert!(matches(&g, &rows(&[&["a", "3"], &["b", "2"], &["c", "2"]]), false).is_err());
    }
}
