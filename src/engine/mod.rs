//! The `Engine`: runs approved SQL. Athena (results in S3) in production, DataFusion over the
//! local warehouse on a laptop. The engine is the second wall behind the guard: it runs the
//! approved SQL read-only too.

pub mod athena;
pub mod datafusion;

use async_trait::async_trait;

use crate::spec::{EffectiveLimits, ObjectKey, Preview};

/// Everything an engine needs to run one approved query. `sql` is exactly the digested bytes.
#[derive(Clone, Debug)]
pub struct QueryJob {
    pub key: ObjectKey,
    /// Idempotency token: hash(uid, generation, sqlDigest, attempt).
    pub token: String,
    pub database: String,
    pub sql: String,
    pub limits: EffectiveLimits,
    /// Where the full result goes, relative to the engine's results root
    /// (`<namespace>/<name>/<generation>-<attempt>`).
    pub result_key: String,
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
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Throttling, 5xx, network: requeue with backoff.
    #[error("engine temporarily unavailable: {0}")]
    Transient(String),
    /// The query cannot run (invalid SQL, denied): the request fails with this reason.
    #[error("{0}")]
    Permanent(String),
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
    async fn plan(&self, _database: &str, _sql: &str) -> Result<(), EngineError> {
        Ok(())
    }
    /// Reads a finished result as CSV bytes (for `sqlctl results`).
    async fn read_result(&self, output_location: &str) -> Result<Vec<u8>, EngineError>;
}
