//! The `SemanticModel` resource: what a database means, written down once per database.
//!
//! Tables and columns with descriptions, synonyms and sample values; relationships (join keys,
//! including the ones the column names do not reveal); metrics as SQL expressions with their
//! synonyms (`revenue = sum(l_extendedprice * (1 - l_discount))`); named filters; time
//! dimensions; free-text instructions. The generator reads it; the controller re-plans every
//! expression in it when a table it names changes shape (`Stale`, see [`ObjectStatus`]).
//!
//! Parsing is strict (`deny_unknown_fields`); [`validate`] checks what serde cannot (names,
//! sizes, references between the parts). Whether an expression parses as SQL is the guard's to
//! say (`guard::template::check_semantic_model`): this module imports no other.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::ObjectStatus;
use super::types::{API_VERSION, ObjectMeta};
use super::validate::{
    FieldError, check_header, check_metadata, check_text, index_path, validate_column, validate_identifier,
};

/// `kind` of a semantic model.
pub const SEMANTIC_MODEL_KIND: &str = "SemanticModel";

/// Most tables one model describes.
pub const MAX_MODEL_TABLES: usize = 512;
/// Most columns described per table.
pub const MAX_MODEL_COLUMNS: usize = 1024;
/// Most synonyms of one table, column, metric, filter or time dimension.
pub const MAX_SYNONYMS: usize = 32;
/// Longest synonym, in characters.
pub const MAX_SYNONYM_CHARS: usize = 128;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Most sample values of one column.
pub const MAX_SAMPLE_VALUES: usize = 64;
/// Longest sample value, in characters.
pub const MAX_SAMPLE_VALUE_CHARS: usize = 256;
/// Most relationships, metrics, filters or time dimensions (each).
pub const MAX_MODEL_ITEMS: usize = 512;
/// Most column pairs of one relationship.
pub const MAX_JOIN_COLUMNS: usize = 16;
/// Longest metric or filter expression, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 10_000;
/// Longest instructions text, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 16_000;
/// Largest spec, as JSON: the object must fit a store item (DynamoDB's 400 KB) with its
/// metadata, last-applied annotation and status.
pub const MAX_SPEC_JSON_BYTES: usize = 150_000;

/// What one database means: one model per database.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "SemanticModel")]
pub struct SemanticModel {
    /// Always `sqlctl.dev/v1alpha1`.
    pub api_version: String,
    /// Always `SemanticModel`.
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: SemanticModelSpec,
    /// Written by the controller only; ignored by `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ObjectStatus>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SemanticModelSpec {
    /// The database this model describes (Glue database, or a directory of the local warehouse).
    pub database: String,
    /// What the database is about, for the generator's prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<ModelTable>,
    /// Join keys between tables, including the ones the column names do not reveal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relationships: Vec<Relationship>,
    /// Named measures as SQL expressions (`sum(l_extendedprice * (1 - l_discount))`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// Named conditions as SQL boolean expressions (`l_receiptdate > l_commitdate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<NamedFilter>,
    /// Columns (or expressions) that place a row in time, for "per month", "in 1995".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_dimensions: Vec<TimeDimension>,
    /// Free text for the generator ("revenue means net of discount", "fiscal years start in July").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// One table: what it holds and what its columns mean.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelTable {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Other words people use for it (`line items`, `order lines`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ModelColumn>,
}

/// One column: what it means, other words for it, values it holds.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelColumn {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
    /// Values the column holds (`ASIA`, `EUROPE`), so a question's words can be matched to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample_values: Vec<String>,
}

/// How two tables join: `leftTable.left = rightTable.right` for every column pair.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Relationship {
    /// A name to refer to it by (`orders-customer`); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub left_table: String,
    pub right_table: String,
    /// The join keys, one pair per column (several for a composite key).
    pub columns: Vec<JoinColumns>,
    /// `manyToOne` (default when absent: unknown), `oneToOne`, `oneToMany`, `manyToMany`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<RelationshipType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One pair of join columns.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinColumns {
    /// Column of `leftTable`.
    pub left: String,
    /// Column of `rightTable`.
    pub right: String,
}

