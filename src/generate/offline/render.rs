//! Rendering SQL that both DataFusion and Athena/Trino accept (`DATE '1995-01-01'` literals,
//! `EXTRACT(YEAR FROM …)`, `LIMIT`), with an explanation of what it computes.

use chrono::{Datelike, NaiveDate};

use super::intent::{Filter, Group, Intent, Measure, Shape, group_name};
use super::parse::{Agg, DatePart, Dir, Op};
use super::plan::joins;
use super::schema::{Col, Kind, Schema, col_index, qual_name};
use crate::catalog::retrieve;
use crate::generate::GenerateError;

/// The SQL for an intent, what it reads and what it assumed.
pub(super) struct Rendered {
    pub(super) sql: String,
    pub(super) explanation: String,
    pub(super) tables: Vec<String>,
    pub(super) assumptions: Vec<String>,
    pub(super) penalty: f64,
}

/// SQL keywords that must be quoted when used as identifiers.
const RESERVED: &[&str] = &[
    "all",
    "and",
    "any",
    "as",
    "asc",
    "between",
    "by",
    "case",
    "cast",
    "count",
    "cross",
    "date",
    "default",
    "desc",
    "distinct",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "from",
    "full",
    "group",
    "having",
    "in",
    "inner",
    "interval",
    "intersect",
    "is",
    "join",
    "key",
    "left",
    "like",
    "limit",
    "month",
    "natural",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "outer",
    "over",
    "right",
    "select",
    "table",
    "then",
    "time",
    "timestamp",
    "to",
    "true",
    "union",
    "user",
    "using",
    "values",
    "when",
    "where",
    "with",
    "year",
    "window",
    "range",
    "rows",
    "value",
    "position",
];

