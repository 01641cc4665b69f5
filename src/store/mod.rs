//! The `Store`: where requests, the other objects of the API group (`SemanticModel`,
//! `VerifiedQuery`), decision records, the policy and the leader lease live.
//!
//! Kubernetes rules, for every kind: every write is a compare-and-set on `metadata.resourceVersion`;
//! `metadata.generation` changes only when the spec changes; decision records are created only if
//! absent and never edited. Controller writes carry a [`Fence`] checked in the same transaction,
//! so a deposed leader's writes fail. Implementations: SQLite (embedded) and DynamoDB.

pub mod cached;
#[cfg(test)]
pub(crate) mod conformance;
#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(test)]
pub mod failure;
pub mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::spec::{Decision, HistoryEntry, Object, ObjectKey, ObjectKind, Phase, Policy, QueryRequest};

/// Name of the controller's leader lease record.
pub const CONTROLLER_LEASE: &str = "sqlctl-controller";

/// Marker written to `status.notified` once the terminal notification for a generation and
/// phase was sent; a record whose marker matches owes nothing and is no longer active.
pub fn notified_marker(generation: u64, phase: Phase) -> String {
    format!("{generation}/{phase}")
}

/// Why a store call failed. `Conflict` and `Fenced` are expected outcomes of races, not bugs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(ObjectKey),
    #[error("{0} already exists")]
    AlreadyExists(ObjectKey),
    /// The record changed since it was read (resourceVersion mismatch): re-read and retry.
    #[error("{key} was modified concurrently (expected resourceVersion {expected}); re-read and retry")]
    Conflict { key: ObjectKey, expected: String },
    /// The writer no longer holds the leader lease (or its epoch moved on).
    #[error("write refused: this controller is no longer the leader (lease epoch {epoch})")]
    Fenced { epoch: u64 },
    /// The store is temporarily unavailable (locked, throttled, network): retry with backoff.
    #[error("store temporarily unavailable: {0}")]
    Unavailable(String),
    /// Anything else (corrupt data, I/O, migration failure).
    #[error("store error: {0}")]
    Other(String),
    /// The record would exceed the store's item size limit even trimmed: retrying the same
    /// write can never succeed.
    #[error("{0}")]
    TooLarge(String),
}

impl StoreError {
    /// Worth retrying after a backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Conflict { .. } | StoreError::Unavailable(_))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Proof of leadership carried by every controller write: the lease name, holder and epoch that
/// must still be current when the write commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub epoch: u64,
}

/// The leader lease as stored. `renewals` increases on every renew, so a standby can tell a live
/// leader from a dead one by watching it change on its own monotonic clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub epoch: u64,
    pub renewals: u64,
    pub duration_ms: u64,
    /// Wall-clock millis of the last renew, for display only (never for takeover decisions).
    pub renewed_at_ms: i64,
    /// The holder's build ([`crate::version::Build::encode`]) for `sqlctl version`; empty when
    /// written by a controller that predates it. Display only: never part of a lease decision.
    pub build: String,
}

/// A bid for lease `name` by `holder` for `duration_ms`: what [`Store::try_acquire_lease`] takes.
#[derive(Clone, Copy, Debug)]
pub struct LeaseClaim<'a> {
    pub name: &'a str,
    pub holder: &'a str,
    pub duration_ms: u64,
    /// The claimant's build, recorded in the lease it takes (this binary's, by [`LeaseClaim::new`]).
    pub build: &'a str,
}

impl<'a> LeaseClaim<'a> {
    pub fn new(name: &'a str, holder: &'a str, duration_ms: u64) -> Self {
        LeaseClaim { name, holder, duration_ms, build: crate::version::encoded() }
    }

    /// Refuses a claim no lease can be held by (an empty holder), before any backend call.
    pub fn check(&self) -> Result<()> {
        if self.holder.is_empty() {
            return Err(StoreError::Other("a lease holder name must not be empty".into()));
        }
        Ok(())
    }

