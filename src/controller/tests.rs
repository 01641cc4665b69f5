//! State-machine tests: the real reconcile over a real SQLite store, with a scripted engine
//! and a fixed catalog, so each transition, retry and refusal can be driven step by step. The
//! controller reaches both through countdown failure wrappers (`FailureStore`,
//! `FailureEngine`, after mountpoint-s3's failure client), so a test can make the n-th store or
//! engine call fail with a conflict, a fence, an outage or an engine error.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::approval::{DecisionInput, submit};
use crate::catalog::{CatalogError, Column, Table};
use crate::engine::failure::FailureEngine;
use crate::engine::{ExecState, QueryJob, QueryOutcome};
use crate::notify::LogNotifier;
use crate::spec::*;
use crate::store::LeaseClaim;
use crate::store::failure::FailureStore;
use crate::store::sqlite::SqliteStore;

struct FixedCatalog;

#[async_trait]
impl Catalog for FixedCatalog {
    async fn list_databases(&self) -> Result<Vec<String>, CatalogError> {
        Ok(vec!["tpch".into()])
    }
    async fn tables(&self, database: &str) -> Result<Vec<Table>, CatalogError> {
        if database != "tpch" {
            return Err(CatalogError::DatabaseNotFound(database.into()));
        }
        Ok(vec![Table {
            name: "nation".into(),
            columns: vec![Column { name: "n_name".into(), data_type: "VARCHAR".into(), ..Default::default() }],
            ..Default::default()
        }])
    }
}

/// Replays scripted poll results; records every start.
#[derive(Default)]
struct ScriptedEngine {
    polls: Mutex<VecDeque<ExecState>>,
    starts: Mutex<Vec<String>>,
    cancels: Mutex<Vec<String>>,
    /// What `estimate` answers; `None`: it cannot estimate.
    estimate: Mutex<Option<Estimate>>,
    /// The scan ceiling (`limits.max_bytes_scanned`) of every started job.
    ceilings: Mutex<Vec<Option<u64>>>,
    /// The result key of every started job.
    result_keys: Mutex<Vec<String>>,
}

#[async_trait]
impl Engine for ScriptedEngine {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn start(&self, job: &QueryJob, _waker: Waker) -> Result<String, EngineError> {
        self.starts.lock().unwrap().push(job.token.clone());
        self.ceilings.lock().unwrap().push(job.limits.max_bytes_scanned);
        self.result_keys.lock().unwrap().push(job.result.to_string());
        Ok(format!("exec-{}", job.token))
    }
    async fn poll(&self, _id: &str) -> Result<ExecState, EngineError> {
        Ok(self.polls.lock().unwrap().pop_front().unwrap_or(ExecState::Running { bytes_scanned: None }))
    }
    async fn cancel(&self, id: &str) -> Result<(), EngineError> {
        self.cancels.lock().unwrap().push(id.into());
        Ok(())
    }
    async fn estimate(&self, _database: &str, _sql: &str) -> Result<Estimate, EngineError> {
        self.estimate.lock().unwrap().clone().ok_or_else(|| EngineError::Transient("estimator unreachable".into()))
    }
}

/// The real reconcile over a real SQLite store. The controller sees the store and the engine
/// through failure injectors (pass-through until a test plans a failure); tests read and write
/// `store` and `engine` directly.
struct World {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    engine: Arc<ScriptedEngine>,
    failing_store: Arc<FailureStore<SqliteStore>>,
    failing_engine: Arc<FailureEngine<ScriptedEngine>>,
    ctx: Arc<Context>,
    _fence_tx: watch::Sender<Option<Fence>>,
}

async fn world(policy: Policy) -> World {
    world_with(policy, Arc::new(LogNotifier)).await
}

async fn world_with(policy: Policy, notifier: Arc<dyn crate::notify::Notifier>) -> World {
    world_full(policy, notifier, Arc::new(FixedCatalog)).await
}

async fn world_full(policy: Policy, notifier: Arc<dyn crate::notify::Notifier>, catalog: Arc<dyn Catalog>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
    let lease = store
        .try_acquire_lease(LeaseClaim::new(crate::store::CONTROLLER_LEASE, "me", 15_000), None)
        .await
        .unwrap()
        .unwrap();
    let (fence_tx, fence_rx) = watch::channel(Some(Fence { holder: lease.holder, epoch: lease.epoch }));
    let engine = Arc::new(ScriptedEngine::default());
    let failing_store = Arc::new(FailureStore::new(store.clone()));
    let failing_engine = Arc::new(FailureEngine::new(engine.clone()));
    let mut engines: HashMap<EngineKind, Arc<dyn Engine>> = HashMap::new();
    engines.insert(EngineKind::Local, failing_engine.clone());
    let ctx = Arc::new(Context {
        store: failing_store.clone(),
        catalog,
        engines,
        results: Arc::new(crate::results::local::LocalResults::new(dir.path().join("results"))),
        generator: None,
        notifier,
        policy,
        config: ControllerConfig::default(),
        metrics: Arc::new(Metrics::default()),
        fence: fence_rx,
        waker: Arc::new(|_: &ObjectKey| {}),
        written: Mutex::new(HashMap::new()),
        running: Mutex::new(HashMap::new()),
    });
    World { _dir: dir, store, engine, failing_store, failing_engine, ctx, _fence_tx: fence_tx }
}

fn sql_request(name: &str, sql: &str) -> QueryRequest {
    QueryRequest::new(name, "tpch").with_sql(sql)
}

