//! The AWS [`Engine`]: Amazon Athena, results in S3.
//!
//! # Intent first, one start effect
//!
//! The controller records `{token, attempt}` in status before it calls [`Engine::start`]
//! (DESIGN.md §3). The token is `hash(uid, generation, sqlDigest, attempt)` and is sent as
//! Athena's `ClientRequestToken`: a start repeated after a crash (same token) is answered by
//! Athena with the *same* `QueryExecutionId`, so the query runs once. Once the id is recorded,
//! a replay only polls it (attach by id).
//!
//! # Limits
//!
//! * Timeout and `limits.maxBytesScanned`: the controller compares elapsed time and the
//!   `DataScannedInBytes` this engine reports while running, and calls [`Engine::cancel`]
//!   (`StopQueryExecution`). The workgroup's per-query cutoff is only the global ceiling.
//! * Account quotas (about 20 starts/s, a per-region cap on running queries): starts are spaced
//!   at least [`MIN_START_INTERVAL`] apart, and at most `max_concurrent` queries run at once
//!   from this process. A start beyond the cap is refused with a transient "Queued" error (the
//!   controller backs off and asks again); waiting tokens form a FIFO, so queued requests start
//!   in the order they first asked — approval order — and the head is woken when a slot frees.
//!   `TooManyRequestsException` is a transient back-off, never a failure.
//!
//! # Failures
//!
//! A `FAILED` query whose `AthenaError` is retryable or in the SYSTEM category is reported
//! `transient` (the controller retries it as a new attempt with a new token); any other failure
//! ends the request Failed with Athena's reason.
//!
//! # Results
//!
//! The preview comes from `GetQueryResults` (paginated, at most `maxRows` rows and
//! [`PREVIEW_MAX_BYTES`] of cell text; the first row of a SELECT's result is its header), the
//! full result stays where Athena wrote it (the `outputLocation`,
//! `<results>/<namespace>/<name>/<uid>/<generation>-<attempt>/<id>.csv` unless the workgroup
//! enforces its own location), and [`crate::results::s3::S3Results::athena`] reads it back. Cost is US$
//! `price_per_tb` per TB (2^40 bytes) scanned, rounded up to the MB, 10 MB minimum.
//!
//! Result limits: Athena writes the whole result itself and cannot be told to stop, so what
//! sqlctl enforces is on reading back. `limits.maxResultBytes` is checked against the size of
//! the object (`HeadObject`) before anything reads it: a larger result fails the run (the query
//! ran and was billed; its output is not used). `limits.maxRows` bounds the preview; the file in
//! S3 holds every row Athena wrote, and `rows` counts them. Rows are counted without reading the
//! result into memory: from `GetQueryRuntimeStatistics` (the output rows), else by streaming the
//! object through a quote-aware record counter, chunk by chunk.
//!
//! # Planning (dry run)
//!
//! With `explain` on (`--athena-explain`, env `SQLCTL_ATHENA_EXPLAIN`, default on),
//! [`Engine::plan`] runs `EXPLAIN <sql>` in the request's database and workgroup before the SQL
//! is shown for approval: Athena plans it without reading table data, so a missing column or
//! table, or a syntax error, comes back as `FAILED` with Athena's reason and the generator can
//! correct itself (hand-written SQL ends Failed with reason `PlanFailed`). Each plan uses a fresh
//! `ClientRequestToken` (never the job's token, which would attach the real query to the
//! EXPLAIN), is paced like a start but holds no concurrency slot, and is polled with a short
//! capped backoff for at most [`PLAN_DEADLINE`]; throttling, 5xx, a SYSTEM/retryable failure
//! or the deadline are transient (the controller requeues). Off, `plan` accepts everything.
//!
//! Only SQL errors are the SQL's: an `InvalidRequestException` with a syntax or semantic message,
//! or a FAILED plan that Athena does not blame on the setup. A missing or disabled workgroup,
//! AccessDenied, an unusable result location or any other refusal is
//! [`EngineError::Unavailable`] naming the setting to fix ([`classify_plan_call`],
//! [`classify_plan_failure`]): the controller shows it as a condition and backs off; it is never
//! `PlanFailed` and never reaches the generator.
//!
//! # Estimates
//!
//! With a catalog attached ([`AthenaEngine::with_catalog`], the Glue catalog on `--backend
//! aws`), [`Engine::estimate`] sizes a query before approval from the Glue table layout,
//! the partitions its predicates keep and the S3 object sizes under them, scaled by the share
//! of column bytes it reads for Parquet/ORC (see [`super::estimate`]), priced like a run
//! (`price_per_tb`, 10 MB minimum). Without one it cannot estimate.
//!
//! The preview's row limit travels in the execution id (`<QueryExecutionId>?maxRows=N`, only
//! when N is not the default), because [`Engine::poll`] receives only the id and must honour the
//! limit after a controller restart as well.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_athena::Client;
use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};

use super::estimate::{LakeEstimator, cost_usd};
use super::{Engine, EngineError, ExecState, QueryJob, QueryOutcome, Waker};
use crate::aws::{self, ErrorClass, S3Uri, SdkError};
use crate::catalog::Catalog;
use crate::results::ResultStore;
use crate::results::s3::S3Results;
use crate::spec::quantity::human_bytes;
use crate::spec::{DEFAULT_MAX_RESULT_BYTES, DEFAULT_MAX_ROWS, Estimate, ObjectKey, Preview, ResultColumn};

/// Starts are spaced at least this far apart (Athena's default quota is ~20/s per account).
pub const MIN_START_INTERVAL: Duration = Duration::from_millis(50);
/// A queued token that has not asked again for this long is forgotten (deleted, or taken over
/// by another controller).
const QUEUE_FORGET: Duration = Duration::from_secs(120);
/// Rows per `GetQueryResults` page (the API's maximum).
const PAGE: i32 = 1000;
pub use super::datafusion::PREVIEW_MAX_BYTES;
/// How long [`Engine::plan`] waits for an `EXPLAIN` before calling it transient.
pub const PLAN_DEADLINE: Duration = Duration::from_secs(30);
/// First and largest pause between `GetQueryExecution` polls of an `EXPLAIN`.
const PLAN_POLL_FIRST: Duration = Duration::from_millis(100);
const PLAN_POLL_MAX: Duration = Duration::from_secs(1);