    /// The epoch this claim takes the lease at, given the lease as it stands (`current`) and as
    /// the claimant last saw it (`observed`); None when the lease is not the claimant's to take.
    /// The same rule for every backend: absent; unchanged since the caller started watching it
    /// for a full lease period; or released on shutdown (nobody holds it).
    pub fn next_epoch(current: Option<&Lease>, observed: Option<&Lease>) -> Option<u64> {
        match (current, observed) {
            (None, _) => Some(1),
            (Some(c), Some(o)) if c.holder == o.holder && c.epoch == o.epoch && c.renewals == o.renewals => {
                Some(c.epoch + 1)
            }
            (Some(c), None) if c.holder.is_empty() => Some(c.epoch + 1),
            _ => None,
        }
    }

    /// The lease this claim writes at `epoch`.
    pub fn lease(&self, epoch: u64, renewed_at_ms: i64) -> Lease {
        Lease {
            holder: self.holder.to_string(),
            epoch,
            renewals: 0,
            duration_ms: self.duration_ms,
            renewed_at_ms,
            build: self.build.to_string(),
        }
    }
}

/// History entries leaving the status of request `uid` (`key`) for its archive, numbered from
/// `first_index` in the request's whole audit trail: what [`Store::archive_history`] takes.
#[derive(Clone, Copy, Debug)]
pub struct ArchiveBatch<'a> {
    pub key: &'a ObjectKey,
    pub uid: &'a str,
    pub first_index: u64,
    pub entries: &'a [HistoryEntry],
}

/// Label selector: `key=value` pairs that must all match (kubectl's equality-based form).
pub type LabelSelector = BTreeMap<String, String>;

/// Result of creating a decision record.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionOutcome {
    Created(Decision),
    /// A record with this id exists already (a redelivered message, a double click): nothing written.
    Exists(Decision),
}

/// A decision record with the sequence number the store gave it when it was created. `seq`
/// grows with creation order and a record with a higher `seq` is never visible before one with a
/// lower `seq` of the same uid, so "every record up to `seq`" is a high-water mark a reader can
/// keep. 0: a record written before the store numbered decisions (never above a mark).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub seq: u64,
    pub decision: Decision,
}

/// A decision record that could not be decoded: skipped and reported (quarantined), so one
/// junk record never blocks the others.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    /// The record's id (SQLite) or sort key (DynamoDB).
    pub id: String,
    pub why: String,
}

/// [`Store::scan_decision_records`]: the records that decode (as
/// [`Store::list_decision_records`] gives them) and every record of the uid that does not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecisionList {
    pub records: Vec<DecisionRecord>,
    pub undecodable: Vec<Undecodable>,
}

/// A history entry moved out of a request's status into the archive: `index` is its place in
/// the request's whole audit trail (0 = the first entry ever archived).
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedEntry {
    pub index: u64,
    pub entry: HistoryEntry,
}

