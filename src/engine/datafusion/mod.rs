//! The local engine: DataFusion over the embedded warehouse directory, results as CSV files.
//!
//! It is the second wall behind the guard (DESIGN §5): every query runs in a fresh session that
//! holds only the tables of the request's database (no other schema, no `information_schema`,
//! no URL or file tables) and goes through `SessionContext::sql_with_options` with DDL, DML and
//! statements disallowed, so even SQL that never passed the guard cannot write, `COPY`, `SET` or
//! read a file by path.
//!
//! Executions live in memory, keyed by the job's idempotency token (which is also the
//! execution id): a second `start` with a known token attaches instead of running again, and
//! after a restart `poll` answers [`ExecState::Unknown`] so the controller starts again, which
//! is safe because the local engine only reads. Each execution streams its full result into a
//! [`crate::results::PendingResult`] of its result store and commits it when complete (a
//! directory, or with `--results s3://…` that directory plus an upload: see
//! [`crate::results`]), keeps a bounded preview, and wakes the controller when it finishes. The
//! commit is part of the run: it counts against the timeout, and a commit that fails for a
//! reason a retry may fix fails the attempt transiently. Committing the same key again
//! overwrites it with the same bytes, so a re-run after a restart is harmless.
//!
//! Before approval, [`Engine::plan`] and [`Engine::estimate`] never evaluate anything in this
//! process: DataFusion's optimizer constant-folds user expressions, so planning runs in a child
//! process under memory, CPU and wall-clock limits (see [`super::preflight`]); the child's
//! estimate is kept for the `estimate` call that follows the plan, so one SQL costs one child.
//! The estimate's min/max pruning only evaluates [`safe_for_pruning`] conjuncts.
//!
//! After approval every query runs under a DataFusion memory pool (`--max-query-memory`), its
//! timeout and its result limits: the CSV stops after `limits.maxRows` rows (the outcome says
//! it was truncated) and a result that grows past `limits.maxResultBytes` fails the run.
//!
//! Queries run on a runtime of their own so CPU-bound DataFusion work never starves the
//! controller. Timeouts and cancels stop a query at its next yield point: DataFusion's sources
//! yield regularly, but an operator that generates many batches from memory (a large cross
//! join feeding an aggregate) can keep one query thread busy until its current poll returns.
//!
//! Rooms (imports run one way, lowest first): `session` (the read-only options and how errors
//! read), `csv` (CSV and preview rendering), `scan` (Parquet scan estimation and measurement)
//! and `executions` (the registry of executions, its eviction, the query runtime) import no
//! sibling; `run` (one execution, start to end) builds on all four; this file holds
//! [`LocalEngine`], its [`Engine`] impl, the preflight estimate cache and [`preflight_here`].

mod csv;
mod executions;
mod run;
mod scan;
mod session;
#[cfg(test)]
mod testing;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::execution::context::SessionContext;
use datafusion::physical_plan::ExecutionPlan;
use tokio::sync::Semaphore;

use self::executions::{Execution, Executions, QueryRuntime};
use self::run::Run;
use self::scan::{estimate_scans, scanned_bytes};
use self::session::{datafusion_message, read_only, warehouse_error};
use super::preflight::{self, Preflight};
use super::{Engine, EngineError, ExecState, QueryJob, Waker};
use crate::results::ResultStore;
use crate::results::local::LocalResults;
use crate::spec::Estimate;
use crate::warehouse;

pub use self::csv::{PREVIEW_MAX_BYTES, run_sql_collect};
pub use self::scan::{ScanEstimate, ScanMeasurement, measure_scan, safe_for_pruning};

/// DataFusion over `data_dir`, writing results into a [`ResultStore`].
pub struct LocalEngine {
    data_dir: PathBuf,
    results: Arc<dyn ResultStore>,
    executions: Arc<Mutex<Executions>>,
    /// Bounds concurrently executing queries (the rest wait, as `Running`, before their timeout
    /// starts): DataFusion already uses every core for one query.
    slots: Arc<Semaphore>,
    /// Queries run on their own runtime: DataFusion's operators are CPU-bound and some poll for
    /// a long time without yielding, which must not starve the controller's loop, its lease
    /// renewals or `/healthz` on the caller's runtime. Started on first use, so building an
    /// engine for a CLI command that never runs a query starts no threads.
    runtime: OnceLock<QueryRuntime>,
    /// Worker threads of that runtime.
    threads: usize,
    /// Where SQL is planned and estimated before approval.
    preflight: Preflight,
    /// Estimates made by a preflight child for the `estimate` call that follows its `plan`.
    preflight_estimates: Mutex<EstimateCache>,
    /// Memory pool of each executing query, bytes.
    max_query_memory: u64,
}