/// How many rows of one side match a row of the other.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum RelationshipType {
    ManyToOne,
    OneToOne,
    OneToMany,
    ManyToMany,
}

/// A named measure.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    /// `revenue`: lower-case letters, digits and `_`.
    pub name: String,
    /// One SQL expression, usually an aggregate: `sum(l_extendedprice * (1 - l_discount))`.
    pub expression: String,
    /// The table whose columns the expression reads (it is planned against it); needed when the
    /// model describes more than one table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A named condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedFilter {
    /// `late_shipments`: lower-case letters, digits and `_`.
    pub name: String,
    /// One SQL boolean expression: `l_receiptdate > l_commitdate`.
    pub expression: String,
    /// The table whose columns the expression reads; see [`Metric::table`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A column that places a row in time.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeDimension {
    /// `order_date`: lower-case letters, digits and `_`.
    pub name: String,
    pub table: String,
    /// A date or timestamp column of `table`.
    pub column: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl SemanticModel {
    /// A new, empty model of `database` named `name`.
    pub fn new(name: impl Into<String>, database: impl Into<String>) -> Self {
        SemanticModel {
            api_version: API_VERSION.into(),
            kind: SEMANTIC_MODEL_KIND.into(),
            metadata: ObjectMeta { name: name.into(), ..Default::default() },
            spec: SemanticModelSpec { database: database.into(), ..Default::default() },
            status: None,
        }
    }

    /// Every table the model names (described tables, relationship ends, the tables of
    /// metrics, filters and time dimensions), sorted and deduplicated: what drift watches.
    pub fn tables(&self) -> Vec<String> {
        let s = &self.spec;
        let mut out: Vec<String> = s.tables.iter().map(|t| t.name.clone()).collect();
        for r in &s.relationships {
            out.push(r.left_table.clone());
            out.push(r.right_table.clone());
        }
        out.extend(s.metrics.iter().filter_map(|m| m.table.clone()));
        out.extend(s.filters.iter().filter_map(|f| f.table.clone()));
        out.extend(s.time_dimensions.iter().map(|t| t.table.clone()));
        out.sort();
        out.dedup();
        out
    }

    /// Usable by generation: planned at its current generation, and not `Stale`.
    pub fn is_fresh(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.observed_generation == self.metadata.generation.unwrap_or(0)
                && s.condition(super::status::STALE_CONDITION).is_some_and(|c| c.status == "False")
        })
    }

    /// The table an expression of a metric or filter is planned against: its own `table`, else
    /// the model's only table.
    pub fn expression_table<'a>(&'a self, table: Option<&'a str>) -> Option<&'a str> {
        let only = match self.spec.tables.as_slice() {
            [only] => Some(only.name.as_str()),
            _ => None,
        };
        table.or(only)
    }
}

