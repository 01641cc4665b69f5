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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::physical_plan::ParquetFileMetrics;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccessPlanFilter};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SQLOptions, SessionContext};
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::{collect_columns, conjunction_opt, split_conjunction};
use datafusion::physical_optimizer::pruning::{PruningPredicate, build_pruning_predicate};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::preflight::{self, Preflight};
use super::{Engine, EngineError, ExecState, QueryJob, QueryOutcome, Waker};
use crate::results::local::LocalResults;
use crate::results::{Artifact, PendingResult, ResultStore};
use crate::spec::quantity::{format_duration, human_bytes};
use crate::spec::{Estimate, ObjectKey, Preview};
use crate::warehouse::{self, WarehouseError};

/// Most cell text kept in a preview (the preview must fit a 400 KB DynamoDB item).
pub const PREVIEW_MAX_BYTES: usize = 256 * 1024;

/// How long a finished execution stays in memory after it was first polled as finished.
const EVICT_AFTER_POLLED: Duration = Duration::from_secs(5 * 60);

/// Most finished executions kept at all; beyond it the oldest are evicted even if never polled
/// (their requests then see `Unknown` and start again, which only re-reads).
const MAX_FINISHED: usize = 10_000;

/// How often the map is swept for evictable entries.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The read-only options every statement of this engine is planned with.
fn read_only() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

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

/// A Tokio runtime that can be dropped anywhere (also inside another runtime).
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    fn new(threads: usize) -> Self {
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sqlctl-query")
            .enable_all()
            .build();
        match built {
            Ok(rt) => QueryRuntime(Some(rt)),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the query runtime; running queries on the caller's runtime");
                QueryRuntime(None)
            }
        }
    }

    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(task),
            None => tokio::spawn(task),
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Default)]
struct Executions {
    by_id: HashMap<String, Execution>,
    last_sweep: Option<Instant>,
}

struct Execution {
    state: ExecState,
    abort: Option<tokio::task::AbortHandle>,
    /// The physical plan once built, so `poll` can report bytes scanned so far.
    plan: Option<Arc<dyn ExecutionPlan>>,
    finished_at: Option<Instant>,
    /// When `poll` first returned the final state; eviction counts from here.
    reported_at: Option<Instant>,
}

impl Executions {
    /// Records the final state, unless the execution was cancelled (or forgotten) meanwhile.
    fn finish(&mut self, id: &str, state: ExecState) -> bool {
        match self.by_id.get_mut(id) {
            Some(e) if matches!(e.state, ExecState::Running { .. }) => {
                e.state = state;
                e.abort = None;
                e.plan = None;
                e.finished_at = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Drops finished executions that were reported a while ago, and the oldest finished ones
    /// beyond [`MAX_FINISHED`]. Running executions are never dropped.
    fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|t| now.duration_since(t) < SWEEP_EVERY) && self.by_id.len() <= MAX_FINISHED {
            return;
        }
        self.last_sweep = Some(now);
        self.by_id.retain(|_, e| e.reported_at.is_none_or(|t| now.duration_since(t) < EVICT_AFTER_POLLED));
        let mut finished: Vec<(Instant, String)> =
            self.by_id.iter().filter_map(|(id, e)| e.finished_at.map(|t| (t, id.clone()))).collect();
        if finished.len() > MAX_FINISHED {
            finished.sort();
            for (_, id) in finished.iter().take(finished.len() - MAX_FINISHED) {
                self.by_id.remove(id);
            }
        }
    }
}

/// Why an execution failed (becomes `ExecState::Failed`).
struct RunError(String);

impl From<DataFusionError> for RunError {
    fn from(e: DataFusionError) -> Self {
        RunError(datafusion_message(&e))
    }
}

/// DataFusion's message without the backtrace noise some variants carry.
fn datafusion_message(e: &DataFusionError) -> String {
    e.to_string().trim().to_string()
}

fn warehouse_error(e: WarehouseError) -> EngineError {
    EngineError::Permanent(e.to_string())
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

/// Everything one execution task needs, cloned out of the engine.
struct Run {
    id: String,
    job: QueryJob,
    data_dir: PathBuf,
    results: Arc<dyn ResultStore>,
    executions: Arc<Mutex<Executions>>,
    max_query_memory: u64,
}

impl Run {
    /// A DataFusion error of this run; running out of the memory pool says which setting it was.
    fn error(&self, e: DataFusionError) -> RunError {
        if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
            return RunError(format!(
                "query needed more memory than one query may use ({}, --max-query-memory / SQLCTL_MAX_QUERY_MEMORY): {}",
                human_bytes(self.max_query_memory),
                datafusion_message(&e)
            ));
        }
        RunError::from(e)
    }

    /// Plans, checks the budget, streams the result to CSV and builds the outcome; the result is
    /// written but not yet committed (the outcome's location is set by the commit).
    async fn execute(&self, started: Instant) -> Result<(QueryOutcome, PendingResult), RunError> {
        let (ctx, _) = warehouse::open_session_limited(&self.data_dir, &self.job.database, self.max_query_memory)
            .await
            .map_err(|e| RunError(e.to_string()))?;
        let max_rows = self.job.limits.max_rows;
        let max_bytes = self.job.limits.max_result_bytes;
        let df = ctx.sql_with_options(&self.job.sql, read_only()).await.map_err(|e| self.error(e))?;
        // The approved limits.maxRows, applied on top of the approved statement (the SQL text is
        // untouched): one row more than kept, so the writer knows whether the result was cut.
        let fetch = usize::try_from(max_rows.saturating_add(1)).unwrap_or(usize::MAX);
        let df = df.limit(0, Some(fetch)).map_err(|e| self.error(e))?;
        let plan = df.create_physical_plan().await.map_err(|e| self.error(e))?;
        if let Some(e) = self.executions.lock().unwrap_or_else(|e| e.into_inner()).by_id.get_mut(&self.id) {
            e.plan = Some(Arc::clone(&plan));
        }

        // `limits.max_bytes_scanned` of a job is the ceiling the controller grants this run: the
        // request's `limits.maxBytesScanned`, or more when an approver accepted an estimate over
        // it (`approve --allow-over-budget`). A second wall behind the controller's check at
        // approval: the data may have grown since the request was estimated.
        let budget = self.job.limits.max_bytes_scanned;
        if let Some(budget) = budget {
            let p = Arc::clone(&plan);
            let estimate = tokio::task::spawn_blocking(move || estimate_scans(&p))
                .await
                .map_err(|e| RunError(format!("estimating scan size: {e}")))?;
            if estimate.bytes > budget {
                return Err(RunError(format!(
                    "query would scan about {} of table data, over the {} this run may scan (limits.maxBytesScanned, or what an over-budget approval accepted)",
                    human_bytes(estimate.bytes),
                    human_bytes(budget)
                )));
            }
        }

        let schema = plan.schema();
        let mut stream = execute_stream(Arc::clone(&plan), ctx.task_ctx()).map_err(|e| self.error(e))?;
        let mut out = self.results.create(&self.job.result, Artifact::Csv).await.map_err(|e| RunError(e.message))?;
        let mut preview = PreviewBuilder::new(&schema, max_rows);
        let too_large = |rows: u64| {
            RunError(format!(
                "the result grew past limits.maxResultBytes ({}) after {rows} rows, so it was not kept: raise limits.maxResultBytes, select fewer columns or rows, or lower limits.maxRows",
                human_bytes(max_bytes)
            ))
        };
        let header = csv_header(&schema);
        let mut written = header.len() as u64;
        if written > max_bytes {
            return Err(too_large(0));
        }
        out.write(header.as_bytes()).await.map_err(|e| RunError(e.message))?;
        let mut rows = 0u64;
        let mut truncated = false;
        let mut buf = String::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.error(e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            if rows >= max_rows {
                truncated = true;
                break;
            }
            let take = usize::try_from(max_rows - rows).unwrap_or(usize::MAX).min(batch.num_rows());
            let batch = if take < batch.num_rows() {
                truncated = true;
                batch.slice(0, take)
            } else {
                batch
            };
            buf.clear();
            let room = usize::try_from(max_bytes - written).unwrap_or(usize::MAX);
            if let Some(fitted) = render_batch(&batch, &mut buf, &mut preview, room)? {
                return Err(too_large(rows + fitted as u64));
            }
            out.write(buf.as_bytes()).await.map_err(|e| RunError(e.message))?;
            written += buf.len() as u64;
            rows += batch.num_rows() as u64;
            if let Some(budget) = budget {
                let scanned = scanned_bytes(&plan).unwrap_or(0);
                if scanned > budget {
                    return Err(RunError(format!(
                        "query scanned {} of table data, over the {} this run may scan (limits.maxBytesScanned, or what an over-budget approval accepted)",
                        human_bytes(scanned),
                        human_bytes(budget)
                    )));
                }
            }
            if truncated {
                break;
            }
        }
        drop(stream);
        let mut preview = preview.finish();
        preview.truncated |= truncated;
        let outcome = QueryOutcome {
            rows,
            bytes_scanned: scanned_bytes(&plan),
            cost_usd: None,
            duration_ms: started.elapsed().as_millis() as u64,
            output_location: String::new(),
            preview,
            truncated: truncated.then(|| format!("stopped at limits.maxRows ({max_rows} rows)")),
        };
        Ok((outcome, out))
    }
}

/// Collects at most `max_rows` rows and [`PREVIEW_MAX_BYTES`] of cell text.
struct PreviewBuilder {
    preview: Preview,
    max_rows: usize,
    bytes: usize,
}

impl PreviewBuilder {
    fn new(schema: &Schema, max_rows: u64) -> Self {
        PreviewBuilder {
            preview: Preview {
                columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
                rows: Vec::new(),
                truncated: false,
            },
            max_rows: usize::try_from(max_rows).unwrap_or(usize::MAX),
            bytes: 0,
        }
    }