/// Most estimates kept between a `plan` and its `estimate`.
const ESTIMATE_CACHE_CAP: usize = 256;
/// How long a kept estimate is good for (plan and estimate are one reconcile apart).
const ESTIMATE_CACHE_TTL: Duration = Duration::from_secs(120);

/// Estimates keyed by a hash of (database, SQL), oldest first, bounded in count and age.
#[derive(Default)]
struct EstimateCache {
    entries: std::collections::VecDeque<(String, Instant, Result<Estimate, preflight::Failure>)>,
}

impl EstimateCache {
    fn key(database: &str, sql: &str) -> String {
        crate::spec::digest::token(&[database, sql])
    }

    fn put(&mut self, key: String, estimate: Result<Estimate, preflight::Failure>, now: Instant) {
        self.entries.retain(|(k, at, _)| *k != key && now.duration_since(*at) < ESTIMATE_CACHE_TTL);
        while self.entries.len() >= ESTIMATE_CACHE_CAP {
            self.entries.pop_front();
        }
        self.entries.push_back((key, now, estimate));
    }

    /// Takes the estimate for `key` out of the cache, if it is there and fresh.
    fn take(&mut self, key: &str, now: Instant) -> Option<Result<Estimate, preflight::Failure>> {
        let i = self.entries.iter().position(|(k, _, _)| k == key)?;
        let (_, at, estimate) = self.entries.remove(i)?;
        (now.duration_since(at) < ESTIMATE_CACHE_TTL).then_some(estimate)
    }
}

/// Default memory pool of one local query: a quarter of the memory this process may use (the
/// cgroup's limit in a container, else physical memory), between 256 MiB and 2 GiB.
pub fn default_max_query_memory() -> u64 {
    let physical = {
        // SAFETY: sysconf has no preconditions.
        let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
        if pages > 0 && size > 0 { (pages as u64).saturating_mul(size as u64) } else { 8 << 30 }
    };
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    (physical.min(cgroup) / 4).clamp(256 << 20, 2 << 30)
}

impl LocalEngine {
    /// An engine reading `data_dir` (see [`crate::warehouse`]) and writing CSV results under
    /// `results_dir` (created on first use); [`LocalEngine::with_results`] writes elsewhere.
    pub fn new(data_dir: impl Into<PathBuf>, results_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        LocalEngine {
            data_dir: std::path::absolute(&data_dir).unwrap_or(data_dir),
            results: Arc::new(LocalResults::new(results_dir)),
            executions: Arc::new(Mutex::new(Executions::default())),
            slots: Arc::new(Semaphore::new(cores.clamp(2, 8))),
            runtime: OnceLock::new(),
            threads: cores.max(2),
            preflight: Preflight::default_for_build(),
            preflight_estimates: Mutex::new(EstimateCache::default()),
            max_query_memory: default_max_query_memory(),
        }
    }

    /// Where SQL is planned before approval: [`Preflight::default_for_build`] unless set. A
    /// program embedding this library (a bench) passes the sqlctl binary
    /// (`Preflight::Isolated { command: ChildCommand::sqlctl(env!("CARGO_BIN_EXE_sqlctl")), .. }`).
    #[must_use]
    pub fn with_preflight(mut self, preflight: Preflight) -> Self {
        self.preflight = preflight;
        self
    }

    /// The memory pool of each executing query, bytes (`--max-query-memory`).
    #[must_use]
    pub fn with_max_query_memory(mut self, bytes: u64) -> Self {
        self.max_query_memory = bytes.max(1 << 20);
        self
    }