/// Checks everything serde could not: returns every problem found, or an empty vector.
pub fn validate(model: &SemanticModel) -> Vec<FieldError> {
    let mut errs = Vec::new();
    check_header(&model.api_version, &model.kind, SEMANTIC_MODEL_KIND, &mut errs);
    check_metadata(&model.metadata, &mut errs);
    let s = &model.spec;
    if let Err(m) = validate_identifier(&s.database) {
        errs.push(FieldError::new("spec.database", m));
    }
    check_opt_text("spec.description", s.description.as_deref(), MAX_DESCRIPTION_CHARS, &mut errs);
    if let Some(t) = &s.instructions {
        check_text("spec.instructions", t, MAX_INSTRUCTIONS_CHARS, true, &mut errs);
    }

    check_count("spec.tables", s.tables.len(), MAX_MODEL_TABLES, &mut errs);
    let mut tables = HashSet::new();
    for (i, t) in s.tables.iter().enumerate() {
        let path = index_path("spec.tables", i);
        if let Err(m) = validate_identifier(&t.name) {
            errs.push(FieldError::new(format!("{path}.name"), m));
        } else if !tables.insert(t.name.as_str()) {
            errs.push(FieldError::new(
                format!("{path}.name"),
                format!("table {:?} is described more than once", t.name),
            ));
        }
        check_opt_text(&format!("{path}.description"), t.description.as_deref(), MAX_DESCRIPTION_CHARS, &mut errs);
        check_synonyms(&format!("{path}.synonyms"), &t.synonyms, &mut errs);
        check_count(&format!("{path}.columns"), t.columns.len(), MAX_MODEL_COLUMNS, &mut errs);
        let mut columns = HashSet::new();
        for (j, c) in t.columns.iter().enumerate() {
            let cpath = index_path(&format!("{path}.columns"), j);
            if let Err(m) = validate_column(&c.name) {
                errs.push(FieldError::new(format!("{cpath}.name"), m));
            } else if !columns.insert(c.name.as_str()) {
                errs.push(FieldError::new(
                    format!("{cpath}.name"),
                    format!("column {:?} is described more than once", c.name),
                ));
            }
            check_opt_text(&format!("{cpath}.description"), c.description.as_deref(), MAX_DESCRIPTION_CHARS, &mut errs);
            check_synonyms(&format!("{cpath}.synonyms"), &c.synonyms, &mut errs);
            check_count(&format!("{cpath}.sampleValues"), c.sample_values.len(), MAX_SAMPLE_VALUES, &mut errs);
            for (k, v) in c.sample_values.iter().enumerate() {
                let vpath = index_path(&format!("{cpath}.sampleValues"), k);
                check_text(&vpath, v, MAX_SAMPLE_VALUE_CHARS, false, &mut errs);
            }
        }
    }

    check_count("spec.relationships", s.relationships.len(), MAX_MODEL_ITEMS, &mut errs);
    let mut names = HashSet::new();
    for (i, r) in s.relationships.iter().enumerate() {
        let path = index_path("spec.relationships", i);
        if let Some(n) = &r.name {
            if let Err(m) = super::validate::validate_name(n) {
                errs.push(FieldError::new(format!("{path}.name"), m));
            } else if !names.insert(n.as_str()) {
                errs.push(FieldError::new(
                    format!("{path}.name"),
                    format!("relationship {n:?} is defined more than once"),
                ));
            }
        }
        for (field, t) in [("leftTable", &r.left_table), ("rightTable", &r.right_table)] {
            if let Err(m) = validate_identifier(t) {
                errs.push(FieldError::new(format!("{path}.{field}"), m));
            }
        }
        if r.columns.is_empty() {
            errs.push(FieldError::new(format!("{path}.columns"), "name at least one pair of join columns"));
        }
        check_count(&format!("{path}.columns"), r.columns.len(), MAX_JOIN_COLUMNS, &mut errs);
        for (j, c) in r.columns.iter().enumerate() {
            let cpath = index_path(&format!("{path}.columns"), j);
            for (field, col) in [("left", &c.left), ("right", &c.right)] {
                if let Err(m) = validate_column(col) {
                    errs.push(FieldError::new(format!("{cpath}.{field}"), m));
                }
            }
        }
        check_opt_text(&format!("{path}.description"), r.description.as_deref(), MAX_DESCRIPTION_CHARS, &mut errs);
    }

    // Metrics, filters and time dimensions share one namespace: a question names any of them.
    let mut named = HashSet::new();
    check_count("spec.metrics", s.metrics.len(), MAX_MODEL_ITEMS, &mut errs);
    for (i, m) in s.metrics.iter().enumerate() {
        let path = index_path("spec.metrics", i);
        check_item_name(&path, &m.name, &mut named, &mut errs);
        check_expression(&format!("{path}.expression"), &m.expression, &mut errs);
        check_item_table(model, &path, m.table.as_deref(), &mut errs);
        check_synonyms(&format!("{path}.synonyms"), &m.synonyms, &mut errs);
        check_opt_text(&format!("{path}.description"), m.description.as_deref(), MAX_DESCRIPTION_CHARS, &mut errs);
    }
    check_count("spec.filters", s.filters.len(), MAX_MODEL_ITEMS, &mut errs);
    for (i, f) in s.filters.iter().enumerate() {
        let path = index_path("spec.filters", i);
        check_item_name(&path, &f.name, &mut named, &mut errs);
        check_expression(&format!("{path}.expression"), &f.expression, &mut errs);
        check_item_table(model, &path, f.table.as_deref(), &mut errs);
        check_synonyms(&format!("{path}.synonyms"), &f.synonyms, &mut errs);
        check_opt_text(&format!("{path}.description"), f.description.as_deref(), MAX_DESCRIPTION_CHARS, &mut errs);
    }
    check_count("spec.timeDimensions", s.time_dimensions.len(), MAX_MODEL_ITEMS, &mut errs);
    for (i, t) in s.time_dimensions.iter().enumerate() {
        let path = index_path("spec.timeDimensions", i);
        check_item_name(&path, &t.name, &mut named, &mut errs);
        if let Err(m) = validate_identifier(&t.table) {
            errs.push(FieldError::new(format!("{path}.table"), m));
        }
        if let Err(m) = validate_column(&t.column) {
            errs.push(FieldError::new(format!("{path}.column"), m));
        }
        check_synonyms(&format!("{path}.synonyms"), &t.synonyms, &mut errs);
        check_opt_text(&format!("{path}.description"), t.description.as_deref(), MAX_DESCRIPTION_CHARS, &mut errs);
    }

    if errs.is_empty() {
        let bytes = serde_json::to_string(s).map(|j| j.len()).unwrap_or(usize::MAX);
        if bytes > MAX_SPEC_JSON_BYTES {
            errs.push(FieldError::new(
                "spec",
                format!("is {bytes} bytes as JSON; the limit is {MAX_SPEC_JSON_BYTES} (split the model or trim sample values)"),
            ));
        }
    }
    errs
}