    fn full(&self) -> bool {
        self.preview.truncated
    }

    /// Offers one row; once a row does not fit, the preview is marked truncated and closed.
    fn offer(&mut self, row: Vec<Option<String>>) {
        if self.preview.truncated {
            return;
        }
        let size: usize = row.iter().map(|c| c.as_ref().map_or(0, String::len)).sum();
        if self.preview.rows.len() >= self.max_rows || self.bytes + size > PREVIEW_MAX_BYTES {
            self.preview.truncated = true;
            return;
        }
        self.bytes += size;
        self.preview.rows.push(row);
    }

    fn finish(self) -> Preview {
        self.preview
    }
}

/// Appends `batch` as CSV rows to `out` and offers its rows to the preview. Stops as soon as
/// `out` holds more than `max_len` bytes and returns `Some(rows that fitted)`; `None` when the
/// whole batch was rendered.
fn render_batch(
    batch: &RecordBatch,
    out: &mut String,
    preview: &mut PreviewBuilder,
    max_len: usize,
) -> Result<Option<usize>, RunError> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RunError(format!("formatting results: {e}")))?;
    // Logical nulls: a `NullArray` (`SELECT NULL`) or a dictionary has no null buffer of its own.
    let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
    let mut cell = String::new();
    for row in 0..batch.num_rows() {
        let want_preview = !preview.full();
        let mut preview_row = Vec::with_capacity(if want_preview { formatters.len() } else { 0 });
        for (i, (nulls, formatter)) in nulls.iter().zip(&formatters).enumerate() {
            if i > 0 {
                out.push(',');
            }
            if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                if want_preview {
                    preview_row.push(None);
                }
                continue;
            }
            cell.clear();
            write!(cell, "{}", formatter.value(row)).map_err(|e| RunError(format!("formatting results: {e}")))?;
            if out.len() + cell.len() > max_len {
                return Ok(Some(row));
            }
            push_csv_field(out, &cell);
            if want_preview {
                preview_row.push(Some(cell.clone()));
            }
        }
        out.push('\n');
        if out.len() > max_len {
            return Ok(Some(row));
        }
        if want_preview {
            preview.offer(preview_row);
        }
    }
    Ok(None)
}

/// The header row of the CSV result.
fn csv_header(schema: &Schema) -> String {
    let mut out = String::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(&mut out, f.name());
    }
    out.push('\n');
    out
}

/// RFC 4180 field: quoted when it holds a separator, quote or line break, and when empty (so
/// an empty string differs from NULL, which is written as nothing at all).
fn push_csv_field(out: &mut String, value: &str) {
    if value.is_empty() || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// All file scans in a physical plan.
fn file_scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<dyn ExecutionPlan>> {
    let mut out = Vec::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if node.downcast_ref::<DataSourceExec>().is_some() {
            out.push(Arc::clone(&node));
        }
        stack.extend(node.children().into_iter().cloned());
    }
    out
}

/// Sum of the `bytes_scanned` metric of the plan's Parquet scans; `None` when no scan
/// reports it (no Parquet table read, or nothing executed yet).
fn scanned_bytes(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let mut total = None;
    for scan in file_scans(plan) {
        if let Some(v) = scan.metrics().and_then(|m| m.sum_by_name("bytes_scanned")) {
            *total.get_or_insert(0) += v.as_usize() as u64;
        }
    }
    total
}

