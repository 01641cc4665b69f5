//! The AWS [`Store`]: one DynamoDB table, same semantics as the SQLite reference store.
//!
//! # Key schema (one table, `pk` + `sk`, both strings)
//!
//! | item | `pk` | `sk` | why |
//! |---|---|---|---|
//! | request | `REQ#<namespace>/<name>` | `META` | a partition per request: `get` is one strongly consistent `GetItem`, and every write is a single-item conditional write |
//! | decision | `DEC#<request uid>` | `<decision id>` | [`Store::list_decisions`] is asked by uid: one strongly consistent `Query` of the uid's partition (a GSI would be eventually consistent, and a decision that wakes the controller must be visible to the read that follows). Partitioning by uid, not name, also means a deleted and recreated request never sees its predecessor's decisions, and the deterministic id as sort key makes "created only if absent" one conditional `PutItem` |
//! | tombstone | `TOMB#<namespace>/<name>` | `<deleted resourceVersion>` | lets [`Store::changes_since`] report deletions; expires by TTL after an hour |
//! | lease | `LEASE#<name>` | `META` | the fencing record: every controller write carries a `ConditionCheck` on it in the same `TransactWriteItems` |
//! | policy | `POLICY` | `META` | |
//! | object (`SemanticModel`, `VerifiedQuery`) | `OBJ#<Kind>#<namespace>/<name>` | `META` | one item per object, one conditional write per change; listed by kind through the `list` index (`lp = OBJ#<Kind>`); see `objects` |
//!
//! Decisions live beside their request in spirit (same table, found from the request's uid) but
//! not in its partition: the trait lists them by uid alone, and only a base-table read is
//! strongly consistent.
//!
//! # Request items
//!
//! A request is stored as `doc` (the JSON of metadata and spec, without the server-managed
//! `resourceVersion` and finalizers), `st` (status JSON), `fin` (finalizers JSON) and `rv`, plus
//! attributes derived from them in the same write: `sh` (a hash of `doc`), `phase`, `gen`,
//! labels, and the index keys below. `resourceVersion` is a fresh unique value on every write
//! (time-prefixed + random), so a deleted and recreated request never reuses one and a stale
//! compare-and-set can never succeed against the new object (no ABA).
//!
//! Every write is a conditional write on `rv`. A status write (the controller's hot path) is
//! *one* call: a `PutItem` (or, fenced, a `TransactWriteItems` of a lease `ConditionCheck` plus
//! that `PutItem`) conditioned on `rv = :expected AND sh = :hash-of-the-caller's-doc`. If the
//! caller's metadata or spec differ from what is stored (they may not change through
//! `update_status`), the condition fails and the slow path reads the item and writes the status
//! over the *stored* doc. So the common case costs one call, never a read-modify-write.
//!
//! # Indexes
//!
//! * `active` (sparse, keys only): `act` is present only while [`is_active`] holds (not terminal,
//!   a generation not yet observed, deletion pending or a notification owed). Resync queries this
//!   index and never reads a finished record. It is written only when a record enters or leaves
//!   the active set (its key attributes do not change in between).
//! * `list` (`lp = REQ`, `lk = namespace/name`, projects phase and labels): `list` and
//!   `count_by_phase` without a table scan; bodies of matches are fetched with `BatchGetItem`.
//! * `changes` (`cp = C#<minute>#<shard>`, `mt` = write time in ms, projects `rv` and `ck`): see
//!   below.
//!
//! # Why a time-bucketed change index, not a counter item
//!
//! SQLite stamps each write from one counter. In DynamoDB a counter item every write must bump
//! is a hot key (~1,000 writes/s per item, and every transaction touching it conflicts with
//! every other), and costs an extra call per write. Instead every write stamps its own wall-clock
//! time `mt` and a partition `cp` = minute bucket × shard (hash of the key). `changes_since(c)`
//! queries the buckets covering `c − LAG ..= now` (one `Query` per shard per minute, usually
//! [`CHANGE_SHARDS`] in all) and returns what it has not reported yet. The lag window covers
//! writer clock skew and GSI propagation (GSIs are eventually consistent); an in-memory set of
//! reported `(key, version)` pairs keeps the overlap from waking a record twice. The cursor is
//! the reader's clock. A watcher more than [`MAX_BEHIND`] behind reads only that window: the
//! controller's periodic resync covers anything older, as the SQLite store's one-hour tombstone
//! window does. Polls closer together than [`MIN_POLL`] return no changes without a call, so a
//! 50 ms watch loop costs at most a few queries per second.
//!
//! # The controller's read cache
//!
//! The controller's store is this store inside [`super::cached::CachedStore`], which serves
//! reads of active requests and decisions from memory and evicts what the change index shows
//! another process changed. This module never caches.
//!
//! # Rooms
//!
//! `codec` (items ⇄ records, item-size fitting), `calls` (conditional writes, transactions,
//! fencing, paged queries), `requests`, `objects` (the other kinds), `decisions` (records, the
//! history archive, the policy), `lease`, `changes` (the change index) and `bootstrap` (the
//! table).
//!
//! # Item size, retention
//!
//! Items must stay under DynamoDB's 400 KB. A status write whose item would exceed
//! [`ITEM_BUDGET`] drops preview rows from the end (setting `preview.truncated`: the full result
//! is in S3 at `execution.outputLocation`), then the oldest history entries. A finished,
//! notified record gets a `ttl` attribute (epoch seconds) `retention` ahead, and DynamoDB's TTL
//! expires it; a new generation removes it again.