fn check_count(path: &str, n: usize, max: usize, errs: &mut Vec<FieldError>) {
    if n > max {
        errs.push(FieldError::new(path, format!("at most {max} entries are allowed (got {n})")));
    }
}

fn check_opt_text(path: &str, text: Option<&str>, max: usize, errs: &mut Vec<FieldError>) {
    if let Some(t) = text {
        check_text(path, t, max, true, errs);
    }
}

fn check_synonyms(path: &str, synonyms: &[String], errs: &mut Vec<FieldError>) {
    check_count(path, synonyms.len(), MAX_SYNONYMS, errs);
    for (i, s) in synonyms.iter().enumerate() {
        check_text(&index_path(path, i), s, MAX_SYNONYM_CHARS, false, errs);
    }
}

/// Names of metrics, filters and time dimensions: identifiers, unique across all three.
fn check_item_name<'a>(path: &str, name: &'a str, seen: &mut HashSet<&'a str>, errs: &mut Vec<FieldError>) {
    if let Err(m) = validate_identifier(name) {
        errs.push(FieldError::new(format!("{path}.name"), m));
    } else if !seen.insert(name) {
        errs.push(FieldError::new(
            format!("{path}.name"),
            format!("{name:?} is already the name of a metric, filter or time dimension"),
        ));
    }
}

/// A metric's or filter's table: an identifier; required when the model describes other than
/// exactly one table (the expression must be planned against some table).
fn check_item_table(model: &SemanticModel, path: &str, table: Option<&str>, errs: &mut Vec<FieldError>) {
    match table {
        Some(t) => {
            if let Err(m) = validate_identifier(t) {
                errs.push(FieldError::new(format!("{path}.table"), m));
            }
        }
        None if model.expression_table(None).is_none() => errs.push(FieldError::new(
            format!("{path}.table"),
            "name the table the expression reads (the model does not describe exactly one table)",
        )),
        None => {}
    }
}

