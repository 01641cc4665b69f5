//! Request items: create, spec and status writes (each one conditional write on `rv`), delete
//! with its tombstone, finalize, and list through the `list` index.

use chrono::Utc;

use super::codec::*;
use super::*;
use crate::spec::digest::token;

impl DynamoStore {
    pub(super) async fn create_request(&self, req: QueryRequest) -> Result<QueryRequest> {
        let mut obj = req;
        stamp_new(&mut obj);
        let now = now_ms();
        obj.metadata.resource_version = Some(new_rv(now));
        let item = request_item_mut(&mut obj, self.retention, now)?;
        match self.conditional_put(item, "attribute_not_exists(pk)", vec![], None, vec![]).await? {
            Ok(()) => Ok(obj),
            Err(_) => Err(StoreError::AlreadyExists(obj.key())),
        }
    }

    pub(super) async fn update_request_spec(&self, req: &QueryRequest) -> Result<QueryRequest> {
        let key = req.key();
        let expected = expected_rv(req)?;
        let stored = self.load(&key).await?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
        if stored.metadata.resource_version.as_deref() != Some(expected.as_str()) {
            return Err(StoreError::Conflict { key, expected });
        }
        if stored.metadata.deletion_timestamp.is_some() {
            return Err(StoreError::Other(format!("{key} is being deleted; its spec can no longer change")));
        }
        let spec_changed = to_json(&stored.spec)? != to_json(&req.spec)?;
        let mut obj = stored;
        obj.metadata.labels = req.metadata.labels.clone();
        obj.metadata.annotations = req.metadata.annotations.clone();
        if spec_changed {
            obj.spec = req.spec.clone();
            obj.metadata.generation = Some(obj.generation() + 1);
        }
        let now = now_ms();
        obj.metadata.resource_version = Some(new_rv(now));
        let item = request_item_mut(&mut obj, self.retention, now)?;
        match self.conditional_put(item, "rv = :old", vec![(":old", s(&expected))], None, vec![]).await? {
            Ok(()) => Ok(obj),
            Err(_) => Err(StoreError::Conflict { key, expected }),
        }
    }

    pub(super) async fn update_request_status(
        &self,
        req: &QueryRequest,
        fence: Option<&Fence>,
    ) -> Result<QueryRequest> {
        let key = req.key();
        let expected = expected_rv(req)?;
        // Fast path: one conditional write, valid when the caller's doc is the stored one.
        let now = now_ms();
        let mut obj = req.clone();
        obj.metadata.resource_version = Some(new_rv(now));
        let item = request_item_mut(&mut obj, self.retention, now)?;
        let sh = token(&[&doc_json(req)?]);
        let cond = "rv = :old AND sh = :sh";
        match self.conditional_put(item, cond, vec![(":old", s(&expected)), (":sh", s(&sh))], fence, vec![]).await? {
            Ok(()) => return Ok(obj),
            Err(Some(old)) if text(&old, "rv") != Some(expected.as_str()) => {
                return Err(StoreError::Conflict { key, expected });
            }
            Err(_) => {}
        }
        // Slow path: the caller's metadata or spec differ from the stored ones (or the item is
        // gone): status and finalizers go over the stored doc.
        let mut obj = self.load(&key).await?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
        if obj.metadata.resource_version.as_deref() != Some(expected.as_str()) {
            return Err(StoreError::Conflict { key, expected });
        }
        obj.status = req.status.clone();
        obj.metadata.finalizers = req.metadata.finalizers.clone();
        let now = now_ms();
        obj.metadata.resource_version = Some(new_rv(now));
        let item = request_item_mut(&mut obj, self.retention, now)?;
        match self.conditional_put(item, "rv = :old", vec![(":old", s(&expected))], fence, vec![]).await? {
            Ok(()) => Ok(obj),
            Err(_) => Err(StoreError::Conflict { key, expected }),
        }
    }

    pub(super) async fn delete_request(&self, key: &ObjectKey, force: bool) -> Result<Option<QueryRequest>> {
        // Unlike SQLite there is no lock to hold across the read and the write: a concurrent
        // writer makes the conditional write fail, and we re-read and decide again.
        let mut tries = 0;
        loop {
            tries += 1;
            let mut obj = self.load(key).await?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            let rv = obj.metadata.resource_version.clone().unwrap_or_default();
            let result = if !obj.metadata.finalizers.is_empty() && !force {
                if obj.metadata.deletion_timestamp.is_some() {
                    return Ok(Some(obj));
                }
                obj.metadata.deletion_timestamp = Some(Utc::now());
                let now = now_ms();
                obj.metadata.resource_version = Some(new_rv(now));
                let item = request_item_mut(&mut obj, self.retention, now)?;
                match self.conditional_put(item, "rv = :old", vec![(":old", s(&rv))], None, vec![]).await? {
                    Ok(()) => return Ok(Some(obj)),
                    Err(_) => Err(StoreError::Conflict { key: key.clone(), expected: rv }),
                }
            } else {
                self.remove(key, &rv, None).await.map(|()| None)
            };
            match result {
                Err(StoreError::Conflict { .. }) if tries < 5 => continue,
                other => return other,
            }
        }
    }

    pub(super) async fn finalize_request(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<()> {
        let key = req.key();
        let expected = expected_rv(req)?;
        let stored = self.load(&key).await?;
        // Fence before anything else, like SQLite (a deposed leader learns it first).
        let Some(stored) = stored else {
            if let Some(f) = fence {
                let lease = self.read_lease(CONTROLLER_LEASE).await?;
                match lease {
                    Some(l) if !l.holder.is_empty() && l.holder == f.holder && l.epoch == f.epoch => {}
                    Some(l) => return Err(StoreError::Fenced { epoch: l.epoch }),
                    None => return Err(StoreError::Fenced { epoch: 0 }),
                }
            }
            return Err(StoreError::NotFound(key));
        };
        if let Some(f) = fence {
            self.held_lease(CONTROLLER_LEASE, f).await?;
        }
        if stored.metadata.resource_version.as_deref() != Some(expected.as_str()) {
            return Err(StoreError::Conflict { key, expected });
        }
        if stored.metadata.deletion_timestamp.is_none() {
            return Err(StoreError::Other(format!("{key} is not marked for deletion; refusing to finalize it")));
        }
        if !stored.metadata.finalizers.is_empty() {
            return Err(StoreError::Other(format!(
                "{key} still has finalizers {:?}; clear them with a status update first",
                stored.metadata.finalizers
            )));
        }
        self.remove(&key, &expected, fence).await
    }

    pub(super) async fn list_requests(
        &self,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<QueryRequest>> {
        let keys: Vec<ObjectKey> = self
            .list_index(namespace)
            .await?
            .into_iter()
            .filter(|(_, _, labels)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(k, _, _)| k)
            .collect();
        let mut found = self.batch_get(&keys).await?;
        // The index is eventually consistent: a key it still lists may be gone; skip it.
        let mut out: Vec<QueryRequest> = keys.iter().filter_map(|k| found.remove(k)).collect();
        out.retain(|r| selector.iter().all(|(k, v)| r.metadata.labels.get(k) == Some(v)));
        Ok(out)
    }
}
