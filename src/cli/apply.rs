//! `sqlctl apply -f FILE|DIR|-`: create or update objects of any kind (`QueryRequest`,
//! `SemanticModel`, `VerifiedQuery`), kubectl-style.
//!
//! Every document of every source is parsed and validated before anything is written: one bad
//! document means nothing is stored. Updates are a three-way merge (last-applied annotation,
//! the file, the live object), so re-applying an unchanged file is `unchanged` and writes nothing.
//!
//! A `VerifiedQuery` records who verified it: sqlctl sets `spec.verifiedBy` (and `verifiedAt`)
//! to whoever applies new content, a file may name only that person, and that person must be
//! allowed to approve on the query's database (`approval::may_verify`).
//!
//! [`load_documents`] (read, validate, guard) and [`plan`] / [`plan_object`] (the merge,
//! without writing) are shared with `sqlctl diff`, so diff shows exactly what apply would do.

use serde_json::Value;

use super::{Exit, output};
use crate::config::Context;
use crate::spec::load::Document;
use crate::spec::{LAST_APPLIED_ANNOTATION, Object, Policy, QueryRequest, REQUESTER_ANNOTATION, VerifiedQuery, load};
use crate::store::{Store, StoreError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files, directories (their *.yaml, *.yml, *.json) or - for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", required = true, value_name = "FILE|DIR|-")]
    pub files: Vec<String>,
    /// Validate and show what would change, without writing.
    #[arg(long)]
    pub dry_run: bool,
    /// Who requests (recorded for four-eyes); default: the OS user.
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: output::Format,
}

/// What apply did (or would do) to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    /// kubectl's word for it: `created`, `configured`, `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let docs = load_documents(&self.files, g).map_err(|m| Exit::refused(format!("{m}\nnothing was applied")))?;
        let store = g.store().await?;
        let requester = g.decider(self.as_.as_deref()).await?;
        let policy = store.get_policy().await?.unwrap_or_default();
        // All or nothing: a document too large for the store (or one its applier may not
        // write) stops every one before any write.
        let mut refused = Vec::new();
        for doc in &docs {
            match doc {
                Document::QueryRequest(req) => {
                    let p = plan(store.as_ref(), req, &requester).await?;
                    if p.outcome != Outcome::Unchanged {
                        refused.extend(check_store_size(&p.desired).err());
                    }
                }
                Document::Object(obj) => {
                    if let Err(e) = plan_object(store.as_ref(), obj, &requester, &policy).await {
                        refused.push(format!("{e:#}"));
                    }
                }
            }
        }
        if !refused.is_empty() {
            return Err(Exit::refused(format!("{}\nnothing was applied", refused.join("\n"))));
        }
        for doc in docs {
            let suffix = if self.dry_run { " (dry run)" } else { "" };
            let (outcome, written) = match doc {
                Document::QueryRequest(req) => {
                    let (outcome, obj) = apply_one(store.as_ref(), req, &requester, self.dry_run).await?;
                    (outcome, Document::QueryRequest(obj))
                }
                Document::Object(obj) => {
                    let (outcome, obj) = apply_object(store.as_ref(), obj, &requester, &policy, self.dry_run).await?;
                    (outcome, Document::Object(obj))
                }
            };
            let id = format!("{}/{}", written.kind().resource(), written.metadata().name);
            match (self.output, &written) {
                (output::Format::Yaml, Document::QueryRequest(r)) => print!("{}", output::to_yaml(r)),
                (output::Format::Yaml, Document::Object(o)) => print!("{}", output::to_yaml(o)),
                (output::Format::Json, Document::QueryRequest(r)) => print!("{}", output::to_json(r)),
                (output::Format::Json, Document::Object(o)) => print!("{}", output::to_json(o)),
                (output::Format::Name, _) => println!("{id}"),
                _ => println!("{id} {}{suffix}", outcome.as_str()),
            }
        }
        Ok(())
    }
}