/// What the file scans of a plan would read, from file metadata alone: the local engine's
/// scan estimate (see [`LocalEngine::estimate_scan`]).
///
/// It measures what DataFusion's `bytes_scanned` metric counts for a Parquet scan: the
/// compressed bytes of the column chunks it fetches. Those are the chunks of the columns the
/// scan projects or filters on, in the row groups that survive min/max pruning with the filter
/// the plan pushed into the scan; a CSV file is read whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanEstimate {
    pub bytes: u64,
    /// Parquet files whose footers were read.
    pub parquet_files: usize,
    /// Row groups in those files, and how many of them survive min/max pruning.
    pub row_groups: usize,
    pub row_groups_kept: usize,
    /// Parquet scans that carried a filter usable against row-group statistics.
    pub pruning_scans: usize,
    /// CSV files (counted whole).
    pub csv_files: usize,
    /// Parquet files whose footer could not be read (counted whole).
    pub unreadable: usize,
}

impl ScanEstimate {
    /// How the estimate was made, for `status.estimate.method`.
    pub fn method(&self) -> String {
        let plural = |n: usize, one: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") };
        let mut parts = Vec::new();
        if self.parquet_files > 0 {
            let groups = if self.pruning_scans > 0 {
                format!(
                    "{} of {} kept by min/max statistics of the filter",
                    self.row_groups_kept,
                    plural(self.row_groups, "row group")
                )
            } else {
                format!("{}, no filter to prune with", plural(self.row_groups, "row group"))
            };
            parts.push(format!(
                "Parquet footers: compressed column chunks read of {} ({groups})",
                plural(self.parquet_files, "file")
            ));
        }
        if self.csv_files > 0 {
            parts.push(format!("{} counted whole", plural(self.csv_files, "CSV file")));
        }
        if self.unreadable > 0 {
            parts.push(format!("{} with an unreadable footer counted whole", plural(self.unreadable, "Parquet file")));
        }
        if parts.is_empty() {
            return "local: the plan reads no table files (answered from metadata or constants)".into();
        }
        format!("local: {}", parts.join("; "))
    }
}

/// See [`ScanEstimate`]. Blocking: reads Parquet footers.
fn estimate_scans(plan: &Arc<dyn ExecutionPlan>) -> ScanEstimate {
    let mut est = ScanEstimate::default();
    for scan in file_scans(plan) {
        let Some(exec) = scan.downcast_ref::<DataSourceExec>() else { continue };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else { continue };
        let source = &config.file_source;
        let parquet = source.file_type() == "parquet";
        let columns = scan_columns(config, &scan);
        let file_schema = Arc::clone(source.table_schema().file_schema());
        // The filter DataFusion pushed into the scan (`WHERE` conjuncts, and dynamic join/TopK
        // filters, which are still `true` before execution): the same pruning predicate the
        // Parquet opener builds from it, evaluated here against each footer's statistics.
        // Only conjuncts that are cheap to evaluate on statistics are used (the rest are
        // dropped, which can only make the estimate larger).
        let pruning = if parquet {
            source
                .filter()
                .and_then(|f| safe_for_pruning(&f))
                .and_then(|f| build_pruning_predicate(f, &file_schema, &Count::new()))
        } else {
            None
        };
        if pruning.is_some() {
            est.pruning_scans += 1;
        }
        // A file split into byte ranges across partitions appears once per range: count it once.
        let mut seen = std::collections::HashSet::new();
        for file in config.file_groups.iter().flat_map(|g| g.iter()) {
            if !seen.insert(file.object_meta.location.clone()) {
                continue;
            }
            let whole = file.object_meta.size;
            if !parquet {
                est.csv_files += 1;
                est.bytes += whole;
                continue;
            }
            let path = PathBuf::from(format!("/{}", file.object_meta.location));
            match parquet_file_estimate(&path, &columns, &file_schema, pruning.as_deref()) {
                Some(f) => {
                    est.parquet_files += 1;
                    est.row_groups += f.row_groups;
                    est.row_groups_kept += f.kept;
                    est.bytes += f.bytes;
                }
                None => {
                    est.unreadable += 1;
                    est.bytes += whole;
                }
            }
        }
    }
    est
}

/// Deepest expression [`safe_for_pruning`] looks into; anything deeper is dropped.
const MAX_SAFE_DEPTH: usize = 64;

/// The conjuncts of a scan filter that are safe to evaluate on min/max statistics: column
/// references, literals, comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL`, `IN` lists of literals,
/// casts, and `LIKE` with a literal pattern, each made of safe parts. Function calls, arithmetic,
/// `CASE` and anything else are dropped, so a user's expression is never evaluated by the
/// estimate (the pruning only gets weaker: the estimate can only grow). `None` when nothing is
/// left.
pub fn safe_for_pruning(filter: &Arc<dyn PhysicalExpr>) -> Option<Arc<dyn PhysicalExpr>> {
    conjunction_opt(split_conjunction(filter).into_iter().filter(|c| is_safe(c, 0)).cloned())
}

fn is_safe(e: &Arc<dyn PhysicalExpr>, depth: usize) -> bool {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{
        BinaryExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal, NotExpr, TryCastExpr,
    };
    if depth > MAX_SAFE_DEPTH {
        return false;
    }
    let safe = |c: &Arc<dyn PhysicalExpr>| is_safe(c, depth + 1);
    if e.is::<Column>() || e.is::<Literal>() {
        return true;
    }
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        let op_ok = matches!(
            b.op(),
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::And
                | Operator::Or
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom
        );
        return op_ok && safe(b.left()) && safe(b.right());
    }
    if let Some(n) = e.downcast_ref::<NotExpr>() {
        return safe(n.arg());
    }
    if let Some(n) = e.downcast_ref::<IsNullExpr>() {
        return safe(n.arg());
    }
    if let Some(n) = e.downcast_ref::<IsNotNullExpr>() {
        return safe(n.arg());
    }
    if let Some(i) = e.downcast_ref::<InListExpr>() {
        return safe(i.expr()) && i.list().iter().all(|v| v.is::<Literal>());
    }
    if let Some(c) = e.downcast_ref::<CastExpr>() {
        return safe(c.expr());
    }
    if let Some(c) = e.downcast_ref::<TryCastExpr>() {
        return safe(c.expr());
    }
    if let Some(l) = e.downcast_ref::<LikeExpr>() {
        return safe(l.expr()) && l.pattern().is::<Literal>();
    }
    false
}

/// Top-level columns a file scan reads: those it projects plus those its pushed-down filter
/// needs (with `pushdown_filters` those are read without being projected).
fn scan_columns(config: &FileScanConfig, scan: &Arc<dyn ExecutionPlan>) -> std::collections::HashSet<String> {
    let table = config.file_source.table_schema().table_schema();
    let mut columns: std::collections::HashSet<String> = match config.file_source.projection() {
        Some(p) => {
            p.column_indices().into_iter().filter_map(|i| table.fields().get(i)).map(|f| f.name().clone()).collect()
        }
        None => scan.schema().fields().iter().map(|f| f.name().clone()).collect(),
    };
    if let Some(filter) = config.file_source.filter() {
        columns.extend(collect_columns(&filter).into_iter().map(|c| c.name().to_string()));
    }
    columns
}