impl World {
    async fn step(&self, key: &ObjectKey) -> Action {
        self.try_step(key).await.unwrap()
    }
    /// One reconcile of `key`, its error returned.
    async fn try_step(&self, key: &ObjectKey) -> Result<Action, Error> {
        let r = self.store.get(key).await.unwrap().unwrap();
        reconcile::reconcile(r, &self.ctx).await
    }
    async fn get(&self, key: &ObjectKey) -> QueryRequest {
        self.store.get(key).await.unwrap().unwrap()
    }
    /// Steps until the phase is `p` (at most 10 steps).
    async fn step_to(&self, key: &ObjectKey, p: Phase) -> QueryRequest {
        for _ in 0..10 {
            let r = self.get(key).await;
            if r.phase() == p && r.status.as_ref().is_some_and(|s| s.observed_generation == r.generation()) {
                return r;
            }
            self.step(key).await;
        }
        panic!("never reached {p}: {:?}", self.get(key).await.status);
    }
    async fn approve(&self, key: &ObjectKey, by: &str) {
        let r = self.get(key).await;
        let input = DecisionInput {
            decision: DecisionKind::Approve,
            by: by.into(),
            digest: Some(full_digest(&r)),
            feedback: None,
            comment: None,
            source: "test".into(),
            allow_over_budget: false,
        };
        submit(self.store.as_ref(), &r, &input).await.unwrap();
    }
}

/// The full digest of the SQL awaiting approval (approvals name all 64 hex characters).
fn full_digest(r: &QueryRequest) -> String {
    r.status.as_ref().and_then(|s| s.generated.as_ref()).map(|g| g.sql_digest.clone()).unwrap_or_default()
}

fn succeeded(rows: u64) -> ExecState {
    ExecState::Succeeded(QueryOutcome {
        rows,
        duration_ms: 3,
        output_location: "/tmp/x.csv".into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn happy_path_walks_every_phase_and_records_once() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("a", "select n_name from nation")).await.unwrap().key();
    let r = w.step_to(&key, Phase::AwaitingApproval).await;
    let st = r.status.unwrap();
    assert_eq!(st.approval_round, 1);
    assert!(st.approval_requested);
    assert!(st.approval_deadline.is_some());
    assert_eq!(st.generated.as_ref().unwrap().model, "user");
    w.approve(&key, "alice").await;
    w.step(&key).await; // AwaitingApproval → Executing with intent
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::Executing);
    let exec = r.status.as_ref().unwrap().execution.clone().unwrap();
    assert_eq!(
        (exec.attempt, exec.state.as_str(), exec.id.is_none()),
        (1, "Starting", true),
        "intent written before start"
    );
    assert!(r.metadata.finalizers.contains(&CANCEL_FINALIZER.to_string()));
    w.step(&key).await; // start
    w.engine.polls.lock().unwrap().push_back(succeeded(4));
    w.step(&key).await; // poll → Done
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::Done);
    assert_eq!(r.status.as_ref().unwrap().execution.as_ref().unwrap().rows, Some(4));
    assert!(r.metadata.finalizers.is_empty());
    w.step(&key).await; // notify
    assert_eq!(w.step(&key).await, Action::AwaitChange);
    assert_eq!(w.engine.starts.lock().unwrap().len(), 1);
    assert!(w.store.list_active().await.unwrap().is_empty(), "a notified Done record is not active");
}

#[tokio::test]
async fn a_transient_failure_is_retried_as_a_new_attempt_with_a_new_token() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("b", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    w.step(&key).await;
    w.step(&key).await; // start attempt 1
    w.engine.polls.lock().unwrap().push_back(ExecState::Failed { reason: "capacity".into(), transient: true });
    w.step(&key).await; // → attempt 2 intent
    let exec = w.get(&key).await.status.unwrap().execution.unwrap();
    assert_eq!((exec.attempt, exec.state.as_str()), (2, "Starting"));
    w.step(&key).await; // start attempt 2
    w.engine.polls.lock().unwrap().push_back(succeeded(1));
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::Done);
    let starts = w.engine.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 2);
    assert_ne!(starts[0], starts[1], "each attempt has its own token");
}

#[tokio::test]
async fn a_permanent_failure_ends_failed_with_the_reason() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("c", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    w.step(&key).await;
    w.step(&key).await;
    w.engine.polls.lock().unwrap().push_back(ExecState::Failed { reason: "COLUMN_NOT_FOUND".into(), transient: false });
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::Failed);
    let c = r.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Executed").unwrap();
    assert_eq!((c.reason.as_str(), c.message.as_str()), ("QueryFailed", "COLUMN_NOT_FOUND"));
}

#[tokio::test]
async fn an_engine_that_forgot_the_execution_is_started_again_with_the_same_token() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("d", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    w.step(&key).await;
    w.step(&key).await;
    w.engine.polls.lock().unwrap().push_back(ExecState::Unknown);
    w.step(&key).await; // back to Starting
    w.step(&key).await; // start again
    let starts = w.engine.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0], starts[1], "same attempt, same token: the engine attaches or re-reads");
}

#[tokio::test]
async fn the_guard_fails_ddl_and_unknown_tables_before_approval() {
    let w = world(Policy::default()).await;
    for (name, sql) in [("e1", "drop table nation"), ("e2", "select * from secrets")] {
        let key = w.store.create(sql_request(name, sql)).await.unwrap().key();
        let r = w.step_to(&key, Phase::Failed).await;
        let c = r.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Generated").unwrap();
        assert_eq!(c.reason, "GuardRejected", "{name}: {}", c.message);
    }
    assert!(w.engine.starts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_spec_change_starts_over_and_old_approvals_do_not_carry() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("f", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await; // for generation 1
    let mut r = w.get(&key).await;
    r.spec.sql = Some("select n_name from nation order by n_name".into());
    w.store.update_spec(&r).await.unwrap();
    let r = w.step_to(&key, Phase::AwaitingApproval).await;
    assert_eq!(r.generation(), 2);
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::AwaitingApproval, "the generation-1 approval must not apply");
}

#[tokio::test]
async fn the_controller_refuses_a_decision_the_policy_forbids() {
    let policy = Policy { approvers: vec!["bob".into()], ..Default::default() };
    let w = world(policy).await;
    let key = w.store.create(sql_request("g", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "mallory").await; // no policy record stored: the writer could not check
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::AwaitingApproval);
    assert!(r.status.unwrap().history.iter().any(|h| h.event == "DecisionRefused"));
    w.approve(&key, "bob").await;
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::Executing);
}

