//! What a `SemanticModel` adds to generation.
//!
//! - [`enrich`] writes the model's table and column descriptions, synonyms and sample values
//!   into the catalog's tables (as comments and samples), so the retriever ranks by the words
//!   people use ("turnover" finds the table whose description says so), the LLM prompt shows
//!   them next to each column, and the offline generator's value matching sees the samples.
//! - [`section`] renders the rest for an LLM prompt — metrics as SQL expressions, named
//!   filters, time dimensions and declared relationships — keeping the parts that touch the
//!   tables the prompt shows.
//! - [`relationships`] lists the declared join keys, so the offline join graph can use keys the
//!   names do not reveal.
//!
//! A model only informs: the SQL it helps write is guarded, planned and approved like any other.

use std::fmt::Write as _;

use crate::catalog::Table;
use crate::spec::semantic::{RelationshipType, SemanticModelSpec};

/// Adds `model`'s descriptions, synonyms and sample values to `tables` (matched by name, case
/// ignored). Existing comments are kept, the model's text follows them.
pub fn enrich(tables: &mut [Table], model: &SemanticModelSpec) {
    for mt in &model.tables {
        let Some(t) = tables.iter_mut().find(|t| t.name.eq_ignore_ascii_case(&mt.name)) else { continue };
        t.comment = joined(t.comment.take(), mt.description.as_deref(), &mt.synonyms);
        for mc in &mt.columns {
            let Some(c) =
                t.columns.iter_mut().chain(t.partition_keys.iter_mut()).find(|c| c.name.eq_ignore_ascii_case(&mc.name))
            else {
                continue;
            };
            c.comment = joined(c.comment.take(), mc.description.as_deref(), &mc.synonyms);
            for v in mc.sample_values.iter().rev() {
                if !c.sample_values.iter().any(|s| s == v) {
                    c.sample_values.insert(0, v.clone());
                }
            }
        }
    }
}

