//! The controller: a level-triggered reconcile loop over QueryRequests (DESIGN.md §3–4).
//!
//! * [`queue`]: deduplicated, single-flight, delayed work queue with per-key backoff.
//! * [`reconcile`]: one idempotent step per call, decided from spec + status alone.
//! * [`lease`]: leader election with a fencing epoch checked by the store on every write.
//! * [`metrics`]: Prometheus counters and the `/healthz`, `/readyz`, `/metrics` server.
//! * [`emf`]: the same metrics as CloudWatch Embedded Metric Format lines on stdout.
//! * [`trusted`]: trusted shapes: a policy decision for an exact instantiation of a verified
//!   query (`policy.autoApproveVerified`, off by default).
//! * [`objects`]: drift: semantic models and verified queries re-planned when their spec or a
//!   table they read changes (`Stale` when they no longer plan).
//!
//! The controller talks to backends only through their traits; `cli`/`config` build them.

pub mod emf;
pub mod lease;
pub mod metrics;
pub mod objects;
pub mod queue;
pub mod reconcile;
pub mod transitions;
pub mod trusted;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::catalog::Catalog;
use crate::engine::{Engine, EngineError, Waker};
use crate::generate::Generator;
use crate::notify::Notifier;
use crate::results::ResultStore;
use crate::spec::{EngineKind, ObjectKey, Policy, QueryRequest};
use crate::store::{Fence, Store, StoreError};

pub use metrics::Metrics;
pub use queue::{Reason, WorkQueue};

/// What to do after a reconcile: timing is data, not a side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Look again after this long (also used as a drift safety net).
    Requeue(Duration),
    /// Nothing to do until the record or its decisions change.
    AwaitChange,
}

impl Action {
    #[must_use]
    pub fn requeue(after: Duration) -> Self {
        Action::Requeue(after)
    }
    #[must_use]
    pub fn await_change() -> Self {
        Action::AwaitChange
    }
}

/// Why a reconcile failed. The error policy turns these into requeues.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(EngineError),
    #[error(transparent)]
    Catalog(crate::catalog::CatalogError),
    #[error("generator temporarily unavailable: {0}")]
    Generate(String),
    #[error("not the leader")]
    NotLeader,
    /// The reconcile panicked (a bug): the step failed, its key is released and retried with
    /// backoff like any other error, and the panic is logged and counted.
    #[error("reconcile panicked: {0}")]
    Panicked(String),
}

/// Tunables of the loop.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub default_engine: EngineKind,
    pub workers: usize,
    /// Full resync of active records (drift safety net).
    pub resync: Duration,
    /// How often semantic models and verified queries are checked against the catalog.
    pub plan_interval: Duration,
    /// How often the store is polled for changes (wake-ups).
    pub watch_interval: Duration,
    /// Generation attempts (self-correction) per round.
    pub max_attempts: u32,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// How long in-flight reconciles may take to finish on shutdown.
    pub drain_timeout: Duration,
    /// Identity of this process in the lease.
    pub identity: String,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            default_engine: EngineKind::Local,
            workers: 8,
            resync: Duration::from_secs(30),
            plan_interval: Duration::from_secs(10),
            watch_interval: Duration::from_millis(50),
            max_attempts: 3,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(25),
            identity: default_identity(),
        }
    }
}

/// `hostname-pid-random`: unique per process.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..6])
}

/// Everything a reconcile needs: backends behind traits, policy, leadership, metrics.
pub struct Context {
    pub store: Arc<dyn Store>,
    pub catalog: Arc<dyn Catalog>,
    pub engines: HashMap<EngineKind, Arc<dyn Engine>>,
    /// Where results live; the chart is read from and stored into it.
    pub results: Arc<dyn ResultStore>,
    pub generator: Option<Arc<dyn Generator>>,
    pub notifier: Arc<dyn Notifier>,
    pub policy: Policy,
    pub config: ControllerConfig,
    pub metrics: Arc<Metrics>,
    /// Current leadership (None while standby).
    pub fence: watch::Receiver<Option<Fence>>,
    /// Engines call this when an in-process execution finishes.
    pub waker: Waker,
    /// resourceVersions this controller wrote, so its own writes do not wake it again.
    written: Mutex<HashMap<ObjectKey, String>>,
    /// Queries this controller recorded as running, by request key: if the record vanishes (a
    /// forced delete) or comes back with another uid (deleted and recreated), the query is
    /// cancelled rather than left running for nobody.
    running: Mutex<HashMap<ObjectKey, RunningQuery>>,
}

/// A query recorded as running in a request's status.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RunningQuery {
    uid: String,
    engine: EngineKind,
    id: String,
}

impl Context {
    pub fn fence(&self) -> Result<Fence, Error> {
        self.fence.borrow().clone().ok_or(Error::NotLeader)
    }

