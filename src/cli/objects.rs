//! How `get` and `describe` show the kinds besides `QueryRequest` (`SemanticModel`,
//! `VerifiedQuery`): table rows and the describe text.

use std::fmt::Write as _;

use super::output;
use crate::spec::{Object, STALE_CONDITION, SemanticModel, VerifiedQuery};

/// `True`, `False` or `-` (not planned at this generation yet).
fn stale(obj: &Object) -> String {
    match obj.status() {
        Some(s) if s.observed_generation == obj.generation() => {
            s.condition(STALE_CONDITION).map(|c| c.status.clone()).unwrap_or_else(|| "-".into())
        }
        _ => "-".into(),
    }
}

/// Header and rows of `get` for objects of one kind.
pub fn rows(items: &[Object], wide: bool) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let Some(first) = items.first() else { return (vec!["NAME"], vec![]) };
    match first {
        Object::SemanticModel(_) => {
            let mut h = vec!["NAME", "DATABASE", "TABLES", "METRICS", "FILTERS", "STALE", "AGE"];
            if wide {
                h.extend(["GEN", "RELATIONSHIPS", "TIME-DIMENSIONS"]);
            }
            let rows = items
                .iter()
                .filter_map(|o| Some((o, o.as_semantic_model()?)))
                .map(|(o, m)| {
                    let mut row = vec![
                        m.metadata.name.clone(),
                        m.spec.database.clone(),
                        m.tables().len().to_string(),
                        m.spec.metrics.len().to_string(),
                        m.spec.filters.len().to_string(),
                        stale(o),
                        output::age(m.metadata.creation_timestamp),
                    ];
                    if wide {
                        row.extend([
                            o.generation().to_string(),
                            m.spec.relationships.len().to_string(),
                            m.spec.time_dimensions.len().to_string(),
                        ]);
                    }
                    row
                })
                .collect();
            (h, rows)
        }
        Object::VerifiedQuery(_) => {
            let mut h = vec!["NAME", "DATABASE", "PARAMS", "VERIFIED-BY", "STALE", "AGE"];
            if wide {
                h.extend(["GEN", "DIGEST"]);
            }
            h.push("QUESTION");
            let rows = items
                .iter()
                .filter_map(|o| Some((o, o.as_verified_query()?)))
                .map(|(o, v)| {
                    let mut row = vec![
                        v.metadata.name.clone(),
                        v.spec.database.clone(),
                        v.spec.parameters.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","),
                        v.spec.verified_by.clone().unwrap_or_else(|| "-".into()),
                        stale(o),
                        output::age(v.metadata.creation_timestamp),
                    ];
                    if wide {
                        let digest = v.status.as_ref().and_then(|s| s.template_digest.as_deref()).unwrap_or("-");
                        row.extend([
                            o.generation().to_string(),
                            crate::spec::digest::display_prefix(digest).to_string(),
                        ]);
                    }
                    row.push(output::short(&v.spec.question, 60));
                    row
                })
                .collect();
            (h, rows)
        }
    }
}

fn kv(o: &mut String, k: &str, v: &str) {
    let _ = writeln!(o, "{:<20}{}", format!("{k}:"), v);
}