/// One Parquet file's share of a scan estimate.
struct FileEstimate {
    bytes: u64,
    row_groups: usize,
    kept: usize,
}

/// Compressed bytes of the column chunks of `columns` (top-level names) in the row groups of
/// `path` that `pruning` keeps (all of them without a predicate). None when the footer cannot
/// be read.
fn parquet_file_estimate(
    path: &Path,
    columns: &std::collections::HashSet<String>,
    file_schema: &Schema,
    pruning: Option<&PruningPredicate>,
) -> Option<FileEstimate> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).ok()?).ok()?;
    let meta = reader.metadata();
    let groups = meta.row_groups();
    let mut plan = RowGroupAccessPlanFilter::new(ParquetAccessPlan::new_all(groups.len()));
    if let Some(predicate) = pruning {
        let metrics = ParquetFileMetrics::new(0, &path.to_string_lossy(), &ExecutionPlanMetricsSet::new());
        plan.prune_by_statistics(file_schema, meta.file_metadata().schema_descr(), groups, predicate, &metrics);
    }
    let mut bytes = 0i64;
    let mut kept = 0;
    for i in plan.row_group_indexes() {
        kept += 1;
        for chunk in groups[i].columns() {
            let top = chunk.column_path().parts().first()?;
            if columns.contains(top) {
                bytes += chunk.compressed_size();
            }
        }
    }
    Some(FileEstimate { bytes: u64::try_from(bytes).ok()?, row_groups: groups.len(), kept })
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
        let task = self.runtime.get_or_init(|| QueryRuntime::new(self.threads)).spawn(async move {
            let key: ObjectKey = run.job.key.clone();
            let _slot = slots.acquire_owned().await;
            let started = Instant::now();
            let timeout = Duration::from_millis(run.job.limits.timeout_ms);
            tracing::info!(id = %run.id, request = %key, database = %run.job.database, "local query started");
            // The commit (an upload to S3, if any) is part of the run: it counts against the
            // timeout, and the execution succeeds only once the result is where its location says.
            let work = async {
                let (mut outcome, pending) = run.execute(started).await.map_err(|RunError(reason)| (reason, false))?;
                outcome.output_location = run.results.commit(pending).await.map_err(|e| (e.message, e.transient))?;
                Ok::<_, (String, bool)>(outcome)
            };
            let state = match tokio::time::timeout(timeout, work).await {
                Ok(Ok(outcome)) => ExecState::Succeeded(outcome),
                Ok(Err((reason, transient))) => ExecState::Failed { reason, transient },
                Err(_) => ExecState::Failed {
                    reason: format!("query exceeded its timeout of {}", format_duration(timeout)),
                    transient: false,
                },
            };
            match &state {
                ExecState::Succeeded(o) => {
                    tracing::info!(id = %run.id, request = %key, rows = o.rows, duration_ms = o.duration_ms, "local query succeeded")
                }
                ExecState::Failed { reason, .. } => tracing::info!(id = %run.id, request = %key, reason, "local query failed"),
                _ => {}
            }
            let recorded = run.executions.lock().unwrap_or_else(|e| e.into_inner()).finish(&run.id, state);
            if recorded {
                waker(&key);
            }
        });
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

/// A scan estimate next to what executing the very same plan read: how `sqlctl eval
/// --estimates` measures the estimate's error.
#[derive(Clone, Debug)]
pub struct ScanMeasurement {
    pub estimate: ScanEstimate,
    /// DataFusion's `bytes_scanned` after the run (the same quantity the estimate forecasts).
    pub scanned: u64,
    /// What DataFusion skipped at run time that footers cannot foresee (row groups pruned by
    /// dynamic join/TopK filters or a limit, pages pruned by the page index), from its metrics.
    pub runtime_pruning: Vec<String>,
}

