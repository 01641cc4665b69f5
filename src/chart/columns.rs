//! The result's columns as everything after the query reads them: the engine's types with the
//! roles the approved SQL gives them ([`super::roles`]), and the one-line answer of a one-row
//! result.

use super::format;
use super::roles::{Shape, TimeUse, from_sql};
use crate::spec::{Answer, AnswerValue, ColumnRole, Preview, ResultColumn, ValueKind};

/// Where the roles came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleSource {
    /// The approved SQL's select list (and the engine's types for raw rows).
    Query,
    /// The SQL's shape could not say (the reason): roles are guessed from the result's text.
    Text(String),
}

/// The columns of one result, typed and with roles.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// What `status.execution.columns` records.
    pub columns: Vec<ResultColumn>,
    /// How each column relates to time (from the SQL), aligned with `columns`.
    pub time: Vec<Option<TimeUse>>,
    pub source: RoleSource,
}

impl Analysis {
    /// The note for the `Charted` condition when roles were not read from the query.
    pub fn note(&self) -> Option<String> {
        match &self.source {
            RoleSource::Query => None,
            RoleSource::Text(why) => Some(format!("column roles guessed from the result's text ({why})")),
        }
    }
}

/// A column name that is probably a key (`id`, `customer_id`, `c_custkey`), not a measure.
pub fn looks_like_identifier(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "id" || n.ends_with("_id") || n.ends_with("key") || n.ends_with("code")
}

/// A column name that says it holds a calendar period (`year`, `yr`, `order_month`): a
/// dimension under the text rules, never a measure.
pub fn looks_like_period(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let last = n.rsplit(['_', ' ']).next().unwrap_or(&n);
    matches!(
        last,
        "year"
            | "yr"
            | "years"
            | "quarter"
            | "qtr"
            | "month"
            | "mon"
            | "week"
            | "wk"
            | "day"
            | "dow"
            | "hour"
            | "hr"
            | "minute"
    )
}

/// The role of a raw row's column (no aggregate in the query) from its type: a number that is
/// neither a key nor a period is the row's value; everything else tells rows apart. `None`
/// when the engine gave no type (the chart decides from the text).
pub fn raw_role(c: &ResultColumn) -> Option<ColumnRole> {
    match c.kind() {
        ValueKind::Other if c.type_.is_empty() => None,
        k if k.is_numeric() && !looks_like_identifier(&c.name) && !looks_like_period(&c.name) => {
            Some(ColumnRole::Measure)
        }
        _ => Some(ColumnRole::Dimension),
    }
}

/// Types from the engine (`engine`, may be empty: then the names of `header`), roles from `sql`
/// (the approved, canonical SQL; `None` for none).
pub fn analyse(sql: Option<&str>, engine: &[ResultColumn], header: &[String]) -> Analysis {
    let mut columns: Vec<ResultColumn> =
        if engine.len() == header.len() || header.is_empty() { engine.to_vec() } else { Vec::new() };
    if columns.is_empty() {
        columns = header.iter().map(|n| ResultColumn { name: n.clone(), ..Default::default() }).collect();
    }
    let shape = match sql {
        Some(sql) => from_sql(sql),
        None => Err("no approved SQL".into()),
    };
    let mut time = vec![None; columns.len()];
    let source = match shape {
        Ok(Shape::AllRaw) => {
            for c in &mut columns {
                c.role = raw_role(c);
            }
            RoleSource::Query
        }
        Ok(Shape::Items(items)) if items.len() == columns.len() => {
            for ((c, item), t) in columns.iter_mut().zip(items).zip(time.iter_mut()) {
                c.role = item.role.or_else(|| raw_role(c));
                *t = item.time;
            }
            RoleSource::Query
        }
        Ok(Shape::Items(items)) => RoleSource::Text(format!(
            "the SQL selects {} items but the result has {} columns",
            items.len(),
            columns.len()
        )),
        Err(why) => RoleSource::Text(why),
    };
    Analysis { columns, time, source }
}

/// A measure of the answer: the query's measures, or (when roles are unknown) a numeric column
/// that is not a key.
fn is_answer_measure(c: &ResultColumn, cell: Option<&str>) -> bool {
    match c.role {
        Some(r) => r == ColumnRole::Measure,
        None => {
            cell.is_some_and(|v| super::parse_number(v).is_some())
                && !looks_like_identifier(&c.name)
                && !looks_like_period(&c.name)
        }
    }
}

