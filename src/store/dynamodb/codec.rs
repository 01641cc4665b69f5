//! Items ⇄ records: attribute helpers, key formats, the request item with its derived index
//! attributes, and fitting a status into DynamoDB's 400 KB.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason};
use chrono::Utc;

use super::{CHANGE_SHARDS, ITEM_BUDGET, META};
use crate::spec::{ObjectKey, QueryRequest, digest::token};
use crate::store::{Lease, Result, StoreError, is_active};

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn num(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

pub(super) fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn build_err(e: aws_smithy_types::error::operation::BuildError) -> StoreError {
    StoreError::Other(format!("building a DynamoDB request: {e}"))
}

pub(super) fn reason_codes(reasons: &[CancellationReason]) -> String {
    reasons.iter().map(|r| r.code().unwrap_or("?")).collect::<Vec<_>>().join(", ")
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(format!("cannot encode record: {e}")))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Other(format!("corrupt record in store: {e}")))
}

pub(super) fn now_ms() -> u64 {
    Utc::now().timestamp_millis().max(0) as u64
}

pub(super) fn key_str(key: &ObjectKey) -> String {
    format!("{}/{}", key.namespace, key.name)
}

pub(super) fn parse_key_str(s: &str) -> Option<ObjectKey> {
    let (ns, name) = s.split_once('/')?;
    Some(ObjectKey::new(ns, name))
}

pub(super) fn req_pk(key: &ObjectKey) -> String {
    format!("REQ#{}", key_str(key))
}

pub(super) fn lease_pk(name: &str) -> String {
    format!("LEASE#{name}")
}

/// Sort key of an archived history entry: the request's uid, then the index, zero-padded so
/// key order is index order.
pub(super) fn archive_sk(uid: &str, index: u64) -> String {
    format!("HIST#{uid}#{index:020}")
}

pub(super) fn decision_pk(uid: &str) -> String {
    format!("DEC#{uid}")
}

