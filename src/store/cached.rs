//! The controller's read cache: an informer-like view over any [`Store`].
//!
//! A controller reads a request before every reconcile step, and most steps are followed at once
//! by another (each write requeues the key): without a cache a request through approval costs
//! about twelve reads and several decision queries on top of its writes. On DynamoDB each of
//! those is a billed call. Like a Kubernetes informer, [`CachedStore`] keeps what it last wrote
//! or read of each *active* request and the decisions of each uid, and serves `get` /
//! `list_decisions` from memory. Only the controller's store is wrapped (`Context::
//! controller_store` on `--backend aws`); the CLI always reads the store itself.
//!
//! Staleness is bounded and safe:
//! * every write is still a compare-and-set, so acting on a stale copy ends in a `Conflict`,
//!   which evicts the entry (the retry reads fresh);
//! * a change by another process seen through [`Store::changes_since`] evicts its key (a
//!   change at the resourceVersion this cache holds is our own write and keeps the entry);
//! * entries expire after [`CACHE_TTL`];
//! * a resync ([`Store::list_active`]) empties the cache.
//!
//! Decisions written through this store (the SQS consumer shares it) drop the uid's cached
//! list, so the next read sees them with the store's sequence numbers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    ArchiveBatch, ArchivedEntry, Change, DecisionList, DecisionOutcome, DecisionRecord, Fence, LabelSelector, Lease,
    LeaseClaim, Result, Store, StoreError, is_active,
};
use crate::spec::{Decision, Object, ObjectKey, ObjectKind, Phase, Policy, QueryRequest};

/// How long an entry is served without reading the store again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// `S` with reads of active requests, decisions and the policy served from memory.
pub struct CachedStore<S> {
    inner: S,
    cache: Mutex<ReadCache>,
}

#[derive(Default)]
struct ReadCache {
    requests: HashMap<ObjectKey, (Instant, QueryRequest)>,
    /// uid → (request key, when read, decisions in creation order).
    decisions: HashMap<String, (ObjectKey, Instant, Vec<DecisionRecord>)>,
    policy: Option<(Instant, Option<Policy>)>,
}

impl<S: Store> CachedStore<S> {
    pub fn new(inner: S) -> Self {
        CachedStore { inner, cache: Mutex::new(ReadCache::default()) }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn with<T>(&self, f: impl FnOnce(&mut ReadCache) -> T) -> T {
        f(&mut self.cache.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Remembers `req` as written or read, only while it is active: finished records are not
    /// read again by a controller.
    fn remember(&self, req: &QueryRequest) {
        self.with(|c| {
            if is_active(req) {
                c.requests.insert(req.key(), (Instant::now(), req.clone()));
            } else {
                c.requests.remove(&req.key());
            }
        });
    }

    fn forget(&self, key: &ObjectKey) {
        self.with(|c| c.requests.remove(key));
    }

    /// Caches the outcome of a write of `key`: what was written, or nothing when the write
    /// showed the entry stale.
    fn note(&self, key: &ObjectKey, r: &Result<QueryRequest>) {
        match r {
            Ok(obj) => self.remember(obj),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_) | StoreError::AlreadyExists(_)) => {
                self.forget(key)
            }
            Err(_) => {}
        }
    }

    /// Evicts what another process changed.
    fn evict_changed(&self, changes: &[Change]) {
        self.with(|c| {
            for ch in changes {
                let ours = |(_, r): &(Instant, QueryRequest)| {
                    ch.resource_version.is_some() && r.metadata.resource_version == ch.resource_version
                };
                if !c.requests.get(&ch.key).is_some_and(ours) {
                    c.requests.remove(&ch.key);
                }
                if ch.resource_version.is_none() {
                    // A decision record (or a deletion) of this key.
                    c.decisions.retain(|_, (k, _, _)| *k != ch.key);
                }
            }
        });
    }

    fn fresh<T: Clone>(entry: Option<&(Instant, T)>) -> Option<T> {
        entry.filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, v)| v.clone())
    }
}

