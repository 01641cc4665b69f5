//! `sqlctl explain queryrequest.spec.limits`: a field's type, description and fields, read from
//! the resource's JSON Schema (the one `schema` prints and `schemas/` holds), like kubectl explain.
//! Every kind: `explain sm.spec.metrics`, `explain verifiedquery.spec.parameters`.

use serde_json::{Map, Value};

use super::Exit;
use crate::config::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// TYPE[.FIELD…], e.g. queryrequest, queryrequest.spec.limits, qr.status.conditions,
    /// sm.spec.metrics, vq.spec.parameters.
    pub path: String,
    /// Also list the fields of every field below, indented.
    #[arg(long)]
    pub recursive: bool,
}

impl Args {
    pub async fn run(self, _g: &Context) -> anyhow::Result<()> {
        let kind = self.path.split('.').next().and_then(super::resource_type);
        let schema: Value =
            serde_json::from_str(&crate::spec::json_schema_of(kind.unwrap_or(crate::spec::ObjectKind::QueryRequest)))?;
        print!("{}", explain(&schema, &self.path, self.recursive).map_err(Exit::refused)?);
        Ok(())
    }
}

/// The text for `path` in `schema`.
pub fn explain(schema: &Value, path: &str, recursive: bool) -> Result<String, String> {
    let mut parts = path.split('.');
    let word = parts.next().unwrap_or_default();
    let Some(kind) = super::resource_type(word) else {
        return Err(format!(
            "unknown resource type {word:?}: sqlctl explains queryrequest (qr), semanticmodel (sm) and verifiedquery (vq), e.g. queryrequest.spec"
        ));
    };
    let defs = schema.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut node = schema.clone();
    let mut field = None;
    let mut walked = vec![kind.resource().to_string()];
    for name in parts.filter(|p| !p.is_empty()) {
        let props = properties(&node, &defs);
        let Some(child) = props.get(name) else {
            let known: Vec<&String> = props.keys().collect();
            return Err(format!(
                "field {name:?} does not exist in {}; its fields are: {}",
                walked.join("."),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                }
            ));
        };
        node = child.clone();
        field = Some(name.to_string());
        walked.push(name.to_string());
    }
    let mut out = format!("KIND:       {}\nVERSION:    sqlctl.dev/v1alpha1\n\n", kind.as_str());
    if let Some(f) = &field {
        out.push_str(&format!("FIELD:      {f} <{}>\n\n", type_name(&node, &defs)));
    }
    out.push_str("DESCRIPTION:\n");
    let description = description(&node, &defs);
    out.push_str(&indent(if description.is_empty() { "<empty>" } else { &description }, 4));
    out.push('\n');
    let props = properties(&node, &defs);
    if !props.is_empty() {
        out.push_str("\nFIELDS:\n");
        fields(&props, &defs, recursive, 1, &mut out);
    }
    Ok(out)
}

fn fields(props: &Map<String, Value>, defs: &Map<String, Value>, recursive: bool, depth: usize, out: &mut String) {
    for (name, v) in props {
        out.push_str(&format!("{}{name} <{}>\n", "  ".repeat(depth), type_name(v, defs)));
        if !recursive {
            let d = description(v, defs);
            if !d.is_empty() {
                out.push_str(&indent(&d, 2 * depth + 4));
                out.push('\n');
            }
        } else if depth < 8 {
            fields(&properties(v, defs), defs, recursive, depth + 1, out);
        }
    }
}

/// The schema `v` stands for: `$ref`s followed, `anyOf [X, null]` read as X, arrays as their
/// items.
fn resolve(v: &Value, defs: &Map<String, Value>) -> Value {
    let mut v = v.clone();
    for _ in 0..16 {
        if let Some(r) = v.get("$ref").and_then(Value::as_str) {
            let target = defs.get(r.trim_start_matches("#/$defs/")).cloned().unwrap_or(Value::Null);
            // A field's own description wins over its type's.
            v = merge_description(&v, target);
        } else if let Some(any) = v.get("anyOf").and_then(Value::as_array) {
            let Some(one) = any.iter().find(|a| a.get("type").and_then(Value::as_str) != Some("null")) else { break };
            v = merge_description(&v, one.clone());
        } else if is_type(&v, "array") {
            match v.get("items") {
                Some(items) => v = merge_description(&v, items.clone()),
                None => break,
            }
        } else {
            break;
        }
    }
    v
}

fn merge_description(outer: &Value, mut inner: Value) -> Value {
    if let (Some(d), Some(o)) = (outer.get("description"), inner.as_object_mut()) {
        o.insert("description".into(), d.clone());
    }
    inner
}

fn is_type(v: &Value, t: &str) -> bool {
    match v.get("type") {
        Some(Value::String(s)) => s == t,
        Some(Value::Array(a)) => a.iter().any(|x| x == t),
        _ => false,
    }
}