    fn note_written(&self, req: &QueryRequest) {
        if let Some(rv) = &req.metadata.resource_version {
            self.written.lock().unwrap_or_else(|p| p.into_inner()).insert(req.key(), rv.clone());
        }
        let running = req.status.as_ref().and_then(|s| s.execution.as_ref()).and_then(|e| {
            let live = e.state == "Running" || e.state == "Starting";
            e.id.clone().filter(|_| live && req.metadata.deletion_timestamp.is_none())
        });
        let mut map = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match running {
            Some(id) => {
                let engine = req.spec.engine.unwrap_or(self.config.default_engine);
                map.insert(req.key(), RunningQuery { uid: req.uid().to_string(), engine, id });
            }
            None => {
                map.remove(&req.key());
            }
        }
    }

    /// The query of `key` was dealt with (its finalizer cancelled it).
    fn forget_running(&self, key: &ObjectKey) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Cancels the query this controller last recorded as running under `key` when the record
    /// is gone or is another object now (a different uid): nobody would ever read its result.
    async fn cancel_orphan(&self, key: &ObjectKey, current: Option<&QueryRequest>) {
        let orphan = {
            let mut map = self.running.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some(q) if current.is_none_or(|r| r.uid() != q.uid) => map.remove(key),
                _ => None,
            }
        };
        let Some(q) = orphan else { return };
        let Some(engine) = self.engines.get(&q.engine) else { return };
        match engine.cancel(&q.id).await {
            Ok(()) => {
                self.metrics.query_finished("cancelled");
                tracing::info!(key = %key, uid = %q.uid, execution = %q.id, "cancelled the query of a deleted request");
            }
            Err(e) => {
                tracing::warn!(key = %key, uid = %q.uid, execution = %q.id, error = %e, "could not cancel the query of a deleted request")
            }
        }
    }

    fn is_own_write(&self, key: &ObjectKey, rv: &str) -> bool {
        self.written.lock().unwrap_or_else(|p| p.into_inner()).get(key).is_some_and(|w| w == rv)
    }

    pub fn engine_names(&self) -> String {
        let mut v: Vec<&str> = self.engines.keys().map(|k| k.as_str()).collect();
        v.sort();
        v.join(", ")
    }
}

/// The backends and settings a controller is built from.
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub catalog: Arc<dyn Catalog>,
    pub engines: HashMap<EngineKind, Arc<dyn Engine>>,
    pub results: Arc<dyn ResultStore>,
    pub generator: Option<Arc<dyn Generator>>,
    pub notifier: Arc<dyn Notifier>,
    pub policy: Policy,
    /// Store `policy` as the shared policy record on taking the lease (`controller --policy`).
    /// False: `policy` was read from the store (or is the default when none is stored) and the
    /// stored record is never written.
    pub write_policy: bool,
    pub config: ControllerConfig,
}

/// A running controller: the leader loop plus its standby phase.
pub struct Controller {
    ctx: Arc<Context>,
    queue: Arc<WorkQueue>,
    fence_tx: watch::Sender<Option<Fence>>,
    pub metrics: Arc<Metrics>,
    write_policy: bool,
}

