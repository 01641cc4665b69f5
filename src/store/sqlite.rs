//! The embedded [`Store`]: one SQLite file shared by the CLI and any number of controllers.
//!
//! # Shape
//!
//! Every record is kept whole as JSON in a `body` column, next to the few fields the store must
//! query or compare on (`resource_version`, `generation`, `phase`, `active`, `seq`, labels). The
//! JSON is the truth; the columns are derived from it on every write, in the same statement.
//!
//! # Why `BEGIN IMMEDIATE`
//!
//! Every write is read-check-write: load the row, compare `resourceVersion`, check the fence,
//! write. In SQLite's default (deferred) mode a transaction starts as a reader and upgrades to a
//! writer on its first write; in WAL mode, if another connection committed in between, that
//! upgrade fails at once with `SQLITE_BUSY_SNAPSHOT`, which the busy timeout cannot wait out.
//! `BEGIN IMMEDIATE` takes the write lock first (waiting up to the busy timeout for it), so the
//! check and the write see the same state and no other process can slip a write between them.
//! Contention beyond the timeout surfaces as [`StoreError::Unavailable`], a transient error the
//! caller retries with backoff. Readers never take that lock: WAL lets them read a snapshot while
//! a writer commits, and they use separate connections so they never queue behind writes.
//!
//! # Why `seq`
//!
//! SQLite has no cross-process notification. A single counter, bumped on every write of a
//! request or decision record and stamped on the written row (`seq`, indexed), turns "what
//! changed?" into an index range scan: [`Store::changes_since`] returns the rows with
//! `seq > cursor`. Deletions leave a row in a small `tombstones` table (pruned after an hour),
//! so they are reported too. The same number is the request's `resourceVersion`: it is
//! monotonic across the whole file, so a request deleted and recreated under the same name never
//! reuses an old resourceVersion, and a stale compare-and-set cannot succeed against the new
//! object (a per-row counter restarting at 1 would allow exactly that ABA).
//!
//! # Why the fence is checked in the same transaction
//!
//! A controller that lost its lease (paused, partitioned, slow) may still try to write. Checking
//! the lease and then writing in two steps leaves a window in which a standby takes over and the
//! old leader's write lands anyway. Because writes hold the write lock from `BEGIN IMMEDIATE` to
//! `COMMIT`, checking that the lease row [`CONTROLLER_LEASE`] still names the writer's holder
//! and epoch inside the write transaction makes the check and the write one atomic step: either
//! the takeover committed first and the write is refused ([`StoreError::Fenced`]), or the write
//! commits first and the takeover sees it.
//!
//! # Schema versions
//!
//! Migrations are SQL strings applied in order inside one transaction; `PRAGMA user_version`
//! records how many have run. A file written by a newer sqlctl (higher version) is refused
//! rather than misread.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    ArchiveBatch, ArchivedEntry, Change, DecisionOutcome, DecisionRecord, Fence, LabelSelector, Lease, LeaseClaim,
    Result, Store, StoreError, check_kind, is_active, object_rv, stamp_new, stamp_new_object, updated_object,
};
use crate::spec::{Decision, Object, ObjectKey, ObjectKind, Phase, Policy, QueryRequest};

pub use super::{CONTROLLER_LEASE, notified_marker};

/// How long a writer waits for another process's write lock before giving up with
/// [`StoreError::Unavailable`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version this binary writes (the number of migrations).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Read connections: enough that a few concurrent reads (CLI `get`, resync, change polling)
/// do not queue behind one another; each is cheap.
const READERS: usize = 3;

/// Deletion tombstones older than this are pruned: a poller this far behind resyncs anyway.
const TOMBSTONE_TTL_MS: i64 = 3_600_000;

/// Migrations, in order. Never edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO counters (name, value) VALUES ('seq', 0);

    CREATE TABLE requests (
        namespace        TEXT    NOT NULL,
        name             TEXT    NOT NULL,
        uid              TEXT    NOT NULL,
        resource_version INTEGER NOT NULL,
        generation       INTEGER NOT NULL,
        phase            TEXT    NOT NULL,
        active           INTEGER NOT NULL,
        deleting         INTEGER NOT NULL DEFAULT 0,
        seq              INTEGER NOT NULL,
        labels           TEXT    NOT NULL,
        body             TEXT    NOT NULL,
        PRIMARY KEY (namespace, name)
    );
    CREATE INDEX requests_seq ON requests (seq);
    CREATE INDEX requests_active ON requests (namespace, name) WHERE active = 1;
    CREATE INDEX requests_phase ON requests (phase);

    CREATE TABLE decisions (
        id        TEXT    PRIMARY KEY,
        uid       TEXT    NOT NULL,
        namespace TEXT    NOT NULL,
        name      TEXT    NOT NULL,
        seq       INTEGER NOT NULL,
        body      TEXT    NOT NULL
    );
    CREATE INDEX decisions_uid ON decisions (uid, seq);
    CREATE INDEX decisions_seq ON decisions (seq);

    CREATE TABLE tombstones (
        seq       INTEGER PRIMARY KEY,
        namespace TEXT    NOT NULL,
        name      TEXT    NOT NULL,
        at_ms     INTEGER NOT NULL
    );

    CREATE TABLE policy (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        body TEXT    NOT NULL
    );

    CREATE TABLE leases (
        name          TEXT    PRIMARY KEY,
        holder        TEXT    NOT NULL,
        epoch         INTEGER NOT NULL,
        renewals      INTEGER NOT NULL,
        duration_ms   INTEGER NOT NULL,
        renewed_at_ms INTEGER NOT NULL
    );
    "#,
    // 2: the history archive: entries evicted from a request's capped status history, kept
    // append-only per request uid (the audit trail is archived, never cut).
    r#"
    CREATE TABLE history_archive (
        uid       TEXT    NOT NULL,
        idx       INTEGER NOT NULL,
        namespace TEXT    NOT NULL,
        name      TEXT    NOT NULL,
        body      TEXT    NOT NULL,
        PRIMARY KEY (uid, idx)
    );
    "#,
    // 3: the lease holder's build, for `sqlctl version` (display only).
    r#"
    ALTER TABLE leases ADD COLUMN build TEXT NOT NULL DEFAULT '';
    "#,
    // 4: the other kinds of the API group (SemanticModel, VerifiedQuery), one row per object,
    // stamped from the same counter as requests (so a resourceVersion is never reused).
    r#"
    CREATE TABLE objects (
        kind             TEXT    NOT NULL,
        namespace        TEXT    NOT NULL,
        name             TEXT    NOT NULL,
        uid              TEXT    NOT NULL,
        resource_version INTEGER NOT NULL,
        generation       INTEGER NOT NULL,
        labels           TEXT    NOT NULL,
        body             TEXT    NOT NULL,
        PRIMARY KEY (kind, namespace, name)
    );
    "#,
];