/// A change observed by [`Store::changes_since`]: the key and the resourceVersion written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: ObjectKey,
    /// None for a deletion or a decision record.
    pub resource_version: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a request: sets uid, resourceVersion, generation 1 and creationTimestamp.
    async fn create(&self, req: QueryRequest) -> Result<QueryRequest>;
    async fn get(&self, key: &ObjectKey) -> Result<Option<QueryRequest>>;
    /// All requests (in `namespace` if given) whose labels match `selector`, ordered by key.
    async fn list(&self, namespace: Option<&str>, selector: &LabelSelector) -> Result<Vec<QueryRequest>>;
    /// Keys of requests that are not terminal, or terminal and still owe a notification or a
    /// finalizer: what a resync must look at. Implementations must not scan finished records.
    async fn list_active(&self) -> Result<Vec<ObjectKey>>;
    /// Replaces metadata (labels, annotations) and spec; CAS on `metadata.resourceVersion`.
    /// Bumps `generation` only if the spec changed. Status is left alone.
    async fn update_spec(&self, req: &QueryRequest) -> Result<QueryRequest>;
    /// Replaces status and finalizers; CAS on `metadata.resourceVersion`; fenced when `fence` is given.
    async fn update_status(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<QueryRequest>;
    /// Deletes a request. With finalizers present (and `force` false) only marks
    /// `deletionTimestamp`; the controller removes the record once its finalizers are done.
    /// Returns the record as left (None when removed).
    async fn delete(&self, key: &ObjectKey, force: bool) -> Result<Option<QueryRequest>>;
    /// Removes a request marked for deletion once its finalizers are empty; CAS + fence.
    async fn finalize(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<()>;

    /// Creates a decision record only if no record with its id exists.
    async fn create_decision(&self, decision: &Decision) -> Result<DecisionOutcome>;
    /// Decision records for a request uid, in creation order.
    async fn list_decisions(&self, uid: &str) -> Result<Vec<Decision>>;
    /// [`Store::list_decisions`] with each record's store-assigned `seq`: the records with
    /// `seq > after`, in seq order, plus any written before the store numbered decisions (seq 0,
    /// always returned, first).
    async fn list_decision_records(&self, uid: &str, after: u64) -> Result<Vec<DecisionRecord>>;
    /// [`Store::list_decision_records`] that skips records which do not decode and reports
    /// them (all of the uid's, whatever their seq), so the rest are still seen: what the
    /// controller reads.
    async fn scan_decision_records(&self, uid: &str, after: u64) -> Result<DecisionList>;

    /// Appends history entries evicted from a request's status to its append-only archive.
    /// Idempotent: writing the same index
    /// again (a retried step) stores the same entry once. Fenced like status writes.
    async fn archive_history(&self, batch: ArchiveBatch<'_>, fence: Option<&Fence>) -> Result<()>;
    /// The archived history of request `uid`, oldest first.
    async fn archived_history(&self, key: &ObjectKey, uid: &str) -> Result<Vec<ArchivedEntry>>;

    async fn get_policy(&self) -> Result<Option<Policy>>;
    async fn put_policy(&self, policy: &Policy, fence: Option<&Fence>) -> Result<()>;

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>>;
    /// Takes the lease if it is absent or still exactly `observed` (holder, epoch, renewals):
    /// the caller has watched it unchanged for a full lease period. Bumps the epoch.
    async fn try_acquire_lease(&self, claim: LeaseClaim<'_>, observed: Option<&Lease>) -> Result<Option<Lease>>;
    /// Renews a lease still held with `fence`; Err(Fenced) when it was taken over.
    async fn renew_lease(&self, name: &str, fence: &Fence) -> Result<Lease>;
    /// Gives the lease up (on shutdown) so a standby can take over at once.
    async fn release_lease(&self, name: &str, fence: &Fence) -> Result<()>;

    /// A cursor for [`Store::changes_since`]: changes after it are reported.
    async fn change_cursor(&self) -> Result<u64>;
    /// Requests (and decision records, reported by their request's key) written after `cursor`,
    /// and the new cursor. Used for prompt wake-ups.
    async fn changes_since(&self, cursor: u64) -> Result<(u64, Vec<Change>)>;

    /// Creates an object of a kind other than `QueryRequest`: sets the type fields, uid,
    /// resourceVersion, generation 1 and creationTimestamp, and no status ([`stamp_new_object`]).
    /// `AlreadyExists` when one of that kind and key exists.
    async fn create_object(&self, obj: Object) -> Result<Object>;
    async fn get_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<Option<Object>>;
    /// Every object of `kind` (in `namespace` if given) whose labels match, ordered by key.
    async fn list_objects(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<Object>>;
    /// Replaces labels, annotations and spec; CAS on `metadata.resourceVersion`; bumps
    /// `generation` only if the spec changed. Status is left alone.
    async fn update_object(&self, obj: &Object) -> Result<Object>;
    /// Replaces status; CAS on `metadata.resourceVersion`; fenced when `fence` is given.
    async fn update_object_status(&self, obj: &Object, fence: Option<&Fence>) -> Result<Object>;
    /// Removes an object (these kinds hold no finalizers). `NotFound` when there is none.
    async fn delete_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<()>;

    /// Whether the backend answers now: what a controller's `/readyz` checks. A read that goes
    /// to the backend itself, past any cache and any connection opened earlier (SQLite: a
    /// fresh connection to the file; DynamoDB: one read of the lease item).
    async fn health(&self) -> Result<()> {
        self.get_lease(CONTROLLER_LEASE).await.map(|_| ())
    }

    /// Counts of requests per phase (for metrics).
    async fn count_by_phase(&self) -> Result<BTreeMap<Phase, u64>> {
        let mut m = BTreeMap::new();
        for r in self.list(None, &LabelSelector::new()).await? {
            *m.entry(r.phase()).or_insert(0) += 1;
        }
        Ok(m)
    }
}

/// What a store sets on a request it creates, whatever the client sent: the kind, the
/// namespace (defaulted), a new uid, generation 1, the creation time, no deletion, no
/// finalizers (the controller adds its own, through `update_status`) and no status. The
/// resourceVersion is the backend's to set.
pub fn stamp_new(req: &mut QueryRequest) {
    let namespace = req.metadata.namespace().to_string();
    req.api_version = crate::spec::API_VERSION.to_string();
    req.kind = crate::spec::KIND.to_string();
    let m = &mut req.metadata;
    m.namespace = Some(namespace);
    m.uid = Some(uuid::Uuid::new_v4().to_string());
    m.generation = Some(1);
    m.creation_timestamp = Some(chrono::Utc::now());
    m.deletion_timestamp = None;
    m.finalizers.clear();
    req.status = None;
}

/// What a store sets on an object it creates, whatever the client sent (as [`stamp_new`]).
pub fn stamp_new_object(obj: &mut Object) {
    obj.stamp_type();
    let namespace = obj.metadata().namespace().to_string();
    let m = obj.metadata_mut();
    m.namespace = Some(namespace);
    m.uid = Some(uuid::Uuid::new_v4().to_string());
    m.generation = Some(1);
    m.creation_timestamp = Some(chrono::Utc::now());
    m.deletion_timestamp = None;
    m.finalizers.clear();
    m.resource_version = None;
    *obj.status_mut() = None;
}

/// The object `stored` after an update with `new` (labels, annotations and spec from `new`;
/// generation bumped when the spec changed): the same rule for every backend.
pub fn updated_object(stored: Object, new: &Object) -> Object {
    let mut obj = stored;
    obj.metadata_mut().labels = new.metadata().labels.clone();
    obj.metadata_mut().annotations = new.metadata().annotations.clone();
    if obj.replace_spec(new) {
        let g = obj.generation() + 1;
        obj.metadata_mut().generation = Some(g);
    }
    obj
}

/// The caller's resourceVersion for an update of `obj`, or why there is none.
pub fn object_rv(obj: &Object) -> Result<String> {
    obj.metadata().resource_version.clone().ok_or_else(|| {
        StoreError::Other(format!(
            "{} {}: metadata.resourceVersion is required for an update (read the object first)",
            obj.kind().resource(),
            obj.key()
        ))
    })
}

/// A kind check for the generic calls: the object must be of `kind`.
pub fn check_kind(kind: ObjectKind) -> Result<()> {
    if kind == ObjectKind::QueryRequest {
        return Err(StoreError::Other("QueryRequests are not generic objects: use the request calls".into()));
    }
    Ok(())
}

/// Does the record still need the controller? Not terminal; or a generation it has not
/// observed; or deletion pending; or terminal but the notification for this generation and
/// phase not yet recorded. What [`Store::list_active`] returns, and what the read cache keeps.
pub fn is_active(req: &QueryRequest) -> bool {
    if req.metadata.deletion_timestamp.is_some() {
        return true;
    }
    let Some(status) = &req.status else {
        return true;
    };
    if status.observed_generation != req.generation() || !status.phase.is_terminal() {
        return true;
    }
    status.notified.as_deref() != Some(notified_marker(req.generation(), status.phase).as_str())
}