fn joined(existing: Option<String>, description: Option<&str>, synonyms: &[String]) -> Option<String> {
    let mut parts: Vec<String> = existing.into_iter().filter(|s| !s.trim().is_empty()).collect();
    if let Some(d) = description.map(str::trim).filter(|d| !d.is_empty()) {
        parts.push(d.to_string());
    }
    let syn: Vec<&str> = synonyms.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    if !syn.is_empty() {
        parts.push(format!("also called: {}", syn.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Whether an item reading `table` belongs in a prompt that shows `shown` (an item with no
/// table of its own always does).
fn relevant(table: Option<&str>, shown: &[String]) -> bool {
    table.is_none_or(|t| shown.iter().any(|s| s.eq_ignore_ascii_case(t)))
}

fn also(synonyms: &[String]) -> String {
    if synonyms.is_empty() { String::new() } else { format!(" (also: {})", synonyms.join(", ")) }
}

fn about(description: &Option<String>) -> String {
    description.as_deref().map(str::trim).filter(|d| !d.is_empty()).map(|d| format!(" — {d}")).unwrap_or_default()
}

/// The prompt section for `model`, restricted to what touches the tables in `shown`; empty when
/// nothing does. (Descriptions, synonyms and samples travel with the schema; see [`enrich`].)
pub fn section(model: &SemanticModelSpec, shown: &[String]) -> String {
    let mut out = String::new();
    let metrics: Vec<_> = model.metrics.iter().filter(|m| relevant(m.table.as_deref(), shown)).collect();
    if !metrics.is_empty() {
        out.push_str("Metrics (use these expressions when the question asks for them):\n");
        for m in metrics {
            let on = m.table.as_deref().map(|t| format!(" [on {t}]")).unwrap_or_default();
            let _ = writeln!(
                out,
                "- {} = {}{on}{}{}",
                m.name,
                m.expression.trim(),
                also(&m.synonyms),
                about(&m.description)
            );
        }
    }
    let filters: Vec<_> = model.filters.iter().filter(|f| relevant(f.table.as_deref(), shown)).collect();
    if !filters.is_empty() {
        out.push_str("Named filters (conditions the question may name):\n");
        for f in filters {
            let on = f.table.as_deref().map(|t| format!(" [on {t}]")).unwrap_or_default();
            let _ = writeln!(
                out,
                "- {}: {}{on}{}{}",
                f.name,
                f.expression.trim(),
                also(&f.synonyms),
                about(&f.description)
            );
        }
    }
    let times: Vec<_> = model.time_dimensions.iter().filter(|t| relevant(Some(&t.table), shown)).collect();
    if !times.is_empty() {
        out.push_str("Time dimensions (the column that dates a row):\n");
        for t in times {
            let _ =
                writeln!(out, "- {}: {}.{}{}{}", t.name, t.table, t.column, also(&t.synonyms), about(&t.description));
        }
    }
    let rels: Vec<_> = model
        .relationships
        .iter()
        .filter(|r| relevant(Some(&r.left_table), shown) && relevant(Some(&r.right_table), shown))
        .collect();
    if !rels.is_empty() {
        out.push_str("Relationships (join on exactly these keys):\n");
        for r in rels {
            let on: Vec<String> = r
                .columns
                .iter()
                .map(|c| format!("{}.{} = {}.{}", r.left_table, c.left, r.right_table, c.right))
                .collect();
            let kind = match r.type_ {
                Some(RelationshipType::ManyToOne) => " (many-to-one)",
                Some(RelationshipType::OneToOne) => " (one-to-one)",
                Some(RelationshipType::OneToMany) => " (one-to-many)",
                Some(RelationshipType::ManyToMany) => " (many-to-many)",
                None => "",
            };
            let _ = writeln!(out, "- {}{kind}{}", on.join(" AND "), about(&r.description));
        }
    }
    out
}

/// The declared join keys as `(left table, left column, right table, right column)`, one per
/// column pair.
pub fn relationships(model: &SemanticModelSpec) -> Vec<(String, String, String, String)> {
    model
        .relationships
        .iter()
        .flat_map(|r| {
            r.columns.iter().map(|c| (r.left_table.clone(), c.left.clone(), r.right_table.clone(), c.right.clone()))
        })
        .collect()
}

/// The model's free-text instructions, one note per non-empty paragraph line.
pub fn instructions(model: &SemanticModelSpec) -> Vec<String> {
    model
        .instructions
        .as_deref()
        .map(|t| {
            t.split("\n\n")
                .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Column;
    use crate::spec::semantic::{
        JoinColumns, Metric, ModelColumn, ModelTable, NamedFilter, Relationship, TimeDimension,
    };

    fn model() -> SemanticModelSpec {
        SemanticModelSpec {
            database: "tpch".into(),
            tables: vec![ModelTable {
                name: "lineitem".into(),
                description: Some("one row per order line".into()),
                synonyms: vec!["order lines".into()],
                columns: vec![ModelColumn {
                    name: "l_returnflag".into(),
                    description: Some("R returned, A accepted, N none".into()),
                    synonyms: vec!["return status".into()],
                    sample_values: vec!["R".into(), "A".into()],
                }],
            }],
            relationships: vec![Relationship {
                left_table: "lineitem".into(),
                right_table: "orders".into(),
                columns: vec![JoinColumns { left: "l_orderkey".into(), right: "o_orderkey".into() }],
                type_: Some(RelationshipType::ManyToOne),
                ..Default::default()
            }],
            metrics: vec![
                Metric {
                    name: "revenue".into(),
                    expression: "sum(l_extendedprice * (1 - l_discount))".into(),
                    table: Some("lineitem".into()),
                    synonyms: vec!["turnover".into()],
                    description: None,
                },
                Metric {
                    name: "parts".into(),
                    expression: "count(*)".into(),
                    table: Some("part".into()),
                    ..Default::default()
                },
            ],
            filters: vec![NamedFilter {
                name: "returned".into(),
                expression: "l_returnflag = 'R'".into(),
                table: Some("lineitem".into()),
                ..Default::default()
            }],
            time_dimensions: vec![TimeDimension {
                name: "ship_date".into(),
                table: "lineitem".into(),
                column: "l_shipdate".into(),
                ..Default::default()
            }],
            instructions: Some("Revenue is always net of discount.\n\nFiscal years start in April.".into()),
            ..Default::default()
        }
    }

    #[test]
    fn descriptions_synonyms_and_samples_go_into_the_catalog_tables() {
        let mut tables = vec![Table {
            name: "LINEITEM".into(),
            comment: Some("from the lake".into()),
            columns: vec![Column {
                name: "l_returnflag".into(),
                data_type: "varchar".into(),
                sample_values: vec!["N".into(), "R".into()],
                ..Default::default()
            }],
            ..Default::default()
        }];
        enrich(&mut tables, &model());
        assert_eq!(
            tables[0].comment.as_deref(),
            Some("from the lake; one row per order line; also called: order lines")
        );
        let c = &tables[0].columns[0];
        assert_eq!(c.comment.as_deref(), Some("R returned, A accepted, N none; also called: return status"));
        assert_eq!(c.sample_values, ["A", "N", "R"].map(String::from), "the model's first, no duplicates");
    }

    #[test]
    fn the_section_keeps_what_touches_the_shown_tables() {
        let shown = vec!["lineitem".to_string(), "orders".to_string()];
        let s = section(&model(), &shown);
        for needle in [
            "- revenue = sum(l_extendedprice * (1 - l_discount)) [on lineitem] (also: turnover)",
            "- returned: l_returnflag = 'R' [on lineitem]",
            "- ship_date: lineitem.l_shipdate",
            "- lineitem.l_orderkey = orders.o_orderkey (many-to-one)",
        ] {
            assert!(s.contains(needle), "{needle:?} missing from:\n{s}");
        }
        assert!(!s.contains("parts"), "a metric on a table not shown stays out:\n{s}");
        // Only lineitem shown: the relationship to orders goes.
        assert!(!section(&model(), &shown[..1]).contains("o_orderkey"));
        assert!(section(&model(), &[]).is_empty());
        assert_eq!(instructions(&model()), ["Revenue is always net of discount.", "Fiscal years start in April."]);
        assert_eq!(
            relationships(&model()),
            [("lineitem".into(), "l_orderkey".into(), "orders".into(), "o_orderkey".into())]
        );
    }
}