/// What `describe` prints for an object (hidden characters are escaped by the caller).
pub fn describe(obj: &Object) -> String {
    let mut o = String::new();
    let m = obj.metadata();
    kv(&mut o, "Kind", obj.kind().as_str());
    kv(&mut o, "Name", &m.name);
    kv(&mut o, "Namespace", m.namespace());
    kv(&mut o, "UID", obj.uid());
    let observed = obj.status().map(|s| s.observed_generation).unwrap_or(0);
    kv(&mut o, "Generation", &format!("{} (observed {observed})", obj.generation()));
    kv(&mut o, "Created", &m.creation_timestamp.map(|t| t.to_rfc3339()).unwrap_or_default());
    if !m.labels.is_empty() {
        kv(&mut o, "Labels", &m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    }
    kv(&mut o, "Database", obj.database());
    match obj {
        Object::SemanticModel(sm) => describe_model(&mut o, sm),
        Object::VerifiedQuery(vq) => describe_verified(&mut o, vq),
    }
    if let Some(st) = obj.status() {
        if let Some(at) = st.planned_at {
            kv(&mut o, "Planned", &at.to_rfc3339());
        }
        if !st.table_shapes.is_empty() {
            kv(&mut o, "Tables planned", &st.table_shapes.keys().cloned().collect::<Vec<_>>().join(", "));
        }
        if !st.conditions.is_empty() {
            let _ = writeln!(o, "Conditions:");
            for c in &st.conditions {
                let msg =
                    if c.message.is_empty() { String::new() } else { format!(": {}", output::short(&c.message, 300)) };
                let _ = writeln!(o, "  {}={} ({}){msg}", c.type_, c.status, c.reason);
            }
        }
    } else {
        kv(&mut o, "Status", "not planned yet (the controller plans it)");
    }
    o
}

fn list(items: &[String]) -> String {
    if items.is_empty() { String::new() } else { format!(" ({})", items.join(", ")) }
}

fn describe_model(o: &mut String, sm: &SemanticModel) {
    let s = &sm.spec;
    if let Some(d) = &s.description {
        kv(o, "Description", d);
    }
    if !s.tables.is_empty() {
        let _ = writeln!(o, "Tables:");
        for t in &s.tables {
            let desc = t.description.as_deref().map(|d| format!(": {}", output::short(d, 100))).unwrap_or_default();
            let _ = writeln!(o, "  {}{}{desc}", t.name, list(&t.synonyms));
            for c in &t.columns {
                let desc = c.description.as_deref().map(|d| format!(": {}", output::short(d, 100))).unwrap_or_default();
                let samples = if c.sample_values.is_empty() {
                    String::new()
                } else {
                    format!(" e.g. {}", output::short(&c.sample_values.join(", "), 80))
                };
                let _ = writeln!(o, "    {}{}{desc}{samples}", c.name, list(&c.synonyms));
            }
        }
    }
    if !s.relationships.is_empty() {
        let _ = writeln!(o, "Relationships:");
        for r in &s.relationships {
            let on: Vec<String> = r
                .columns
                .iter()
                .map(|c| format!("{}.{} = {}.{}", r.left_table, c.left, r.right_table, c.right))
                .collect();
            let name = r.name.as_deref().map(|n| format!("{n}: ")).unwrap_or_default();
            let _ = writeln!(o, "  {name}{}", on.join(" AND "));
        }
    }
    if !s.metrics.is_empty() {
        let _ = writeln!(o, "Metrics:");
        for m in &s.metrics {
            let _ = writeln!(o, "  {} = {}{}", m.name, output::short(&m.expression, 200), list(&m.synonyms));
        }
    }
    if !s.filters.is_empty() {
        let _ = writeln!(o, "Filters:");
        for f in &s.filters {
            let _ = writeln!(o, "  {}: {}{}", f.name, output::short(&f.expression, 200), list(&f.synonyms));
        }
    }
    if !s.time_dimensions.is_empty() {
        let _ = writeln!(o, "Time dimensions:");
        for t in &s.time_dimensions {
            let _ = writeln!(o, "  {}: {}.{}{}", t.name, t.table, t.column, list(&t.synonyms));
        }
    }
    if let Some(i) = &s.instructions {
        let _ = writeln!(o, "Instructions:");
        for line in i.lines() {
            let _ = writeln!(o, "    {line}");
        }
    }
}

fn describe_verified(o: &mut String, vq: &VerifiedQuery) {
    let s = &vq.spec;
    kv(o, "Question", &s.question);
    for p in &s.paraphrases {
        kv(o, "Paraphrase", p);
    }
    kv(o, "Verified by", s.verified_by.as_deref().unwrap_or("-"));
    kv(o, "Verified at", &s.verified_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()));
    if let Some(p) = &s.provenance {
        kv(
            o,
            "Verified from",
            &format!(
                "queryrequest {}/{} (uid {}, generation {}, digest {})",
                p.namespace, p.name, p.uid, p.generation, p.sql_digest
            ),
        );
    }
    let _ = writeln!(o, "SQL:");
    let sql = vq.status.as_ref().and_then(|st| st.canonical_sql.as_deref()).unwrap_or(&s.sql);
    for line in sql.lines() {
        let _ = writeln!(o, "    {line}");
    }
    if let Some(d) = vq.status.as_ref().and_then(|st| st.template_digest.as_deref()) {
        kv(o, "Template digest", d);
    }
    if !s.parameters.is_empty() {
        let _ = writeln!(o, "Parameters:");
        for p in &s.parameters {
            let column = p.column.as_deref().map(|c| format!(" (column {c})")).unwrap_or_default();
            let _ = writeln!(o, "  :{} {}{column} e.g. {}", p.name, p.type_.as_str(), output::short(&p.example, 80));
        }
    }
}