impl Controller {
    pub fn new(parts: Parts) -> Self {
        let queue = Arc::new(WorkQueue::default());
        let (fence_tx, fence_rx) = watch::channel(None);
        let metrics = Arc::new(Metrics::default());
        let q = queue.clone();
        let waker: Waker = Arc::new(move |key: &ObjectKey| q.add(key.clone(), Reason::Woken));
        let ctx = Arc::new(Context {
            store: parts.store,
            catalog: parts.catalog,
            engines: parts.engines,
            results: parts.results,
            generator: parts.generator,
            notifier: parts.notifier,
            policy: parts.policy,
            config: parts.config,
            metrics: metrics.clone(),
            fence: fence_rx,
            waker,
            written: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
        });
        Controller { ctx, queue, fence_tx, metrics, write_policy: parts.write_policy }
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Runs until `shutdown` turns true (graceful drain) or leadership is lost (error: the
    /// process should exit and be restarted as a standby, like client-go's leader election).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        let cfg = ctx.config.clone();
        // Standby until we hold the lease.
        let fence = tokio::select! {
            f = lease::acquire(ctx.store.as_ref(), &cfg, &ctx.metrics) => f?,
            _ = wait_true(&mut shutdown) => return Ok(()),
        };
        tracing::info!(identity = %cfg.identity, epoch = fence.epoch, "became leader");
        ctx.metrics.set_leader(true);
        self.fence_tx.send_replace(Some(fence.clone()));
        // The shared policy changes only on purpose (`controller --policy`), and is audited.
        if self.write_policy {
            let old = ctx.store.get_policy().await.ok().flatten();
            let json = |p: &Policy| serde_json::to_string(p).unwrap_or_default();
            match ctx.store.put_policy(&ctx.policy, Some(&fence)).await {
                Ok(()) => tracing::warn!(
                    identity = %cfg.identity,
                    epoch = fence.epoch,
                    old = %old.as_ref().map(json).unwrap_or_else(|| "none".into()),
                    new = %json(&ctx.policy),
                    changed = old.as_ref() != Some(&ctx.policy),
                    "audit: approval policy written from --policy"
                ),
                Err(e) => tracing::warn!(error = %e, "could not store the approval policy record"),
            }
        }

        let (lost_tx, mut lost_rx) = watch::channel(false);
        let renewer =
            tokio::spawn(lease::renew_loop(ctx.store.clone(), cfg.clone(), fence.clone(), lost_tx, shutdown.clone()));

        // Initial list, then wake-ups from store changes and periodic resyncs.
        let mut cursor = ctx.store.change_cursor().await?;
        for key in ctx.store.list_active().await? {
            self.queue.add(key, Reason::Listed);
        }
        ctx.metrics.set_ready(true);
        let watcher = tokio::spawn(watch_loop(ctx.clone(), self.queue.clone(), cursor, shutdown.clone()));
        let resyncer = tokio::spawn(resync_loop(ctx.clone(), self.queue.clone(), shutdown.clone()));
        let planner = tokio::spawn(objects::plan_loop(ctx.clone(), shutdown.clone()));
        // Requests by phase for /metrics and EMF: counted here, in the background, never per scrape.
        let counter = tokio::spawn(metrics::count_phases(ctx.metrics.clone(), ctx.store.clone(), shutdown.clone()));
        cursor = 0;
        let _ = cursor;

        let sem = Arc::new(Semaphore::new(cfg.workers.max(1)));
        let mut lost = false;
        loop {
            let (key, reason) = tokio::select! {
                k = self.queue.next_entry() => match k { Some(k) => k, None => break },
                _ = wait_true(&mut shutdown) => break,
                _ = wait_true(&mut lost_rx) => { lost = true; break }
            };
            let permit = tokio::select! {
                p = sem.clone().acquire_owned() => p.expect("semaphore open"),
                _ = wait_true(&mut shutdown) => { self.queue.done(&key); break }
            };
            let ctx = ctx.clone();
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let _permit = permit;
                process(&ctx, &queue, key, reason).await;
            });
        }
        // Drain: stop handing out keys, let in-flight reconciles finish.
        self.queue.shut_down();
        ctx.metrics.set_ready(false);
        let drained =
            tokio::time::timeout(cfg.drain_timeout, sem.acquire_many(cfg.workers.max(1) as u32)).await.is_ok();
        if !drained {
            tracing::warn!(timeout = ?cfg.drain_timeout, "drain timed out with reconciles in flight");
        }
        watcher.abort();
        resyncer.abort();
        planner.abort();
        counter.abort();
        renewer.abort();
        self.fence_tx.send_replace(None);
        ctx.metrics.set_leader(false);
        if lost {
            anyhow::bail!("lost the leader lease; exiting so a fresh process can stand by");
        }
        if let Err(e) = ctx.store.release_lease(lease::LEASE_NAME, &fence).await {
            tracing::warn!(error = %e, "could not release the lease");
        } else {
            tracing::info!("released the leader lease");
        }
        Ok(())
    }
}

/// Completes once the flag is true; never if its sender goes away without setting it.
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Reads `key` and runs one reconcile step for it.
async fn reconcile_key(ctx: &Arc<Context>, key: &ObjectKey) -> Result<Action, Error> {
    match ctx.store.get(key).await {
        Ok(Some(req)) => {
            let span = tracing::Span::current();
            span.record("uid", req.uid());
            span.record("generation", req.generation());
            ctx.cancel_orphan(key, Some(&req)).await;
            reconcile::reconcile(req, ctx).await
        }
        Ok(None) => {
            ctx.metrics.awaiting_approval(key, None);
            ctx.cancel_orphan(key, None).await;
            Ok(Action::AwaitChange)
        }
        Err(e) => Err(Error::Store(e)),
    }
}

/// The text of a caught panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs `step` and turns a panic inside it into [`Error::Panicked`] (logged with the key and
/// counted), so a bug in one reconcile fails that step instead of leaving its key "processing"
/// in the queue forever (issue 10, class 5).
async fn contain_panics<F>(ctx: &Context, key: &ObjectKey, step: F) -> Result<Action, Error>
where
    F: std::future::Future<Output = Result<Action, Error>>,
{
    use futures::FutureExt as _;
    match std::panic::AssertUnwindSafe(step).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            ctx.metrics.reconcile_panic();
            tracing::error!(key = %key, panic = %message, "reconcile panicked; the step failed and will be retried with backoff");
            Err(Error::Panicked(message))
        }
    }
}

