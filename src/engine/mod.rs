//! The `Engine`: runs approved SQL. Athena (results in S3) in production, DataFusion over the
//! local warehouse on a laptop. The engine is the second wall behind the guard: it runs the
//! approved SQL read-only too.

#[cfg(feature = "aws")]
pub mod athena;
pub mod datafusion;
#[cfg(feature = "aws")]
pub mod estimate;
#[cfg(test)]
pub mod failure;
pub mod preflight;

use async_trait::async_trait;

use crate::results::{ResultError, ResultKey};
use crate::spec::{EffectiveLimits, Estimate, ObjectKey, Preview, ResultColumn};

/// Everything an engine needs to run one approved query. `sql` is exactly the digested bytes.
#[derive(Clone, Debug)]
pub struct QueryJob {
    pub key: ObjectKey,
    /// Idempotency token: hash(uid, generation, sqlDigest, attempt).
    pub token: String,
    pub database: String,
    pub sql: String,
    pub limits: EffectiveLimits,
    /// Which result this run writes (see [`crate::results`]).
    pub result: ResultKey,
}

/// What an engine reports about an execution.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecState {
    /// Accepted, not finished. `bytes_scanned` so far where known (budget enforcement).
    Running {
        bytes_scanned: Option<u64>,
    },
    Succeeded(QueryOutcome),
    /// `transient`: worth a new attempt (capacity, throttling, internal error).
    Failed {
        reason: String,
        transient: bool,
    },
    Cancelled {
        reason: String,
    },
    /// The engine has no memory of this id (a local engine after a restart): start again.
    Unknown,
}

/// Statistics and preview of a finished query.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct QueryOutcome {
    pub rows: u64,
    pub bytes_scanned: Option<u64>,
    pub cost_usd: Option<f64>,
    pub duration_ms: u64,
    pub output_location: String,
    pub preview: Preview,
    /// Why the result file stops before the query's last row (`limits.maxRows`), if it does:
    /// shown in the `Executed` condition. `rows` counts what the file holds.
    pub truncated: Option<String>,
    /// The result's columns with the engine's types (DataFusion's Arrow schema, Athena's
    /// `ResultSetMetadata`) in SQL spelling; roles are added from the approved SQL by the chart.
    /// Empty when the engine did not say.
    pub columns: Vec<ResultColumn>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Throttling, 5xx, network: requeue with backoff.
    #[error("engine temporarily unavailable: {0}")]
    Transient(String),
    /// The query cannot run (invalid SQL, denied): the request fails with this reason.
    #[error("{0}")]
    Permanent(String),
    /// The engine cannot work as configured — a missing or disabled workgroup, missing
    /// permissions, no result location — whatever the SQL. Nothing is wrong with the request and
    /// nothing is for the model to correct: the controller shows `message` in a condition that
    /// names `setting` (the flag, variable or permission to fix) and backs off until it works.
    #[error("{message}; fix {setting}")]
    Unavailable { setting: String, message: String },
}

impl From<ResultError> for EngineError {
    fn from(e: ResultError) -> Self {
        if e.transient { EngineError::Transient(e.message) } else { EngineError::Permanent(e.message) }
    }
}

/// Called by an engine when an execution it runs in-process finishes, so the controller can
/// reconcile the request at once instead of waiting for its next poll.
pub type Waker = std::sync::Arc<dyn Fn(&ObjectKey) + Send + Sync>;

#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Short name for logs and status (`local`, `athena`).
    fn name(&self) -> &'static str;
    /// Starts `job` and returns its execution id. Must be idempotent for the same token: a second
    /// start with a token the engine still knows attaches to the first execution.
    async fn start(&self, job: &QueryJob, waker: Waker) -> Result<String, EngineError>;
    /// Current state of an execution.
    async fn poll(&self, id: &str) -> Result<ExecState, EngineError>;
    /// Best-effort cancel (timeout, delete, budget).
    async fn cancel(&self, id: &str) -> Result<(), EngineError>;
    /// Plans `sql` without running it (self-correction / dry run). Default: no check.
    /// `Permanent` means the SQL itself cannot be planned (the generator sees it and corrects
    /// itself; hand-written SQL fails `PlanFailed`); `Unavailable` means the engine cannot plan
    /// anything as configured, and `Transient` that it cannot now — neither is a SQL error.
    async fn plan(&self, _database: &str, _sql: &str) -> Result<(), EngineError> {
        Ok(())
    }
    /// Estimates what `sql` would scan in `database` and what that costs, from metadata only
    /// (file footers, catalog partitions, object sizes), before anyone approves it. The
    /// controller shows it with the approval request and holds a request whose estimate exceeds
    /// `limits.maxBytesScanned` for an explicit over-budget approval. `Estimate::method` says
    /// how the figure was made. Default: the engine cannot estimate (the request proceeds
    /// without an estimate, and only the runtime budget check applies).
    async fn estimate(&self, _database: &str, _sql: &str) -> Result<Estimate, EngineError> {
        Err(EngineError::Permanent(format!("the {} engine does not estimate scans", self.name())))
    }
}

/// The `sqlctl __preflight` child: plans and estimates one request with the embedded engine,
/// under the limits its parent set (see [`preflight`]).
pub fn preflight_child_main() -> std::process::ExitCode {
    preflight::child_main(|r| async move { datafusion::preflight_here(&r.data_dir, &r.database, &r.sql).await })
}