/// The text of an expression: not blank, bounded, no NUL. Whether it parses is the guard's.
fn check_expression(path: &str, expr: &str, errs: &mut Vec<FieldError>) {
    if expr.trim().is_empty() {
        errs.push(FieldError::new(path, "must not be blank"));
        return;
    }
    if expr.len() > MAX_EXPRESSION_BYTES {
        errs.push(FieldError::new(path, format!("must be at most {MAX_EXPRESSION_BYTES} bytes (got {})", expr.len())));
    }
    if expr.contains('\0') {
        errs.push(FieldError::new(path, "must not contain NUL characters"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tpch() -> SemanticModel {
        let mut m = SemanticModel::new("tpch", "tpch");
        m.spec.tables = vec![
            ModelTable {
                name: "lineitem".into(),
                synonyms: vec!["order lines".into()],
                columns: vec![ModelColumn {
                    name: "l_shipmode".into(),
                    sample_values: vec!["AIR".into(), "MAIL".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ModelTable { name: "orders".into(), ..Default::default() },
        ];
        m.spec.relationships = vec![Relationship {
            name: Some("lineitem-orders".into()),
            left_table: "lineitem".into(),
            right_table: "orders".into(),
            columns: vec![JoinColumns { left: "l_orderkey".into(), right: "o_orderkey".into() }],
            type_: Some(RelationshipType::ManyToOne),
            description: None,
        }];
        m.spec.metrics = vec![Metric {
            name: "revenue".into(),
            expression: "sum(l_extendedprice * (1 - l_discount))".into(),
            table: Some("lineitem".into()),
            synonyms: vec!["sales".into()],
            description: None,
        }];
        m.spec.time_dimensions = vec![TimeDimension {
            name: "order_date".into(),
            table: "orders".into(),
            column: "o_orderdate".into(),
            ..Default::default()
        }];
        m
    }

    fn paths(m: &SemanticModel) -> Vec<String> {
        validate(m).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn a_good_model_has_no_errors_and_names_its_tables() {
        let m = tpch();
        assert_eq!(validate(&m), vec![]);
        assert_eq!(m.tables(), ["lineitem", "orders"]);
    }

    #[test]
    fn names_references_and_sizes_are_checked_together() {
        let mut m = tpch();
        m.kind = "QueryRequest".into();
        m.spec.database = "Bad".into();
        m.spec.tables.push(ModelTable { name: "orders".into(), ..Default::default() });
        m.spec.tables[0].columns[0].sample_values = (0..65).map(|i| i.to_string()).collect();
        m.spec.relationships[0].columns.clear();
        m.spec.metrics[0].expression = " ".into();
        m.spec.metrics.push(Metric { name: "revenue".into(), expression: "1".into(), ..Default::default() });
        assert_eq!(
            paths(&m),
            [
                "kind",
                "spec.database",
                "spec.tables[0].columns[0].sampleValues",
                "spec.tables[2].name",
                "spec.relationships[0].columns",
                "spec.metrics[0].expression",
                "spec.metrics[1].name",
                "spec.metrics[1].table",
            ]
        );
    }

    #[test]
    fn a_metric_without_a_table_is_fine_when_the_model_has_one_table() {
        let mut m = SemanticModel::new("x", "tpch");
        m.spec.tables = vec![ModelTable { name: "lineitem".into(), ..Default::default() }];
        m.spec.metrics = vec![Metric { name: "n".into(), expression: "count(*)".into(), ..Default::default() }];
        assert_eq!(validate(&m), vec![]);
        assert_eq!(m.expression_table(None), Some("lineitem"));
    }
}