mod bootstrap;
mod calls;
mod changes;
mod codec;
mod decisions;
mod lease;
mod objects;
mod requests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

use super::{
    ArchiveBatch, ArchivedEntry, Change, DecisionList, DecisionOutcome, DecisionRecord, Fence, LabelSelector, Lease,
    LeaseClaim, Result, Store, StoreError, Undecodable, stamp_new,
};
use crate::spec::{Decision, Object, ObjectKey, ObjectKind, Phase, Policy, QueryRequest};
use codec::{parse_key_str, s, text};

pub use super::{CONTROLLER_LEASE, notified_marker};

/// Name of the sparse index of active requests.
pub const INDEX_ACTIVE: &str = "active";
/// Name of the index of all requests by key.
pub const INDEX_LIST: &str = "list";
/// Name of the change index.
pub const INDEX_CHANGES: &str = "changes";
/// Default table name (the Terraform of the "Operate" issue uses the same).
pub const DEFAULT_TABLE: &str = "sqlctl";

/// Bytes an item may take before previews and history are trimmed (DynamoDB's limit is 400 KB,
/// attribute names included; the margin covers the derived attributes).
pub const ITEM_BUDGET: usize = 350_000;
/// Shards of each minute bucket of the change index: writes spread over this many GSI
/// partitions; a poll reads this many.
pub const CHANGE_SHARDS: u64 = 2;
/// How far back each poll of the change index looks before its cursor (clock skew + GSI lag).
pub const LAG_MS: u64 = 10_000;
/// How far back a watcher may be before older changes are left to the periodic resync.
pub const MAX_BEHIND_MS: u64 = 10 * 60_000;
/// Same as [`MAX_BEHIND_MS`], as a duration.
pub const MAX_BEHIND: Duration = Duration::from_millis(MAX_BEHIND_MS);
/// Polls of the change index closer together than this return nothing, without a call.
pub const MIN_POLL: Duration = Duration::from_millis(500);
/// Default time a finished, notified request is kept before TTL expires it.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Decision records are kept at least this long (longer than the longest approval wait).
const DECISION_MIN_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);
/// Tombstones are kept this long.
const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);

const META: &str = "META";
/// Sort key of a uid's decision counter item (in the uid's decision partition; `#` sorts
/// before the hex decision ids).
const DECISION_SEQ: &str = "#SEQ";
/// Tries of a decision create whose counter another writer moved first.
const DECISION_SEQ_ATTEMPTS: usize = 8;
/// Archived history entries per transaction (DynamoDB allows 100 items; one is the fence).
const ARCHIVE_BATCH: usize = 99;

/// What a read of an index cost, for tests and measurements ("resync reads only active records").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Query pages requested.
    pub pages: u64,
    /// Items DynamoDB read (`ScannedCount`): what is billed.
    pub scanned: u64,
}

/// The DynamoDB-backed store. Cheap to clone? No: share it behind an `Arc` (it keeps the change
/// watcher's dedupe state).
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Duration,
    watch: Mutex<changes::WatchState>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
            retention: DEFAULT_RETENTION,
            watch: Mutex::new(changes::WatchState::default()),
        }
    }

    /// How long finished, notified records are kept before DynamoDB's TTL removes them.
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// [`Store::list_active`] plus what it read: the keys come from the sparse `active` index
    /// only, so `scanned` is the number of active records, however many finished ones exist.
    pub async fn list_active_with_stats(&self) -> Result<(Vec<ObjectKey>, ReadStats)> {
        let (items, stats) = self
            .query_all(
                |q| {
                    q.index_name(INDEX_ACTIVE)
                        .key_condition_expression("act = :a")
                        .expression_attribute_values(":a", s("1"))
                },
                "Query(active)",
            )
            .await?;
        let mut keys: Vec<ObjectKey> = items.iter().filter_map(|i| text(i, "ak").and_then(parse_key_str)).collect();
        keys.sort();
        keys.dedup();
        Ok((keys, stats))
    }
}