#[tokio::test]
async fn past_the_deadline_the_request_times_out() {
    let w = world(Policy { approval_timeout: Some(DurationSpec::parse("1ms").unwrap()), ..Default::default() }).await;
    let key = w.store.create(sql_request("h", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::TimedOut);
}

/// A notifier whose required channel (the SQS request queue) is down.
struct DownQueue;

#[async_trait::async_trait]
impl crate::notify::Notifier for DownQueue {
    async fn approval_requested(
        &self,
        _: &QueryRequest,
    ) -> Result<crate::notify::Delivery, crate::notify::NotifyError> {
        Err(crate::notify::NotifyError::Failed("queue unavailable".into()))
    }
    async fn finished(&self, _: &QueryRequest) -> Result<crate::notify::Delivery, crate::notify::NotifyError> {
        Ok(crate::notify::Delivery::delivered())
    }
}

#[tokio::test]
async fn an_approval_request_that_cannot_be_sent_still_times_out_at_the_deadline() {
    let policy = Policy { approval_timeout: Some(DurationSpec::parse("50ms").unwrap()), ..Default::default() };
    let w = world_with(policy, Arc::new(DownQueue)).await;
    let key = w.store.create(sql_request("down", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    let r = w.get(&key).await;
    assert_eq!(condition(&r, "Notified").reason, "ApprovalRequestFailed");
    assert!(!r.status.as_ref().unwrap().approval_requested);
    tokio::time::sleep(Duration::from_millis(60)).await;
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::TimedOut, "the deadline holds even though nothing was sent");
}

#[tokio::test]
async fn a_running_query_past_its_timeout_is_cancelled() {
    let w = world(Policy::default()).await;
    let mut req = sql_request("i", "select n_name from nation");
    req.spec.limits.timeout = Some(DurationSpec::parse("1s").unwrap());
    let key = w.store.create(req).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    w.step(&key).await;
    w.step(&key).await;
    // Pretend the execution started long ago.
    let mut r = w.get(&key).await;
    r.status.as_mut().unwrap().execution.as_mut().unwrap().started_at =
        Some(chrono::Utc::now() - chrono::Duration::seconds(60));
    let fence = w.ctx.fence().unwrap();
    w.store.update_status(&r, Some(&fence)).await.unwrap();
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::Failed);
    assert_eq!(w.engine.cancels.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_deposed_leader_cannot_write() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("j", "select n_name from nation")).await.unwrap().key();
    // Another controller takes the lease over (epoch moves on).
    let current = w.store.get_lease(crate::store::CONTROLLER_LEASE).await.unwrap();
    w.store
        .try_acquire_lease(LeaseClaim::new(crate::store::CONTROLLER_LEASE, "other", 15_000), current.as_ref())
        .await
        .unwrap()
        .unwrap();
    let r = w.get(&key).await;
    let err = reconcile::reconcile(r, &w.ctx).await.unwrap_err();
    assert!(matches!(err, Error::Store(crate::store::StoreError::Fenced { .. })), "{err}");
}

fn condition(r: &QueryRequest, type_: &str) -> Condition {
    r.status.as_ref().unwrap().condition(type_).cloned().unwrap_or_else(|| panic!("no {type_} condition"))
}

#[tokio::test]
async fn an_estimate_over_budget_waits_for_an_approval_that_accepts_it() {
    let w = world(Policy::default()).await;
    *w.engine.estimate.lock().unwrap() = Some(Estimate { bytes: 3 << 30, cost_usd: 0.0146, method: "scripted".into() });
    let mut req = sql_request("over", "select n_name from nation");
    req.spec.limits.max_bytes_scanned = Some(ByteSize::parse("1GiB").unwrap());
    let key = w.store.create(req).await.unwrap().key();
    let r = w.step_to(&key, Phase::AwaitingApproval).await;
    assert_eq!(r.status.as_ref().unwrap().estimate.as_ref().unwrap().bytes, 3 << 30);
    assert!(r.status.as_ref().unwrap().approval_requested, "the request is sent with its estimate");
    let c = condition(&r, "BudgetExceeded");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "EstimateOverBudget"));
    assert!(c.message.contains("3.0 GiB") && c.message.contains("sqlctl approve over --allow-over-budget"), "{c:?}");
    assert_eq!(condition(&r, "Estimated").message, "scripted");

    // A plain approve is refused by the writer, and by the controller when written behind its back.
    let plain = DecisionInput {
        decision: DecisionKind::Approve,
        by: "alice".into(),
        digest: Some(full_digest(&r)),
        feedback: None,
        comment: None,
        source: "test".into(),
        allow_over_budget: false,
    };
    let e = submit(w.store.as_ref(), &r, &plain).await.unwrap_err();
    assert!(e.to_string().contains("--allow-over-budget"), "{e}");
    w.store.create_decision(&crate::approval::bind(&r, &plain).unwrap()).await.unwrap();
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::AwaitingApproval);
    assert!(condition(&r, "DecisionRefused").message.contains("--allow-over-budget"));

    // An approval that accepts the estimate runs, with a ceiling of twice the estimate.
    let explicit = DecisionInput { by: "bob".into(), allow_over_budget: true, ..plain };
    submit(w.store.as_ref(), &r, &explicit).await.unwrap();
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::Executing);
    assert!(r.status.as_ref().unwrap().approval.as_ref().unwrap().allow_over_budget);
    w.step(&key).await; // start
    assert_eq!(*w.engine.ceilings.lock().unwrap(), [Some(6 << 30)]);
    // Past the spec's limit but within the ceiling: it keeps running.
    w.engine.polls.lock().unwrap().push_back(ExecState::Running { bytes_scanned: Some(2 << 30) });
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::Executing);
    // Past twice the estimate: cancelled.
    w.engine.polls.lock().unwrap().push_back(ExecState::Running { bytes_scanned: Some(7 << 30) });
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::Failed);
    let c = condition(&r, "Executed");
    assert_eq!(c.reason, "BudgetExceeded");
    assert!(c.message.contains("twice the estimate"), "{c:?}");
    assert_eq!(w.engine.cancels.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn without_an_estimate_the_request_still_asks_and_the_limit_holds_at_run_time() {
    let w = world(Policy::default()).await;
    let mut req = sql_request("blind", "select n_name from nation");
    req.spec.limits.max_bytes_scanned = Some(ByteSize::parse("1GiB").unwrap());
    let key = w.store.create(req).await.unwrap().key();
    let r = w.step_to(&key, Phase::AwaitingApproval).await;
    assert!(r.status.as_ref().unwrap().estimate.is_none());
    let c = condition(&r, "Estimated");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "EstimateFailed"));
    assert!(c.message.contains("estimator unreachable"), "{c:?}");
    assert_eq!(condition(&r, "BudgetExceeded").status, "Unknown");
    w.approve(&key, "alice").await;
    w.step(&key).await;
    w.step(&key).await;
    assert_eq!(*w.engine.ceilings.lock().unwrap(), [Some(1 << 30)]);
    w.engine.polls.lock().unwrap().push_back(ExecState::Running { bytes_scanned: Some(2 << 30) });
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!((r.phase(), condition(&r, "Executed").reason.as_str()), (Phase::Failed, "BudgetExceeded"));
}