/// Where and how queries run.
#[derive(Clone, Debug)]
pub struct AthenaOptions {
    pub workgroup: String,
    /// Results root; None when the workgroup enforces its own output location.
    pub output: Option<S3Uri>,
    /// Queries running at once from this process.
    pub max_concurrent: usize,
    pub price_per_tb_usd: f64,
    /// Athena data catalog (default `AwsDataCatalog`, i.e. Glue).
    pub catalog: Option<String>,
    /// Dry-run SQL with `EXPLAIN` in [`Engine::plan`] before approval.
    pub explain: bool,
}

impl Default for AthenaOptions {
    fn default() -> Self {
        AthenaOptions {
            workgroup: "primary".into(),
            output: None,
            max_concurrent: 20,
            price_per_tb_usd: 5.0,
            catalog: None,
            explain: true,
        }
    }
}

/// Amazon Athena behind the [`Engine`] trait.
pub struct AthenaEngine {
    athena: Client,
    /// Table files' sizes and footers, for the estimate.
    s3: aws_sdk_s3::Client,
    /// Where Athena wrote each result: its size and row count are read from there.
    results: std::sync::Arc<dyn ResultStore>,
    opts: AthenaOptions,
    /// Sizes queries before approval; `None` until a catalog is attached.
    estimator: Option<LakeEstimator>,
    slots: Mutex<Slots>,
    last_start: tokio::sync::Mutex<Option<Instant>>,
}

/// Concurrency bookkeeping of this process.
#[derive(Default)]
struct Slots {
    /// Executions believed running (query ids), plus reservations (`token:<token>`) while a
    /// start is in flight.
    running: HashSet<String>,
    /// Token → query id of starts this process made (a repeated start needs no call).
    started: HashMap<String, String>,
    /// Tokens refused for lack of a slot, oldest first, with their key, waker and last ask.
    waiting: VecDeque<Waiting>,
}

struct Waiting {
    token: String,
    key: ObjectKey,
    waker: Waker,
    last_ask: Instant,
}

impl std::fmt::Debug for AthenaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AthenaEngine").field("opts", &self.opts).finish_non_exhaustive()
    }
}

/// A `ColumnInfo` type in the one SQL spelling results use: Athena's own names, a decimal with
/// its precision and scale (`decimal(15,2)`, which `ColumnInfo` gives as separate fields), and
/// nothing for an empty type (an emulator that did not say).
pub fn athena_type(name: &str, precision: i32, scale: i32) -> String {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "decimal" if precision > 0 => format!("decimal({precision},{scale})"),
        "int" => "integer".into(),
        "float" => "real".into(),
        "string" | "char" => "varchar".into(),
        "unknown" => String::new(),
        _ => name,
    }
}

/// Splits an execution id into the Athena query id and the preview row limit.
pub fn parse_id(id: &str) -> (&str, u64) {
    let (q, rows, _) = parse_id_limits(id);
    (q, rows)
}

/// Splits an execution id into the Athena query id, `maxRows` and `maxResultBytes`.
pub fn parse_id_limits(id: &str) -> (&str, u64, u64) {
    let (q, query) = id.split_once('?').unwrap_or((id, ""));
    let (mut rows, mut bytes) = (DEFAULT_MAX_ROWS, DEFAULT_MAX_RESULT_BYTES);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("maxRows", n)) => rows = n.parse().unwrap_or(DEFAULT_MAX_ROWS),
            Some(("maxResultBytes", n)) => bytes = n.parse().unwrap_or(DEFAULT_MAX_RESULT_BYTES),
            _ => {}
        }
    }
    (q, rows, bytes)
}

fn make_id(query_id: &str, max_rows: u64, max_result_bytes: u64) -> String {
    let mut params = Vec::new();
    if max_rows != DEFAULT_MAX_ROWS {
        params.push(format!("maxRows={max_rows}"));
    }
    if max_result_bytes != DEFAULT_MAX_RESULT_BYTES {
        params.push(format!("maxResultBytes={max_result_bytes}"));
    }
    if params.is_empty() { query_id.to_string() } else { format!("{query_id}?{}", params.join("&")) }
}

/// Counts CSV records fed in chunks (RFC 4180 quoting: a line break inside quotes is data),
/// skipping empty lines as the csv crate does; constant memory whatever the size.
#[derive(Default, Debug)]
pub struct RecordCounter {
    records: u64,
    in_quotes: bool,
    pending: bool,
}

impl RecordCounter {
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'"' => {
                    self.in_quotes = !self.in_quotes;
                    self.pending = true;
                }
                b'\n' if !self.in_quotes => {
                    if self.pending {
                        self.records += 1;
                    }
                    self.pending = false;
                }
                b'\r' if !self.in_quotes => {}
                _ => self.pending = true,
            }
        }
    }

    /// Records seen, a last one without a line break included.
    pub fn records(&self) -> u64 {
        self.records + u64::from(self.pending)
    }
}