/// Reconciles one key and schedules its next look: the one place that schedules (the error
/// policy only says what to do). Whatever happens in the step, panics included, the key is
/// released (`done`) before anything else is scheduled.
async fn process(ctx: &Arc<Context>, queue: &Arc<WorkQueue>, key: ObjectKey, reason: Reason) {
    use tracing::Instrument as _;
    // Every line logged inside the step (engine, generator, store) carries the request.
    let span = tracing::info_span!(
        "reconcile",
        namespace = %key.namespace,
        name = %key.name,
        uid = tracing::field::Empty,
        generation = tracing::field::Empty,
        reason = %reason,
    );
    process_step(ctx, queue, key).instrument(span).await
}

async fn process_step(ctx: &Arc<Context>, queue: &Arc<WorkQueue>, key: ObjectKey) {
    let started = std::time::Instant::now();
    let result = contain_panics(ctx, &key, reconcile_key(ctx, &key)).await;
    ctx.metrics.observe_reconcile(started.elapsed());
    queue.done(&key);
    match result {
        Ok(action) => {
            ctx.metrics.reconcile("success");
            queue.forget(&key);
            if let Action::Requeue(d) = action {
                queue.add_after(key, d, Reason::Requeued);
            }
        }
        Err(e) => {
            let delay = match error_policy(&e) {
                Retry::Now => {
                    queue.add_after(key.clone(), CONFLICT_RETRY, Reason::Conflict);
                    Some(CONFLICT_RETRY)
                }
                Retry::Backoff => Some(queue.add_rate_limited(key.clone())),
                Retry::Never => None,
            };
            ctx.metrics.reconcile(match &e {
                Error::Store(StoreError::Conflict { .. }) => "conflict",
                Error::Store(StoreError::Fenced { .. }) | Error::NotLeader => "fenced",
                _ => "error",
            });
            ctx.metrics.error(error_kind(&e));
            if let Some(d) = delay {
                tracing::warn!(key = %key, error = %e, retry_in_ms = d.as_millis() as u64, "reconcile failed");
            } else {
                tracing::warn!(key = %key, error = %e, "reconcile refused");
            }
        }
    }
    ctx.metrics.set_queue_depth(queue.len());
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Store(StoreError::Conflict { .. }) => "conflict",
        Error::Store(StoreError::Fenced { .. }) | Error::NotLeader => "fenced",
        Error::Store(_) => "store",
        Error::Engine(_) => "engine",
        Error::Catalog(_) => "catalog",
        Error::Generate(_) => "generator",
        Error::Panicked(_) => "panic",
    }
}

/// How soon a lost compare-and-swap race is retried (after a re-read).
const CONFLICT_RETRY: Duration = Duration::from_millis(5);

/// What the error policy asks the loop to do with a failed key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Re-read and retry at once ([`CONFLICT_RETRY`]).
    Now,
    /// Retry after the key's exponential backoff.
    Backoff,
    /// Not here: a fenced write means leadership is gone and the lease loop ends it.
    Never,
}

/// Turns a failure into what should happen next, without scheduling anything (kube-runtime's
/// pure `error_policy`): a lost CAS race is retried at once, transient failures back off
/// exponentially per key, a fenced write is not retried.
pub fn error_policy(err: &Error) -> Retry {
    match err {
        Error::Store(StoreError::Conflict { .. }) => Retry::Now,
        Error::Store(StoreError::Fenced { .. }) | Error::NotLeader => Retry::Never,
        _ => Retry::Backoff,
    }
}

async fn watch_loop(ctx: Arc<Context>, queue: Arc<WorkQueue>, mut cursor: u64, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(ctx.config.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_true(&mut shutdown) => return,
        }
        match ctx.store.changes_since(cursor).await {
            Ok((next, changes)) => {
                cursor = next;
                if !changes.is_empty() {
                    ctx.metrics.phases_changed();
                }
                for c in changes {
                    if let Some(rv) = &c.resource_version
                        && ctx.is_own_write(&c.key, rv)
                    {
                        continue;
                    }
                    queue.add(c.key, Reason::Changed);
                }
                ctx.metrics.set_queue_depth(queue.len());
            }
            Err(e) => {
                ctx.metrics.store_error("changes_since");
                tracing::warn!(error = %e, "watching the store failed; will retry")
            }
        }
    }
}

async fn resync_loop(ctx: Arc<Context>, queue: Arc<WorkQueue>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(ctx.config.resync);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wait_true(&mut shutdown) => return,
        }
        match ctx.store.list_active().await {
            Ok(keys) => {
                for k in keys {
                    queue.add(k, Reason::Resync);
                }
            }
            Err(e) => {
                ctx.metrics.store_error("list_active");
                tracing::warn!(error = %e, "resync failed; will retry")
            }
        }
        ctx.written.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests;