/// Reads, validates and guards every document of `files` (any kind), all or nothing, and fills
/// in the namespace from `-n` where a document names none. Shared by `apply` and `diff`.
///
/// `Err` holds every problem found, one per line (the caller says what was not done).
pub fn load_documents(files: &[String], g: &Context) -> Result<Vec<Document>, String> {
    // The guard reads every kind's SQL (templates, metric and filter expressions) as the
    // loader validates, so its problems are located like every other.
    let docs = load::load_paths_with(files, &crate::guard::template::check_document).map_err(|e| e.to_string())?;
    if docs.is_empty() {
        return Err("no documents found in the given input".into());
    }
    // Hand-written SQL that can never run is refused before anything is written (table
    // existence is the controller's to check: it knows the catalog).
    let problems: Vec<String> = docs
        .iter()
        .filter_map(|d| {
            let r = d.request()?;
            let sql = r.spec.sql.as_deref()?;
            let c = &r.spec.catalog;
            crate::guard::check_read_only(sql, &c.database, &c.tables)
                .err()
                .map(|e| format!("{}: document {}: spec.sql: {e}", d.source, d.index + 1))
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    Ok(docs
        .into_iter()
        .map(|d| {
            let mut doc = d.document;
            let meta = doc.metadata_mut();
            if meta.namespace.is_none() && g.namespace != crate::spec::DEFAULT_NAMESPACE {
                meta.namespace = Some(g.namespace.clone());
            }
            doc
        })
        .collect())
}

/// [`load_documents`], requests only: the other kinds are refused (for commands that act on
/// requests alone).
pub fn load_requests(files: &[String], g: &Context) -> Result<Vec<QueryRequest>, String> {
    let mut out = Vec::new();
    for doc in load_documents(files, g)? {
        match doc {
            Document::QueryRequest(r) => out.push(r),
            Document::Object(o) => {
                return Err(format!(
                    "{} {}: only QueryRequest documents are accepted here",
                    o.kind().resource(),
                    o.key()
                ));
            }
        }
    }
    Ok(out)
}

/// The user-owned part of an object, as JSON: what the last-applied annotation stores.
fn applied_config(req: &QueryRequest) -> Value {
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), Value::String(req.metadata.name.clone()));
    if let Some(ns) = &req.metadata.namespace {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    if !req.metadata.labels.is_empty() {
        meta.insert("labels".into(), serde_json::to_value(&req.metadata.labels).unwrap());
    }
    let mut ann = req.metadata.annotations.clone();
    ann.remove(LAST_APPLIED_ANNOTATION);
    ann.remove(REQUESTER_ANNOTATION);
    if !ann.is_empty() {
        meta.insert("annotations".into(), serde_json::to_value(&ann).unwrap());
    }
    serde_json::json!({
        "apiVersion": req.api_version,
        "kind": req.kind,
        "metadata": Value::Object(meta),
        "spec": serde_json::to_value(&req.spec).unwrap(),
    })
}

/// JSON merge of `new` into `live`, deleting what `last` had and `new` dropped (kubectl's
/// three-way merge for non-strategic fields). Arrays are replaced whole.
pub fn three_way(live: &Value, last: &Value, new: &Value) -> Value {
    match (live, new) {
        (Value::Object(l), Value::Object(n)) => {
            let empty = serde_json::Map::new();
            let lastm = last.as_object().unwrap_or(&empty);
            let mut out = l.clone();
            for k in lastm.keys() {
                if !n.contains_key(k) {
                    out.remove(k);
                }
            }
            for (k, nv) in n {
                let merged = match (l.get(k), lastm.get(k)) {
                    (Some(lv), Some(lastv)) => three_way(lv, lastv, nv),
                    (Some(lv), None) => three_way(lv, &Value::Null, nv),
                    _ => nv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

/// What `apply` would do to one object, computed from the store without writing anything.
#[derive(Debug, Clone)]
pub struct Plan<T = QueryRequest> {
    pub outcome: Outcome,
    /// The stored object (status included), if there is one.
    pub live: Option<T>,
    /// What apply would write: the new object (`Created`), the merged one (`Configured`), or the
    /// live object itself (`Unchanged`).
    pub desired: T,
}

/// Computes what applying `req` as `requester` would do: the single source of truth for `apply`
/// (which then writes `desired` with a compare-and-set) and `diff` (which only shows it).
///
/// Refuses (exit 1) an object that is being deleted.
pub async fn plan(store: &dyn Store, req: &QueryRequest, requester: &str) -> anyhow::Result<Plan> {
    let key = req.key();
    let new_cfg = applied_config(req);
    let new_cfg_text = serde_json::to_string(&new_cfg)?;
    let Some(live) = store.get(&key).await? else {
        let mut obj = req.clone();
        obj.status = None;
        obj.metadata.uid = None;
        obj.metadata.resource_version = None;
        obj.metadata.generation = None;
        obj.metadata.creation_timestamp = None;
        obj.metadata.deletion_timestamp = None;
        obj.metadata.finalizers.clear();
        obj.metadata.annotations.insert(LAST_APPLIED_ANNOTATION.into(), new_cfg_text);
        obj.metadata.annotations.insert(REQUESTER_ANNOTATION.into(), requester.into());
        return Ok(Plan { outcome: Outcome::Created, live: None, desired: obj });
    };
    if live.metadata.deletion_timestamp.is_some() {
        return Err(Exit::refused(format!("{key} is being deleted; wait for it to go (`sqlctl get`) and apply again")));
    }
    let last: Value = live
        .metadata
        .annotations
        .get(LAST_APPLIED_ANNOTATION)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let live_cfg = {
        let mut v = serde_json::to_value(&live)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        v
    };
    let merged = three_way(&live_cfg, &last, &new_cfg);
    let mut obj: QueryRequest = serde_json::from_value(merged)
        .map_err(|e| Exit::refused(format!("{key}: merging with the live object failed: {e}")))?;
    obj.metadata.annotations.insert(LAST_APPLIED_ANNOTATION.into(), new_cfg_text);
    let spec_changed = obj.spec != live.spec;
    let requester_now =
        if spec_changed { requester.to_string() } else { live.requester().unwrap_or(requester).to_string() };
    obj.metadata.annotations.insert(REQUESTER_ANNOTATION.into(), requester_now);
    // Keep server-set fields from the live object, whatever the file said.
    obj.metadata.uid = live.metadata.uid.clone();
    obj.metadata.resource_version = live.metadata.resource_version.clone();
    obj.metadata.generation = live.metadata.generation;
    obj.metadata.creation_timestamp = live.metadata.creation_timestamp;
    obj.metadata.finalizers = live.metadata.finalizers.clone();
    obj.status = live.status.clone();
    if obj.spec == live.spec
        && obj.metadata.labels == live.metadata.labels
        && obj.metadata.annotations == live.metadata.annotations
    {
        return Ok(Plan { outcome: Outcome::Unchanged, desired: live.clone(), live: Some(live) });
    }
    Ok(Plan { outcome: Outcome::Configured, live: Some(live), desired: obj })
}

/// The user-owned part of an object of the other kinds, as JSON (the last-applied annotation).
fn applied_object_config(obj: &Object) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            for server_set in
                ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "finalizers"]
            {
                meta.remove(server_set);
            }
            if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                ann.remove(LAST_APPLIED_ANNOTATION);
                if ann.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
    }
    v
}

/// What applying `obj` (a `SemanticModel` or `VerifiedQuery`) as `applier` would do, under
/// `policy`: the same three-way merge as for requests. For a verified query, new content is
/// verified by `applier` (who must be allowed to: [`crate::approval::may_verify`]); unchanged
/// content keeps its verifier.
pub async fn plan_object(
    store: &dyn Store,
    obj: &Object,
    applier: &str,
    policy: &Policy,
) -> anyhow::Result<Plan<Object>> {
    let key = obj.key();
    let kind = obj.kind();
    let new_cfg = applied_object_config(obj);
    let new_cfg_text = serde_json::to_string(&new_cfg)?;
    let live = store.get_object(kind, &key).await?;
    let mut desired = match &live {
        None => {
            let mut o = Object::from_json(kind, &new_cfg.to_string())
                .map_err(|e| Exit::refused(format!("{} {key}: {e}", kind.resource())))?;
            *o.status_mut() = None;
            o
        }
        Some(live) => {
            let last: Value = live
                .metadata()
                .annotations
                .get(LAST_APPLIED_ANNOTATION)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or(Value::Null);
            let mut live_cfg = serde_json::to_value(live)?;
            if let Some(o) = live_cfg.as_object_mut() {
                o.remove("status");
            }
            let merged = three_way(&live_cfg, &last, &new_cfg);
            let mut o = Object::from_json(kind, &merged.to_string()).map_err(|e| {
                Exit::refused(format!("{} {key}: merging with the live object failed: {e}", kind.resource()))
            })?;
            // Server-set fields and status stay the live object's, whatever the file said.
            let (lm, om) = (live.metadata().clone(), o.metadata_mut());
            om.uid = lm.uid;
            om.resource_version = lm.resource_version;
            om.generation = lm.generation;
            om.creation_timestamp = lm.creation_timestamp;
            om.deletion_timestamp = None;
            om.finalizers.clear();
            *o.status_mut() = live.status().cloned();
            o
        }
    };
    desired.metadata_mut().annotations.insert(LAST_APPLIED_ANNOTATION.into(), new_cfg_text);
    if let (Object::VerifiedQuery(d), Object::VerifiedQuery(file)) = (&mut desired, obj) {
        let live_vq = live.as_ref().and_then(Object::as_verified_query);
        stamp_verifier(d, file, live_vq, applier, policy)
            .map_err(|m| Exit::refused(format!("verifiedquery {key}: {m}")))?;
    }
    let Some(live) = live else {
        return Ok(Plan { outcome: Outcome::Created, live: None, desired });
    };
    if desired.spec_json() == live.spec_json()
        && desired.metadata().labels == live.metadata().labels
        && desired.metadata().annotations == live.metadata().annotations
    {
        return Ok(Plan { outcome: Outcome::Unchanged, desired: live.clone(), live: Some(live) });
    }
    Ok(Plan { outcome: Outcome::Configured, live: Some(live), desired })
}

/// Sets who verified `desired` and when: the applier, now, when its content (anything but the
/// verifier fields) is new; the live object's otherwise. A file may name only the applier.
fn stamp_verifier(
    desired: &mut VerifiedQuery,
    file: &VerifiedQuery,
    live: Option<&VerifiedQuery>,
    applier: &str,
    policy: &Policy,
) -> Result<(), String> {
    if let Some(named) = &file.spec.verified_by
        && !crate::identity::same(named, applier)
    {
        return Err(format!(
            "spec.verifiedBy names {named}, but you are {applier}: a verified query records who applied it, so a file may name only the person applying it (or leave verifiedBy out)"
        ));
    }
    let content = |v: &VerifiedQuery| {
        let mut spec = v.spec.clone();
        spec.verified_by = None;
        spec.verified_at = None;
        serde_json::to_string(&spec).unwrap_or_default()
    };
    match live {
        Some(l) if content(l) == content(desired) => {
            desired.spec.verified_by = l.spec.verified_by.clone();
            desired.spec.verified_at = l.spec.verified_at;
        }
        _ => {
            crate::approval::may_verify(policy, &desired.spec.database, applier)?;
            desired.spec.verified_by = Some(applier.to_string());
            desired.spec.verified_at = Some(chrono::Utc::now());
        }
    }
    Ok(())
}

/// Applies one object of the other kinds: [`plan_object`], then a compare-and-set write,
/// re-planned when another writer got there first.
pub async fn apply_object(
    store: &dyn Store,
    obj: Object,
    applier: &str,
    policy: &Policy,
    dry_run: bool,
) -> anyhow::Result<(Outcome, Object)> {
    for _ in 0..5 {
        let plan = plan_object(store, &obj, applier, policy).await?;
        let written = match plan.outcome {
            _ if dry_run => return Ok((plan.outcome, plan.desired)),
            Outcome::Unchanged => return Ok((Outcome::Unchanged, plan.desired)),
            Outcome::Created => store.create_object(plan.desired).await,
            Outcome::Configured => store.update_object(&plan.desired).await,
        };
        match written {
            Ok(o) => return Ok((plan.outcome, o)),
            Err(StoreError::AlreadyExists(_) | StoreError::Conflict { .. }) => continue,
            Err(e @ StoreError::TooLarge(_)) => return Err(Exit::refused(format!("{e}\nnothing was applied"))),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Exit::refused(format!("{} {} kept changing while applying; try again", obj.kind().resource(), obj.key())))
}

/// Applies one request: [`plan`], then a compare-and-set write, re-planned when another writer
/// got there first. With `dry_run`, returns the plan's outcome and object without writing.
/// Bytes of the part of a request's store item that can never be trimmed, in its worst case:
/// the document (spec, metadata and the last-applied annotation, JSON-escaped as the store
/// encodes them) plus a status holding the SQL as the controller will store it (its canonical
/// re-rendering, which may be longer) in `generated.sql`, plus the store's margin for derived
/// attributes. History (which also repeats the SQL) is what the store trims first, so it is not
/// counted; previews are trimmed too.
pub fn worst_case_item_bytes(req: &QueryRequest) -> usize {
    let mut doc = req.clone();
    doc.status = None;
    doc.metadata.resource_version = None;
    doc.metadata.finalizers.clear();
    let doc_len = serde_json::to_string(&doc).map(|s| s.len()).unwrap_or(usize::MAX / 2);
    let sql = req.spec.sql.as_deref().map(|sql| {
        let c = &req.spec.catalog;
        match crate::guard::check_read_only(sql, &c.database, &c.tables) {
            Ok(checked) if checked.sql.len() > sql.len() => checked.sql,
            _ => sql.to_string(),
        }
    });
    let status = crate::spec::QueryRequestStatus {
        generated: sql.map(|sql| crate::spec::Generated {
            sql,
            sql_digest: "0".repeat(64),
            explanation: "hand-written SQL (spec.sql)".into(),
            model: "user".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status_len = serde_json::to_string(&status).map(|s| s.len()).unwrap_or(usize::MAX / 2);
    doc_len + status_len + 2_000
}

/// Refuses a request whose item would not fit the store (DynamoDB's 400 KB item, less the
/// store's margin: [`crate::store::dynamodb::ITEM_BUDGET`]), with the figure and the limit.
/// Checked on every backend, so a spec that applies locally also applies on AWS.
pub fn check_store_size(req: &QueryRequest) -> Result<(), String> {
    let size = worst_case_item_bytes(req);
    #[cfg(feature = "aws")]
    let limit = crate::store::dynamodb::ITEM_BUDGET;
    // The same bound without the DynamoDB store compiled in (`aws` off), so a spec that applies
    // locally still applies on AWS.
    #[cfg(not(feature = "aws"))]
    let limit = 350_000;
    if size > limit {
        return Err(format!(
            "{}: too large to store: the request would take up to {size} bytes as stored (the SQL is JSON-escaped in the spec, the last-applied annotation and the status), over the limit of {limit} bytes; shorten spec.sql",
            req.key()
        ));
    }
    Ok(())
}

pub async fn apply_one(
    store: &dyn Store,
    req: QueryRequest,
    requester: &str,
    dry_run: bool,
) -> anyhow::Result<(Outcome, QueryRequest)> {
    for _ in 0..5 {
        let plan = plan(store, &req, requester).await?;
        if plan.outcome != Outcome::Unchanged {
            check_store_size(&plan.desired).map_err(|m| Exit::refused(format!("{m}\nnothing was applied")))?;
        }
        let written = match plan.outcome {
            _ if dry_run => return Ok((plan.outcome, plan.desired)),
            Outcome::Unchanged => return Ok((Outcome::Unchanged, plan.desired)),
            Outcome::Created => store.create(plan.desired).await,
            Outcome::Configured => store.update_spec(&plan.desired).await,
        };
        match written {
            Ok(o) => return Ok((plan.outcome, o)),
            // Raced with another writer (a concurrent create, or any update): look again.
            Err(StoreError::AlreadyExists(_) | StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Exit::refused(format!("{} kept changing while applying; try again", req.key())))
}

#[cfg(test)]
mod tests {
    use super::three_way;
    use serde_json::json;

    #[test]
    fn three_way_merge_keeps_foreign_fields_and_drops_removed_ones() {
        let live = json!({"labels": {"team": "a", "added-by-other": "x"}, "spec": {"sql": "select 1", "limits": {"maxRows": 5}}});
        let last = json!({"labels": {"team": "a"}, "spec": {"sql": "select 1", "limits": {"maxRows": 5}}});
        let new = json!({"labels": {"team": "b"}, "spec": {"sql": "select 2"}});
        let merged = three_way(&live, &last, &new);
        assert_eq!(merged, json!({"labels": {"team": "b", "added-by-other": "x"}, "spec": {"sql": "select 2"}}));
    }
}