#[async_trait]
impl<S: Store> Store for CachedStore<S> {
    async fn create(&self, req: QueryRequest) -> Result<QueryRequest> {
        let key = req.key();
        let r = self.inner.create(req).await;
        self.note(&key, &r);
        r
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<QueryRequest>> {
        if let Some(r) = self.with(|c| Self::fresh(c.requests.get(key))) {
            return Ok(Some(r));
        }
        let r = self.inner.get(key).await?;
        match &r {
            Some(r) => self.remember(r),
            None => self.forget(key),
        }
        Ok(r)
    }

    async fn list(&self, namespace: Option<&str>, selector: &LabelSelector) -> Result<Vec<QueryRequest>> {
        self.inner.list(namespace, selector).await
    }

    async fn list_active(&self) -> Result<Vec<ObjectKey>> {
        // A resync is the drift safety net: everything after it is read fresh.
        self.with(|c| *c = ReadCache::default());
        self.inner.list_active().await
    }

    async fn update_spec(&self, req: &QueryRequest) -> Result<QueryRequest> {
        let r = self.inner.update_spec(req).await;
        self.note(&req.key(), &r);
        r
    }

    async fn update_status(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<QueryRequest> {
        let r = self.inner.update_status(req, fence).await;
        self.note(&req.key(), &r);
        r
    }

    async fn delete(&self, key: &ObjectKey, force: bool) -> Result<Option<QueryRequest>> {
        let r = self.inner.delete(key, force).await;
        match &r {
            Ok(Some(obj)) => self.remember(obj),
            _ => self.forget(key),
        }
        r
    }

    async fn finalize(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<()> {
        let r = self.inner.finalize(req, fence).await;
        if !matches!(r, Err(StoreError::Fenced { .. })) {
            self.forget(&req.key());
        }
        r
    }

    async fn create_decision(&self, decision: &Decision) -> Result<DecisionOutcome> {
        let r = self.inner.create_decision(decision).await;
        if let Ok(DecisionOutcome::Created(d)) = &r {
            // A cached list stays complete only if no other writer's record came in between
            // (seqs of a uid are consecutive); the next read goes to the store.
            self.with(|c| c.decisions.remove(&d.uid));
        }
        r
    }

    async fn list_decisions(&self, uid: &str) -> Result<Vec<Decision>> {
        Ok(self.list_decision_records(uid, 0).await?.into_iter().map(|r| r.decision).collect())
    }

    async fn list_decision_records(&self, uid: &str, after: u64) -> Result<Vec<DecisionRecord>> {
        let list = self.scan_decision_records(uid, after).await?;
        match list.undecodable.first() {
            Some(u) => Err(StoreError::Other(format!("corrupt decision record {}: {}", u.id, u.why))),
            None => Ok(list.records),
        }
    }

    async fn scan_decision_records(&self, uid: &str, after: u64) -> Result<DecisionList> {
        let hit = self
            .with(|c| c.decisions.get(uid).filter(|(_, at, _)| at.elapsed() < CACHE_TTL).map(|(_, _, d)| d.clone()));
        let list = match hit {
            // Only lists where every record decoded are cached, so a hit has nothing to report.
            Some(records) => DecisionList { records, undecodable: vec![] },
            None => {
                let list = self.inner.scan_decision_records(uid, 0).await?;
                if list.undecodable.is_empty() {
                    self.with(|c| {
                        // Only uids of requests this controller is working on are worth keeping.
                        if let Some(key) = c.requests.values().find(|(_, r)| r.uid() == uid).map(|(_, r)| r.key()) {
                            c.decisions.insert(uid.to_string(), (key, Instant::now(), list.records.clone()));
                        }
                    });
                }
                list
            }
        };
        let records = list.records.into_iter().filter(|r| r.seq == 0 || r.seq > after).collect();
        Ok(DecisionList { records, undecodable: list.undecodable })
    }

    async fn archive_history(&self, batch: ArchiveBatch<'_>, fence: Option<&Fence>) -> Result<()> {
        self.inner.archive_history(batch, fence).await
    }

    async fn archived_history(&self, key: &ObjectKey, uid: &str) -> Result<Vec<ArchivedEntry>> {
        self.inner.archived_history(key, uid).await
    }

    async fn get_policy(&self) -> Result<Option<Policy>> {
        if let Some(p) = self.with(|c| Self::fresh(c.policy.as_ref())) {
            return Ok(p);
        }
        let p = self.inner.get_policy().await?;
        self.with(|c| c.policy = Some((Instant::now(), p.clone())));
        Ok(p)
    }

    async fn put_policy(&self, policy: &Policy, fence: Option<&Fence>) -> Result<()> {
        let r = self.inner.put_policy(policy, fence).await;
        self.with(|c| c.policy = None);
        r
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>> {
        self.inner.get_lease(name).await
    }

    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    async fn try_acquire_lease(&self, claim: LeaseClaim<'_>, observed: Option<&Lease>) -> Result<Option<Lease>> {
        self.inner.try_acquire_lease(claim, observed).await
    }

    async fn renew_lease(&self, name: &str, fence: &Fence) -> Result<Lease> {
        self.inner.renew_lease(name, fence).await
    }

    async fn release_lease(&self, name: &str, fence: &Fence) -> Result<()> {
        self.inner.release_lease(name, fence).await
    }

    // Objects of the other kinds are not cached: the controller reads them on its own
    // (slower) schedule, and every read goes to the store.
    async fn create_object(&self, obj: Object) -> Result<Object> {
        self.inner.create_object(obj).await
    }

    async fn get_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<Option<Object>> {
        self.inner.get_object(kind, key).await
    }

    async fn list_objects(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<Object>> {
        self.inner.list_objects(kind, namespace, selector).await
    }

    async fn update_object(&self, obj: &Object) -> Result<Object> {
        self.inner.update_object(obj).await
    }

    async fn update_object_status(&self, obj: &Object, fence: Option<&Fence>) -> Result<Object> {
        self.inner.update_object_status(obj, fence).await
    }

    async fn delete_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<()> {
        self.inner.delete_object(kind, key).await
    }

    async fn change_cursor(&self) -> Result<u64> {
        self.inner.change_cursor().await
    }

    async fn changes_since(&self, cursor: u64) -> Result<(u64, Vec<Change>)> {
        let (next, changes) = self.inner.changes_since(cursor).await?;
        self.evict_changed(&changes);
        Ok((next, changes))
    }

    async fn count_by_phase(&self) -> Result<BTreeMap<Phase, u64>> {
        self.inner.count_by_phase().await
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::time::Duration;

    use super::*;

    /// The cache's behaviour over any store: `plain` and `cached` are two handles on the same
    /// records (another process, and the controller's cached view). `poll` is how long the store
    /// needs between change polls.
    pub(crate) async fn serves_active_records_and_drops_what_others_changed<S: Store>(
        plain: &dyn Store,
        cached: &CachedStore<S>,
        poll: Duration,
    ) {
        use crate::store::conformance::{decision, key, request, status};
        let r = cached.create(request("q", &[])).await.unwrap();
        // Another process (the CLI) changes the spec.
        let mut respec = plain.get(&key("q")).await.unwrap().unwrap();
        respec.spec.question = Some("changed".into());
        let respecced = plain.update_spec(&respec).await.unwrap();
        assert_eq!(cached.get(&key("q")).await.unwrap(), Some(r.clone()), "served from memory until told otherwise");
        // Acting on the stale copy conflicts, and the conflict evicts it.
        let mut stale = r.clone();
        stale.status = Some(status(Phase::Generated, 1));
        assert!(matches!(cached.update_status(&stale, None).await, Err(StoreError::Conflict { .. })));
        assert_eq!(cached.get(&key("q")).await.unwrap(), Some(respecced.clone()));

        // A change seen through the change feed evicts too; our own write does not.
        let cursor = cached.change_cursor().await.unwrap();
        let mut relabel = respecced.clone();
        relabel.metadata.labels.insert("x".into(), "y".into());
        let relabeled = plain.update_spec(&relabel).await.unwrap();
        assert_eq!(cached.get(&key("q")).await.unwrap(), Some(respecced));
        tokio::time::sleep(poll).await;
        let (cursor, _) = cached.changes_since(cursor).await.unwrap();
        assert_eq!(cached.get(&key("q")).await.unwrap(), Some(relabeled.clone()));
        let mut ours = relabeled.clone();
        ours.status = Some(status(Phase::Generated, 1));
        let ours = cached.update_status(&ours, None).await.unwrap();
        tokio::time::sleep(poll).await;
        cached.changes_since(cursor).await.unwrap();
        assert!(cached.with(|c| c.requests.contains_key(&key("q"))), "our own write keeps its entry");

        // Decisions: cached per uid, refreshed when written here, dropped when written elsewhere.
        assert!(cached.list_decisions(ours.uid()).await.unwrap().is_empty());
        cached.create_decision(&decision(&ours, "d1", "alice")).await.unwrap();
        assert_eq!(cached.list_decisions(ours.uid()).await.unwrap().len(), 1);
        let cursor = cached.change_cursor().await.unwrap();
        plain.create_decision(&decision(&ours, "d2", "bob")).await.unwrap();
        assert_eq!(cached.list_decisions(ours.uid()).await.unwrap().len(), 1, "not yet seen");
        tokio::time::sleep(poll).await;
        cached.changes_since(cursor).await.unwrap();
        let seen = cached.list_decision_records(ours.uid(), 0).await.unwrap();
        assert_eq!(seen.iter().map(|d| d.decision.id.as_str()).collect::<Vec<_>>(), ["d1", "d2"]);
        let after_first = cached.list_decision_records(ours.uid(), seen[0].seq).await.unwrap();
        assert_eq!(after_first.len(), 1, "`after` still applies");

        // A resync reads everything fresh.
        let mut again = plain.get(&key("q")).await.unwrap().unwrap();
        again.metadata.labels.insert("z".into(), "1".into());
        let latest = plain.update_spec(&again).await.unwrap();
        cached.list_active().await.unwrap();
        assert_eq!(cached.get(&key("q")).await.unwrap(), Some(latest));
        // A deletion elsewhere: gone after the next read that misses the cache.
        plain.delete(&key("q"), true).await.unwrap();
        cached.list_active().await.unwrap();
        assert_eq!(cached.get(&key("q")).await.unwrap(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use testing::serves_active_records_and_drops_what_others_changed;

    #[tokio::test]
    async fn over_sqlite_the_cache_serves_active_records_and_drops_what_others_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let plain = SqliteStore::open(&path).unwrap();
        let cached = CachedStore::new(SqliteStore::open(&path).unwrap());
        serves_active_records_and_drops_what_others_changed(&plain, &cached, Duration::ZERO).await;
    }
}