fn properties(v: &Value, defs: &Map<String, Value>) -> Map<String, Value> {
    resolve(v, defs).get("properties").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// The field's own description, else its type's.
fn description(v: &Value, defs: &Map<String, Value>) -> String {
    match v.get("description").and_then(Value::as_str) {
        Some(d) => d.to_string(),
        None => resolve(v, defs).get("description").and_then(Value::as_str).unwrap_or("").to_string(),
    }
}

/// kubectl's `<type>`: `Object` for an object (its definition's name where it has one),
/// `[]T` for an array, `string`, `integer`, `boolean`, or the enum's values.
fn type_name(v: &Value, defs: &Map<String, Value>) -> String {
    let mut array = false;
    let mut cur = v.clone();
    let mut named = None;
    for _ in 0..16 {
        if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
            let n = r.trim_start_matches("#/$defs/");
            named = Some(n.to_string());
            cur = defs.get(n).cloned().unwrap_or(Value::Null);
        } else if let Some(any) = cur.get("anyOf").and_then(Value::as_array) {
            let alts: Vec<&Value> =
                any.iter().filter(|a| a.get("type").and_then(Value::as_str) != Some("null")).collect();
            match alts[..] {
                [] => break,
                [one] => cur = one.clone(),
                _ => {
                    // Several shapes accepted (an integer or a string with a unit): name them all.
                    let base = alts.iter().map(|a| type_name(a, defs)).collect::<Vec<_>>().join("|");
                    return if array { format!("[]{base}") } else { base };
                }
            }
        } else if is_type(&cur, "array") {
            array = true;
            match cur.get("items") {
                Some(items) => cur = items.clone(),
                None => break,
            }
        } else {
            break;
        }
    }
    let base = if let Some(values) = cur.get("enum").and_then(Value::as_array) {
        let vs: Vec<String> = values.iter().filter_map(Value::as_str).map(str::to_string).collect();
        if vs.is_empty() { "string".to_string() } else { vs.join("|") }
    } else if let Some(one) = cur.get("oneOf").and_then(Value::as_array) {
        let vs: Vec<String> =
            one.iter().filter_map(|o| o.get("const").and_then(Value::as_str)).map(str::to_string).collect();
        if vs.is_empty() { named.clone().unwrap_or_else(|| "Object".into()) } else { vs.join("|") }
    } else if is_type(&cur, "object") || cur.get("properties").is_some() {
        if cur.get("properties").is_some() {
            named.clone().unwrap_or_else(|| "Object".into())
        } else {
            "map[string]string".into()
        }
    } else {
        ["string", "integer", "number", "boolean"]
            .into_iter()
            .find(|t| is_type(&cur, t))
            .map(str::to_string)
            .or(named)
            .unwrap_or_else(|| "Object".into())
    };
    if array { format!("[]{base}") } else { base }
}

fn indent(text: &str, n: usize) -> String {
    text.lines().map(|l| format!("{}{l}", " ".repeat(n))).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        serde_json::from_str(&crate::spec::json_schema()).unwrap()
    }

    #[test]
    fn a_field_shows_its_type_description_and_fields() {
        let out = explain(&schema(), "queryrequest.spec.limits", false).unwrap();
        assert!(out.contains("FIELD:      limits <Limits>"), "{out}");
        assert!(out.contains("Limits on what the query may do."), "{out}");
        assert!(out.contains("  maxRows <integer>"), "{out}");
        assert!(out.contains("  maxBytesScanned <integer|string>"), "{out}");
        assert!(out.contains("  timeout <string>"), "{out}");
        let top = explain(&schema(), "qr", false).unwrap();
        assert!(top.contains("  spec <QueryRequestSpec>") && top.contains("  status <QueryRequestStatus>"), "{top}");
        let conditions = explain(&schema(), "queryrequest.status.conditions", false).unwrap();
        assert!(conditions.contains("<[]Condition>"), "{conditions}");
        assert!(conditions.contains("  reason <string>"), "{conditions}");
        let phase = explain(&schema(), "queryrequest.status.phase", false).unwrap();
        assert!(phase.contains("AwaitingApproval"), "{phase}");
    }

    #[test]
    fn recursive_lists_every_field_below_and_bad_paths_say_what_exists() {
        let out = explain(&schema(), "queryrequest.spec", true).unwrap();
        assert!(out.contains("  limits <Limits>\n    maxBytesScanned"), "{out}");
        let e = explain(&schema(), "queryrequest.spec.limitz", false).unwrap_err();
        assert!(e.contains("\"limitz\" does not exist in queryrequest.spec") && e.contains("limits"), "{e}");
        let e = explain(&schema(), "pod.spec", false).unwrap_err();
        assert!(e.contains("unknown resource type"), "{e}");
    }

    #[test]
    fn the_other_kinds_are_explained_from_their_own_schemas() {
        let sm: Value =
            serde_json::from_str(&crate::spec::json_schema_of(crate::spec::ObjectKind::SemanticModel)).unwrap();
        let out = explain(&sm, "sm.spec.metrics", false).unwrap();
        assert!(out.starts_with("KIND:       SemanticModel\n") && out.contains("expression"), "{out}");
        let vq: Value =
            serde_json::from_str(&crate::spec::json_schema_of(crate::spec::ObjectKind::VerifiedQuery)).unwrap();
        let out = explain(&vq, "verifiedquery.spec.parameters", false).unwrap();
        assert!(out.contains("example") && out.contains("type"), "{out}");
    }
}