    /// Plans and estimates `sql` in a preflight child; keeps the estimate for [`Engine::estimate`].
    async fn preflight_child(
        &self,
        command: &preflight::ChildCommand,
        budget: &preflight::Budget,
        database: &str,
        sql: &str,
    ) -> Result<Option<Result<Estimate, preflight::Failure>>, EngineError> {
        let request = preflight::Request {
            protocol: preflight::PROTOCOL.into(),
            data_dir: self.data_dir.clone(),
            database: database.to_string(),
            sql: sql.to_string(),
        };
        let answer = preflight::run(command, budget, &request).await?;
        if let Some(failure) = answer.plan {
            return Err(failure.into());
        }
        Ok(answer.estimate)
    }

    fn estimates(&self) -> std::sync::MutexGuard<'_, EstimateCache> {
        self.preflight_estimates.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes results into `results` (`--results s3://…` uploads them: see [`crate::results`]).
    #[must_use]
    pub fn with_results(mut self, results: Arc<dyn ResultStore>) -> Self {
        self.results = results;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Executions> {
        self.executions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What `sql` would read from table files, from Parquet footers and file sizes (see
    /// [`ScanEstimate`]); the basis of [`Engine::estimate`] and of the pre-run budget check.
    pub async fn estimate_scan(&self, database: &str, sql: &str) -> Result<ScanEstimate, EngineError> {
        let (_ctx, plan) = self.physical_plan(database, sql).await?;
        tokio::task::spawn_blocking(move || estimate_scans(&plan))
            .await
            .map_err(|e| EngineError::Transient(format!("estimating scan size: {e}")))
    }

    /// Plans `sql` read-only against `database`.
    async fn physical_plan(
        &self,
        database: &str,
        sql: &str,
    ) -> Result<(SessionContext, Arc<dyn ExecutionPlan>), EngineError> {
        let (ctx, _) = warehouse::open_session(&self.data_dir, database).await.map_err(warehouse_error)?;
        let df =
            ctx.sql_with_options(sql, read_only()).await.map_err(|e| EngineError::Permanent(datafusion_message(&e)))?;
        let plan = df.create_physical_plan().await.map_err(|e| EngineError::Permanent(datafusion_message(&e)))?;
        Ok((ctx, plan))
    }
}

#[async_trait]
impl Engine for LocalEngine {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn start(&self, job: &QueryJob, waker: Waker) -> Result<String, EngineError> {
        job.result.prefix()?;
        let id = job.token.clone();
        if id.is_empty() {
            return Err(EngineError::Permanent("a query job needs an idempotency token".into()));
        }
        let mut executions = self.lock();
        executions.sweep(Instant::now());
        if executions.by_id.contains_key(&id) {
            return Ok(id);
        }
        executions.by_id.insert(
            id.clone(),
            Execution {
                state: ExecState::Running { bytes_scanned: None },
                abort: None,
                plan: None,
                finished_at: None,
                reported_at: None,
            },
        );
        let run = Run {
            id: id.clone(),
            job: job.clone(),
            data_dir: self.data_dir.clone(),
            results: Arc::clone(&self.results),
            executions: Arc::clone(&self.executions),
            max_query_memory: self.max_query_memory,
        };
        let slots = Arc::clone(&self.slots);
        // Spawned under the lock, so a racing start sees the entry and the handle is set before
        // anyone can cancel; the task itself takes the lock only when it finishes.
        let task = self.runtime.get_or_init(|| QueryRuntime::new(self.threads)).spawn(run.run_to_end(slots, waker));
        if let Some(e) = executions.by_id.get_mut(&id) {
            e.abort = Some(task.abort_handle());
        }
        Ok(id)
    }

    async fn poll(&self, id: &str) -> Result<ExecState, EngineError> {
        let mut executions = self.lock();
        let now = Instant::now();
        executions.sweep(now);
        let Some(e) = executions.by_id.get_mut(id) else {
            return Ok(ExecState::Unknown);
        };
        match &e.state {
            ExecState::Running { .. } => {
                Ok(ExecState::Running { bytes_scanned: e.plan.as_ref().and_then(scanned_bytes) })
            }
            state => {
                e.reported_at.get_or_insert(now);
                Ok(state.clone())
            }
        }
    }

    async fn cancel(&self, id: &str) -> Result<(), EngineError> {
        let mut executions = self.lock();
        if let Some(e) = executions.by_id.get_mut(id)
            && matches!(e.state, ExecState::Running { .. })
        {
            if let Some(abort) = e.abort.take() {
                abort.abort();
            }
            e.state = ExecState::Cancelled { reason: "cancelled".into() };
            e.plan = None;
            e.finished_at = Some(Instant::now());
            tracing::info!(id, "local query cancelled");
        }
        Ok(())
    }

    /// In a preflight child (see [`super::preflight`]), which also estimates the plan; the
    /// estimate is kept for the [`Engine::estimate`] call that follows.
    async fn plan(&self, database: &str, sql: &str) -> Result<(), EngineError> {
        match &self.preflight {
            Preflight::InProcess => self.physical_plan(database, sql).await.map(|_| ()),
            Preflight::Isolated { command, budget } => {
                let estimate = self.preflight_child(command, budget, database, sql).await?;
                if let Some(estimate) = estimate {
                    self.estimates().put(EstimateCache::key(database, sql), estimate, Instant::now());
                }
                Ok(())
            }
        }
    }

    /// From Parquet footers (see [`ScanEstimate`]). Local queries cost nothing per byte, so
    /// `cost_usd` is 0: the bytes are what `limits.maxBytesScanned` is checked against. Made by
    /// the preflight child of the preceding [`Engine::plan`] when there was one.
    async fn estimate(&self, database: &str, sql: &str) -> Result<Estimate, EngineError> {
        match &self.preflight {
            Preflight::InProcess => {
                let scan = self.estimate_scan(database, sql).await?;
                Ok(Estimate { bytes: scan.bytes, cost_usd: 0.0, method: scan.method() })
            }
            Preflight::Isolated { command, budget } => {
                let key = EstimateCache::key(database, sql);
                let kept = self.estimates().take(&key, Instant::now());
                let estimate = match kept {
                    Some(e) => e,
                    None => self.preflight_child(command, budget, database, sql).await?.ok_or_else(|| {
                        EngineError::Permanent("the planner process planned but did not estimate".into())
                    })?,
                };
                estimate.map_err(EngineError::from)
            }
        }
    }
}

/// The preflight child's work (see [`super::preflight`]): plans `sql` read-only against
/// `database` and estimates that plan, in this process.
pub async fn preflight_here(data_dir: &Path, database: &str, sql: &str) -> preflight::Answer {
    let protocol = preflight::PROTOCOL.to_string();
    let planned = async {
        let (ctx, _) = warehouse::open_session(data_dir, database).await.map_err(warehouse_error)?;
        let df =
            ctx.sql_with_options(sql, read_only()).await.map_err(|e| EngineError::Permanent(datafusion_message(&e)))?;
        df.create_physical_plan().await.map_err(|e| EngineError::Permanent(datafusion_message(&e)))
    }
    .await;
    match planned {
        Err(e) => preflight::Answer { protocol, plan: Some(e.into()), estimate: None },
        Ok(plan) => {
            let scan = estimate_scans(&plan);
            let estimate = Estimate { bytes: scan.bytes, cost_usd: 0.0, method: scan.method() };
            preflight::Answer { protocol, plan: None, estimate: Some(Ok(estimate)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    use super::testing::{SLOW, counting_waker, data_dir, engine, failure, job, lake, run, succeeded, wait};
    use crate::results::Artifact;

    #[test]
    fn kept_estimates_are_taken_once_and_bounded_in_count_and_age() {
        let now = Instant::now();
        let mut cache = EstimateCache::default();
        let e = |bytes| Ok(Estimate { bytes, cost_usd: 0.0, method: String::new() });
        let k = EstimateCache::key("tpch", "select 1");
        assert_ne!(k, EstimateCache::key("tpch2", "select 1"));
        cache.put(k.clone(), e(1), now);
        assert_eq!(cache.take(&k, now), Some(e(1)));
        assert_eq!(cache.take(&k, now), None, "taken once");
        cache.put(k.clone(), e(2), now);
        assert_eq!(cache.take(&k, now + ESTIMATE_CACHE_TTL), None, "stale");
        for i in 0..ESTIMATE_CACHE_CAP as u64 + 10 {
            cache.put(format!("k{i}"), e(i), now);
        }
        assert_eq!(cache.entries.len(), ESTIMATE_CACHE_CAP);
        assert_eq!(cache.take("k0", now), None, "the oldest went first");
        assert_eq!(cache.take(&format!("k{}", ESTIMATE_CACHE_CAP + 9), now), Some(e(ESTIMATE_CACHE_CAP as u64 + 9)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_preflight_answer_carries_the_plan_error_or_the_estimate() {
        let a = preflight_here(data_dir(), "tpch", "select n_name from nation where n_nationkey < 3").await;
        assert_eq!(a.plan, None);
        let est = a.estimate.unwrap().unwrap();
        assert!(est.bytes > 0 && est.method.starts_with("local:"), "{est:?}");
        let a = preflight_here(data_dir(), "tpch", "select nope from nation").await;
        assert!(a.plan.is_some_and(|f| !f.transient && f.message.contains("nope")));
        assert_eq!(a.estimate, None);
        // The estimate of a filter with an unsafe conjunct still prunes with the safe one.
        let results = tempfile::tempdir().unwrap();
        let engine = LocalEngine::new(lake(), results.path());
        let both = engine
            .estimate_scan("lake", "select payload from events where id < 1500 and length(payload) > 3")
            .await
            .unwrap();
        assert_eq!((both.row_groups, both.row_groups_kept), (10, 2), "{both:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_is_idempotent_per_token() {
        let (engine, results) = engine();
        let (waker, woken) = counting_waker();
        let first = job("same", "select count(*) from orders");
        let id = engine.start(&first, Arc::clone(&waker)).await.unwrap();
        // Same token, different result key: attaches, does not run again.
        let mut again = first.clone();
        again.result.attempt = 7;
        assert_eq!(engine.start(&again, Arc::clone(&waker)).await.unwrap(), id);
        succeeded(wait(&engine, &id).await);
        assert_eq!(engine.start(&again, waker).await.unwrap(), id);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert!(results.path().join("default/same/u/1-0.csv").exists());
        assert!(!results.path().join("default/same/u/1-7.csv").exists());
        assert_eq!(engine.poll("never-started").await.unwrap(), ExecState::Unknown);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_stops_a_running_query() {
        let (engine, _results) = engine();
        let (waker, woken) = counting_waker();
        let id = engine.start(&job("cancel", SLOW), waker).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        engine.cancel(&id).await.unwrap();
        assert!(matches!(engine.poll(&id).await.unwrap(), ExecState::Cancelled { .. }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(engine.poll(&id).await.unwrap(), ExecState::Cancelled { .. }));
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        engine.cancel("unknown").await.unwrap();
    }

    /// The second wall: what the guard refuses, the engine refuses too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_engine_itself_refuses_writes_settings_and_files() {
        let (engine, _results) = engine();
        let scratch = tempfile::tempdir().unwrap();
        let copy_target = scratch.path().join("x.csv");
        let cases = [
            ("ctas", "CREATE TABLE x AS SELECT 1".to_string(), "DDL not supported"),
            ("create", "CREATE TABLE x (a int)".to_string(), "DDL not supported"),
            ("view", "CREATE VIEW v AS SELECT 1".to_string(), "DDL not supported"),
            (
                "external",
                format!("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{}'", scratch.path().display()),
                "DDL not supported",
            ),
            ("drop", "DROP TABLE orders".to_string(), "DDL not supported"),
            ("insert", "INSERT INTO orders SELECT * FROM orders".to_string(), "DML not supported"),
            ("copy", format!("COPY (SELECT 1) TO '{}'", copy_target.display()), "DML not supported"),
            ("copy_table", format!("COPY orders TO '{}'", copy_target.display()), "DML not supported"),
            ("set", "SET datafusion.execution.batch_size = 1".to_string(), "Statement not supported"),
            ("into", "SELECT * INTO newtable FROM orders".to_string(), "DDL not supported"),
            ("passwd", "select * from '/etc/passwd'".to_string(), ""),
            ("passwd_quoted", "select * from \"/etc/passwd\"".to_string(), "/etc/passwd"),
            ("url", "select * from 'file:///etc/passwd'".to_string(), ""),
            ("schema", "select * from information_schema.tables".to_string(), "information_schema"),
        ];
        for (token, sql, fragment) in cases {
            let reason = failure(run(&engine, &job(token, &sql)).await);
            assert!(reason.contains(fragment), "{token}: {reason}");
            let planned = engine.plan("tpch", &sql).await.unwrap_err();
            assert!(matches!(planned, EngineError::Permanent(_)), "{token}");
        }
        assert!(!copy_target.exists());
        assert!(run_sql_collect(data_dir(), "tpch", "DROP TABLE orders").await.is_err());
        // And the tables are still there.
        succeeded(run(&engine, &job("still", "select count(*) from tpch.orders")).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plan_is_a_dry_run() {
        let (engine, results) = engine();
        engine.plan("tpch", "select * from orders join customer on o_custkey = c_custkey").await.unwrap();
        let err = engine.plan("tpch", "select nope from orders").await.unwrap_err();
        assert!(matches!(err, EngineError::Permanent(ref m) if m.contains("nope")), "{err}");
        assert!(matches!(engine.plan("sales", "select 1").await, Err(EngineError::Permanent(_))));
        assert_eq!(std::fs::read_dir(results.path()).unwrap().count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_are_read_only_from_the_results_dir() {
        let (engine, results) = engine();
        let store = LocalResults::new(results.path());
        let outcome = succeeded(run(&engine, &job("read", "select 1 as one")).await);
        assert_eq!(store.read(&outcome.output_location, None).await.unwrap().unwrap(), b"one\n1\n");
        for bad in ["/etc/passwd", "../../etc/passwd", &format!("{}/../x.csv", outcome.output_location)] {
            assert!(store.read(bad, None).await.is_err(), "{bad}");
        }
        let parquet = data_dir().join("tpch/region.parquet");
        assert!(store.read(&parquet.display().to_string(), None).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn artifacts_go_next_to_the_result_and_only_there() {
        let (engine, results) = engine();
        let store = LocalResults::new(results.path());
        let outcome = succeeded(run(&engine, &job("art", "select 1 as one")).await);
        let svg = store.put_next_to(&outcome.output_location, Artifact::Chart, b"<svg/>".to_vec()).await.unwrap();
        assert_eq!(svg, results.path().join("default/art/u/1-0.svg").display().to_string());
        assert_eq!(store.read(&svg, None).await.unwrap().unwrap(), b"<svg/>");
        // Again (a replayed reconcile): same place, overwritten.
        let again = store.put_next_to(&outcome.output_location, Artifact::Chart, b"<svg></svg>".to_vec()).await;
        assert_eq!(again.unwrap(), svg);
        assert_eq!(store.read(&svg, None).await.unwrap().unwrap(), b"<svg></svg>");
        assert_eq!(store.read(&svg, Some(3)).await.unwrap(), None);
        assert_eq!(store.read(&svg, Some(100)).await.unwrap().unwrap(), b"<svg></svg>");
        // Only next to a CSV result of this store.
        for location in [svg.as_str(), "/etc/passwd.csv", "relative.csv"] {
            let put = store.put_next_to(location, Artifact::Chart, b"x".to_vec()).await;
            assert!(matches!(put, Err(crate::results::ResultError { transient: false, .. })), "{location}");
        }
        let escape = format!("{}/../../x.csv", results.path().display());
        assert!(store.put_next_to(&escape, Artifact::Chart, b"x".to_vec()).await.is_err());
        // An s3:// location without --results says what to set.
        let err = store.read("s3://bucket/p/default/art/u/1-0.csv", None).await.unwrap_err().to_string();
        assert!(err.contains("--results"), "{err}");
    }

    #[tokio::test]
    async fn result_keys_cannot_escape_the_results_dir() {
        let (engine, _results) = engine();
        for bad in ["..", ".", "a/b", "", "a\\b"] {
            let mut j = job("esc", "select 1");
            j.result.uid = bad.into();
            let (waker, _) = counting_waker();
            assert!(matches!(engine.start(&j, waker).await, Err(EngineError::Permanent(_))), "{bad:?}");
        }
    }
}