/// A fresh resourceVersion: time-ordered for humans, random so it is never reused.
pub(super) fn new_rv(now: u64) -> String {
    format!("{now:011x}{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The change-index partition of a write of `key` at `ms`.
pub(super) fn change_partition(key: &ObjectKey, ms: u64) -> String {
    format!("C#{}#{}", ms / 60_000, shard_of(key))
}

pub(super) fn shard_of(key: &ObjectKey) -> u64 {
    let t = token(&[&key.namespace, &key.name]);
    u64::from_str_radix(&t[..8], 16).unwrap_or(0) % CHANGE_SHARDS
}

pub(super) fn change_attrs(item: &mut HashMap<String, AttributeValue>, key: &ObjectKey, ms: u64) {
    item.insert("cp".to_string(), s(&change_partition(key, ms)));
    item.insert("mt".to_string(), n(ms));
    item.insert("ck".to_string(), s(&key_str(key)));
}

/// `doc`: the request without status, resourceVersion and finalizers (what only `create` and
/// `update_spec` change), as stored JSON.
pub(super) fn doc_json(req: &QueryRequest) -> Result<String> {
    let mut d = req.clone();
    d.status = None;
    d.metadata.resource_version = None;
    d.metadata.finalizers.clear();
    to_json(&d)
}

/// The item for `obj` (which carries its resourceVersion), with previews and history trimmed to
/// fit [`ITEM_BUDGET`]. `obj`'s status is trimmed in place so the caller returns what is stored.
pub(super) fn request_item_mut(
    obj: &mut QueryRequest,
    retention: Duration,
    now: u64,
) -> Result<HashMap<String, AttributeValue>> {
    let doc = doc_json(obj)?;
    fit_status(obj, ITEM_BUDGET.saturating_sub(doc.len() + 2_000))?;
    let key = obj.key();
    let mut item = HashMap::new();
    item.insert("pk".to_string(), s(&req_pk(&key)));
    item.insert("sk".to_string(), s(META));
    item.insert("sh".to_string(), s(&token(&[&doc])));
    item.insert("doc".to_string(), s(&doc));
    if let Some(st) = &obj.status {
        item.insert("st".to_string(), s(&to_json(st)?));
    }
    item.insert("fin".to_string(), s(&to_json(&obj.metadata.finalizers)?));
    item.insert("rv".to_string(), s(obj.metadata.resource_version.as_deref().unwrap_or_default()));
    item.insert("uid".to_string(), s(obj.uid()));
    item.insert("gen".to_string(), n(obj.generation()));
    item.insert("phase".to_string(), s(obj.phase().as_str()));
    item.insert("lp".to_string(), s("REQ"));
    item.insert("lk".to_string(), s(&key_str(&key)));
    item.insert("lbl".to_string(), s(&to_json(&obj.metadata.labels)?));
    item.insert("ak".to_string(), s(&key_str(&key)));
    if is_active(obj) {
        item.insert("act".to_string(), s("1"));
    } else if obj.phase().is_terminal() {
        item.insert("ttl".to_string(), n(now / 1000 + retention.as_secs()));
    }
    change_attrs(&mut item, &key, now);
    Ok(item)
}

/// Trims `req.status` until its JSON fits `budget` bytes: preview rows first (from the end,
/// marking the preview truncated), then the oldest history entries.
pub(super) fn fit_status(req: &mut QueryRequest, budget: usize) -> Result<()> {
    let Some(st) = req.status.as_mut() else { return Ok(()) };
    let mut size = to_json(st)?.len();
    if size <= budget {
        return Ok(());
    }
    if let Some(p) = st.execution.as_mut().and_then(|e| e.preview.as_mut()) {
        let row_bytes: Vec<usize> =
            p.rows.iter().map(|r| serde_json::to_string(r).map(|j| j.len() + 1).unwrap_or(64)).collect();
        let mut over = size - budget;
        let mut keep = p.rows.len();
        while keep > 0 && over > 0 {
            keep -= 1;
            over = over.saturating_sub(row_bytes[keep]);
        }
        if keep < p.rows.len() {
            p.rows.truncate(keep);
            p.truncated = true;
        }
        size = to_json(st)?.len();
    }
    while size > budget && !st.history.is_empty() {
        let drop = st.history.len().div_ceil(4);
        st.history.drain(..drop);
        size = to_json(st)?.len();
    }
    if size > budget {
        return Err(StoreError::TooLarge(format!(
            "{}: status is {size} bytes even without preview rows and history; DynamoDB items are limited to 400 KB",
            req.key()
        )));
    }
    Ok(())
}

pub(super) fn decode_request(item: &HashMap<String, AttributeValue>) -> Result<QueryRequest> {
    let doc = text(item, "doc").ok_or_else(|| StoreError::Other("corrupt record in store: no doc attribute".into()))?;
    let mut r: QueryRequest = from_json(doc)?;
    r.status = text(item, "st").map(from_json).transpose()?;
    r.metadata.finalizers = text(item, "fin").map(from_json).transpose()?.unwrap_or_default();
    r.metadata.resource_version = text(item, "rv").map(str::to_string);
    Ok(r)
}

pub(super) fn decode_lease(item: &HashMap<String, AttributeValue>) -> Lease {
    Lease {
        holder: text(item, "holder").unwrap_or_default().to_string(),
        epoch: num(item, "epoch").unwrap_or(0),
        renewals: num(item, "renewals").unwrap_or(0),
        duration_ms: num(item, "duration_ms").unwrap_or(0),
        renewed_at_ms: item.get("renewed_at_ms").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0),
        build: text(item, "build").unwrap_or_default().to_string(),
    }
}

pub(super) fn expected_rv(req: &QueryRequest) -> Result<String> {
    req.metadata.resource_version.clone().ok_or_else(|| {
        StoreError::Other(format!(
            "{}: metadata.resourceVersion is required for an update (read the record first)",
            req.key()
        ))
    })
}
