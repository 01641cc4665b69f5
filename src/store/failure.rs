//! A failure-injecting store for tests, after mountpoint-s3's countdown failure client: wraps a
//! real [`Store`] and makes the n-th call of a chosen operation fail with a chosen error, so a
//! test can drive the controller through conflicts, fencing and outages at exactly the step it
//! means, over real records.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{
    ArchiveBatch, ArchivedEntry, Change, DecisionList, DecisionOutcome, DecisionRecord, Fence, LabelSelector, Lease,
    LeaseClaim, Result, Store, StoreError,
};
use crate::failure::Failing;
use crate::spec::{Decision, Object, ObjectKey, ObjectKind, Phase, Policy, QueryRequest};

/// A [`Store`] whose operations fail on cue. Operations are named as the trait's methods
/// (`"update_status"`, `"get"`, …).
pub type FailureStore<S> = Failing<S, StoreError>;

#[async_trait]
impl<S: Store> Store for Failing<S, StoreError> {
    async fn create(&self, req: QueryRequest) -> Result<QueryRequest> {
        self.failures.check("create")?;
        self.inner.create(req).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<QueryRequest>> {
        self.failures.check("get")?;
        self.inner.get(key).await
    }
    async fn list(&self, namespace: Option<&str>, selector: &LabelSelector) -> Result<Vec<QueryRequest>> {
        self.failures.check("list")?;
        self.inner.list(namespace, selector).await
    }
    async fn list_active(&self) -> Result<Vec<ObjectKey>> {
        self.failures.check("list_active")?;
        self.inner.list_active().await
    }
    async fn update_spec(&self, req: &QueryRequest) -> Result<QueryRequest> {
        self.failures.check("update_spec")?;
        self.inner.update_spec(req).await
    }
    async fn update_status(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<QueryRequest> {
        self.failures.check("update_status")?;
        self.inner.update_status(req, fence).await
    }
    async fn delete(&self, key: &ObjectKey, force: bool) -> Result<Option<QueryRequest>> {
        self.failures.check("delete")?;
        self.inner.delete(key, force).await
    }
    async fn finalize(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<()> {
        self.failures.check("finalize")?;
        self.inner.finalize(req, fence).await
    }
    async fn create_decision(&self, decision: &Decision) -> Result<DecisionOutcome> {
        self.failures.check("create_decision")?;
        self.inner.create_decision(decision).await
    }
    async fn list_decisions(&self, uid: &str) -> Result<Vec<Decision>> {
        self.failures.check("list_decisions")?;
        self.inner.list_decisions(uid).await
    }
    async fn list_decision_records(&self, uid: &str, after: u64) -> Result<Vec<DecisionRecord>> {
        self.failures.check("list_decision_records")?;
        self.inner.list_decision_records(uid, after).await
    }
    async fn scan_decision_records(&self, uid: &str, after: u64) -> Result<DecisionList> {
        self.failures.check("scan_decision_records")?;
        self.inner.scan_decision_records(uid, after).await
    }
    async fn archive_history(&self, batch: ArchiveBatch<'_>, fence: Option<&Fence>) -> Result<()> {
        self.failures.check("archive_history")?;
        self.inner.archive_history(batch, fence).await
    }
    async fn archived_history(&self, key: &ObjectKey, uid: &str) -> Result<Vec<ArchivedEntry>> {
        self.failures.check("archived_history")?;
        self.inner.archived_history(key, uid).await
    }
    async fn get_policy(&self) -> Result<Option<Policy>> {
        self.failures.check("get_policy")?;
        self.inner.get_policy().await
    }
    async fn put_policy(&self, policy: &Policy, fence: Option<&Fence>) -> Result<()> {
        self.failures.check("put_policy")?;
        self.inner.put_policy(policy, fence).await
    }
    async fn get_lease(&self, name: &str) -> Result<Option<Lease>> {
        self.failures.check("get_lease")?;
        self.inner.get_lease(name).await
    }
    async fn health(&self) -> Result<()> {
        self.failures.check("health")?;
        self.inner.health().await
    }
    async fn try_acquire_lease(&self, claim: LeaseClaim<'_>, observed: Option<&Lease>) -> Result<Option<Lease>> {
        self.failures.check("try_acquire_lease")?;
        self.inner.try_acquire_lease(claim, observed).await
    }
    async fn renew_lease(&self, name: &str, fence: &Fence) -> Result<Lease> {
        self.failures.check("renew_lease")?;
        self.inner.renew_lease(name, fence).await
    }
    async fn release_lease(&self, name: &str, fence: &Fence) -> Result<()> {
        self.failures.check("release_lease")?;
        self.inner.release_lease(name, fence).await
    }
    async fn create_object(&self, obj: Object) -> Result<Object> {
        self.failures.check("create_object")?;
        self.inner.create_object(obj).await
    }
    async fn get_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<Option<Object>> {
        self.failures.check("get_object")?;
        self.inner.get_object(kind, key).await
    }
    async fn list_objects(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<Object>> {
        self.failures.check("list_objects")?;
        self.inner.list_objects(kind, namespace, selector).await
    }
    async fn update_object(&self, obj: &Object) -> Result<Object> {
        self.failures.check("update_object")?;
        self.inner.update_object(obj).await
    }
    async fn update_object_status(&self, obj: &Object, fence: Option<&Fence>) -> Result<Object> {
        self.failures.check("update_object_status")?;
        self.inner.update_object_status(obj, fence).await
    }
    async fn delete_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<()> {
        self.failures.check("delete_object")?;
        self.inner.delete_object(kind, key).await
    }
    async fn change_cursor(&self) -> Result<u64> {
        self.failures.check("change_cursor")?;
        self.inner.change_cursor().await
    }
    async fn changes_since(&self, cursor: u64) -> Result<(u64, Vec<Change>)> {
        self.failures.check("changes_since")?;
        self.inner.changes_since(cursor).await
    }
    async fn count_by_phase(&self) -> Result<BTreeMap<Phase, u64>> {
        self.failures.check("count_by_phase")?;
        self.inner.count_by_phase().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn the_nth_call_fails_once_and_the_rest_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let s = FailureStore::new(Arc::new(SqliteStore::open(dir.path().join("s.db")).unwrap()));
        s.fail_nth("get_policy", 2, || StoreError::Unavailable("injected".into()));
        s.fail_nth("get_policy", 4, || StoreError::Other("also injected".into()));
        assert!(s.get_policy().await.is_ok());
        assert!(matches!(s.get_policy().await, Err(StoreError::Unavailable(_))));
        assert!(s.get_policy().await.is_ok());
        assert!(matches!(s.get_policy().await, Err(StoreError::Other(_))));
        assert!(s.get_policy().await.is_ok());
        assert_eq!(s.calls("get_policy"), 5);
        assert_eq!(s.calls("get"), 0);
    }
}