/// Plans `sql`, estimates the plan (as [`Engine::estimate`] does), runs it to the end and reads
/// its scan metrics. The result rows are discarded.
pub async fn measure_scan(data_dir: &Path, database: &str, sql: &str) -> Result<ScanMeasurement, EngineError> {
    let permanent = |e: DataFusionError| EngineError::Permanent(datafusion_message(&e));
    let (ctx, _) = warehouse::open_session(data_dir, database).await.map_err(warehouse_error)?;
    let df = ctx.sql_with_options(sql, read_only()).await.map_err(permanent)?;
    let plan = df.create_physical_plan().await.map_err(permanent)?;
    let p = Arc::clone(&plan);
    let estimate = tokio::task::spawn_blocking(move || estimate_scans(&p))
        .await
        .map_err(|e| EngineError::Transient(format!("estimating scan size: {e}")))?;
    let mut stream = execute_stream(Arc::clone(&plan), ctx.task_ctx()).map_err(permanent)?;
    while let Some(batch) = stream.next().await {
        batch.map_err(permanent)?;
    }
    drop(stream);
    let scanned = scanned_bytes(&plan).unwrap_or(0);
    let (mut dynamic, mut limit, mut pages, mut page_rows, mut ranges) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for scan in file_scans(&plan) {
        let Some(metrics) = scan.metrics() else { continue };
        for m in metrics.iter() {
            use datafusion::physical_plan::metrics::MetricValue;
            match m.value() {
                MetricValue::Count { name, count } if name == "row_groups_pruned_dynamic_filter" => {
                    dynamic += count.value()
                }
                MetricValue::PruningMetrics { name, pruning_metrics } => match name.as_ref() {
                    "limit_pruned_row_groups" => limit += pruning_metrics.pruned(),
                    "page_index_pages_pruned" => pages += pruning_metrics.pruned(),
                    "page_index_rows_pruned" => page_rows += pruning_metrics.pruned(),
                    "files_ranges_pruned_statistics" => ranges += pruning_metrics.pruned(),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let mut runtime_pruning = Vec::new();
    if dynamic > 0 {
        runtime_pruning.push(format!("{dynamic} row groups skipped by dynamic (join/TopK) filters"));
    }
    if limit > 0 {
        runtime_pruning.push(format!("{limit} row groups skipped by the limit"));
    }
    if pages > 0 {
        runtime_pruning.push(format!("{pages} pages ({page_rows} rows) skipped by the page index"));
    }
    if ranges > 0 {
        runtime_pruning.push(format!("{ranges} file ranges skipped at run time"));
    }
    Ok(ScanMeasurement { estimate, scanned, runtime_pruning })
}

/// Runs `sql` read-only against `database` of `data_dir` with the engine's session setup and
/// returns the column names and every row rendered as the preview renders cells (NULL →
/// `None`). For tests that compare the engine with an independent run.
pub async fn run_sql_collect(
    data_dir: &Path,
    database: &str,
    sql: &str,
) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), EngineError> {
    let (ctx, _) = warehouse::open_session(data_dir, database).await.map_err(warehouse_error)?;
    let df =
        ctx.sql_with_options(sql, read_only()).await.map_err(|e| EngineError::Permanent(datafusion_message(&e)))?;
    let columns = df.schema().fields().iter().map(|f| f.name().clone()).collect();
    let batches = df.collect().await.map_err(|e| EngineError::Permanent(datafusion_message(&e)))?;
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in &batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Permanent(format!("formatting results: {e}")))?;
        let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
        for row in 0..batch.num_rows() {
            rows.push(
                nulls
                    .iter()
                    .zip(&formatters)
                    .map(|(n, f)| (!n.as_ref().is_some_and(|n| n.is_null(row))).then(|| f.value(row).to_string()))
                    .collect(),
            );
        }
    }
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::aws::S3Uri;
    use crate::results::ResultKey;
    use crate::results::s3::S3Results;
    use crate::spec::EffectiveLimits;

    /// One scale-0.01 TPC-H warehouse shared by every engine test (built once).
    fn data_dir() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            warehouse::init_tpch(dir.path(), "tpch", 0.01, &mut |_, _| {}).unwrap();
            dir
        })
        .path()
    }

    fn engine() -> (LocalEngine, tempfile::TempDir) {
        let results = tempfile::tempdir().unwrap();
        (LocalEngine::new(data_dir(), results.path()), results)
    }

    fn job(token: &str, sql: &str) -> QueryJob {
        QueryJob {
            key: ObjectKey::new("default", token),
            token: token.to_string(),
            database: "tpch".into(),
            sql: sql.into(),
            limits: EffectiveLimits {
                max_rows: 1000,
                max_bytes_scanned: None,
                timeout_ms: 120_000,
                max_result_bytes: 1 << 30,
            },
            result: ResultKey {
                namespace: "default".into(),
                name: token.into(),
                uid: "u".into(),
                generation: 1,
                attempt: 0,
            },
        }
    }

    fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = Arc::clone(&n);
        (
            Arc::new(move |_: &ObjectKey| {
                m.fetch_add(1, Ordering::SeqCst);
            }),
            n,
        )
    }

    async fn wait(engine: &LocalEngine, id: &str) -> ExecState {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match engine.poll(id).await.unwrap() {
                ExecState::Running { .. } if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                state => return state,
            }
        }
    }

    async fn run(engine: &LocalEngine, job: &QueryJob) -> ExecState {
        let (waker, _) = counting_waker();
        let id = engine.start(job, waker).await.unwrap();
        wait(engine, &id).await
    }

    fn succeeded(state: ExecState) -> QueryOutcome {
        match state {
            ExecState::Succeeded(o) => o,
            other => panic!("expected success, got {other:?}"),
        }
    }

    fn failure(state: ExecState) -> String {
        match state {
            ExecState::Failed { reason, transient } => {
                assert!(!transient);
                reason
            }
            other => panic!("expected failure, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_join_with_aggregates_writes_csv_and_a_preview() {
        let (engine, results) = engine();
        let sql = "select n.n_name, count(*) as orders, sum(o.o_totalprice) as total, min(o.o_orderdate) as first \
                   from orders o join customer c on o.o_custkey = c.c_custkey join nation n on c.c_nationkey = n.n_nationkey \
                   group by n.n_name order by n.n_name";
        let (waker, woken) = counting_waker();
        let id = engine.start(&job("join", sql), waker).await.unwrap();
        assert_eq!(id, "join");
        let outcome = succeeded(wait(&engine, &id).await);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(outcome.rows, 25);
        assert_eq!(outcome.cost_usd, None);
        assert!(outcome.bytes_scanned.is_some_and(|b| b > 0), "{:?}", outcome.bytes_scanned);
        assert_eq!(outcome.preview.columns, ["n_name", "orders", "total", "first"]);
        assert_eq!(outcome.preview.rows.len(), 25);
        assert!(!outcome.preview.truncated);
        let first = &outcome.preview.rows[0];
        assert_eq!(first[0].as_deref(), Some("ALGERIA"));
        let total = first[2].as_deref().unwrap();
        assert!(total.split_once('.').is_some_and(|(_, cents)| cents.len() == 2), "decimal sum {total}");
        assert!(first[3].as_deref().unwrap().starts_with("199"), "date {:?}", first[3]);

        // The CSV holds a header and every row, under results_dir/<result key>.csv.
        let path = results.path().join("default/join/u/1-0.csv");
        assert_eq!(outcome.output_location, path.display().to_string());
        let csv = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "n_name,orders,total,first");
        assert_eq!(lines.len(), 26);
        // The same rows as an independent run.
        let (columns, rows) = run_sql_collect(data_dir(), "tpch", sql).await.unwrap();
        assert_eq!(columns, outcome.preview.columns);
        assert_eq!(rows, outcome.preview.rows);
        let rendered: Vec<String> =
            rows.iter().map(|r| r.iter().map(|c| c.clone().unwrap()).collect::<Vec<_>>().join(",")).collect();
        assert_eq!(lines[1..], rendered.iter().map(String::as_str).collect::<Vec<_>>()[..]);
        // No temp file is left next to it.
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["1-0.csv"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decimal_sums_and_date_filters_match_an_independent_run() {
        let (engine, _results) = engine();
        let sql = "select sum(l_extendedprice) as revenue, count(*) as n from tpch.lineitem where l_shipdate < date '1995-01-01'";
        let outcome = succeeded(run(&engine, &job("sum", sql)).await);
        let (_, rows) = run_sql_collect(data_dir(), "tpch", sql).await.unwrap();
        assert_eq!(outcome.preview.rows, rows);
        assert!(rows[0][0].as_deref().unwrap().contains('.'));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unbounded_output_the_csv_and_the_preview_stop_at_max_rows_and_the_preview_is_capped_by_bytes() {
        let (engine, results) = engine();
        let mut j =
            job("cap", "select n_nationkey, n_name, null as nothing, '' as empty from nation order by n_nationkey");
        j.limits.max_rows = 10;
        let outcome = succeeded(run(&engine, &j).await);
        assert_eq!(outcome.rows, 10);
        assert_eq!(outcome.preview.rows.len(), 10);
        assert!(outcome.preview.truncated);
        assert_eq!(outcome.truncated.as_deref(), Some("stopped at limits.maxRows (10 rows)"));
        assert_eq!(outcome.preview.rows[0], [Some("0".into()), Some("ALGERIA".into()), None, Some(String::new())]);
        let csv = std::fs::read_to_string(results.path().join("default/cap/u/1-0.csv")).unwrap();
        assert_eq!(csv.lines().count(), 11, "header and the first 10 rows of the ORDER BY");
        assert_eq!(csv.lines().nth(1).unwrap(), "0,ALGERIA,,\"\"");
        assert!(csv.lines().nth(10).unwrap().starts_with("9,"), "{csv}");

        // A big scan stops at maxRows too, in the file and in what is counted.
        let mut j = job("few", "select * from lineitem");
        j.limits.max_rows = 5;
        let outcome = succeeded(run(&engine, &j).await);
        assert_eq!(outcome.rows, 5);
        let csv = std::fs::read_to_string(results.path().join("default/few/u/1-0.csv")).unwrap();
        assert_eq!(csv.lines().count(), 6);

        // Exactly maxRows rows is not a truncation.
        let mut j = job("five", "select * from region");
        j.limits.max_rows = 5;
        let outcome = succeeded(run(&engine, &j).await);
        assert_eq!((outcome.rows, outcome.preview.truncated, outcome.truncated), (5, false, None));

        let j = job("bytes", "select repeat('x', 10000) as big from lineitem limit 100");
        let outcome = succeeded(run(&engine, &j).await);
        assert_eq!(outcome.rows, 100);
        assert!(outcome.preview.truncated);
        assert_eq!(outcome.preview.rows.len(), PREVIEW_MAX_BYTES / 10_000);

        let outcome = succeeded(run(&engine, &job("exact", "select * from region")).await);
        assert_eq!(outcome.preview.rows.len(), 5);
        assert!(!outcome.preview.truncated);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unbounded_output_a_result_over_max_result_bytes_fails_and_keeps_no_file() {
        let (engine, results) = engine();
        let mut j = job("huge", "select l_comment from lineitem");
        j.limits.max_rows = crate::spec::MAX_MAX_ROWS;
        j.limits.max_result_bytes = 64 * 1024;
        let reason = failure(run(&engine, &j).await);
        assert!(reason.contains("limits.maxResultBytes (64.0 KiB)") && reason.contains("rows"), "{reason}");
        let dir = results.path().join("default/huge/u");
        let left: Vec<_> = std::fs::read_dir(&dir).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(left.is_empty(), "no partial or temp file: {left:?}");
        // One cell larger than the whole allowance stops the writer before it is copied.
        let mut j = job("cell", "select repeat('x', 100000) as big");
        j.limits.max_result_bytes = 1000;
        assert!(failure(run(&engine, &j).await).contains("after 0 rows"));
        // Within the limit: written whole.
        let mut j = job("fits", "select n_name from nation");
        j.limits.max_result_bytes = 64 * 1024;
        assert_eq!(succeeded(run(&engine, &j).await).rows, 25);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_over_the_memory_pool_fails_and_names_the_setting() {
        let results = tempfile::tempdir().unwrap();
        let engine = LocalEngine::new(data_dir(), results.path()).with_max_query_memory(1 << 20);
        // A hash join's build side cannot spill: it needs more than 1 MiB here.
        let sql = "select count(*) from lineitem a join lineitem b on a.l_comment = b.l_comment and a.l_orderkey = b.l_orderkey";
        let reason = failure(run(&engine, &job("pool", sql)).await);
        assert!(reason.contains("--max-query-memory") && reason.contains("1.0 MiB"), "{reason}");
        // The default pool runs it.
        let (engine, _r) = self::engine();
        assert!(engine.max_query_memory >= 256 << 20);
        succeeded(run(&engine, &job("pool", sql)).await);
    }

    #[test]
    fn only_safe_conjuncts_are_evaluated_on_statistics() {
        use datafusion::arrow::datatypes::{DataType, Field};
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{
            BinaryExpr, CaseExpr, CastExpr, InListExpr, IsNullExpr, LikeExpr, NotExpr, col, lit,
        };
        let schema =
            Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("kind", DataType::Utf8, true)]);
        let id = col("id", &schema).unwrap();
        let kind = col("kind", &schema).unwrap();
        let bin = |l: Arc<dyn PhysicalExpr>, op, r: Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(l, op, r))
        };
        let safe: Vec<Arc<dyn PhysicalExpr>> = vec![
            bin(Arc::clone(&id), Operator::Lt, lit(1500i64)),
            bin(
                bin(Arc::clone(&id), Operator::GtEq, lit(1i64)),
                Operator::Or,
                Arc::new(NotExpr::new(Arc::new(IsNullExpr::new(Arc::clone(&kind))))),
            ),
            Arc::new(InListExpr::try_new(Arc::clone(&id), vec![lit(1i64), lit(2i64)], false, &schema).unwrap()),
            Arc::new(LikeExpr::new(false, false, Arc::clone(&kind), lit("k%"))),
            bin(Arc::new(CastExpr::new(Arc::clone(&id), DataType::Utf8, None)), Operator::Eq, lit("7")),
        ];
        let unsafe_: Vec<Arc<dyn PhysicalExpr>> = vec![
            // Arithmetic, a non-literal pattern or list item, CASE: never evaluated.
            bin(bin(Arc::clone(&id), Operator::Plus, lit(1i64)), Operator::Lt, lit(5i64)),
            Arc::new(LikeExpr::new(false, false, Arc::clone(&kind), Arc::clone(&kind))),
            Arc::new(InListExpr::try_new(Arc::clone(&id), vec![lit(1i64), Arc::clone(&id)], false, &schema).unwrap()),
            Arc::new(
                CaseExpr::try_new(
                    None,
                    vec![(bin(Arc::clone(&id), Operator::Eq, lit(1i64)), lit(true))],
                    Some(lit(false)),
                )
                .unwrap(),
            ),
        ];
        for e in &safe {
            assert_eq!(safe_for_pruning(e).as_ref(), Some(e), "{e}");
        }
        for e in &unsafe_ {
            assert_eq!(safe_for_pruning(e), None, "{e}");
        }
        // A conjunction keeps its safe conjuncts only.
        let all = conjunction_opt(safe.iter().chain(&unsafe_).cloned()).unwrap();
        let kept = safe_for_pruning(&all).unwrap();
        assert_eq!(split_conjunction(&kept).len(), safe.len(), "{kept}");
        // Too deep to look at: dropped.
        let mut deep = bin(Arc::clone(&id), Operator::Eq, lit(0i64));
        for i in 1..200i64 {
            deep = bin(deep, Operator::Or, bin(Arc::clone(&id), Operator::Eq, lit(i)));
        }
        assert_eq!(safe_for_pruning(&deep), None);
    }

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
    async fn csv_fields_are_quoted_when_needed() {
        let (engine, results) = engine();
        let sql = "select 'a,b' as \"x,y\", 'say \"hi\"' as q, 'line\nbreak' as l";
        succeeded(run(&engine, &job("quote", sql)).await);
        let csv = std::fs::read_to_string(results.path().join("default/quote/u/1-0.csv")).unwrap();
        assert_eq!(csv, "\"x,y\",q,l\n\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\"\n");
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

    /// Ten billion generated rows: minutes of work, in batches that yield (so it can be stopped).
    const SLOW: &str = "select sum(value) from range(10000000000)";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_over_its_timeout_fails() {
        let (engine, results) = engine();
        let mut j = job("slow", SLOW);
        j.limits.timeout_ms = 300;
        let started = Instant::now();
        let reason = failure(run(&engine, &j).await);
        assert_eq!(reason, "query exceeded its timeout of 300ms");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(!results.path().join("default/slow/u/1-0.csv").exists());
        let leftovers = std::fs::read_dir(results.path().join("default/slow/u")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "temp file left behind");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn planning_errors_fail_with_datafusion_s_message() {
        let (engine, _results) = engine();
        let reason = failure(run(&engine, &job("nocol", "select no_such_column from orders")).await);
        assert!(reason.contains("no_such_column"), "{reason}");
        let reason = failure(run(&engine, &job("notable", "select * from nope")).await);
        assert!(reason.contains("nope"), "{reason}");
        let mut j = job("nodb", "select 1");
        j.database = "sales".into();
        let reason = failure(run(&engine, &j).await);
        assert!(reason.contains("sqlctl init"), "{reason}");
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
    async fn the_scan_budget_is_enforced_from_file_sizes() {
        let (engine, _results) = engine();
        let narrow = engine.estimate_scan("tpch", "select l_orderkey from lineitem").await.unwrap().bytes;
        let wide = engine.estimate_scan("tpch", "select * from lineitem").await.unwrap().bytes;
        let file = std::fs::metadata(data_dir().join("tpch/lineitem.parquet")).unwrap().len();
        assert!(0 < narrow && narrow < wide && wide <= file, "{narrow} {wide} {file}");

        let mut j = job("budget", "select * from lineitem");
        j.limits.max_bytes_scanned = Some(narrow);
        let reason = failure(run(&engine, &j).await);
        assert!(reason.contains("this run may scan") && reason.contains("maxBytesScanned"), "{reason}");

        let mut j = job("within", "select count(*) from region");
        j.limits.max_bytes_scanned = Some(wide);
        succeeded(run(&engine, &j).await);
    }

    /// A database `lake` with `events.parquet` (10,000 rows sorted by `id`, row groups of 1,000,
    /// page statistics) and `notes.csv`.
    fn lake() -> &'static Path {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        DIR.get_or_init(|| {
            use datafusion::arrow::array::{Int64Array, StringArray};
            use datafusion::arrow::datatypes::{DataType, Field};
            use datafusion::parquet::arrow::ArrowWriter;
            use datafusion::parquet::file::properties::WriterProperties;
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("lake");
            std::fs::create_dir_all(&db).unwrap();
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("payload", DataType::Utf8, false),
            ]));
            let props = WriterProperties::builder().set_max_row_group_row_count(Some(1000)).build();
            let file = std::fs::File::create(db.join("events.parquet")).unwrap();
            let mut w = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props)).unwrap();
            for start in (0..10_000i64).step_by(1000) {
                let ids: Vec<i64> = (start..start + 1000).collect();
                let kinds: Vec<String> = ids.iter().map(|i| format!("k{}", i % 7)).collect();
                let payloads: Vec<String> =
                    ids.iter().map(|i| format!("payload-{i}-{}", "x".repeat((i % 50) as usize))).collect();
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from(ids)),
                        Arc::new(StringArray::from(kinds)),
                        Arc::new(StringArray::from(payloads)),
                    ],
                )
                .unwrap();
                w.write(&batch).unwrap();
            }
            w.close().unwrap();
            std::fs::write(db.join("notes.csv"), "id,note\n1,first\n2,second\n").unwrap();
            dir
        })
        .path()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_selective_filter_on_a_sorted_column_prunes_row_groups_from_the_estimate() {
        let results = tempfile::tempdir().unwrap();
        let engine = LocalEngine::new(lake(), results.path());
        let all = engine.estimate_scan("lake", "select payload from events").await.unwrap();
        assert_eq!((all.row_groups, all.row_groups_kept, all.pruning_scans), (10, 10, 0));
        let narrow = engine.estimate_scan("lake", "select payload from events where id < 1500").await.unwrap();
        assert_eq!((narrow.row_groups, narrow.row_groups_kept, narrow.pruning_scans), (10, 2, 1));
        assert!(narrow.bytes < all.bytes / 3, "{narrow:?} vs {all:?}");
        // A filter on an unsorted column keeps every row group (min/max cannot exclude any).
        let kinds = engine.estimate_scan("lake", "select payload from events where kind = 'k3'").await.unwrap();
        assert_eq!(kinds.row_groups_kept, 10);
        // Nothing matches: nothing is read.
        let none = engine.estimate_scan("lake", "select payload from events where id > 99999").await.unwrap();
        assert_eq!((none.row_groups_kept, none.bytes), (0, 0));
        let method = narrow.method();
        assert!(method.contains("2 of 10 row groups kept by min/max statistics"), "{method}");

        // The estimate measures what the engine reads: DataFusion's bytes_scanned of the run.
        for sql in [
            "select payload from events",
            "select sum(id) from events where id < 1500",
            "select kind, payload from events where id between 2000 and 4999",
        ] {
            let est = engine.estimate("lake", sql).await.unwrap();
            let mut j = QueryJob { database: "lake".into(), ..job(&format!("m{}", sql.len()), sql) };
            // The whole result: a run stops reading at limits.maxRows.
            j.limits.max_rows = crate::spec::MAX_MAX_ROWS;
            let actual = succeeded(run(&engine, &j).await).bytes_scanned.unwrap();
            let error = (est.bytes as f64 - actual as f64).abs() / actual as f64;
            assert!(error < 0.25, "{sql}: estimate {} vs {actual} scanned", est.bytes);
            assert_eq!(est.cost_usd, 0.0, "local queries are not charged per byte");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn csv_tables_are_estimated_at_their_file_size() {
        let results = tempfile::tempdir().unwrap();
        let engine = LocalEngine::new(lake(), results.path());
        let size = std::fs::metadata(lake().join("lake/notes.csv")).unwrap().len();
        let est = engine.estimate_scan("lake", "select note from notes where id = 1").await.unwrap();
        assert_eq!((est.bytes, est.csv_files, est.parquet_files), (size, 1, 0));
        assert!(est.method().contains("1 CSV file counted whole"), "{}", est.method());
        let constant = engine.estimate("lake", "select 1 + 1").await.unwrap();
        assert_eq!(constant.bytes, 0);
        assert!(constant.method.contains("reads no table files"), "{}", constant.method);
        assert!(matches!(engine.estimate("lake", "select nope from notes").await, Err(EngineError::Permanent(_))));
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

    /// `--results s3://…` against moto: a small result in one PutObject, a large one in parts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_are_uploaded_to_s3_whole_or_in_parts() {
        let Some(url) = crate::aws::testing::moto_url() else { return };
        let conf = crate::aws::testing::config_for(&url).await;
        let client = crate::aws::s3(&conf);
        let bucket = crate::aws::testing::unique("results");
        client.create_bucket().bucket(&bucket).send().await.unwrap();
        let root = S3Uri::parse(&format!("s3://{bucket}/team/out")).unwrap();
        let results = tempfile::tempdir().unwrap();
        let store = Arc::new(
            S3Results::upload_from(client.clone(), root, LocalResults::new(results.path()))
                .with_part_size(5 * 1024 * 1024),
        );
        let engine = LocalEngine::new(data_dir(), results.path()).with_results(store.clone());

        let small = succeeded(run(&engine, &job("small", "select r_name from region order by r_name")).await);
        assert_eq!(small.output_location, format!("s3://{bucket}/team/out/default/small/u/1-0.csv"));
        let body = store.read(&small.output_location, None).await.unwrap().unwrap();
        assert_eq!(body, std::fs::read(results.path().join("default/small/u/1-0.csv")).unwrap());
        assert!(String::from_utf8(body).unwrap().starts_with("r_name\nAFRICA\n"));

        let mut whole = job("big", "select * from lineitem");
        whole.limits.max_rows = crate::spec::MAX_MAX_ROWS;
        let big = succeeded(run(&engine, &whole).await);
        let local = std::fs::read(results.path().join("default/big/u/1-0.csv")).unwrap();
        assert!(local.len() > 5 * 1024 * 1024, "{} bytes: not multipart", local.len());
        let head = client.head_object().bucket(&bucket).key("team/out/default/big/u/1-0.csv").send().await.unwrap();
        assert!(head.e_tag().unwrap_or_default().contains('-'), "a multipart ETag: {:?}", head.e_tag());
        assert_eq!(store.read(&big.output_location, None).await.unwrap().unwrap(), local);
        assert_eq!(store.read(&big.output_location, Some(1024)).await.unwrap(), None);
        let uploads = client.list_multipart_uploads().bucket(&bucket).send().await.unwrap();
        assert!(uploads.uploads().is_empty(), "no upload left open");

        // The chart goes to S3 next to the CSV, and a local copy next to the local CSV.
        let svg = store.put_next_to(&small.output_location, Artifact::Chart, b"<svg/>".to_vec()).await;
        assert_eq!(svg.unwrap(), format!("s3://{bucket}/team/out/default/small/u/1-0.svg"));
        let got = client.get_object().bucket(&bucket).key("team/out/default/small/u/1-0.svg").send().await.unwrap();
        assert_eq!(got.content_type(), Some("image/svg+xml"));
        assert!(results.path().join("default/small/u/1-0.svg").exists());
        // Only locations under the configured root are read.
        for other in [format!("s3://{bucket}/elsewhere/x.csv"), "s3://other/team/out/default/small/u/1-0.csv".into()] {
            let err = store.read(&other, None).await.unwrap_err().to_string();
            assert!(err.contains("not a result of this engine"), "{err}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_failures_are_transient_unless_a_retry_cannot_help() {
        let Some(url) = crate::aws::testing::moto_url() else { return };
        let results = tempfile::tempdir().unwrap();
        let conf = crate::aws::testing::config_for(&url).await;
        let missing = S3Uri::parse(&format!("s3://{}/p", crate::aws::testing::unique("missing"))).unwrap();
        let upload = |conf: &aws_config::SdkConfig, root: S3Uri| {
            Arc::new(S3Results::upload_from(crate::aws::s3(conf), root, LocalResults::new(results.path())))
        };
        let engine = LocalEngine::new(data_dir(), results.path()).with_results(upload(&conf, missing.clone()));
        match run(&engine, &job("nobucket", "select 1")).await {
            ExecState::Failed { reason, transient: false } => {
                assert!(reason.contains(&format!("bucket {} does not exist", missing.bucket)), "{reason}");
            }
            other => panic!("expected a permanent failure, got {other:?}"),
        }
        // Nothing listens on port 9: a connection failure is worth another attempt.
        let closed = crate::aws::testing::config_for("http://127.0.0.1:9").await;
        let engine = LocalEngine::new(data_dir(), results.path()).with_results(upload(&closed, missing));
        match run(&engine, &job("unreachable", "select 1")).await {
            ExecState::Failed { reason, transient: true } => assert!(reason.contains("S3 PutObject"), "{reason}"),
            other => panic!("expected a transient failure, got {other:?}"),
        }
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

    #[test]
    fn finished_executions_are_evicted_after_being_reported() {
        let now = Instant::now();
        let mut ex = Executions::default();
        let entry = |state: ExecState, finished: bool, reported: bool| Execution {
            state,
            abort: None,
            plan: None,
            finished_at: finished.then_some(now),
            reported_at: reported.then_some(now),
        };
        ex.by_id.insert("running".into(), entry(ExecState::Running { bytes_scanned: None }, false, false));
        ex.by_id.insert("reported".into(), entry(ExecState::Cancelled { reason: "x".into() }, true, true));
        ex.by_id.insert("unreported".into(), entry(ExecState::Cancelled { reason: "x".into() }, true, false));
        ex.sweep(now + Duration::from_secs(60));
        assert_eq!(ex.by_id.len(), 3);
        ex.sweep(now + EVICT_AFTER_POLLED + SWEEP_EVERY);
        let mut left: Vec<&str> = ex.by_id.keys().map(String::as_str).collect();
        left.sort();
        assert_eq!(left, ["running", "unreported"]);

        // Bounded even if nobody polls: at most MAX_FINISHED finished entries stay.
        for i in 0..MAX_FINISHED + 50 {
            ex.by_id.insert(format!("f{i}"), entry(ExecState::Cancelled { reason: "x".into() }, true, false));
        }
        ex.sweep(now + EVICT_AFTER_POLLED + SWEEP_EVERY * 3);
        assert_eq!(ex.by_id.len(), MAX_FINISHED + 1);
        assert!(ex.by_id.contains_key("running"));
    }
}