/// The SQLite-backed store. Cheap to clone (the connections are shared).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The one connection that writes. Writes are serialised by SQLite's write lock anyway;
    /// one connection per process keeps them from also contending inside the process.
    writer: Mutex<Connection>,
    /// Read-only (`query_only`) connections; WAL lets them read while a write commits.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed, parent directories included) the store at `path` and brings its
    /// schema up to date. Refuses a file written by a newer sqlctl.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Other(format!("cannot create {}: {e}", parent.display())))?;
        }
        // Processes that open a new file at the same moment (a controller and a console started
        // together) race to switch it to WAL. That switch upgrades a shared lock, where SQLite
        // returns BUSY at once instead of waiting (deadlock avoidance), so opening retries
        // contention for a while rather than failing the command.
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            match Self::open_once(&path) {
                Err(StoreError::Unavailable(_)) if started.elapsed() < BUSY_TIMEOUT * 2 => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(250));
                }
                r => return r,
            }
        }
    }

    fn open_once(path: &Path) -> Result<Self> {
        let mut writer = open_connection(path, false)?;
        migrate(&mut writer, path)?;
        let readers = (0..READERS).map(|_| open_connection(path, true).map(Mutex::new)).collect::<Result<Vec<_>>>()?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on the write connection, off the async
    /// runtime. Commits when `f` returns Ok, rolls back otherwise. Once started, the
    /// transaction runs to its end even if the caller's future is dropped: a cancelled write
    /// may still have landed, exactly as with a network store, so callers re-read.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).sql()?;
            let out = f(&tx)?;
            tx.commit().sql()?;
            Ok(out)
        })
        .await
        .map_err(join_error)?
    }

    /// Runs `f` on a read connection, off the async runtime. `f` opens its own (deferred)
    /// transaction when it needs one consistent snapshot across several statements.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.reader();
            f(&conn)
        })
        .await
        .map_err(join_error)?
    }
}

impl Inner {
    /// A free read connection if there is one, else waits for one (round robin).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        lock(&self.readers[start % n])
    }
}

/// A poisoned lock only means a closure panicked; its transaction was rolled back on unwind,
/// so the connection is fine to reuse.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Other(format!("store task failed: {e}"))
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Other(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).sql()?;
    if !read_only {
        // Persistent in the file; readers inherit it.
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).sql()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Other(format!(
                "{}: cannot enable WAL journal mode (got {mode}); is it on a network file system?",
                path.display()
            )));
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL").sql()?;
    conn.pragma_update(None, "foreign_keys", "ON").sql()?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON").sql()?;
    }
    Ok(conn)
}

/// Applies the migrations this file has not seen yet, in one transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).sql()?;
    let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).sql()?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Other(format!(
            "{} has schema version {version}, but this sqlctl understands versions up to {SCHEMA_VERSION}: \
             it was written by a newer sqlctl; upgrade sqlctl to use it",
            path.display()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Other(format!("{}: migration {} failed: {e}", path.display(), i + 1)))?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).sql()?;
    }
    tx.commit().sql()
}

/// `?`-friendly conversion of SQLite errors: lock contention beyond the busy timeout is
/// transient ([`StoreError::Unavailable`]); everything else is [`StoreError::Other`].
trait SqlResult<T> {
    fn sql(self) -> Result<T>;
}

impl<T> SqlResult<T> for rusqlite::Result<T> {
    fn sql(self) -> Result<T> {
        self.map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(e.to_string()),
        })
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(format!("cannot encode record: {e}")))
}

fn from_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Other(format!("corrupt record in store: {e}")))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Other(format!("value {v} out of range")))
}