/// The one-line answer of a result with exactly one row and at least one measure: its measures
/// as labelled values, formatted for their types, and its dimensions as context.
pub fn answer(columns: &[ResultColumn], preview: &Preview) -> Option<Answer> {
    if preview.truncated || preview.rows.len() != 1 || columns.len() != preview.columns.len() {
        return None;
    }
    let row = &preview.rows[0];
    let mut answer = Answer::default();
    for (c, cell) in columns.iter().zip(row) {
        let kind = if c.type_.is_empty() { ValueKind::Other } else { c.kind() };
        let v = AnswerValue { name: c.name.clone(), value: cell.as_deref().map(|t| format::value(t, kind)) };
        if is_answer_measure(c, cell.as_deref()) {
            answer.values.push(v);
        } else {
            answer.context.push(v);
        }
    }
    (!answer.values.is_empty()).then_some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, type_: &str) -> ResultColumn {
        ResultColumn { name: name.into(), type_: type_.into(), role: None }
    }

    #[test]
    fn roles_come_from_the_query_and_raw_rows_from_their_types() {
        let engine = [col("yr", "integer"), col("r_name", "varchar"), col("revenue", "decimal(25,2)")];
        let header: Vec<String> = engine.iter().map(|c| c.name.clone()).collect();
        let sql = "SELECT EXTRACT(YEAR FROM o_orderdate) AS yr, r_name, SUM(o_totalprice) AS revenue FROM orders GROUP BY 1, 2";
        let a = analyse(Some(sql), &engine, &header);
        let roles: Vec<_> = a.columns.iter().map(|c| c.role).collect();
        assert_eq!(roles, [Some(ColumnRole::Dimension), Some(ColumnRole::Dimension), Some(ColumnRole::Measure)]);
        assert_eq!(a.time[0], Some(TimeUse::Extract("year".into())));
        assert_eq!((a.source.clone(), a.note()), (RoleSource::Query, None));

        let engine = [col("c_custkey", "bigint"), col("c_name", "varchar"), col("c_acctbal", "decimal(15,2)")];
        let header: Vec<String> = engine.iter().map(|c| c.name.clone()).collect();
        let a = analyse(Some("SELECT c_custkey, c_name, c_acctbal FROM customer"), &engine, &header);
        let roles: Vec<_> = a.columns.iter().map(|c| c.role).collect();
        assert_eq!(roles, [Some(ColumnRole::Dimension), Some(ColumnRole::Dimension), Some(ColumnRole::Measure)]);

        // A shape that cannot be read: the text rules, said so.
        let a = analyse(Some("VALUES (1)"), &[col("column1", "bigint")], &["column1".into()]);
        assert!(matches!(a.source, RoleSource::Text(_)) && a.columns[0].role.is_none());
        assert!(a.note().unwrap().contains("guessed from the result's text"), "{:?}", a.note());
        // No types from the engine: the header's names, roles from the SQL where it says.
        let a = analyse(Some("SELECT n, COUNT(*) AS c FROM t GROUP BY n"), &[], &["n".into(), "c".into()]);
        assert_eq!(
            a.columns[1],
            ResultColumn { name: "c".into(), type_: String::new(), role: Some(ColumnRole::Measure) }
        );
    }

    #[test]
    fn one_row_and_a_measure_is_an_answer() {
        let preview = |cols: &[&str], row: &[Option<&str>]| Preview {
            columns: cols.iter().map(|c| c.to_string()).collect(),
            rows: vec![row.iter().map(|c| c.map(str::to_string)).collect()],
            truncated: false,
        };
        let revenue = ResultColumn { role: Some(ColumnRole::Measure), ..col("revenue", "decimal(25,2)") };
        let a = answer(std::slice::from_ref(&revenue), &preview(&["revenue"], &[Some("21356596030.63")])).unwrap();
        assert_eq!(a.line(), "revenue: 21,356,596,030.63");
        let n = ResultColumn { role: Some(ColumnRole::Measure), ..col("n", "bigint") };
        let region = ResultColumn { role: Some(ColumnRole::Dimension), ..col("r_name", "varchar") };
        let a = answer(
            &[region.clone(), revenue.clone(), n.clone()],
            &preview(&["r_name", "revenue", "n"], &[Some("ASIA"), Some("10.50"), None]),
        )
        .unwrap();
        assert_eq!(a.line(), "revenue: 10.50 · n: NULL (r_name ASIA)");
        // Two rows, or no measure: no answer.
        let mut two = preview(&["revenue"], &[Some("1")]);
        two.rows.push(vec![Some("2".into())]);
        assert!(answer(std::slice::from_ref(&revenue), &two).is_none());
        assert!(answer(&[region], &preview(&["r_name"], &[Some("ASIA")])).is_none());
        // Unknown roles: a number that is not a key.
        let a = answer(
            &[col("total", ""), col("o_orderkey", "")],
            &preview(&["total", "o_orderkey"], &[Some("1234"), Some("7")]),
        );
        assert_eq!(a.unwrap().line(), "total: 1,234 (o_orderkey 7)");
    }
}
