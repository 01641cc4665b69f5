//! Objects of the other kinds (`SemanticModel`, `VerifiedQuery`): one item each, in the same
//! table as requests under their own key prefix, every write one conditional write on `rv`.
//!
//! | attribute | value |
//! |---|---|
//! | `pk` / `sk` | `OBJ#<Kind>#<namespace>/<name>` / `META` |
//! | `doc` | the whole object as JSON (status included), without `resourceVersion` |
//! | `rv`, `uid`, `gen` | as for requests (a fresh random `rv` per write: no ABA) |
//! | `lp` / `lk` / `lbl` | `OBJ#<Kind>` / `namespace/name` / labels: the `list` index, by kind |
//!
//! They carry no `act`, `cp` or `ttl`: the controller's resync, the change index and retention
//! are about requests; the controller re-reads these objects on its own schedule.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::codec::*;
use super::*;
use crate::spec::{Object, ObjectKind};
use crate::store::{check_kind, object_rv, stamp_new_object, updated_object};

fn object_pk(kind: ObjectKind, key: &ObjectKey) -> String {
    format!("OBJ#{}#{}", kind.as_str(), key_str(key))
}

fn list_partition(kind: ObjectKind) -> String {
    format!("OBJ#{}", kind.as_str())
}

/// The item of `obj`, which carries its new resourceVersion.
fn object_item(obj: &Object) -> Result<HashMap<String, AttributeValue>> {
    let key = obj.key();
    let mut doc = obj.clone();
    doc.metadata_mut().resource_version = None;
    let doc = doc.to_json();
    if doc.len() > ITEM_BUDGET {
        return Err(StoreError::TooLarge(format!(
            "{} {key}: {} bytes as stored; DynamoDB items are limited to 400 KB",
            obj.kind().resource(),
            doc.len()
        )));
    }
    let mut item = HashMap::new();
    item.insert("pk".to_string(), s(&object_pk(obj.kind(), &key)));
    item.insert("sk".to_string(), s(META));
    item.insert("doc".to_string(), s(&doc));
    item.insert("rv".to_string(), s(obj.metadata().resource_version.as_deref().unwrap_or_default()));
    item.insert("uid".to_string(), s(obj.uid()));
    item.insert("gen".to_string(), n(obj.generation()));
    item.insert("lp".to_string(), s(&list_partition(obj.kind())));
    item.insert("lk".to_string(), s(&key_str(&key)));
    item.insert("lbl".to_string(), s(&to_json(&obj.metadata().labels)?));
    Ok(item)
}

fn decode_object(kind: ObjectKind, item: &HashMap<String, AttributeValue>) -> Result<Object> {
    let doc = text(item, "doc").ok_or_else(|| StoreError::Other("corrupt record in store: no doc attribute".into()))?;
    let mut obj =
        Object::from_json(kind, doc).map_err(|e| StoreError::Other(format!("corrupt record in store: {e}")))?;
    obj.metadata_mut().resource_version = text(item, "rv").map(str::to_string);
    Ok(obj)
}

impl DynamoStore {
    pub(super) async fn load_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<Option<Object>> {
        check_kind(kind)?;
        self.get_item(&object_pk(kind, key)).await?.map(|item| decode_object(kind, &item)).transpose()
    }

    pub(super) async fn create_object_item(&self, obj: Object) -> Result<Object> {
        let mut obj = obj;
        stamp_new_object(&mut obj);
        obj.metadata_mut().resource_version = Some(new_rv(now_ms()));
        let item = object_item(&obj)?;
        match self.conditional_put(item, "attribute_not_exists(pk)", vec![], None, vec![]).await? {
            Ok(()) => Ok(obj),
            Err(_) => Err(StoreError::AlreadyExists(obj.key())),
        }
    }

    /// Loads `obj`'s stored item and checks the caller's resourceVersion against it.
    async fn load_for_cas(&self, obj: &Object) -> Result<(String, Object)> {
        let key = obj.key();
        let expected = object_rv(obj)?;
        let stored = self.load_object(obj.kind(), &key).await?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
        if stored.metadata().resource_version.as_deref() != Some(expected.as_str()) {
            return Err(StoreError::Conflict { key, expected });
        }
        Ok((expected, stored))
    }

    async fn replace_object(&self, mut obj: Object, expected: &str, fence: Option<&Fence>) -> Result<Object> {
        obj.metadata_mut().resource_version = Some(new_rv(now_ms()));
        let item = object_item(&obj)?;
        match self.conditional_put(item, "rv = :old", vec![(":old", s(expected))], fence, vec![]).await? {
            Ok(()) => Ok(obj),
            Err(_) => Err(StoreError::Conflict { key: obj.key(), expected: expected.to_string() }),
        }
    }

    pub(super) async fn update_object_item(&self, obj: &Object) -> Result<Object> {
        let (expected, stored) = self.load_for_cas(obj).await?;
        self.replace_object(updated_object(stored, obj), &expected, None).await
    }

    pub(super) async fn update_object_item_status(&self, obj: &Object, fence: Option<&Fence>) -> Result<Object> {
        if let Some(f) = fence {
            // A deposed leader learns it first, as for requests.
            self.held_lease(CONTROLLER_LEASE, f).await?;
        }
        let (expected, mut stored) = self.load_for_cas(obj).await?;
        *stored.status_mut() = obj.status().cloned();
        self.replace_object(stored, &expected, fence).await
    }

    pub(super) async fn delete_object_item(&self, kind: ObjectKind, key: &ObjectKey) -> Result<()> {
        check_kind(kind)?;
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&object_pk(kind, key)))
            .key("sk", s(META))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(aws_sdk_dynamodb::error::SdkError::ServiceError(se))
                if matches!(se.err(), DeleteItemError::ConditionalCheckFailedException(_)) =>
            {
                Err(StoreError::NotFound(key.clone()))
            }
            Err(e) => Err(self.err("DeleteItem", e)),
        }
    }

    pub(super) async fn list_object_items(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<Object>> {
        check_kind(kind)?;
        let lp = list_partition(kind);
        let ns_prefix = namespace.map(|ns| format!("{ns}/"));
        let (items, _) = self
            .query_all(
                |q| {
                    let q = q.index_name(INDEX_LIST).expression_attribute_values(":lp", s(&lp));
                    match &ns_prefix {
                        Some(p) => q
                            .key_condition_expression("lp = :lp AND begins_with(lk, :ns)")
                            .expression_attribute_values(":ns", s(p)),
                        None => q.key_condition_expression("lp = :lp"),
                    }
                },
                "Query(list)",
            )
            .await?;
        let mut keys: Vec<ObjectKey> = Vec::new();
        for item in items {
            let Some(key) = text(&item, "lk").and_then(parse_key_str) else { continue };
            let labels: BTreeMap<String, String> = match text(&item, "lbl") {
                Some(j) => from_json(j)?,
                None => BTreeMap::new(),
            };
            if selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                keys.push(key);
            }
        }
        keys.sort();
        keys.dedup();
        let pks: Vec<String> = keys.iter().map(|k| object_pk(kind, k)).collect();
        let mut out = Vec::new();
        for item in self.batch_get_items(&pks).await? {
            out.push(decode_object(kind, &item)?);
        }
        // The index is eventually consistent: re-check the labels on what was read.
        out.retain(|o| selector.iter().all(|(k, v)| o.metadata().labels.get(k) == Some(v)));
        out.sort_by_key(|o| o.key());
        Ok(out)
    }
}