/// Bumps the global change counter and returns the new value.
fn next_seq(tx: &Transaction<'_>) -> Result<i64> {
    tx.prepare_cached("UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value")
        .sql()?
        .query_row([], |r| r.get(0))
        .sql()
}

fn current_seq(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT value FROM counters WHERE name = 'seq'").sql()?.query_row([], |r| r.get(0)).sql()
}

/// Refuses the write unless the controller lease still names `fence`'s holder and epoch.
fn check_fence(tx: &Transaction<'_>, fence: Option<&Fence>) -> Result<()> {
    let Some(fence) = fence else { return Ok(()) };
    let row: Option<(String, i64)> = tx
        .prepare_cached("SELECT holder, epoch FROM leases WHERE name = ?1")
        .sql()?
        .query_row([CONTROLLER_LEASE], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .sql()?;
    match row {
        Some((holder, epoch)) if !holder.is_empty() && holder == fence.holder && epoch as u64 == fence.epoch => Ok(()),
        Some((_, epoch)) => Err(StoreError::Fenced { epoch: epoch as u64 }),
        None => Err(StoreError::Fenced { epoch: 0 }),
    }
}

/// The stored request and its resourceVersion.
fn load_request(conn: &Connection, key: &ObjectKey) -> Result<Option<(i64, QueryRequest)>> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT resource_version, body FROM requests WHERE namespace = ?1 AND name = ?2")
        .sql()?
        .query_row(params![key.namespace, key.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .sql()?;
    row.map(|(rv, body)| Ok((rv, from_json(&body)?))).transpose()
}

/// The caller's resourceVersion as the integer it must equal. A value that is not an integer
/// cannot match anything this store wrote.
fn expected_rv(req: &QueryRequest) -> Result<(String, Option<i64>)> {
    let given = req.metadata.resource_version.clone().ok_or_else(|| {
        StoreError::Other(format!(
            "{}: metadata.resourceVersion is required for an update (read the record first)",
            req.key()
        ))
    })?;
    let parsed = given.trim().parse().ok();
    Ok((given, parsed))
}

/// Loads the row for `req` and checks the caller's resourceVersion against it.
fn load_for_cas(tx: &Transaction<'_>, req: &QueryRequest) -> Result<(i64, QueryRequest)> {
    let key = req.key();
    let (given, expected) = expected_rv(req)?;
    let (rv, stored) = load_request(tx, &key)?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
    if expected != Some(rv) {
        return Err(StoreError::Conflict { key, expected: given });
    }
    Ok((rv, stored))
}

/// Stamps `obj` with a fresh seq/resourceVersion and inserts it (`expected_rv` None) or
/// replaces the row still at `expected_rv`. Returns the object as stored.
fn write_request(tx: &Transaction<'_>, mut obj: QueryRequest, expected_rv: Option<i64>) -> Result<QueryRequest> {
    let seq = next_seq(tx)?;
    obj.metadata.resource_version = Some(seq.to_string());
    let key = obj.key();
    let body = to_json(&obj)?;
    let labels = to_json(&obj.metadata.labels)?;
    let generation = to_i64(obj.generation())?;
    let phase = obj.phase().as_str();
    let active = is_active(&obj);
    let deleting = obj.metadata.deletion_timestamp.is_some();
    let changed = match expected_rv {
        None => tx
            .prepare_cached(
                "INSERT INTO requests (namespace, name, uid, resource_version, generation, phase, active, deleting, seq, labels, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?4, ?9, ?10) ON CONFLICT DO NOTHING",
            )
            .sql()?
            .execute(params![key.namespace, key.name, obj.uid(), seq, generation, phase, active, deleting, labels, body])
            .sql()?,
        Some(rv) => tx
            .prepare_cached(
                "UPDATE requests SET uid = ?3, resource_version = ?4, generation = ?5, phase = ?6, active = ?7,
                        deleting = ?8, seq = ?4, labels = ?9, body = ?10
                 WHERE namespace = ?1 AND name = ?2 AND resource_version = ?11",
            )
            .sql()?
            .execute(params![key.namespace, key.name, obj.uid(), seq, generation, phase, active, deleting, labels, body, rv])
            .sql()?,
    };
    if changed != 1 {
        return Err(match expected_rv {
            None => StoreError::AlreadyExists(key),
            Some(rv) => StoreError::Conflict { key, expected: rv.to_string() },
        });
    }
    Ok(obj)
}

/// Removes the row at `rv` and leaves a tombstone so pollers see the deletion.
fn remove_request(tx: &Transaction<'_>, key: &ObjectKey, rv: i64) -> Result<()> {
    let n = tx
        .prepare_cached("DELETE FROM requests WHERE namespace = ?1 AND name = ?2 AND resource_version = ?3")
        .sql()?
        .execute(params![key.namespace, key.name, rv])
        .sql()?;
    if n != 1 {
        return Err(StoreError::Conflict { key: key.clone(), expected: rv.to_string() });
    }
    let seq = next_seq(tx)?;
    let now = now_ms();
    tx.prepare_cached("INSERT INTO tombstones (seq, namespace, name, at_ms) VALUES (?1, ?2, ?3, ?4)")
        .sql()?
        .execute(params![seq, key.namespace, key.name, now])
        .sql()?;
    tx.prepare_cached("DELETE FROM tombstones WHERE at_ms < ?1").sql()?.execute([now - TOMBSTONE_TTL_MS]).sql()?;
    Ok(())
}

/// The stored object of `kind` at `key` and its resourceVersion.
fn load_object(conn: &Connection, kind: ObjectKind, key: &ObjectKey) -> Result<Option<(i64, Object)>> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT resource_version, body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
        .sql()?
        .query_row(params![kind.as_str(), key.namespace, key.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .sql()?;
    row.map(|(rv, body)| Ok((rv, decode_object(kind, &body)?))).transpose()
}

fn decode_object(kind: ObjectKind, body: &str) -> Result<Object> {
    Object::from_json(kind, body).map_err(|e| StoreError::Other(format!("corrupt record in store: {e}")))
}

/// Loads the row for `obj` and checks the caller's resourceVersion against it.
fn load_object_for_cas(tx: &Transaction<'_>, obj: &Object) -> Result<(i64, Object)> {
    let key = obj.key();
    let given = object_rv(obj)?;
    let (rv, stored) = load_object(tx, obj.kind(), &key)?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
    if given.trim().parse::<i64>().ok() != Some(rv) {
        return Err(StoreError::Conflict { key, expected: given });
    }
    Ok((rv, stored))
}

/// Stamps `obj` with a fresh resourceVersion and inserts it (`expected_rv` None) or replaces
/// the row still at `expected_rv`.
fn write_object(tx: &Transaction<'_>, mut obj: Object, expected_rv: Option<i64>) -> Result<Object> {
    let seq = next_seq(tx)?;
    obj.metadata_mut().resource_version = Some(seq.to_string());
    let key = obj.key();
    let kind = obj.kind().as_str();
    let body = obj.to_json();
    let labels = to_json(&obj.metadata().labels)?;
    let generation = to_i64(obj.generation())?;
    let changed = match expected_rv {
        None => tx
            .prepare_cached(
                "INSERT INTO objects (kind, namespace, name, uid, resource_version, generation, labels, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            )
            .sql()?
            .execute(params![kind, key.namespace, key.name, obj.uid(), seq, generation, labels, body])
            .sql()?,
        Some(rv) => tx
            .prepare_cached(
                "UPDATE objects SET uid = ?4, resource_version = ?5, generation = ?6, labels = ?7, body = ?8
                 WHERE kind = ?1 AND namespace = ?2 AND name = ?3 AND resource_version = ?9",
            )
            .sql()?
            .execute(params![kind, key.namespace, key.name, obj.uid(), seq, generation, labels, body, rv])
            .sql()?,
    };
    if changed != 1 {
        return Err(match expected_rv {
            None => StoreError::AlreadyExists(key),
            Some(rv) => StoreError::Conflict { key, expected: rv.to_string() },
        });
    }
    Ok(obj)
}

fn read_lease(conn: &Connection, name: &str) -> Result<Option<Lease>> {
    conn.prepare_cached("SELECT holder, epoch, renewals, duration_ms, renewed_at_ms, build FROM leases WHERE name = ?1")
        .sql()?
        .query_row([name], |r| {
            Ok(Lease {
                holder: r.get(0)?,
                epoch: r.get::<_, i64>(1)? as u64,
                renewals: r.get::<_, i64>(2)? as u64,
                duration_ms: r.get::<_, i64>(3)? as u64,
                renewed_at_ms: r.get(4)?,
                build: r.get(5)?,
            })
        })
        .optional()
        .sql()
}

fn write_lease(tx: &Transaction<'_>, name: &str, lease: &Lease) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO leases (name, holder, epoch, renewals, duration_ms, renewed_at_ms, build) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, renewals = excluded.renewals,
             duration_ms = excluded.duration_ms, renewed_at_ms = excluded.renewed_at_ms, build = excluded.build",
    )
    .sql()?
    .execute(params![
        name,
        lease.holder,
        to_i64(lease.epoch)?,
        to_i64(lease.renewals)?,
        to_i64(lease.duration_ms)?,
        lease.renewed_at_ms,
        lease.build
    ])
    .sql()?;
    Ok(())
}

/// The lease row, if `fence` still holds it; else Fenced with the current epoch.
fn held_lease(tx: &Transaction<'_>, name: &str, fence: &Fence) -> Result<Lease> {
    match read_lease(tx, name)? {
        Some(l) if !l.holder.is_empty() && l.holder == fence.holder && l.epoch == fence.epoch => Ok(l),
        Some(l) => Err(StoreError::Fenced { epoch: l.epoch }),
        None => Err(StoreError::Fenced { epoch: 0 }),
    }
}

fn read_decision(conn: &Connection, id: &str) -> Result<Option<Decision>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM decisions WHERE id = ?1")
        .sql()?
        .query_row([id], |r| r.get(0))
        .optional()
        .sql()?;
    body.map(|b| from_json(&b)).transpose()
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, req: QueryRequest) -> Result<QueryRequest> {
        self.write(move |tx| {
            let mut obj = req;
            stamp_new(&mut obj);
            write_request(tx, obj, None)
        })
        .await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<QueryRequest>> {
        let key = key.clone();
        self.read(move |conn| Ok(load_request(conn, &key)?.map(|(_, obj)| obj))).await
    }

    async fn list(&self, namespace: Option<&str>, selector: &LabelSelector) -> Result<Vec<QueryRequest>> {
        let namespace = namespace.map(str::to_string);
        let selector = selector.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT labels, body FROM requests WHERE (?1 IS NULL OR namespace = ?1) ORDER BY namespace, name",
                )
                .sql()?;
            let mut rows = stmt.query([namespace]).sql()?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().sql()? {
                // Match on the small labels column first; decode the body only of matches.
                if !selector.is_empty() {
                    let labels: BTreeMap<String, String> = from_json(&row.get::<_, String>(0).sql()?)?;
                    if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                        continue;
                    }
                }
                out.push(from_json(&row.get::<_, String>(1).sql()?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn list_active(&self) -> Result<Vec<ObjectKey>> {
        self.read(|conn| {
            // Served by the partial index `requests_active`: finished records are never visited.
            let mut stmt = conn
                .prepare_cached("SELECT namespace, name FROM requests WHERE active = 1 ORDER BY namespace, name")
                .sql()?;
            let keys =
                stmt.query_map([], |r| Ok(ObjectKey::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?))).sql()?;
            keys.collect::<rusqlite::Result<Vec<_>>>().sql()
        })
        .await
    }

    async fn update_spec(&self, req: &QueryRequest) -> Result<QueryRequest> {
        let req = req.clone();
        self.write(move |tx| {
            let (rv, stored) = load_for_cas(tx, &req)?;
            if stored.metadata.deletion_timestamp.is_some() {
                return Err(StoreError::Other(format!(
                    "{} is being deleted; its spec can no longer change",
                    req.key()
                )));
            }
            let spec_changed = to_json(&stored.spec)? != to_json(&req.spec)?;
            let mut obj = stored;
            obj.metadata.labels = req.metadata.labels;
            obj.metadata.annotations = req.metadata.annotations;
            if spec_changed {
                obj.spec = req.spec;
                obj.metadata.generation = Some(obj.generation() + 1);
            }
            write_request(tx, obj, Some(rv))
        })
        .await
    }

    async fn update_status(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<QueryRequest> {
        let req = req.clone();
        let fence = fence.cloned();
        self.write(move |tx| {
            check_fence(tx, fence.as_ref())?;
            let (rv, mut obj) = load_for_cas(tx, &req)?;
            obj.status = req.status;
            obj.metadata.finalizers = req.metadata.finalizers;
            write_request(tx, obj, Some(rv))
        })
        .await
    }

    async fn delete(&self, key: &ObjectKey, force: bool) -> Result<Option<QueryRequest>> {
        let key = key.clone();
        self.write(move |tx| {
            let (rv, mut obj) = load_request(tx, &key)?.ok_or_else(|| StoreError::NotFound(key.clone()))?;
            if !obj.metadata.finalizers.is_empty() && !force {
                if obj.metadata.deletion_timestamp.is_some() {
                    return Ok(Some(obj)); // already marked: nothing to write
                }
                obj.metadata.deletion_timestamp = Some(Utc::now());
                return write_request(tx, obj, Some(rv)).map(Some);
            }
            remove_request(tx, &key, rv)?;
            Ok(None)
        })
        .await
    }

    async fn finalize(&self, req: &QueryRequest, fence: Option<&Fence>) -> Result<()> {
        let req = req.clone();
        let fence = fence.cloned();
        self.write(move |tx| {
            check_fence(tx, fence.as_ref())?;
            let (rv, stored) = load_for_cas(tx, &req)?;
            let key = stored.key();
            if stored.metadata.deletion_timestamp.is_none() {
                return Err(StoreError::Other(format!("{key} is not marked for deletion; refusing to finalize it")));
            }
            if !stored.metadata.finalizers.is_empty() {
                return Err(StoreError::Other(format!(
                    "{key} still has finalizers {:?}; clear them with a status update first",
                    stored.metadata.finalizers
                )));
            }
            remove_request(tx, &key, rv)
        })
        .await
    }

    async fn create_decision(&self, decision: &Decision) -> Result<DecisionOutcome> {
        let decision = decision.clone();
        self.write(move |tx| {
            // Under the write lock, check-then-insert cannot race another writer.
            if let Some(existing) = read_decision(tx, &decision.id)? {
                return Ok(DecisionOutcome::Exists(existing));
            }
            let seq = next_seq(tx)?;
            tx.prepare_cached(
                "INSERT INTO decisions (id, uid, namespace, name, seq, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .sql()?
            .execute(params![decision.id, decision.uid, decision.namespace, decision.name, seq, to_json(&decision)?])
            .sql()?;
            Ok(DecisionOutcome::Created(decision))
        })
        .await
    }

    async fn list_decisions(&self, uid: &str) -> Result<Vec<Decision>> {
        let uid = uid.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT body FROM decisions WHERE uid = ?1 ORDER BY seq").sql()?;
            let bodies = stmt.query_map([uid], |r| r.get::<_, String>(0)).sql()?;
            bodies.map(|b| from_json(&b.sql()?)).collect()
        })
        .await
    }

    async fn scan_decision_records(&self, uid: &str, after: u64) -> Result<super::DecisionList> {
        let uid = uid.to_string();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT seq, id, body FROM decisions WHERE uid = ?1 ORDER BY seq").sql()?;
            let rows = stmt
                .query_map([uid], |r| {
                    Ok((
                        r.get::<_, i64>(0).unwrap_or(0),
                        r.get::<_, String>(1).unwrap_or_default(),
                        r.get::<_, String>(2),
                    ))
                })
                .sql()?;
            let mut out = super::DecisionList::default();
            for row in rows {
                let (seq, id, body) = row.sql()?;
                let seq = seq.max(0) as u64;
                let decoded = body
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_str::<Decision>(&b).map_err(|e| e.to_string()));
                match decoded {
                    Ok(decision) if seq > after => out.records.push(DecisionRecord { seq, decision }),
                    Ok(_) => {}
                    Err(why) => out.undecodable.push(super::Undecodable { id, why }),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_decision_records(&self, uid: &str, after: u64) -> Result<Vec<DecisionRecord>> {
        // `seq` comes from the file-wide counter, bumped under the write lock: commit order is
        // seq order, so a reader never sees a higher seq before a lower one.
        let uid = uid.to_string();
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT seq, body FROM decisions WHERE uid = ?1 AND seq > ?2 ORDER BY seq")
                .sql()?;
            let rows =
                stmt.query_map(params![uid, after], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).sql()?;
            rows.map(|row| {
                let (seq, body) = row.sql()?;
                Ok(DecisionRecord { seq: seq.max(0) as u64, decision: from_json(&body)? })
            })
            .collect()
        })
        .await
    }

    async fn archive_history(&self, batch: ArchiveBatch<'_>, fence: Option<&Fence>) -> Result<()> {
        let ArchiveBatch { key, uid, first_index, entries } = batch;
        if entries.is_empty() {
            return Ok(());
        }
        let (key, uid, fence) = (key.clone(), uid.to_string(), fence.cloned());
        let bodies: Vec<String> = entries.iter().map(to_json).collect::<Result<_>>()?;
        self.write(move |tx| {
            check_fence(tx, fence.as_ref())?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO history_archive (uid, idx, namespace, name, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .sql()?;
            for (i, body) in bodies.iter().enumerate() {
                let idx = i64::try_from(first_index + i as u64).unwrap_or(i64::MAX);
                stmt.execute(params![uid, idx, key.namespace, key.name, body]).sql()?;
            }
            Ok(())
        })
        .await
    }

    async fn archived_history(&self, _key: &ObjectKey, uid: &str) -> Result<Vec<ArchivedEntry>> {
        let uid = uid.to_string();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT idx, body FROM history_archive WHERE uid = ?1 ORDER BY idx").sql()?;
            let rows = stmt.query_map([uid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).sql()?;
            rows.map(|row| {
                let (idx, body) = row.sql()?;
                Ok(ArchivedEntry { index: idx.max(0) as u64, entry: from_json(&body)? })
            })
            .collect()
        })
        .await
    }

    async fn get_policy(&self) -> Result<Option<Policy>> {
        self.read(|conn| {
            let body: Option<String> =
                conn.query_row("SELECT body FROM policy WHERE id = 1", [], |r| r.get(0)).optional().sql()?;
            body.map(|b| from_json(&b)).transpose()
        })
        .await
    }

    async fn put_policy(&self, policy: &Policy, fence: Option<&Fence>) -> Result<()> {
        let body = to_json(policy)?;
        let fence = fence.cloned();
        self.write(move |tx| {
            check_fence(tx, fence.as_ref())?;
            tx.execute(
                "INSERT INTO policy (id, body) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                [body],
            )
            .sql()?;
            Ok(())
        })
        .await
    }

    async fn get_lease(&self, name: &str) -> Result<Option<Lease>> {
        let name = name.to_string();
        self.read(move |conn| read_lease(conn, &name)).await
    }

    async fn health(&self) -> Result<()> {
        // The connections this store holds keep working on a file that has since been moved,
        // replaced or made unreadable: open the file again, as a restarted process would.
        let path = self.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(&path, flags)
                .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
            conn.query_row("SELECT count(*) FROM leases", [], |r| r.get::<_, i64>(0))
                .map_err(|e| StoreError::Unavailable(format!("cannot read {}: {e}", path.display())))?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Other(format!("health check task: {e}")))?
    }

    async fn try_acquire_lease(&self, claim: LeaseClaim<'_>, observed: Option<&Lease>) -> Result<Option<Lease>> {
        claim.check()?;
        let (name, observed) = (claim.name.to_string(), observed.cloned());
        // The lease this claim writes, but for the epoch and time decided in the transaction.
        let template = claim.lease(0, 0);
        self.write(move |tx| {
            let current = read_lease(tx, &name)?;
            let Some(epoch) = LeaseClaim::next_epoch(current.as_ref(), observed.as_ref()) else {
                return Ok(None);
            };
            let lease = Lease { epoch, renewed_at_ms: now_ms(), ..template.clone() };
            write_lease(tx, &name, &lease)?;
            Ok(Some(lease))
        })
        .await
    }

    async fn renew_lease(&self, name: &str, fence: &Fence) -> Result<Lease> {
        let (name, fence) = (name.to_string(), fence.clone());
        self.write(move |tx| {
            let mut lease = held_lease(tx, &name, &fence)?;
            lease.renewals += 1;
            lease.renewed_at_ms = now_ms();
            write_lease(tx, &name, &lease)?;
            Ok(lease)
        })
        .await
    }

    async fn release_lease(&self, name: &str, fence: &Fence) -> Result<()> {
        let (name, fence) = (name.to_string(), fence.clone());
        self.write(move |tx| {
            let mut lease = held_lease(tx, &name, &fence)?;
            // Keep the epoch (the next holder bumps it); an empty holder fences the old one.
            lease.holder.clear();
            lease.renewed_at_ms = now_ms();
            write_lease(tx, &name, &lease)
        })
        .await
    }

    async fn create_object(&self, obj: Object) -> Result<Object> {
        self.write(move |tx| {
            let mut obj = obj;
            stamp_new_object(&mut obj);
            write_object(tx, obj, None)
        })
        .await
    }

    async fn get_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<Option<Object>> {
        check_kind(kind)?;
        let key = key.clone();
        self.read(move |conn| Ok(load_object(conn, kind, &key)?.map(|(_, o)| o))).await
    }

    async fn list_objects(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<Object>> {
        check_kind(kind)?;
        let namespace = namespace.map(str::to_string);
        let selector = selector.clone();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT labels, body FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2)
                     ORDER BY namespace, name",
                )
                .sql()?;
            let mut rows = stmt.query(params![kind.as_str(), namespace]).sql()?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().sql()? {
                if !selector.is_empty() {
                    let labels: BTreeMap<String, String> = from_json(&row.get::<_, String>(0).sql()?)?;
                    if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                        continue;
                    }
                }
                out.push(decode_object(kind, &row.get::<_, String>(1).sql()?)?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_object(&self, obj: &Object) -> Result<Object> {
        let obj = obj.clone();
        self.write(move |tx| {
            let (rv, stored) = load_object_for_cas(tx, &obj)?;
            write_object(tx, updated_object(stored, &obj), Some(rv))
        })
        .await
    }

    async fn update_object_status(&self, obj: &Object, fence: Option<&Fence>) -> Result<Object> {
        let obj = obj.clone();
        let fence = fence.cloned();
        self.write(move |tx| {
            check_fence(tx, fence.as_ref())?;
            let (rv, mut stored) = load_object_for_cas(tx, &obj)?;
            *stored.status_mut() = obj.status().cloned();
            write_object(tx, stored, Some(rv))
        })
        .await
    }

    async fn delete_object(&self, kind: ObjectKind, key: &ObjectKey) -> Result<()> {
        check_kind(kind)?;
        let key = key.clone();
        self.write(move |tx| {
            let n = tx
                .prepare_cached("DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
                .sql()?
                .execute(params![kind.as_str(), key.namespace, key.name])
                .sql()?;
            if n != 1 {
                return Err(StoreError::NotFound(key));
            }
            next_seq(tx).map(|_| ())
        })
        .await
    }

    async fn change_cursor(&self) -> Result<u64> {
        self.read(|conn| Ok(current_seq(conn)? as u64)).await
    }

    async fn changes_since(&self, cursor: u64) -> Result<(u64, Vec<Change>)> {
        let after = i64::try_from(cursor).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // One snapshot: the counter and the rows below it agree.
            let tx = conn.unchecked_transaction().sql()?;
            let now = current_seq(&tx)?;
            if now <= after {
                return Ok((now as u64, Vec::new()));
            }
            let mut seen: Vec<(i64, Change)> = Vec::new();
            let queries = [
                "SELECT seq, namespace, name, resource_version FROM requests WHERE seq > ?1 AND seq <= ?2",
                "SELECT seq, namespace, name, NULL FROM decisions WHERE seq > ?1 AND seq <= ?2",
                "SELECT seq, namespace, name, NULL FROM tombstones WHERE seq > ?1 AND seq <= ?2",
            ];
            for sql in queries {
                let mut stmt = tx.prepare_cached(sql).sql()?;
                let rows = stmt
                    .query_map([after, now], |r| {
                        let key = ObjectKey::new(r.get::<_, String>(1)?, r.get::<_, String>(2)?);
                        let rv: Option<i64> = r.get(3)?;
                        Ok((r.get::<_, i64>(0)?, Change { key, resource_version: rv.map(|v| v.to_string()) }))
                    })
                    .sql()?;
                for row in rows {
                    seen.push(row.sql()?);
                }
            }
            seen.sort_by_key(|(seq, _)| *seq);
            // A key written several times (or with several decisions) is reported once per version.
            let mut reported = std::collections::HashSet::new();
            let changes = seen
                .into_iter()
                .map(|(_, c)| c)
                .filter(|c| reported.insert((c.key.clone(), c.resource_version.clone())))
                .collect();
            Ok((now as u64, changes))
        })
        .await
    }

    async fn count_by_phase(&self) -> Result<BTreeMap<Phase, u64>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT phase, COUNT(*) FROM requests GROUP BY phase").sql()?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).sql()?;
            let mut out = BTreeMap::new();
            for row in rows {
                let (phase, n) = row.sql()?;
                let phase = Phase::parse(&phase)
                    .ok_or_else(|| StoreError::Other(format!("corrupt record in store: unknown phase {phase:?}")))?;
                out.insert(phase, n as u64);
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DecisionKind;
    use crate::store::conformance::{self, decision, key, request, store_conformance};

    #[test]
    fn processes_opening_a_new_file_at_once_all_succeed() {
        // A controller and a console started together race to create the file and switch it to
        // WAL; none of them may fail with "database is locked".
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.db");
            let barrier = Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        SqliteStore::open(&path).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("nested/dir/sqlctl.db")).unwrap();
        (dir, store)
    }

    // The behaviours every store shares (src/store/conformance.rs); what follows is SQLite's own.
    store_conformance!(async { Some(store()) });

    #[tokio::test]
    async fn create_numbers_the_first_write_one_in_the_file_it_was_given() {
        let (_dir, s) = store();
        conformance::create_sets_server_fields_and_refuses_an_existing_key(&s).await;
        assert!(s.path().ends_with("nested/dir/sqlctl.db"));
        let created = s.get(&key("top-customers")).await.unwrap().unwrap();
        assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
        // The failed create wrote nothing.
        assert_eq!(s.change_cursor().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_existing_decision_moves_no_cursor() {
        let (_dir, s) = store();
        conformance::decisions_are_created_once_and_listed_in_creation_order(&s).await;
        let r = s.get(&key("q")).await.unwrap().unwrap();
        let cursor = s.change_cursor().await.unwrap();
        let mut again = decision(&r, "id-1", "alice");
        again.decision = DecisionKind::Reject;
        again.comment = Some("changed my mind".into());
        assert!(matches!(s.create_decision(&again).await.unwrap(), DecisionOutcome::Exists(_)));
        assert_eq!(s.change_cursor().await.unwrap(), cursor, "an existing decision writes nothing");
    }

    #[tokio::test]
    async fn changes_since_answers_with_the_current_cursor() {
        let (_dir, s) = store();
        let start = s.change_cursor().await.unwrap();
        assert_eq!(s.changes_since(start).await.unwrap(), (start, vec![]));
        conformance::changes_since_reports_request_writes_decisions_and_deletions_once(&s).await;
        let (now, _) = s.changes_since(start).await.unwrap();
        assert_eq!(now, s.change_cursor().await.unwrap());
        assert_eq!(s.changes_since(now).await.unwrap(), (now, vec![]));
    }

    #[tokio::test]
    async fn list_active_is_answered_from_the_partial_index() {
        let (_dir, s) = store();
        conformance::list_active_skips_finished_and_notified_records(&s).await;
        // The query is answered from the partial index, not by scanning the table.
        let conn = Connection::open(s.path()).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT namespace, name FROM requests WHERE active = 1 ORDER BY namespace, name",
            )
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("requests_active")), "plan: {plan:?}");
    }

    #[tokio::test]
    async fn data_persists_across_reopen_and_migrations_set_user_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqlctl.db");
        let policy = Policy { approvers: vec!["alice".into()], four_eyes: true, ..Default::default() };
        let created = {
            let s = SqliteStore::open(&path).unwrap();
            let r = s.create(request("q", &[("team", "growth")])).await.unwrap();
            s.create_decision(&decision(&r, "d", "alice")).await.unwrap();
            s.put_policy(&policy, None).await.unwrap();
            s.try_acquire_lease(LeaseClaim::new(CONTROLLER_LEASE, "a", 5000), None).await.unwrap();
            r
        };
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get(&key("q")).await.unwrap(), Some(created.clone()));
        assert_eq!(s.list_decisions(created.uid()).await.unwrap().len(), 1);
        assert_eq!(s.get_policy().await.unwrap(), Some(policy));
        assert_eq!(s.get_lease(CONTROLLER_LEASE).await.unwrap().unwrap().holder, "a");
        assert_eq!(s.change_cursor().await.unwrap(), 2);
        drop(s);

        let conn = Connection::open(&path).unwrap();
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");

        // A file from a newer sqlctl is refused, and left untouched.
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer sqlctl"), "{err}");
    }

    #[tokio::test]
    async fn a_held_write_lock_beyond_the_timeout_is_unavailable_not_fatal() {
        let (_dir, s) = store();
        s.create(request("q", &[])).await.unwrap();
        // Another process holds the write lock.
        let mut other = Connection::open(s.path()).unwrap();
        other.busy_timeout(Duration::from_millis(0)).unwrap();
        let tx = other.transaction_with_behavior(TransactionBehavior::Immediate).unwrap();
        lock(&s.inner.writer).busy_timeout(Duration::from_millis(100)).unwrap();
        let err = s.create(request("r", &[])).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(err.is_transient());
        // Reads go on while the lock is held (WAL).
        assert!(s.get(&key("q")).await.unwrap().is_some());
        drop(tx);
        s.create(request("r", &[])).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_on_one_file_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqlctl.db");
        let first = SqliteStore::open(&path).unwrap();
        let second = SqliteStore::open(&path).unwrap();
        first.create(request("counter", &[])).await.unwrap();

        const PER_WRITER: u64 = 200;
        let conflicts =
            conformance::racing_writers_lose_no_update(vec![Arc::new(first), Arc::new(second)], PER_WRITER).await;
        eprintln!("{conflicts} conflicts");

        let fresh = SqliteStore::open(&path).unwrap();
        let r = fresh.get(&key("counter")).await.unwrap().unwrap();
        assert_eq!(r.metadata.annotations["count"], (2 * PER_WRITER).to_string(), "{conflicts} conflicts");
        assert_eq!(r.generation(), 1);
        // One create plus exactly one successful write per increment.
        assert_eq!(fresh.change_cursor().await.unwrap(), 1 + 2 * PER_WRITER);
    }
}