fn athena_error<E>(what: &str, e: SdkError<E, aws_sdk_athena::config::http::HttpResponse>) -> EngineError
where
    E: aws_sdk_athena::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let msg = aws::describe(&e);
    match aws::classify(&e) {
        ErrorClass::Transient => EngineError::Transient(format!("Athena {what}: {msg}")),
        _ => EngineError::Permanent(format!("Athena {what}: {msg}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Dry-run errors: the SQL's fault, or the setup's

/// The flag and variable naming the workgroup queries run in.
pub const WORKGROUP_SETTING: &str = "--athena-workgroup / SQLCTL_ATHENA_WORKGROUP";
/// The flag and variable naming where results go.
pub const RESULTS_SETTING: &str = "--results / SQLCTL_RESULTS_S3";

/// Trino error names that say the statement itself is wrong (syntax, names, types).
const SQL_ERROR_NAMES: &[&str] = &[
    "SYNTAX_ERROR",
    "COLUMN_NOT_FOUND",
    "TABLE_NOT_FOUND",
    "SCHEMA_NOT_FOUND",
    "FUNCTION_NOT_FOUND",
    "TYPE_MISMATCH",
    "NOT_SUPPORTED",
    "AMBIGUOUS_NAME",
    "DUPLICATE_COLUMN_NAME",
    "MISSING_COLUMN_NAME",
    "MISSING_GROUP_BY",
    "MISSING_ORDER_BY",
    "EXPRESSION_NOT_AGGREGATE",
    "EXPRESSION_NOT_SCALAR",
    "EXPRESSION_NOT_CONSTANT",
    "NESTED_AGGREGATION",
    "NESTED_WINDOW",
    "MISMATCHED_COLUMN_ALIASES",
    "COLUMN_TYPE_UNKNOWN",
    "NUMERIC_VALUE_OUT_OF_RANGE",
    "DIVISION_BY_ZERO",
    "FUNCTION_IMPLEMENTATION_MISSING",
    "AMBIGUOUS_FUNCTION_CALL",
    "MISSING_SCHEMA_NAME",
    "MISSING_CATALOG_NAME",
];

/// Whether an Athena message is a SQL syntax or semantic error: Trino's position marker
/// (`line 1:8: …`), one of its SQL error names (`COLUMN_NOT_FOUND: …`, `INVALID_…`), or its
/// parser's wording.
pub fn is_sql_error(message: &str) -> bool {
    let m = message.trim_start();
    let name: String = m.chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
    if !name.is_empty() && m[name.len()..].starts_with(':') {
        return SQL_ERROR_NAMES.contains(&name.as_str()) || name.starts_with("INVALID_");
    }
    let lower = m.to_ascii_lowercase();
    if lower.contains("access denied") {
        return false;
    }
    let position = lower.match_indices("line ").any(|(i, _)| {
        if lower[..i].chars().next_back().is_some_and(char::is_alphanumeric) {
            return false;
        }
        let rest = &lower[i + 5..];
        let (a, b) = rest.split_once(':').unwrap_or(("", ""));
        !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().next().is_some_and(|c| c.is_ascii_digit())
    });
    position
        || ["mismatched input", "extraneous input", "no viable alternative", "queries of this type are not supported"]
            .iter()
            .any(|p| lower.contains(p))
}

/// The setting an Athena message blames, if it blames one: the workgroup, the result location,
/// or the controller's permissions.
pub fn setting_blamed(message: &str, workgroup: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let any = |ps: &[&str]| ps.iter().any(|p| m.contains(p));
    if any(&["workgroup", "work group", "work_group"]) {
        return Some(format!(
            "{WORKGROUP_SETTING} (now {workgroup:?}): name an existing, enabled workgroup (`sqlctl aws bootstrap` creates one)"
        ));
    }
    if any(&[
        "output location",
        "outputlocation",
        "output bucket",
        "query results location",
        "writing output",
        "result configuration",
    ]) {
        return Some(format!(
            "{RESULTS_SETTING} (or the workgroup's enforced result location) and the controller's S3 write permission there"
        ));
    }
    if any(&[
        "access denied",
        "accessdenied",
        "not authorized",
        "insufficient permission",
        "insufficient lake formation",
        "permission_denied",
        "permission denied",
    ]) {
        return Some(iam_setting(workgroup));
    }
    None
}

fn iam_setting(workgroup: &str) -> String {
    format!(
        "the controller's IAM permissions (athena:StartQueryExecution and athena:GetQueryExecution on workgroup {workgroup:?}, Glue reads of the catalog, S3 reads of the data and writes to the results location)"
    )
}

/// What a failed Athena API call of the dry run means. Only an `InvalidRequestException` whose
/// message is a SQL syntax or semantic error ([`is_sql_error`]) is the SQL's fault
/// ([`EngineError::Permanent`], which the generator sees). Throttling, 5xx and network trouble
/// are [`EngineError::Transient`]. Everything else — a missing or disabled workgroup,
/// AccessDenied, an unusable result location, any other refusal — is
/// [`EngineError::Unavailable`], naming the setting to fix.
pub fn classify_plan_call(
    what: &str,
    class: ErrorClass,
    code: Option<&str>,
    message: &str,
    described: &str,
    workgroup: &str,
) -> EngineError {
    let text = format!("Athena {what}: {described}");
    match class {
        ErrorClass::Transient => return EngineError::Transient(text),
        ErrorClass::AccessDenied => return EngineError::Unavailable { setting: iam_setting(workgroup), message: text },
        _ => {}
    }
    if code == Some("InvalidRequestException") && is_sql_error(message) {
        return EngineError::Permanent(format!("Athena: {message}"));
    }
    let setting = setting_blamed(message, workgroup).unwrap_or_else(|| {
        format!("the Athena setup ({WORKGROUP_SETTING} = {workgroup:?}, {RESULTS_SETTING}, the controller's IAM permissions)")
    });
    EngineError::Unavailable { setting, message: text }
}

/// What a `FAILED` dry run (not retryable, not a SYSTEM error) means: a SQL error unless Athena
/// blames the setup — permissions (Lake Formation, `AccessDenied`, error type 234), the result
/// location (error types 401/402) or the workgroup — in which case it is
/// [`EngineError::Unavailable`]. A statement Athena accepted and could not plan is the SQL's.
pub fn classify_plan_failure(error_type: Option<i32>, message: &str, workgroup: &str) -> EngineError {
    if is_sql_error(message) {
        return EngineError::Permanent(format!("Athena: {message}"));
    }
    let blamed = match error_type {
        Some(401 | 402) => Some(format!(
            "{RESULTS_SETTING} (or the workgroup's enforced result location) and the controller's S3 write permission there"
        )),
        Some(234) => Some(iam_setting(workgroup)),
        _ => setting_blamed(message, workgroup),
    };
    match blamed {
        Some(setting) => EngineError::Unavailable { setting, message: format!("Athena EXPLAIN: {message}") },
        None => EngineError::Permanent(format!("Athena: {message}")),
    }
}

impl AthenaEngine {
    pub fn new(athena: Client, s3: aws_sdk_s3::Client, opts: AthenaOptions) -> AthenaEngine {
        AthenaEngine {
            athena,
            results: std::sync::Arc::new(S3Results::athena(s3.clone())),
            s3,
            opts,
            estimator: None,
            slots: Mutex::new(Slots::default()),
            last_start: tokio::sync::Mutex::new(None),
        }
    }

    /// Estimates scans from `catalog` (Glue: table layouts and partitions) and this engine's
    /// S3 client (object sizes, Parquet footers); see [`super::estimate`].
    #[must_use]
    pub fn with_catalog(mut self, catalog: std::sync::Arc<dyn Catalog>) -> Self {
        self.estimator = Some(LakeEstimator::new(catalog, self.s3.clone(), self.opts.price_per_tb_usd));
        self
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queries this process believes are running.
    pub fn running(&self) -> usize {
        self.slots().running.len()
    }

    /// Takes a slot for `job`, or says where it waits.
    fn reserve(&self, job: &QueryJob, waker: &Waker) -> Result<Option<String>, EngineError> {
        let mut s = self.slots();
        if let Some(id) = s.started.get(&job.token) {
            return Ok(Some(id.clone()));
        }
        s.waiting.retain(|w| w.last_ask.elapsed() < QUEUE_FORGET);
        let head_is_us = s.waiting.front().is_none_or(|w| w.token == job.token);
        if s.running.len() < self.opts.max_concurrent.max(1) && head_is_us {
            if s.waiting.front().is_some_and(|w| w.token == job.token) {
                s.waiting.pop_front();
            }
            s.running.insert(format!("token:{}", job.token));
            return Ok(None);
        }
        let position = match s.waiting.iter().position(|w| w.token == job.token) {
            Some(i) => {
                s.waiting[i].last_ask = Instant::now();
                i + 1
            }
            None => {
                s.waiting.push_back(Waiting {
                    token: job.token.clone(),
                    key: job.key.clone(),
                    waker: waker.clone(),
                    last_ask: Instant::now(),
                });
                s.waiting.len()
            }
        };
        Err(EngineError::Transient(format!(
            "Queued: {} Athena queries running (--athena-max-concurrent {}); position {position} in the queue",
            s.running.len(),
            self.opts.max_concurrent
        )))
    }

    /// A slot is free again: forget `id` and wake the first waiting request.
    fn release(&self, query_id: &str) {
        let head = {
            let mut s = self.slots();
            if !s.running.remove(query_id) {
                return;
            }
            s.waiting.retain(|w| w.last_ask.elapsed() < QUEUE_FORGET);
            s.waiting.front().map(|w| (w.key.clone(), w.waker.clone()))
        };
        if let Some((key, waker)) = head {
            waker(&key);
        }
    }

    async fn pace_starts(&self) {
        let mut last = self.last_start.lock().await;
        if let Some(at) = *last {
            let since = at.elapsed();
            if since < MIN_START_INTERVAL {
                tokio::time::sleep(MIN_START_INTERVAL - since).await;
            }
        }
        *last = Some(Instant::now());
    }

    async fn start_query(&self, job: &QueryJob) -> Result<String, EngineError> {
        self.pace_starts().await;
        let mut ctx = QueryExecutionContext::builder().database(&job.database);
        if let Some(c) = &self.opts.catalog {
            ctx = ctx.catalog(c);
        }
        let mut req = self
            .athena
            .start_query_execution()
            .query_string(&job.sql)
            .client_request_token(&job.token)
            .query_execution_context(ctx.build())
            .work_group(&self.opts.workgroup);
        if let Some(out) = &self.opts.output {
            let loc = out.join(&job.result.prefix()?);
            req = req.result_configuration(ResultConfiguration::builder().output_location(format!("{loc}/")).build());
        }
        let out = req.send().await.map_err(|e| athena_error("StartQueryExecution", e))?;
        out.query_execution_id()
            .map(str::to_string)
            .ok_or_else(|| EngineError::Transient("Athena StartQueryExecution returned no QueryExecutionId".into()))
    }

    /// A failed API call of the dry run, classified by [`classify_plan_call`].
    fn plan_call_error<E>(&self, what: &str, e: SdkError<E, aws_sdk_athena::config::http::HttpResponse>) -> EngineError
    where
        E: aws_sdk_athena::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (code, message) = match &e {
            SdkError::ServiceError(se) => {
                (se.err().code().map(str::to_string), se.err().message().unwrap_or_default().to_string())
            }
            _ => (None, String::new()),
        };
        classify_plan_call(what, aws::classify(&e), code.as_deref(), &message, &aws::describe(&e), &self.opts.workgroup)
    }

    /// `EXPLAIN <sql>` in `database`: Ok when Athena plans it, Permanent with Athena's reason
    /// when the SQL cannot be planned, Unavailable when the setup is at fault (see the module
    /// docs).
    async fn explain(&self, database: &str, sql: &str) -> Result<(), EngineError> {
        let body = sql.trim().trim_end_matches(';').trim_end();
        self.pace_starts().await;
        let mut ctx = QueryExecutionContext::builder().database(database);
        if let Some(c) = &self.opts.catalog {
            ctx = ctx.catalog(c);
        }
        let mut req = self
            .athena
            .start_query_execution()
            .query_string(format!("EXPLAIN {body}"))
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .query_execution_context(ctx.build())
            .work_group(&self.opts.workgroup);
        if let Some(out) = &self.opts.output {
            let loc = out.join("_explain");
            req = req.result_configuration(ResultConfiguration::builder().output_location(format!("{loc}/")).build());
        }
        let out = req.send().await.map_err(|e| self.plan_call_error("StartQueryExecution (EXPLAIN)", e))?;
        let Some(query_id) = out.query_execution_id().map(str::to_string) else {
            return Err(EngineError::Transient(
                "Athena StartQueryExecution (EXPLAIN) returned no QueryExecutionId".into(),
            ));
        };
        let deadline = Instant::now() + PLAN_DEADLINE;
        let mut pause = PLAN_POLL_FIRST;
        loop {
            let out = self
                .athena
                .get_query_execution()
                .query_execution_id(&query_id)
                .send()
                .await
                .map_err(|e| self.plan_call_error("GetQueryExecution (EXPLAIN)", e))?;
            let status = out.query_execution().and_then(|q| q.status());
            let state = status.and_then(|s| s.state()).cloned().unwrap_or(QueryExecutionState::Queued);
            let reason = status.and_then(|s| s.state_change_reason()).unwrap_or_default().to_string();
            match state {
                QueryExecutionState::Succeeded => return Ok(()),
                QueryExecutionState::Failed => {
                    let err = status.and_then(|s| s.athena_error());
                    let message = Some(reason)
                        .filter(|m| !m.is_empty())
                        .or_else(|| err.and_then(|e| e.error_message()).map(str::to_string))
                        .unwrap_or_else(|| "EXPLAIN failed".into());
                    if err.is_some_and(|e| e.retryable() || e.error_category() == Some(1)) {
                        return Err(EngineError::Transient(format!("Athena EXPLAIN: {message}")));
                    }
                    // Not every failure is the SQL's: a denied catalog or an unwritable
                    // result location is the setup's, and never reaches the generator.
                    return Err(classify_plan_failure(
                        err.and_then(|e| e.error_type()),
                        &message,
                        &self.opts.workgroup,
                    ));
                }
                QueryExecutionState::Cancelled => {
                    return Err(EngineError::Transient(format!("Athena EXPLAIN cancelled: {reason}")));
                }
                _ => {}
            }
            if Instant::now() + pause > deadline {
                let _ = self.athena.stop_query_execution().query_execution_id(&query_id).send().await;
                return Err(EngineError::Transient(format!(
                    "Athena EXPLAIN {query_id} did not finish within {}s",
                    PLAN_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(PLAN_POLL_MAX);
        }
    }

    /// Preview rows (≤ `max_rows`, ≤ [`PREVIEW_MAX_BYTES`] of cell text), columns, and whether
    /// the result had more.
    /// Also the result's typed columns, from the first page's `ResultSetMetadata`.
    async fn preview(&self, query_id: &str, max_rows: u64) -> Result<(Preview, Vec<ResultColumn>), EngineError> {
        let mut columns: Vec<String> = Vec::new();
        let mut typed: Vec<ResultColumn> = Vec::new();
        let mut rows: Vec<Vec<Option<String>>> = Vec::new();
        let mut bytes = 0usize;
        let mut token: Option<String> = None;
        let mut first_page = true;
        let mut truncated = false;
        loop {
            let want = (max_rows as i64 - rows.len() as i64 + 2).clamp(1, PAGE as i64) as i32;
            let out = self
                .athena
                .get_query_results()
                .query_execution_id(query_id)
                .max_results(want)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| athena_error("GetQueryResults", e))?;
            let Some(rs) = out.result_set() else { break };
            if first_page {
                let info = rs.result_set_metadata().map(|m| m.column_info()).unwrap_or_default();
                columns = info.iter().map(|c| c.name().to_string()).collect();
                typed = info
                    .iter()
                    .map(|c| ResultColumn {
                        name: c.name().to_string(),
                        type_: athena_type(c.r#type(), c.precision(), c.scale()),
                        role: None,
                    })
                    .collect();
            }
            for (i, row) in rs.rows().iter().enumerate() {
                let cells: Vec<Option<String>> =
                    row.data().iter().map(|d| d.var_char_value().map(str::to_string)).collect();
                // A SELECT's first row repeats the column names.
                if first_page
                    && i == 0
                    && !columns.is_empty()
                    && cells.iter().map(|c| c.as_deref().unwrap_or("")).eq(columns.iter().map(String::as_str))
                {
                    continue;
                }
                let size: usize = cells.iter().map(|c| c.as_ref().map_or(0, String::len)).sum();
                if rows.len() as u64 >= max_rows || bytes + size > PREVIEW_MAX_BYTES {
                    truncated = true;
                    break;
                }
                bytes += size;
                rows.push(cells);
            }
            first_page = false;
            match out.next_token() {
                Some(t) if !t.is_empty() && !truncated => {
                    if rows.len() as u64 >= max_rows {
                        truncated = true;
                        break;
                    }
                    token = Some(t.to_string());
                }
                _ => break,
            }
        }
        Ok((Preview { columns, rows, truncated }, typed))
    }

    /// Rows of a finished result without reading it into memory: Athena's runtime statistics
    /// (output rows), else the CSV in S3 streamed through a [`RecordCounter`] (header excluded).
    async fn count_rows(&self, query_id: &str, location: &str) -> Option<u64> {
        let stats = self.athena.get_query_runtime_statistics().query_execution_id(query_id).send().await;
        if let Some(n) = stats.ok().and_then(|o| o.query_runtime_statistics()?.rows()?.output_rows()) {
            return u64::try_from(n).ok();
        }
        let mut counter = RecordCounter::default();
        self.results.scan(location, &mut |chunk: &[u8]| counter.feed(chunk)).await.ok()?;
        Some(counter.records().saturating_sub(1))
    }

    /// Checks the size of the result Athena wrote against `limits.maxResultBytes`: `Err(reason)`
    /// when it is larger (or cannot be checked for a reason no retry fixes), `Ok` when it fits or
    /// there is no object to read (nothing can then be read back either).
    async fn check_result_size(&self, location: &str, max_bytes: u64) -> Result<Result<(), String>, EngineError> {
        if S3Uri::parse(location).is_err() {
            return Ok(Ok(()));
        }
        let size = match self.results.size(location).await {
            Ok(Some(size)) => size,
            Ok(None) => return Ok(Ok(())),
            Err(e) if e.transient => return Err(EngineError::Transient(e.message)),
            Err(e) => {
                return Ok(Err(format!(
                    "cannot check the size of the result against limits.maxResultBytes: {}",
                    e.message
                )));
            }
        };
        if size > max_bytes {
            return Ok(Err(format!(
                "Athena wrote a result of {}, over limits.maxResultBytes ({}): the query ran, its result is not used; raise limits.maxResultBytes or select fewer columns or rows",
                human_bytes(size),
                human_bytes(max_bytes)
            )));
        }
        Ok(Ok(()))
    }
}

#[async_trait]
impl Engine for AthenaEngine {
    fn name(&self) -> &'static str {
        "athena"
    }

    async fn start(&self, job: &QueryJob, waker: Waker) -> Result<String, EngineError> {
        let (max_rows, max_bytes) = (job.limits.max_rows, job.limits.max_result_bytes);
        if let Some(id) = self.reserve(job, &waker)? {
            return Ok(make_id(&id, max_rows, max_bytes));
        }
        let reservation = format!("token:{}", job.token);
        let started = self.start_query(job).await;
        let mut s = self.slots();
        s.running.remove(&reservation);
        match started {
            Ok(id) => {
                s.running.insert(id.clone());
                s.started.insert(job.token.clone(), id.clone());
                tracing::info!(name = %job.key.name, namespace = %job.key.namespace, query_execution_id = %id, token = %job.token, "athena query started");
                Ok(make_id(&id, max_rows, max_bytes))
            }
            Err(e) => Err(e),
        }
    }

    async fn poll(&self, id: &str) -> Result<ExecState, EngineError> {
        let (query_id, max_rows, max_bytes) = parse_id_limits(id);
        let out = match self.athena.get_query_execution().query_execution_id(query_id).send().await {
            Ok(o) => o,
            Err(e)
                if e.as_service_error()
                    .and_then(|s| aws_sdk_athena::error::ProvideErrorMetadata::message(s))
                    .is_some_and(|m| m.contains("not found")) =>
            {
                return Ok(ExecState::Unknown);
            }
            Err(e) => return Err(athena_error("GetQueryExecution", e)),
        };
        let Some(qe) = out.query_execution() else { return Ok(ExecState::Unknown) };
        let status = qe.status();
        let bytes = qe.statistics().and_then(|s| s.data_scanned_in_bytes()).map(|b| b.max(0) as u64);
        let state = status.and_then(|s| s.state()).cloned().unwrap_or(QueryExecutionState::Queued);
        let reason = status.and_then(|s| s.state_change_reason()).unwrap_or_default().to_string();
        match state {
            QueryExecutionState::Queued | QueryExecutionState::Running => {
                // Count it even if another process (or a previous life of this one) started it.
                self.slots().running.insert(query_id.to_string());
                Ok(ExecState::Running { bytes_scanned: bytes })
            }
            QueryExecutionState::Succeeded => {
                let output_location =
                    qe.result_configuration().and_then(|r| r.output_location()).unwrap_or_default().to_string();
                if let Err(reason) = self.check_result_size(&output_location, max_bytes).await? {
                    self.release(query_id);
                    return Ok(ExecState::Failed { reason, transient: false });
                }
                let (preview, columns) = match self.preview(query_id, max_rows).await {
                    Ok(p) => p,
                    Err(e) => return Err(e),
                };
                self.release(query_id);
                let rows = if preview.truncated {
                    self.count_rows(query_id, &output_location).await.unwrap_or(preview.rows.len() as u64)
                } else {
                    preview.rows.len() as u64
                };
                let stats = qe.statistics();
                let duration_ms = stats
                    .and_then(|s| s.total_execution_time_in_millis().or(s.engine_execution_time_in_millis()))
                    .unwrap_or(0)
                    .max(0) as u64;
                Ok(ExecState::Succeeded(QueryOutcome {
                    rows,
                    bytes_scanned: bytes,
                    cost_usd: Some(cost_usd(bytes.unwrap_or(0), self.opts.price_per_tb_usd)),
                    duration_ms,
                    output_location,
                    preview,
                    // The file holds what Athena wrote (see the module doc).
                    truncated: None,
                    columns,
                }))
            }
            QueryExecutionState::Failed => {
                self.release(query_id);
                let err = status.and_then(|s| s.athena_error());
                // ErrorCategory 1 = SYSTEM (Athena's side), 2 = USER, 3 = OTHER.
                let transient = err.is_some_and(|e| e.retryable() || e.error_category() == Some(1));
                let message =
                    err.and_then(|e| e.error_message()).filter(|m| !m.is_empty()).map(str::to_string).unwrap_or(reason);
                Ok(ExecState::Failed { reason: format!("Athena: {message}"), transient })
            }
            QueryExecutionState::Cancelled => {
                self.release(query_id);
                Ok(ExecState::Cancelled {
                    reason: if reason.is_empty() { "cancelled in Athena".into() } else { reason },
                })
            }
            other => Ok(ExecState::Failed {
                reason: format!("Athena reported an unknown state {}", other.as_str()),
                transient: true,
            }),
        }
    }

    async fn plan(&self, database: &str, sql: &str) -> Result<(), EngineError> {
        if !self.opts.explain {
            return Ok(());
        }
        self.explain(database, sql).await
    }

    async fn estimate(&self, database: &str, sql: &str) -> Result<Estimate, EngineError> {
        match &self.estimator {
            Some(e) => e.estimate(database, sql).await,
            None => Err(EngineError::Permanent(
                "the Athena engine has no catalog to estimate from (built without AthenaEngine::with_catalog)".into(),
            )),
        }
    }

    async fn cancel(&self, id: &str) -> Result<(), EngineError> {
        let (query_id, _) = parse_id(id);
        self.athena
            .stop_query_execution()
            .query_execution_id(query_id)
            .send()
            .await
            .map_err(|e| athena_error("StopQueryExecution", e))?;
        self.release(query_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::aws::testing::{config_for, moto_url, unique};
    use crate::engine::estimate::TB;
    use crate::spec::EffectiveLimits;

    fn unavailable_setting(e: EngineError) -> String {
        match e {
            EngineError::Unavailable { setting, .. } => setting,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn configuration_errors_are_not_sql_errors_in_the_dry_run_calls() {
        let call = |class, code: &str, message: &str| {
            classify_plan_call(
                "StartQueryExecution (EXPLAIN)",
                class,
                Some(code),
                message,
                &format!("{code}: {message}"),
                "wg",
            )
        };
        // A missing or disabled workgroup (AWS's wording and moto's): the workgroup setting.
        for m in ["WorkGroup wg is not found.", "WorkGroup does not exist", "WorkGroup wg is disabled."] {
            let s = unavailable_setting(call(ErrorClass::Other, "InvalidRequestException", m));
            assert!(s.contains("--athena-workgroup") && s.contains("SQLCTL_ATHENA_WORKGROUP"), "{m}: {s}");
        }
        // No result location.
        let m = "No output location provided. An output location is required either through the Workgroup result configuration setting or as an API input.";
        let s = unavailable_setting(call(ErrorClass::Other, "InvalidRequestException", m));
        assert!(s.contains("--athena-workgroup") || s.contains("--results"), "{s}");
        let m = "Unable to verify/create output bucket results-bucket";
        assert!(unavailable_setting(call(ErrorClass::Other, "InvalidRequestException", m)).contains("--results"));
        // Permissions.
        let s = unavailable_setting(call(
            ErrorClass::AccessDenied,
            "AccessDeniedException",
            "User: arn:aws:sts::1:assumed-role/c/x is not authorized to perform: athena:StartQueryExecution",
        ));
        assert!(s.contains("IAM") && s.contains("\"wg\""), "{s}");
        // Throttling and server trouble: transient.
        assert!(matches!(
            call(ErrorClass::Transient, "TooManyRequestsException", "Rate exceeded"),
            EngineError::Transient(_)
        ));
        assert!(matches!(call(ErrorClass::Transient, "InternalServerException", "oops"), EngineError::Transient(_)));
        // Anything else that is not a SQL message is not the SQL's fault either.
        assert!(matches!(
            call(ErrorClass::Other, "ValidationException", "1 validation error"),
            EngineError::Unavailable { .. }
        ));
        assert!(matches!(
            call(ErrorClass::NotFound, "ResourceNotFoundException", "catalog x"),
            EngineError::Unavailable { .. }
        ));
        assert!(matches!(
            call(ErrorClass::Other, "InvalidRequestException", "something new"),
            EngineError::Unavailable { .. }
        ));
        // Only SQL syntax or semantic messages are SQL errors, fed to the generator.
        for m in [
            "line 1:8: mismatched input 'FORM'. Expecting: ',', 'FROM'",
            "SYNTAX_ERROR: line 1:8: Column 'x' cannot be resolved",
            "COLUMN_NOT_FOUND: line 1:8: Column 'workgroup' cannot be resolved or requester is not authorized to access requested resources",
            "TABLE_NOT_FOUND: line 1:15: Table 'awsdatacatalog.tpch.nope' does not exist",
            "INVALID_FUNCTION_ARGUMENT: bad",
            "Queries of this type are not supported",
        ] {
            let e = call(ErrorClass::Other, "InvalidRequestException", m);
            assert!(matches!(&e, EngineError::Permanent(t) if t == &format!("Athena: {m}")), "{m}: {e:?}");
        }
    }

    #[test]
    fn configuration_errors_are_not_sql_errors_when_the_dry_run_fails() {
        // Athena accepted the EXPLAIN and it FAILED: the SQL's fault unless Athena blames the setup.
        let sql = classify_plan_failure(Some(1301), "SYNTAX_ERROR: line 1:8: Column 'nope' cannot be resolved", "wg");
        assert!(matches!(sql, EngineError::Permanent(m) if m.starts_with("Athena: SYNTAX_ERROR")));
        let df = classify_plan_failure(Some(1301), "Schema error: No field named no_such_column.", "wg");
        assert!(matches!(df, EngineError::Permanent(_)));
        for (t, m) in [
            (Some(1301), "PERMISSION_DENIED: Access Denied: Cannot select from table tpch.nation"),
            (Some(234), "Insufficient Lake Formation permission(s) on nation"),
            (
                None,
                "HIVE_METASTORE_ERROR: com.amazonaws.services.glue.model.AccessDeniedException: User is not authorized to perform: glue:GetTable",
            ),
            (Some(401), "Failed to write query results"),
            (None, "Access denied when writing output to url: s3://results/x"),
        ] {
            let e = classify_plan_failure(t, m, "wg");
            assert!(matches!(e, EngineError::Unavailable { .. }), "{m}: {e:?}");
        }
    }

    #[test]
    fn sql_errors_are_recognised_by_their_shape() {
        assert!(is_sql_error("line 12:3: no viable alternative at input 'select'"));
        assert!(is_sql_error("  NOT_SUPPORTED: unsupported"));
        assert!(!is_sql_error("WorkGroup does not exist"));
        assert!(!is_sql_error("PERMISSION_DENIED: line 1:1: nope"));
        assert!(!is_sql_error("line 1:15: Access Denied: Cannot select from table t"));
        assert!(!is_sql_error("Rate exceeded"));
        assert!(!is_sql_error("online 1:2"), "a word ending in 'line' is no position");
    }

    fn job(token: &str, name: &str) -> QueryJob {
        QueryJob {
            key: ObjectKey::new("default", name),
            token: token.into(),
            database: "tpch".into(),
            sql: "select 1".into(),
            limits: EffectiveLimits {
                max_rows: DEFAULT_MAX_ROWS,
                max_bytes_scanned: None,
                timeout_ms: 60_000,
                max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            },
            result: crate::results::ResultKey {
                namespace: "default".into(),
                name: name.to_string(),
                uid: "u".into(),
                generation: 1,
                attempt: 1,
            },
        }
    }

    #[test]
    fn cost_is_per_tb_with_a_ten_megabyte_minimum() {
        assert_eq!(cost_usd(0, 5.0), cost_usd(10 * 1024 * 1024, 5.0));
        assert!((cost_usd(1 << 40, 5.0) - 5.0).abs() < 1e-9);
        assert!(cost_usd(11 * 1024 * 1024, 5.0) > cost_usd(10 * 1024 * 1024, 5.0));
        assert!((cost_usd(1, 5.0) - 10.0 * 1024.0 * 1024.0 / TB * 5.0).abs() < 1e-15);
    }

    #[test]
    fn ids_carry_non_default_result_limits() {
        let d = DEFAULT_MAX_RESULT_BYTES;
        assert_eq!(make_id("q-1", DEFAULT_MAX_ROWS, d), "q-1");
        assert_eq!(parse_id("q-1"), ("q-1", DEFAULT_MAX_ROWS));
        assert_eq!(parse_id(&make_id("q-1", 10, d)), ("q-1", 10));
        assert_eq!(make_id("q-1", 10, d), "q-1?maxRows=10", "ids made before maxResultBytes parse the same");
        assert_eq!(parse_id_limits(&make_id("q-1", 10, 4096)), ("q-1", 10, 4096));
        assert_eq!(parse_id_limits(&make_id("q-1", DEFAULT_MAX_ROWS, 4096)), ("q-1", DEFAULT_MAX_ROWS, 4096));
        assert_eq!(parse_id_limits("q-1?maxRows=x&maxResultBytes=y"), ("q-1", DEFAULT_MAX_ROWS, d));
    }

    #[test]
    fn records_are_counted_in_chunks_like_the_csv_crate_counts_them() {
        let cases: [&[u8]; 7] = [
            b"\"a\",\"b\"\n\"1\",\"2\"\n",
            b"a,b\n1,2",
            b"a\n\"line\nbreak\"\n\"say \"\"hi\"\"\"\n",
            b"a\r\n1\r\n\r\n2\r\n",
            b"a\n\n\n",
            b"",
            b"\"a\"\n\"\"\n\"x,\ny\"\n3\n",
        ];
        for case in cases {
            let want = csv::ReaderBuilder::new().has_headers(false).from_reader(case).records().count() as u64;
            for chunk in [1, 2, 3, 64] {
                let mut c = RecordCounter::default();
                for part in case.chunks(chunk) {
                    c.feed(part);
                }
                assert_eq!(c.records(), want, "{:?} in chunks of {chunk}", String::from_utf8_lossy(case));
            }
        }
    }

    #[test]
    fn column_types_read_as_the_results_sql_spelling() {
        // ColumnInfo gives a decimal's precision and scale as fields of their own.
        assert_eq!(athena_type("decimal", 15, 2), "decimal(15,2)");
        assert_eq!(athena_type("DECIMAL", 0, 0), "decimal");
        for (t, want) in [("bigint", "bigint"), ("int", "integer"), ("varchar", "varchar"), ("date", "date")] {
            assert_eq!(athena_type(t, 0, 0), want);
        }
        assert_eq!(athena_type("timestamp", 3, 0), "timestamp");
        assert_eq!(athena_type("unknown", 0, 0), "", "an emulator that did not say");
        let c = ResultColumn { name: "r".into(), type_: athena_type("decimal", 38, 4), role: None };
        assert_eq!(c.kind(), crate::spec::ValueKind::Decimal(4));
    }

    #[tokio::test]
    async fn starts_beyond_the_cap_queue_in_order_and_the_head_is_woken_when_a_slot_frees() {
        let Some(url) = moto_url() else { return };
        let conf = config_for(&url).await;
        let engine = AthenaEngine::new(
            aws::athena(&conf),
            aws::s3(&conf),
            AthenaOptions { max_concurrent: 1, ..Default::default() },
        );
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        let waker: Waker = Arc::new(move |_k: &ObjectKey| {
            w.fetch_add(1, Ordering::SeqCst);
        });
        let t = unique("tok").replace('-', "0");
        let token = |i: u32| format!("{t:0<32}{i}");
        let id1 = engine.start(&job(&token(1), "a"), waker.clone()).await.unwrap();
        // Same token again: attaches without a second start.
        assert_eq!(engine.start(&job(&token(1), "a"), waker.clone()).await.unwrap(), id1);
        let e = engine.start(&job(&token(2), "b"), waker.clone()).await.unwrap_err();
        assert!(
            matches!(&e, EngineError::Transient(m) if m.starts_with("Queued") && m.contains("position 1")),
            "{e:?}"
        );
        let e = engine.start(&job(&token(3), "c"), waker.clone()).await.unwrap_err();
        assert!(e.to_string().contains("position 2"), "{e}");
        // moto's queries succeed at once; the first poll frees the slot and wakes b.
        assert!(matches!(engine.poll(&id1).await.unwrap(), ExecState::Succeeded(_)));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        // c may not overtake b.
        assert!(
            engine.start(&job(&token(3), "c"), waker.clone()).await.unwrap_err().to_string().contains("position 2")
        );
        let id2 = engine.start(&job(&token(2), "b"), waker.clone()).await.unwrap();
        assert_ne!(id1, id2);
        engine.cancel(&id2).await.unwrap();
        engine.start(&job(&token(3), "c"), waker).await.unwrap();
    }
}