#[tokio::test]
async fn within_budget_a_plain_approve_runs() {
    let w = world(Policy::default()).await;
    *w.engine.estimate.lock().unwrap() = Some(Estimate { bytes: 1 << 20, cost_usd: 0.0, method: "scripted".into() });
    let mut req = sql_request("fits", "select n_name from nation");
    req.spec.limits.max_bytes_scanned = Some(ByteSize::parse("1GiB").unwrap());
    let key = w.store.create(req).await.unwrap().key();
    let r = w.step_to(&key, Phase::AwaitingApproval).await;
    assert_eq!(condition(&r, "BudgetExceeded").status, "False");
    w.approve(&key, "alice").await;
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::Executing);
    assert!(!r.status.unwrap().approval.unwrap().allow_over_budget);
}

/// A catalog whose first `panics` calls panic (a bug in a backend or the retriever).
struct PanickyCatalog {
    panics: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl Catalog for PanickyCatalog {
    async fn list_databases(&self) -> Result<Vec<String>, CatalogError> {
        FixedCatalog.list_databases().await
    }
    async fn tables(&self, database: &str) -> Result<Vec<Table>, CatalogError> {
        use std::sync::atomic::Ordering;
        if self.panics.load(Ordering::SeqCst) > 0 {
            self.panics.fetch_sub(1, Ordering::SeqCst);
            let name = "aé";
            let _ = &name[..2]; // byte index 2 is inside 'é'
        }
        FixedCatalog.tables(database).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_that_panics_releases_its_key_and_is_retried_with_backoff() {
    let catalog = Arc::new(PanickyCatalog { panics: 1.into() });
    let w = world_full(Policy::default(), Arc::new(LogNotifier), catalog).await;
    let key = w.store.create(sql_request("boom", "select n_name from nation")).await.unwrap().key();
    let other = w.store.create(sql_request("calm", "select n_name from nation")).await.unwrap().key();
    let queue = Arc::new(WorkQueue::default());
    queue.add(key.clone(), Reason::Changed);
    // Observe the generation (no catalog call), then generate: the catalog panics.
    for _ in 0..2 {
        let k = queue.next().await.unwrap();
        assert_eq!(k, key);
        process(&w.ctx, &queue, k, Reason::Changed).await;
    }
    assert_eq!(w.ctx.metrics.reconcile_panics(), 1);
    assert_eq!(w.ctx.metrics.get("sqlctl_errors_total", "panic"), 1);
    assert_eq!(w.ctx.metrics.get("sqlctl_reconciles_total", "error"), 1);
    assert!(w.ctx.metrics.render().contains("sqlctl_reconcile_panics_total 1"));
    assert_eq!(queue.failures(&key), 1, "a panic backs off like an error");
    assert_eq!(w.get(&key).await.phase(), Phase::Pending);

    // The key was released: other keys go on, and this one comes back after its backoff.
    queue.add(other.clone(), Reason::Changed);
    let t0 = tokio::time::Instant::now();
    assert_eq!(queue.next().await.as_ref(), Some(&other), "the panicking key must not block others");
    process(&w.ctx, &queue, other.clone(), Reason::Changed).await;
    let mut next = queue.next().await.unwrap();
    while next != key {
        process(&w.ctx, &queue, next, Reason::Changed).await;
        next = queue.next().await.unwrap();
    }
    assert!(t0.elapsed() >= Duration::from_millis(80), "retried after its backoff, not at once: {:?}", t0.elapsed());
    process(&w.ctx, &queue, next, Reason::Changed).await;
    assert_eq!(w.get(&key).await.phase(), Phase::Generated, "the retry succeeds once the bug is gone");
    assert_eq!(queue.failures(&key), 0, "success resets the backoff");

    // A new generation is picked up like any change: nothing is left "processing".
    let mut r = w.get(&key).await;
    r.spec.sql = Some("select n_name from nation order by n_name".into());
    w.store.update_spec(&r).await.unwrap();
    queue.add(key.clone(), Reason::Changed);
    for _ in 0..20 {
        let r = w.get(&key).await;
        if r.generation() == 2 && r.status.as_ref().is_some_and(|s| s.observed_generation == 2) {
            break;
        }
        let k = tokio::time::timeout(Duration::from_secs(120), queue.next()).await.expect("key handed out").unwrap();
        process(&w.ctx, &queue, k, Reason::Changed).await;
    }
    assert_eq!(w.get(&key).await.status.unwrap().observed_generation, 2);
}

#[tokio::test]
async fn a_query_whose_record_was_force_deleted_or_recreated_is_cancelled() {
    let w = world(Policy::default()).await;
    let queue = Arc::new(WorkQueue::default());
    let key = w.store.create(sql_request("gone", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    process(&w.ctx, &queue, key.clone(), Reason::Changed).await; // → Executing with intent
    process(&w.ctx, &queue, key.clone(), Reason::Changed).await; // start: the id is recorded
    let first = w.get(&key).await;
    let id = first.status.as_ref().unwrap().execution.as_ref().unwrap().id.clone().unwrap();
    assert!(w.engine.cancels.lock().unwrap().is_empty());
    // Forced delete behind the controller's back, then the same name again.
    assert!(w.store.delete(&key, true).await.unwrap().is_none());
    let again = w.store.create(sql_request("gone", "select n_name from nation")).await.unwrap();
    assert_ne!(again.uid(), first.uid());
    process(&w.ctx, &queue, key.clone(), Reason::Changed).await;
    assert_eq!(*w.engine.cancels.lock().unwrap(), std::slice::from_ref(&id), "the old uid's query is cancelled");
    process(&w.ctx, &queue, key.clone(), Reason::Changed).await;
    assert_eq!(w.engine.cancels.lock().unwrap().len(), 1, "cancelled once");

    // The recreated request's result key names its own uid.
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    w.step(&key).await; // intent
    w.step(&key).await; // start
    let keys = w.engine.result_keys.lock().unwrap().clone();
    assert_eq!(keys, [format!("default/gone/{}/1-1", first.uid()), format!("default/gone/{}/1-1", again.uid())]);
}

#[tokio::test]
async fn past_the_history_cap_entries_are_archived_and_refused_decisions_are_looked_at_once() {
    let policy = Policy { approvers: vec!["bob".into()], ..Default::default() };
    let w = world(policy).await;
    let key = w.store.create(sql_request("many", "select n_name from nation")).await.unwrap().key();
    let r = w.step_to(&key, Phase::AwaitingApproval).await;
    let digest = full_digest(&r);
    let n = reconcile::HISTORY_CAP + 50;
    for i in 0..n {
        w.approve(&key, &format!("mallory{i:03}")).await; // refused: not an approver
    }
    w.step(&key).await;
    let r = w.get(&key).await;
    let st = r.status.clone().unwrap();
    assert_eq!(r.phase(), Phase::AwaitingApproval);
    assert_eq!(st.history.len(), reconcile::HISTORY_CAP);
    let generated: Vec<_> = st.history.iter().filter(|h| h.event == "Generated").collect();
    assert_eq!(generated.len(), 1, "the Generated entry of the current generation is never evicted");
    assert_eq!(generated[0].sql_digest.as_deref(), Some(digest.as_str()));
    let refused_kept = st.history.iter().filter(|h| h.event == "DecisionRefused").count();
    let archive = w.store.archived_history(&key, r.uid()).await.unwrap();
    assert_eq!(archive.len() as u64, st.history_archived);
    assert_eq!(archive.iter().map(|a| a.index).collect::<Vec<_>>(), (0..st.history_archived).collect::<Vec<_>>());
    let refused_archived = archive.iter().filter(|a| a.entry.event == "DecisionRefused").count();
    assert_eq!(refused_kept + refused_archived, n, "every refusal is in the status or the archive, once");
    assert!(archive.iter().any(|a| a.entry.event == "Observed"), "the oldest entries are archived first");

    // Resyncs look again: nothing is rewritten.
    let rv = r.metadata.resource_version.clone();
    for _ in 0..3 {
        w.step(&key).await;
        assert_eq!(w.get(&key).await.metadata.resource_version, rv, "a refused decision is not re-processed");
    }
    assert_eq!(w.ctx.metrics.get("sqlctl_decisions_total", "refused"), n as u64);
    // A valid decision after them still counts.
    w.approve(&key, "bob").await;
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::Executing);
    assert!(r.status.unwrap().history.iter().any(|h| h.event == "Generated"));
}

#[tokio::test]
async fn deleting_an_executing_request_cancels_its_query_then_removes_it() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("bye", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    w.step(&key).await; // → Executing (finalizer added)
    w.step(&key).await; // start
    let id = w.get(&key).await.status.unwrap().execution.unwrap().id.unwrap();
    let marked = w.store.delete(&key, false).await.unwrap().expect("marked, not removed: a finalizer holds it");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(w.step(&key).await, Action::AwaitChange);
    assert_eq!(*w.engine.cancels.lock().unwrap(), [id]);
    assert!(w.store.get(&key).await.unwrap().is_none(), "removed once the query was cancelled");
}

#[tokio::test]
async fn a_delete_that_raced_a_start_finds_the_query_by_its_token_and_stops_it() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("raced", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    w.step(&key).await; // → Executing: the intent {token, attempt 1} is written, no execution id yet
    let exec = w.get(&key).await.status.unwrap().execution.unwrap();
    assert_eq!((exec.state.as_str(), exec.id.as_deref()), ("Starting", None));
    // As if the start's status write (with the id) had lost its compare-and-set to the delete.
    w.store.delete(&key, false).await.unwrap().expect("marked: a finalizer holds it");
    assert_eq!(w.step(&key).await, Action::AwaitChange);
    assert_eq!(*w.engine.starts.lock().unwrap(), std::slice::from_ref(&exec.token), "looked up by the same token");
    assert_eq!(*w.engine.cancels.lock().unwrap(), [format!("exec-{}", exec.token)], "and stopped");
    assert!(w.store.get(&key).await.unwrap().is_none(), "then removed");
}

/// A writer for a test subscriber: every log line lands in one buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_line_logged_inside_a_reconcile_carries_the_request_and_why_it_ran() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let catalog = Arc::new(PanickyCatalog { panics: 1.into() });
    let w = world_full(Policy::default(), Arc::new(LogNotifier), catalog).await;
    let r = w.store.create(sql_request("traced", "select n_name from nation")).await.unwrap();
    let queue = Arc::new(WorkQueue::default());
    queue.add_after(r.key(), Duration::ZERO, Reason::Resync);
    // Observe the generation (it asks to look again), then generate: the catalog panics.
    for want in [Reason::Resync, Reason::Requeued] {
        let (k, reason) = queue.next_entry().await.unwrap();
        assert_eq!(reason, want);
        process(&w.ctx, &queue, k, reason).await;
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The catalog panics: the lines about it name no request themselves; the span does.
    let line =
        text.lines().find(|l| l.contains("reconcile failed")).unwrap_or_else(|| panic!("no failure line in {text}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let span = &v["span"];
    assert_eq!(span["name"], "reconcile", "{line}");
    assert_eq!(span["namespace"], "default", "{line}");
    assert_eq!(span["uid"], r.uid(), "{line}");
    assert_eq!(span["generation"], 1, "{line}");
    assert_eq!(span["reason"], "requeued", "{line}");
    assert!(text.lines().any(|l| l.contains("reconcile panicked") && l.contains(r.uid())), "{text}");
}

/// A status write that loses a CAS race changes nothing, is retried at once (not backed off),
/// and the transition it carried is recorded once when the retry succeeds.
#[tokio::test]
async fn a_status_write_that_loses_a_race_is_retried_at_once_and_recorded_once() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("race", "select n_name from nation")).await.unwrap().key();
    let before = w.get(&key).await;
    let k = key.clone();
    w.failing_store.fail_nth("update_status", 1, move || StoreError::Conflict { key: k.clone(), expected: "1".into() });
    let err = w.try_step(&key).await.unwrap_err();
    assert_eq!(error_policy(&err), Retry::Now, "{err}");
    assert_eq!(w.get(&key).await, before, "the refused write changed nothing");
    let r = w.step_to(&key, Phase::AwaitingApproval).await;
    let history = &r.status.as_ref().unwrap().history;
    assert_eq!(history.iter().filter(|h| h.event == "Generated").count(), 1, "{history:?}");
    assert!(w.failing_store.calls("update_status") >= 2);
}

/// A store outage backs off; a fenced write (another controller leads now) is never retried
/// here. Neither loses or changes anything, and the request goes on once the store answers.
#[tokio::test]
async fn an_outage_backs_off_and_a_fenced_write_is_not_retried_and_neither_changes_anything() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("outage", "select n_name from nation")).await.unwrap().key();
    let before = w.get(&key).await;
    w.failing_store.fail_nth("update_status", 1, || StoreError::Unavailable("injected outage".into()));
    let err = w.try_step(&key).await.unwrap_err();
    assert_eq!(error_policy(&err), Retry::Backoff, "{err}");
    assert_eq!(w.get(&key).await, before);
    w.failing_store.fail_nth("update_status", 1, || StoreError::Fenced { epoch: 9 });
    let err = w.try_step(&key).await.unwrap_err();
    assert_eq!(error_policy(&err), Retry::Never, "{err}");
    assert_eq!(w.get(&key).await, before);
    w.step_to(&key, Phase::AwaitingApproval).await;
}

/// An engine that cannot take a start now backs off; the retry starts the query exactly once,
/// with the same idempotency token, and the request finishes.
#[tokio::test]
async fn an_engine_outage_at_start_backs_off_and_the_query_starts_once() {
    let w = world(Policy::default()).await;
    let key = w.store.create(sql_request("flaky", "select n_name from nation")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.approve(&key, "alice").await;
    w.step(&key).await; // the intent to start is written
    assert_eq!(w.get(&key).await.phase(), Phase::Executing);
    w.failing_engine.fail_nth("start", 1, || EngineError::Transient("throttled".into()));
    let err = w.try_step(&key).await.unwrap_err();
    assert_eq!(error_policy(&err), Retry::Backoff, "{err}");
    assert!(w.engine.starts.lock().unwrap().is_empty(), "the failed start reached no engine");
    w.engine.polls.lock().unwrap().push_back(succeeded(3));
    let r = w.step_to(&key, Phase::Done).await;
    assert_eq!(w.failing_engine.calls("start"), 2);
    let starts = w.engine.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert_eq!(r.status.unwrap().execution.unwrap().attempt, 1, "a transient start is not a new attempt");
}

/// A catalog that is always throttled: every pre-approval step fails transiently.
struct DownCatalog;

#[async_trait]
impl Catalog for DownCatalog {
    async fn list_databases(&self) -> Result<Vec<String>, CatalogError> {
        Err(CatalogError::Transient("catalog throttled".into()))
    }
    async fn tables(&self, _: &str) -> Result<Vec<Table>, CatalogError> {
        Err(CatalogError::Transient("catalog throttled".into()))
    }
}

#[tokio::test]
async fn hole4_pending_ends_failed_after_bounded_pre_approval_attempts() {
    let w = world_full(Policy::default(), Arc::new(LogNotifier), Arc::new(DownCatalog)).await;
    let key = w.store.create(sql_request("flaky", "select 1")).await.unwrap().key();
    let mut failures = 0;
    for _ in 0..20 {
        if w.get(&key).await.phase() == Phase::Failed {
            break;
        }
        if w.try_step(&key).await.is_err() {
            failures += 1;
            // Each failure is visible meanwhile.
            let st = w.get(&key).await.status.unwrap();
            assert_eq!(st.pre_approval_attempts, failures);
            let c = st.condition("PreApproval").unwrap();
            assert_eq!(c.reason, "AttemptFailed");
            assert!(c.message.contains("catalog throttled"), "{}", c.message);
        }
    }
    let st = w.get(&key).await.status.unwrap();
    assert_eq!(st.phase, Phase::Failed, "{st:?}");
    assert_eq!(failures, reconcile::MAX_PRE_APPROVAL_ATTEMPTS - 1, "the last attempt ends the request");
    assert_eq!(st.pre_approval_attempts, reconcile::MAX_PRE_APPROVAL_ATTEMPTS);
    assert_eq!(st.condition("Generated").unwrap().reason, "PreApprovalAttemptsExhausted");
    assert_eq!(w.failing_engine.calls("start"), 0, "nothing runs before approval");
}

/// A verified query of `select n_name from nation where n_name = :nation`, by `verifier`.
fn nation_template(name: &str, verifier: &str) -> Object {
    let mut vq =
        VerifiedQuery::new(name, "tpch", "Is this nation there?", "select n_name from nation where n_name = :nation");
    vq.spec.parameters = vec![TemplateParameter {
        name: "nation".into(),
        type_: ParameterType::String,
        column: Some("nation.n_name".into()),
        example: "FRANCE".into(),
        description: None,
    }];
    vq.spec.verified_by = Some(verifier.into());
    Object::VerifiedQuery(vq)
}

fn trusting(approvers: &[&str]) -> Policy {
    Policy {
        auto_approve_verified: true,
        approvers: approvers.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_exact_instantiation_of_a_fresh_verified_query_is_approved_by_the_policy() {
    let w = world(trusting(&["alice"])).await;
    w.store.create_object(nation_template("nation-check", "alice")).await.unwrap();
    assert_eq!(objects::plan_all(&w.ctx).await.unwrap(), 1);
    let key = w.store.create(sql_request("q", "SELECT n_name FROM nation WHERE n_name = 'PERU'")).await.unwrap().key();
    let r = w.step_to(&key, Phase::Executing).await;
    let a = r.status.as_ref().unwrap().approval.clone().unwrap();
    assert_eq!(a.by, "policy:verifiedquery/default/nation-check");
    assert!(
        a.comment.as_deref().unwrap().contains("verified by alice")
            && a.comment.as_deref().unwrap().contains(":nation = 'PERU'")
    );
    assert_eq!(a.sql_digest, full_digest(&r));
    let d = w.store.list_decisions(r.uid()).await.unwrap();
    assert_eq!((d.len(), d[0].source.as_str()), (1, trusted::POLICY_SOURCE));
    // Nothing was sent for a human to decide.
    assert!(r.status.as_ref().unwrap().approval_requested);
}

#[tokio::test]
async fn the_policy_approves_nothing_else() {
    // Off by default.
    let w = world(Policy { approvers: vec!["alice".into()], ..Default::default() }).await;
    w.store.create_object(nation_template("t", "alice")).await.unwrap();
    objects::plan_all(&w.ctx).await.unwrap();
    let key =
        w.store.create(sql_request("off", "SELECT n_name FROM nation WHERE n_name = 'PERU'")).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::AwaitingApproval);

    let w = world(Policy { four_eyes: true, ..trusting(&["alice", "rita"]) }).await;
    let fresh = |w: &World| {
        let ctx = w.ctx.clone();
        async move { objects::plan_all(&ctx).await.unwrap() }
    };
    // A verifier the policy does not allow to decide; a verified query never planned.
    w.store.create_object(nation_template("by-mallory", "mallory")).await.unwrap();
    fresh(&w).await;
    w.store.create_object(nation_template("unplanned", "alice")).await.unwrap();
    let exact = "SELECT n_name FROM nation WHERE n_name = 'PERU'";
    let key = w.store.create(sql_request("a", exact)).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::AwaitingApproval, "mallory may not decide; unplanned is not fresh");
    // Under four-eyes the verifier may not be the requester.
    fresh(&w).await;
    let mut own = sql_request("own", exact);
    own.metadata.annotations.insert(REQUESTER_ANNOTATION.into(), "alice".into());
    let key = w.store.create(own).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::AwaitingApproval);
    // One token off.
    let key = w
        .store
        .create(sql_request("off-by-one", "SELECT n_name FROM nation WHERE n_name <> 'PERU'"))
        .await
        .unwrap()
        .key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::AwaitingApproval);
    // A record that claims to be the policy's approves nothing it does not prove.
    let r = w.get(&key).await;
    let forged = trusted::decision(
        &r,
        &trusted::Trusted {
            vq: nation_template("unplanned", "alice").as_verified_query().unwrap().clone(),
            verifier: "alice".into(),
            bindings: Default::default(),
        },
    );
    w.store.create_decision(&forged).await.unwrap();
    w.step(&key).await;
    let r = w.get(&key).await;
    assert_eq!(r.phase(), Phase::AwaitingApproval);
    assert!(condition(&r, "DecisionRefused").message.contains("approval by policy refused"), "{:?}", r.status);
}

#[tokio::test]
async fn over_budget_an_exact_instantiation_still_needs_a_human() {
    let w = world(trusting(&[])).await;
    *w.engine.estimate.lock().unwrap() = Some(Estimate { bytes: 3 << 30, cost_usd: 0.01, method: "scripted".into() });
    w.store.create_object(nation_template("t", "alice")).await.unwrap();
    objects::plan_all(&w.ctx).await.unwrap();
    let mut req = sql_request("big", "SELECT n_name FROM nation WHERE n_name = 'PERU'");
    req.spec.limits.max_bytes_scanned = Some(ByteSize::parse("1GiB").unwrap());
    let key = w.store.create(req).await.unwrap().key();
    w.step_to(&key, Phase::AwaitingApproval).await;
    w.step(&key).await;
    assert_eq!(w.get(&key).await.phase(), Phase::AwaitingApproval);
}

/// A catalog whose tables a test can change (drift).
struct SwitchCatalog(Mutex<Vec<Table>>);

#[async_trait]
impl Catalog for SwitchCatalog {
    async fn list_databases(&self) -> Result<Vec<String>, CatalogError> {
        Ok(vec!["tpch".into()])
    }
    async fn tables(&self, _database: &str) -> Result<Vec<Table>, CatalogError> {
        Ok(self.0.lock().unwrap().clone())
    }
}

#[tokio::test]
async fn drift_replans_on_a_new_shape_only_and_marks_what_no_longer_plans_stale() {
    let nation = |cols: &[&str]| Table {
        name: "nation".into(),
        columns: cols
            .iter()
            .map(|c| Column { name: c.to_string(), data_type: "VARCHAR".into(), ..Default::default() })
            .collect(),
        ..Default::default()
    };
    let catalog = Arc::new(SwitchCatalog(Mutex::new(vec![nation(&["n_name"])])));
    let w = world_full(Policy::default(), Arc::new(LogNotifier), catalog.clone()).await;
    w.store.create_object(nation_template("t", "alice")).await.unwrap();
    let mut sm = SemanticModel::new("m", "tpch");
    sm.spec.tables = vec![crate::spec::semantic::ModelTable { name: "nation".into(), ..Default::default() }];
    w.store.create_object(Object::SemanticModel(sm)).await.unwrap();
    let stale = |o: &Object| o.status().map(|s| s.is_stale());
    let get = |name: &str, kind| {
        let store = w.store.clone();
        let name = name.to_string();
        async move { store.get_object(kind, &ObjectKey::new("default", name)).await.unwrap().unwrap() }
    };
    assert_eq!(objects::plan_all(&w.ctx).await.unwrap(), 2);
    let t = get("t", ObjectKind::VerifiedQuery).await;
    assert_eq!(stale(&t), Some(false));
    let st = t.status().unwrap();
    assert_eq!(st.canonical_sql.as_deref(), Some("SELECT n_name FROM nation WHERE n_name = :nation"));
    assert_eq!(st.template_digest.as_ref().map(String::len), Some(64));
    // Nothing changed: nothing is planned again.
    assert_eq!(objects::plan_all(&w.ctx).await.unwrap(), 0);
    // Sample values are not shape.
    catalog.0.lock().unwrap()[0].columns[0].sample_values = vec!["PERU".into()];
    assert_eq!(objects::plan_all(&w.ctx).await.unwrap(), 0);
    // A new column is a new shape: both are planned again, and still plan.
    *catalog.0.lock().unwrap() = vec![nation(&["n_name", "n_comment"])];
    assert_eq!(objects::plan_all(&w.ctx).await.unwrap(), 2);
    assert_eq!(stale(&get("t", ObjectKind::VerifiedQuery).await), Some(false));
    // The table goes: both are Stale, with the error, and the template is no longer usable.
    catalog.0.lock().unwrap().clear();
    assert_eq!(objects::plan_all(&w.ctx).await.unwrap(), 2);
    let t = get("t", ObjectKind::VerifiedQuery).await;
    assert_eq!(stale(&t), Some(true));
    let c = t.status().unwrap().condition(STALE_CONDITION).unwrap().clone();
    assert_eq!(c.reason, "PlanFailed");
    assert!(c.message.contains("nation"), "{c:?}");
    assert!(!t.as_verified_query().unwrap().is_fresh());
    let m = get("m", ObjectKind::SemanticModel).await;
    assert!(
        m.status().unwrap().condition(STALE_CONDITION).unwrap().message.contains("table \"nation\" does not exist")
    );
    // A spec change is planned at its new generation.
    *catalog.0.lock().unwrap() = vec![nation(&["n_name"])];
    let mut t = get("t", ObjectKind::VerifiedQuery).await;
    if let Object::VerifiedQuery(v) = &mut t {
        v.spec.question = "Is it listed?".into();
    }
    let t = w.store.update_object(&t).await.unwrap();
    assert_eq!(t.generation(), 2);
    objects::plan_all(&w.ctx).await.unwrap();
    let t = get("t", ObjectKind::VerifiedQuery).await;
    assert_eq!((t.status().unwrap().observed_generation, stale(&t)), (2, Some(false)));
}