/// Each call is one room's method; see the rooms for what it costs in DynamoDB calls.
#[async_trait]
impl Store for DynamoStore {
    async fn create(&self, req: QueryRequest) -> Result<QueryRequest> {
        self.create_request(req).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<QueryRequest>> {
        self.load(key).await
    }

    async fn list(&self, namespace: Option<&str>, selector: &LabelSelector) -> Result<Vec<QueryRequest>> {
        self.list_requests(namespace, selector).await
    }

    async fn list_active(&self) -> Result<Vec<ObjectKey>> {
        Ok(self.list_active_with_stats().await?.0)
    }

    async fn update_spec(&self, req: &QueryRequest) -> Result<QueryRequest> {
        self.update_request_spec(req).await
    }

    async fn update_status(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<QueryRequest> {
        self.update_request_status(req, fence).await
    }

    async fn delete(&self, key: &ObjectKey, force: bool) -> Result<Option<QueryRequest>> {
        self.delete_request(key, force).await
    }

    async fn finalize(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<()> {
        self.finalize_request(req, fence).await
    }

    async fn create_decision(&self, decision: &Decision) -> Result<DecisionOutcome> {
        self.create_decision_record(decision).await
    }

    async fn list_decisions(&self, uid: &str) -> Result<Vec<Decision>> {
        Ok(self.list_decision_records(uid, 0).await?.into_iter().map(|r| r.decision).collect())
    }

    async fn scan_decision_records(&self, uid: &str, after: u64) -> Result<DecisionList> {
        let (records, undecodable) = self.scan_decisions(uid).await?;
        let records = records.into_iter().filter(|r| r.seq == 0 || r.seq > after).collect();
        Ok(DecisionList { records, undecodable })
    }

    async fn list_decision_records(&self, uid: &str, after: u64) -> Result<Vec<DecisionRecord>> {
        let all = self.list_decisions_strict(uid).await?;
        Ok(all.into_iter().filter(|r| r.seq == 0 || r.seq > after).collect())
    }

    async fn archive_history(&self, batch: ArchiveBatch<'_>, fence: Option<&Fence>) -> Result<()> {
        self.archive_entries(batch, fence).await
    }

    async fn archived_history(&self, key: &ObjectKey, uid: &str) -> Result<Vec<ArchivedEntry>> {
        self.read_archive(key, uid).await
    }

    async fn get_policy(&self) -> Result<Option<Policy>> {
        self.read_policy().await
    }

    async fn put_policy(&self, policy: &Policy, fence: Option<&Fence>) -> Result<()> {
        self.write_policy(policy, fence).await
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>> {
        self.read_lease(name).await
    }

    async fn try_acquire_lease(&self, claim: LeaseClaim<'_>, observed: Option<&Lease>) -> Result<Option<Lease>> {
        self.acquire_lease(claim, observed).await
    }

    async fn renew_lease(&self, name: &str, fence: &Fence) -> Result<Lease> {
        self.renew(name, fence).await
    }

    async fn release_lease(&self, name: &str, fence: &Fence) -> Result<()> {
        self.release(name, fence).await
    }

    async fn create_object(&self, obj: Object) -> Result<Object> {
        self.create_object_item(obj).await
    }

    async fn get_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<Option<Object>> {
        self.load_object(kind, key).await
    }

    async fn list_objects(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<Object>> {
        self.list_object_items(kind, namespace, selector).await
    }

    async fn update_object(&self, obj: &Object) -> Result<Object> {
        self.update_object_item(obj).await
    }

    async fn update_object_status(&self, obj: &Object, fence: Option<&Fence>) -> Result<Object> {
        self.update_object_item_status(obj, fence).await
    }

    async fn delete_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<()> {
        self.delete_object_item(kind, key).await
    }

    async fn change_cursor(&self) -> Result<u64> {
        Ok(codec::now_ms())
    }

    async fn changes_since(&self, cursor: u64) -> Result<(u64, Vec<Change>)> {
        self.poll_changes(cursor).await
    }

    async fn count_by_phase(&self) -> Result<BTreeMap<Phase, u64>> {
        let mut m = BTreeMap::new();
        for (_, phase, _) in self.list_index(None).await? {
            if let Some(p) = Phase::parse(&phase) {
                *m.entry(p).or_insert(0) += 1;
            }
        }
        Ok(m)
    }
}