/// A table or column name as SQL: bare when plain lower-case and not reserved, else quoted.
pub(super) fn ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL for `intent` over the joins [`joins`] plans, with its explanation.
pub(super) fn render(schema: &Schema, intent: &Intent) -> Result<Rendered, GenerateError> {
    let j = joins(schema, intent)?;
    let (root, subject, multi, fanned_join) = (j.root, j.subject, j.multi, j.fanned_join);
    let (tree, steps, semi) = (&j.tree, &j.steps, &j.semi);
    let in_semi = |t: usize| j.in_semi(t);
    let q = |c: Col, multi: bool| -> String {
        if multi {
            format!("{}.{}", ident(&schema.tables[c.t].name), ident(&schema.col(c).name))
        } else {
            ident(&schema.col(c).name)
        }
    };

    // SELECT list, GROUP BY, ORDER BY.
    let mut select: Vec<String> = Vec::new();
    let mut group_by: Vec<String> = Vec::new();
    let mut order_by: Vec<String> = Vec::new();
    let mut explanation;
    let date_expr = |part: DatePart, c: Col| -> (String, String) {
        let base: String = schema
            .col(c)
            .words
            .iter()
            .filter(|w| *w != "date" && *w != "time" && *w != "timestamp")
            .cloned()
            .collect::<Vec<_>>()
            .join("_");
        let suffix = if part == DatePart::Year { "year" } else { "month" };
        let alias = if base.is_empty() { format!("{suffix}_") } else { format!("{base}_{suffix}") };
        (format!("EXTRACT({} FROM {})", suffix.to_uppercase(), q(c, multi)), alias)
    };
    let mut group_labels: Vec<String> = Vec::new();
    for g in &intent.groups {
        match g {
            Group::Entity(t) => {
                let ti = &schema.tables[*t];
                let label = ti.label.or(ti.pk).ok_or_else(|| {
                    GenerateError::CannotAnswer(format!("table {} has no name or key column to group by", ti.name))
                })?;
                let lc = Col { t: *t, c: label };
                // "the name … for each business": the entity's label is already a group.
                if select.contains(&q(lc, multi)) {
                    continue;
                }
                select.push(q(lc, multi));
                // A name in two columns: both ("first_name", "last_name").
                if let Some(extra) = ti.label_extra.filter(|_| ti.label == Some(label)) {
                    let ec = q(Col { t: *t, c: extra }, multi);
                    select.push(ec.clone());
                    group_by.push(ec);
                }
                // The key too: a name need not be unique, and the rows are the entity's.
                if let Some(pk) = ti.pk.filter(|pk| *pk != label) {
                    group_by.push(q(Col { t: *t, c: pk }, multi));
                    select.push(q(Col { t: *t, c: pk }, multi));
                }
                group_by.push(q(lc, multi));
                group_labels.push(q(lc, multi));
            }
            Group::Column(c) => {
                if select.contains(&q(*c, multi)) {
                    continue;
                }
                select.push(q(*c, multi));
                group_by.push(q(*c, multi));
                group_labels.push(q(*c, multi));
            }
            Group::Part(part, c) => {
                let (e, alias) = date_expr(*part, *c);
                select.push(format!("{e} AS {alias}"));
                group_by.push(e);
                group_labels.push(alias);
            }
        }
    }
    let measure_expr = |m: &Measure| -> String {
        match m {
            Measure::Column(c) => q(*c, multi),
            Measure::Revenue { price, discount: Some(d) } => format!("{} * (1 - {})", q(*price, multi), q(*d, multi)),
            Measure::Revenue { price, discount: None } => q(*price, multi),
            Measure::Rows(_) => "*".into(),
            Measure::Distinct(c) => q(*c, multi),
        }
    };
    let measure_word = |m: &Measure| -> String {
        match m {
            Measure::Column(c) | Measure::Distinct(c) => {
                let w = schema.col(*c).words.join("_");
                if w.is_empty() { schema.col(*c).name.to_ascii_lowercase() } else { w }
            }
            Measure::Revenue { .. } => "revenue".into(),
            Measure::Rows(t) => retrieve::table_concept(&schema.tables[*t].name),
        }
    };
    let root_pk = schema.tables[root].pk.map(|c| Col { t: root, c });
    // The aggregate of a measure as SQL, with its alias.
    let aggregate = |measure: &Measure, agg: Agg| -> Result<(String, String), GenerateError> {
        Ok(match (measure, agg) {
            (Measure::Rows(_), _) => {
                if fanned_join {
                    let pk = root_pk.ok_or_else(|| {
                        GenerateError::CannotAnswer(format!(
                            "cannot count {} rows once through this join: it has no key column",
                            schema.tables[root].name
                        ))
                    })?;
                    (format!("COUNT(DISTINCT {})", q(pk, multi)), format!("{}_count", measure_word(measure)))
                } else {
                    ("COUNT(*)".to_string(), format!("{}_count", measure_word(measure)))
                }
            }
            (Measure::Distinct(c), _) => {
                (format!("COUNT(DISTINCT {})", q(*c, multi)), format!("{}_count", measure_word(&Measure::Distinct(*c))))
            }
            (m @ Measure::Revenue { .. }, agg) => (
                format!("{}({})", agg.sql(), measure_expr(m)),
                if agg == Agg::Sum { "revenue".to_string() } else { format!("{}_revenue", agg.sql().to_lowercase()) },
            ),
            (m, agg) => {
                let prefix = match agg {
                    Agg::Sum => "total",
                    Agg::Avg => "avg",
                    Agg::Min => "min",
                    Agg::Max => "max",
                    Agg::Count => "count",
                };
                let word = measure_word(m);
                let alias = if word.starts_with(&format!("{prefix}_")) { word } else { format!("{prefix}_{word}") };
                (format!("{}({})", agg.sql(), measure_expr(m)), alias)
            }
        })
    };
    match intent.shape {
        Shape::Aggregate => {
            let (expr, alias) = aggregate(&intent.measure, intent.agg)?;
            let alias = ident(&alias.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_"));
            select.push(format!("{expr} AS {alias}"));
            // The other aggregates the question asks to return beside it.
            let mut aliases = vec![alias.clone()];
            for (m, agg) in &intent.extra {
                let (e, a) = aggregate(m, *agg)?;
                let mut a = ident(&a.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_"));
                while aliases.contains(&a) {
                    a = format!("{}_2", a.trim_matches('"'));
                }
                aliases.push(a.clone());
                select.push(format!("{e} AS {a}"));
            }
            if let Some(dir) = intent.rank.filter(|_| !intent.groups.is_empty()) {
                order_by.push(format!("{alias} {}", dir.sql()));
                order_by.extend(group_labels.iter().map(|g| format!("{g} ASC")));
            } else if let Some((c, dir)) = intent.sort.filter(|(c, _)| group_by.contains(&q(*c, multi))) {
                order_by.push(format!("{} {}", q(c, multi), dir.sql()));
            } else if !intent.groups.is_empty() {
                order_by.extend(group_labels.iter().map(|g| g.to_string()));
            }
            explanation = match (&intent.measure, intent.agg) {
                (Measure::Rows(t), _) => format!("Counts {} rows", schema.tables[*t].name),
                (Measure::Distinct(c), _) => format!("Counts distinct values of {}", qual_name(schema, *c)),
                (m, agg) => format!("Computes the {} of {}", agg.word(), measure_expr(m)),
            };
        }
        Shape::RankRows | Shape::List => {
            let ti = &schema.tables[subject];
            let only_shown =
                intent.shape == Shape::List && intent.distinct_show && intent.show.iter().any(|s| !in_semi(s.t));
            let label = ti.label.or(ti.pk).map(|c| Col { t: subject, c }).filter(|_| !only_shown);
            let mut shown: Vec<Col> = Vec::new();
            if let Some(l) = label {
                shown.push(l);
                if let Some(extra) = ti.label_extra.filter(|_| ti.label == Some(l.c)) {
                    shown.push(Col { t: subject, c: extra });
                }
                // The key too, so that two rows of one name stay two rows.
                if let Some(pk) = ti.pk.filter(|pk| *pk != l.c) {
                    shown.push(Col { t: subject, c: pk });
                }
            }
            if label.is_none() && !only_shown {
                // No name and no key: show every column of the subject.
                shown.extend((0..ti.cols.len()).map(|c| Col { t: subject, c }));
            }
            if intent.shape == Shape::RankRows
                && let Measure::Column(c) = intent.measure
                && !shown.contains(&c)
            {
                shown.push(c);
            }
            for s in &intent.show {
                if !shown.contains(s) && !in_semi(s.t) {
                    shown.push(*s);
                }
            }
            select.extend(shown.iter().map(|c| q(*c, multi)));
            if only_shown && let Some(first) = shown.first() {
                order_by.push(format!("{} ASC", q(*first, multi)));
            }
            if let (Shape::RankRows, Some(dir)) = (intent.shape, intent.rank) {
                order_by.push(format!("{} {}", measure_expr(&intent.measure), dir.sql()));
            }
            if let Some(l) = label {
                let d = if intent.shape == Shape::List { intent.rank.unwrap_or(Dir::Asc) } else { Dir::Asc };
                if !(intent.shape == Shape::RankRows && intent.measure == Measure::Column(l)) {
                    order_by.push(format!("{} {}", q(l, multi), d.sql()));
                }
            }
            explanation = match intent.shape {
                Shape::RankRows => format!(
                    "Lists {} {} rows with the {} {}",
                    intent.limit.map(|l| format!("the {l}")).unwrap_or_else(|| "all".into()),
                    ti.name,
                    if intent.rank == Some(Dir::Asc) { "lowest" } else { "highest" },
                    measure_expr(&intent.measure)
                ),
                _ => format!("Lists {} rows", ti.name),
            };
        }
    }

    // FROM … JOIN …
    let mut from = ident(&schema.tables[subject].name);
    for s in steps {
        if in_semi(s.child) {
            continue;
        }
        let e = &schema.graph.edges[s.edge];
        let (a, b) = (
            Col { t: e.from, c: col_index(schema, e.from, &e.from_column) },
            Col { t: e.to, c: col_index(schema, e.to, &e.to_column) },
        );
        from.push_str(&format!("\nJOIN {} ON {} = {}", ident(&schema.tables[s.child].name), q(a, true), q(b, true)));
    }

    // WHERE.
    let mut where_: Vec<String> = Vec::new();
    let mut semi_where: Vec<Vec<String>> = vec![Vec::new(); semi.len()];
    let mut described: Vec<String> = Vec::new();
    for f in &intent.filters {
        let t = match f.table() {
            Some(t) => t,
            None => subject,
        };
        let target = semi.iter().position(|(_, sub)| sub.contains(&t));
        let m = multi || target.is_some();
        let cond = match f {
            Filter::Values { col, values, .. } => {
                described.push(format!(
                    "{} {}",
                    schema.col(*col).name,
                    if values.len() == 1 {
                        format!("= {}", literal(&values[0]))
                    } else {
                        format!("in ({})", values.iter().map(|v| literal(v)).collect::<Vec<_>>().join(", "))
                    }
                ));
                if values.len() == 1 {
                    format!("{} = {}", q(*col, m), literal(&values[0]))
                } else {
                    format!("{} IN ({})", q(*col, m), values.iter().map(|v| literal(v)).collect::<Vec<_>>().join(", "))
                }
            }
            Filter::Dates { col, span } => {
                let kind = schema.col(*col).kind;
                let kw = if kind == Kind::Timestamp { "TIMESTAMP" } else { "DATE" };
                // A year number (`year = 2021`) holds whole years only.
                if kind == Kind::Number && [span.lo, span.hi].iter().flatten().any(|d| d.month() != 1 || d.day() != 1) {
                    return Err(GenerateError::CannotAnswer(format!(
                        "{} holds years, so it cannot be filtered by months or days",
                        qual_name(schema, *col)
                    )));
                }
                let lit = |d: NaiveDate| {
                    if kind == Kind::Number {
                        d.year().to_string()
                    } else if kind == Kind::Text {
                        format!("'{}'", d.format("%Y-%m-%d"))
                    } else if kw == "TIMESTAMP" {
                        format!("TIMESTAMP '{} 00:00:00'", d.format("%Y-%m-%d"))
                    } else {
                        format!("DATE '{}'", d.format("%Y-%m-%d"))
                    }
                };
                let mut parts = Vec::new();
                if let Some(lo) = span.lo {
                    parts.push(format!("{} >= {}", q(*col, m), lit(lo)));
                }
                if let Some(hi) = span.hi {
                    parts.push(format!("{} < {}", q(*col, m), lit(hi)));
                }
                described.push(format!(
                    "{} in [{}, {})",
                    schema.col(*col).name,
                    span.lo.map(|d| d.to_string()).unwrap_or("…".into()),
                    span.hi.map(|d| d.to_string()).unwrap_or("…".into())
                ));
                parts.join(" AND ")
            }
            Filter::Compare { col, op, raw } => {
                described.push(format!("{} {}", schema.col(*col).name, op_text(*op, raw)));
                format!("{} {}", q(*col, m), op_text(*op, raw))
            }
            Filter::HavingCount { child, op, raw } => {
                let e = schema
                    .graph
                    .edges
                    .iter()
                    .find(|e| e.from == *child && e.to == subject && e.many_to_one)
                    .ok_or_else(|| {
                        GenerateError::CannotAnswer(format!(
                            "{} rows do not reference {} directly",
                            schema.tables[*child].name, schema.tables[subject].name
                        ))
                    })?;
                described.push(format!("more than/less than {raw} {} rows", schema.tables[*child].name));
                format!(
                    "{} IN (SELECT {} FROM {} GROUP BY {} HAVING COUNT(*) {})",
                    q(Col { t: subject, c: col_index(schema, subject, &e.to_column) }, multi),
                    ident(&e.from_column),
                    ident(&schema.tables[*child].name),
                    ident(&e.from_column),
                    op_text(*op, raw)
                )
            }
            Filter::Flag { col, yes } => {
                let truth = schema.col(*col).truth.clone().unwrap_or(super::schema::Truth::Boolean);
                described.push(format!("{} is {}", schema.col(*col).name, if *yes { "yes" } else { "no" }));
                format!("{} = {}", q(*col, m), truth.literal(*yes))
            }
            Filter::Without { child } => {
                described.push(format!("no {} rows", schema.tables[*child].name));
                without(schema, subject, *child, multi)?
            }
        };
        match target {
            Some(k) => semi_where[k].push(cond),
            None => where_.push(cond),
        }
    }
    for (k, (step, sub)) in semi.iter().enumerate() {
        let s = &steps[*step];
        let e = &schema.graph.edges[s.edge];
        // The edge runs child.fk → parent.key (fan-out from parent).
        let (parent_col, child_col) =
            if e.to == s.parent { (&e.to_column, &e.from_column) } else { (&e.from_column, &e.to_column) };
        let mut inner = format!(
            "SELECT {}.{} FROM {}",
            ident(&schema.tables[s.child].name),
            ident(child_col),
            ident(&schema.tables[s.child].name)
        );
        for t in steps {
            if sub.contains(&t.child) && t.child != s.child {
                let e2 = &schema.graph.edges[t.edge];
                let a = Col { t: e2.from, c: col_index(schema, e2.from, &e2.from_column) };
                let b = Col { t: e2.to, c: col_index(schema, e2.to, &e2.to_column) };
                inner.push_str(&format!(
                    " JOIN {} ON {} = {}",
                    ident(&schema.tables[t.child].name),
                    q(a, true),
                    q(b, true)
                ));
            }
        }
        if !semi_where[k].is_empty() {
            inner.push_str(&format!(" WHERE {}", semi_where[k].join(" AND ")));
        }
        let pc = Col { t: s.parent, c: col_index(schema, s.parent, parent_col) };
        where_.push(format!("{} IN ({inner})", q(pc, multi)));
    }

    let distinct =
        (fanned_join && intent.shape != Shape::Aggregate) || (intent.shape == Shape::List && intent.distinct_show);
    let mut sql = format!("SELECT {}{}\nFROM {from}", if distinct { "DISTINCT " } else { "" }, select.join(", "));
    if !where_.is_empty() {
        sql.push_str(&format!("\nWHERE {}", where_.join("\n  AND ")));
    }
    if !group_by.is_empty() {
        sql.push_str(&format!("\nGROUP BY {}", group_by.join(", ")));
    }
    if !order_by.is_empty() {
        sql.push_str(&format!("\nORDER BY {}", order_by.join(", ")));
    }
    if let Some(l) = intent.limit.filter(|_| intent.rank.is_some() || intent.shape != Shape::Aggregate) {
        sql.push_str(&format!("\nLIMIT {l}"));
    }

    if !intent.groups.is_empty() {
        explanation.push_str(&format!(
            " per {}",
            intent.groups.iter().map(|g| group_name(schema, g)).collect::<Vec<_>>().join(" and ")
        ));
        if let (Some(dir), Some(l)) = (intent.rank, intent.limit) {
            explanation.push_str(&format!(
                ", keeping the {} {} {}",
                if dir == Dir::Desc { "top" } else { "bottom" },
                l,
                if l == 1 { "group" } else { "groups" }
            ));
        }
    }
    if !described.is_empty() {
        explanation.push_str(&format!(" where {}", described.join(" and ")));
    }
    explanation.push('.');
    let mut tables: Vec<String> = tree.iter().map(|t| schema.tables[*t].name.clone()).collect();
    for f in &intent.filters {
        if let Filter::HavingCount { child, .. } | Filter::Without { child } = f {
            tables.push(schema.tables[*child].name.clone());
        }
    }
    tables.sort();
    tables.dedup();
    Ok(Rendered { sql, explanation, tables, assumptions: j.assumptions, penalty: j.penalty })
}

/// The condition that a row of `subject` has no row of `child`: its key is not among the
/// keys `child` refers to (directly, or through a table that refers to both), or its own
/// reference to `child` is empty.
fn without(schema: &Schema, subject: usize, child: usize, multi: bool) -> Result<String, GenerateError> {
    let col = |t: usize, name: &str| {
        if multi { format!("{}.{}", ident(&schema.tables[t].name), ident(name)) } else { ident(name) }
    };
    let edges = &schema.graph.edges;
    // child.fk → subject.key
    if let Some(e) = edges.iter().find(|e| e.from == child && e.to == subject && e.many_to_one) {
        return Ok(format!(
            "{} NOT IN (SELECT {fk} FROM {} WHERE {fk} IS NOT NULL)",
            col(subject, &e.to_column),
            ident(&schema.tables[child].name),
            fk = ident(&e.from_column),
        ));
    }
    // subject.fk → child.key: "authors not part of any organization".
    if let Some(e) = edges.iter().find(|e| e.from == subject && e.to == child && e.many_to_one) {
        return Ok(format!("{} IS NULL", col(subject, &e.from_column)));
    }
    // link.fk → subject.key and link.fk2 → child.key: "authors who have not written any papers".
    for e in edges.iter().filter(|e| e.to == subject && e.many_to_one) {
        let link = e.from;
        if let Some(e2) = edges.iter().find(|e2| e2.from == link && e2.to == child && e2.many_to_one) {
            let l = ident(&schema.tables[link].name);
            return Ok(format!(
                "{} NOT IN (SELECT {l}.{fk} FROM {l} JOIN {c} ON {l}.{fk2} = {c}.{key} WHERE {l}.{fk} IS NOT NULL)",
                col(subject, &e.to_column),
                c = ident(&schema.tables[child].name),
                fk = ident(&e.from_column),
                fk2 = ident(&e2.from_column),
                key = ident(&e2.to_column),
            ));
        }
    }
    Err(GenerateError::CannotAnswer(format!(
        "{} and {} are not joined by a key (directly or through one table), so \"without\" cannot be read",
        schema.tables[subject].name, schema.tables[child].name
    )))
}

fn op_text(op: Op, raw: &str) -> String {
    match op {
        Op::Gt => format!("> {raw}"),
        Op::Ge => format!(">= {raw}"),
        Op::Lt => format!("< {raw}"),
        Op::Le => format!("<= {raw}"),
        Op::Eq => format!("= {raw}"),
        Op::Between(_) => format!("BETWEEN {raw}"),
    }
}
