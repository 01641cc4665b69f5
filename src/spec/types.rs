//! The `QueryRequest` resource: the types users write (spec) and the controller writes (status).
//!
//! Everything here is plain data with serde + schemars derives. Parsing of user input is strict
//! (`deny_unknown_fields`); checks that serde cannot express live in [`super::validate`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::quantity::{ByteSize, DurationSpec};

/// `apiVersion` of every object this version of sqlctl reads and writes.
pub const API_VERSION: &str = "sqlctl.dev/v1alpha1";
/// `kind` of a request.
pub const KIND: &str = "QueryRequest";
/// Namespace used when `metadata.namespace` is absent.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Annotation holding the last applied configuration (three-way merge, like kubectl).
pub const LAST_APPLIED_ANNOTATION: &str = "sqlctl.dev/last-applied-configuration";
/// Annotation recording who applied the request; written by sqlctl, never taken from a file.
pub const REQUESTER_ANNOTATION: &str = "sqlctl.dev/requester";
/// Finalizer held while a query may be running, so that a delete cancels it first.
pub const CANCEL_FINALIZER: &str = "sqlctl.dev/cancel-query";

/// A request to answer a question (or run hand-written SQL) against one database, with a human
/// approving the exact SQL before it runs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "QueryRequest")]
pub struct QueryRequest {
    /// Always `sqlctl.dev/v1alpha1`.
    pub api_version: String,
    /// Always `QueryRequest`.
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: QueryRequestSpec,
    /// Written by the controller only; ignored by `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<QueryRequestStatus>,
}

/// Identity and bookkeeping, as in Kubernetes. Fields marked *server-set* are filled by the store
/// and ignored when a user supplies them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// DNS-1123 label: lower-case letters, digits and `-`, at most 63 characters.
    pub name: String,
    /// DNS-1123 label; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Server-set: unique per object; a deleted and recreated request gets a new uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Server-set: changes on every write; every write is a compare-and-set on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Server-set: bumped only when the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Server-set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
    /// Server-set: the request is being deleted and waits for its finalizers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<DateTime<Utc>>,
    /// Server-set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// What the user wants: a question (or SQL), where to ask it and within which limits.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryRequestSpec {
    /// A plain-language question; exactly one of `question` and `sql`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// Hand-written SQL: skips generation, never the guard or the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    pub catalog: CatalogRef,
    /// Engine to run on; the controller's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineKind>,
    #[serde(default, skip_serializing_if = "ApprovalSpec::is_empty")]
    pub approval: ApprovalSpec,
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
    /// The SVG chart drawn from the result; absent means `type: auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartSpec>,
    /// This question follows up on an earlier request in the same namespace ("only 1995", "now
    /// by region", "top 3 instead"): generation sees that request's question, the SQL it ran (or
    /// last proposed) and its result columns. Needs `spec.question`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpRef>,
}

/// The earlier request a follow-up question builds on.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowUpRef {
    /// Name of a QueryRequest in the same namespace.
    pub of: String,
}

/// Which database (and optionally which of its tables) the request may read.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogRef {
    /// Database (Glue database, or a directory of the local warehouse).
    pub database: String,
    /// Optional allow-list of tables: the SQL may read only these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Amazon Athena, results in S3.
    Athena,
    /// Embedded Apache DataFusion over the local warehouse.
    Local,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Athena => "athena",
            EngineKind::Local => "local",
        }
    }
}

/// Narrows the controller's approval policy for this request; never widens it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Only these people may decide (intersected with the policy's approvers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// How long to wait for a decision (capped by the controller's policy), e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
}

impl ApprovalSpec {
    fn is_empty(&self) -> bool {
        self.approvers.is_empty() && self.timeout.is_none()
    }
}

/// Limits on what the query may do.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Most rows the query returns (1..=100000; default 1000): the result file stops after this
    /// many rows (the run is then marked truncated, "stopped at limits.maxRows") and the preview
    /// keeps at most as many. On Athena, which writes its own result file, it bounds the preview
    /// and the rows sqlctl reports; the file in S3 holds what Athena wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Bytes the query may scan, e.g. `10GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_scanned: Option<ByteSize>,
    /// How long the query may run, e.g. `10m` (default 10m, at most 24h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
    /// Largest result file the query may write, e.g. `100MiB` (default 1GiB, at most 1PiB). A
    /// result that grows past it fails the run ("result exceeded limits.maxResultBytes") and no
    /// partial file is kept: unlike `maxRows`, which asks for the first rows, a byte cut would
    /// give a row count nobody chose. On Athena the size of the file Athena wrote is checked
    /// before anything reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_result_bytes: Option<ByteSize>,
}

impl Limits {
    fn is_empty(&self) -> bool {
        self.max_rows.is_none()
            && self.max_bytes_scanned.is_none()
            && self.timeout.is_none()
            && self.max_result_bytes.is_none()
    }
}

/// How the result is charted: an SVG stored next to the result. A chart that cannot be drawn never
/// fails the request.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChartSpec {
    /// `auto` (default) picks from the result's shape: a line for a date/time column with numbers,
    /// bars for a category column with numbers, a scatter for two numeric columns, nothing
    /// otherwise. `bar`, `line` or `scatter` force one; `none` draws no chart.
    #[serde(default, rename = "type")]
    pub type_: ChartType,
    /// Column on the x axis (category, date/time or number); chosen from the result when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Numeric columns on the y axis, one series each (at most 8); chosen when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub y: Vec<String>,
}

/// Kind of chart `spec.chart.type` asks for.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChartType {
    /// Chosen from the result's column types and shape.
    #[default]
    Auto,
    /// Bars per category (the largest categories, the rest summed as "other").
    Bar,
    /// Lines over a date/time (or ordered numeric) x axis.
    Line,
    /// Points of two numeric columns.
    Scatter,
    /// No chart.
    None,
}

impl ChartType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChartType::Auto => "auto",
            ChartType::Bar => "bar",
            ChartType::Line => "line",
            ChartType::Scatter => "scatter",
            ChartType::None => "none",
        }
    }
}

/// Lifecycle phase of a request.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Phase {
    #[default]
    Pending,
    Generated,
    AwaitingApproval,
    Executing,
    Done,
    Rejected,
    Failed,
    TimedOut,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Generated,
        Phase::AwaitingApproval,
        Phase::Executing,
        Phase::Done,
        Phase::Rejected,
        Phase::Failed,
        Phase::TimedOut,
    ];

    /// Terminal phases only change when the spec changes (a new generation).
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::Rejected | Phase::Failed | Phase::TimedOut)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Generated => "Generated",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Executing => "Executing",
            Phase::Done => "Done",
            Phase::Rejected => "Rejected",
            Phase::Failed => "Failed",
            Phase::TimedOut => "TimedOut",
        }
    }

    /// Case-insensitive parse, for `--phase` and `--for phase=…`.
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state, written by the controller only.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryRequestStatus {
    pub phase: Phase,
    /// The generation this status describes.
    #[serde(default)]
    pub observed_generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<Generated>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// Counts entries into AwaitingApproval within this generation; a decision names the round it
    /// answers, so a refine can never be replayed against the SQL it produced.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub approval_round: u32,
    /// When the current approval wait ends (TimedOut after it), by the controller's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_deadline: Option<DateTime<Utc>>,
    /// The approval request for this round was sent (SQS / chat / log).
    #[serde(default, skip_serializing_if = "is_false")]
    pub approval_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
    /// The terminal notification for `observedGeneration` and `phase` was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The audit trail: every SQL, refine feedback and decision (capped: older entries move to
    /// the store's history archive, the current generation's Generated entry never does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// How many history entries were moved to the archive (`sqlctl describe --history all`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub history_archived: u64,
    /// The decision records of the current approval round already looked at: every record of
    /// this generation and round up to this store `seq` (each decision is processed once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions_seen: Option<DecisionsSeen>,
    /// Failed pre-approval attempts (transient plan or catalog errors) of the
    /// current round: after a bounded number the request ends Failed instead of retrying forever.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pre_approval_attempts: u32,
}

/// A high-water mark of decision records looked at, per approval round.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionsSeen {
    pub generation: u64,
    pub round: u32,
    /// Highest store `seq` of a decision record looked at in this round.
    pub seq: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// The SQL that will run if approved, and how it came about.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generated {
    pub sql: String,
    /// sha256 of the canonical encoding of {engine, database, sql, limits}; see `spec::digest`.
    pub sql_digest: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub explanation: String,
    #[serde(default)]
    pub confidence: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables_used: Vec<String>,
    /// `user` for hand-written SQL, otherwise the provider and model id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Every attempt of this generation round, including failed ones (self-correction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assumptions: Vec<String>,
    /// For a follow-up question (`spec.followUp`): the earlier request this SQL built on, as it
    /// was when generation read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<FollowedRequest>,
    /// Where the SQL came from: the request (`spec.sql`), a generator (the one in `model`), or
    /// a verified query's template with the question's values bound; and what generation was
    /// shown (the semantic model, verified queries as examples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SqlSource>,
}

/// Where the SQL of `status.generated` came from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SqlSource {
    pub kind: SqlSourceKind,
    /// `verifiedQuery`: the VerifiedQuery whose template this SQL instantiates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_query: Option<String>,
    /// `verifiedQuery`: who verified it (shown as "Verified (by X)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    /// `verifiedQuery`: the template's digest when it was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_digest: Option<String>,
    /// `verifiedQuery`: the values bound to its parameters, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// The SemanticModel generation read (`NAME` at generation N), when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_model: Option<String>,
    /// Verified queries shown to the generator as examples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

/// What produced a request's SQL.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum SqlSourceKind {
    /// Written by the requester (`spec.sql`).
    User,
    /// Proposed by the configured generator (offline or a model).
    #[default]
    Generator,
    /// A verified query's template with the question's values bound.
    VerifiedQuery,
}

impl SqlSource {
    /// The label an answer from a verified query carries: `Verified (by alice)`.
    pub fn verified_label(&self) -> Option<String> {
        (self.kind == SqlSourceKind::VerifiedQuery)
            .then(|| format!("Verified (by {})", self.verified_by.as_deref().unwrap_or("unknown")))
    }
}

/// The earlier request a follow-up was generated from (a link that survives the earlier
/// request's later changes: its uid, generation and the digest of the SQL read).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowedRequest {
    pub name: String,
    pub uid: String,
    pub generation: u64,
    /// Digest of the earlier SQL the follow-up started from.
    pub sql_digest: String,
    /// Whether that SQL had run (phase Done) or was only proposed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ran: bool,
}

/// One generation attempt.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attempt {
    pub sql: String,
    /// Why this attempt was not used, if it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
}

/// What the query is expected to scan and cost, before it runs.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Estimate {
    pub bytes: u64,
    pub cost_usd: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    Approve,
    Refine,
    Reject,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Approve => "approve",
            DecisionKind::Refine => "refine",
            DecisionKind::Reject => "reject",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "approve" | "approved" => Some(DecisionKind::Approve),
            "refine" => Some(DecisionKind::Refine),
            "reject" | "rejected" => Some(DecisionKind::Reject),
            _ => None,
        }
    }
}

/// The decision that was projected into status (the first valid one of its round).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalStatus {
    pub decision: DecisionKind,
    pub by: String,
    pub at: DateTime<Utc>,
    pub generation: u64,
    pub sql_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Id of the decision record this was projected from.
    pub decision_id: String,
    /// The approver accepted an estimate over `limits.maxBytesScanned` (`--allow-over-budget`):
    /// the run may then scan up to twice that estimate (never less than the limit).
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_over_budget: bool,
}

/// Execution state of the approved SQL. `token` and `attempt` are written *before* the engine is
/// asked to start (intent first), `id` right after, so a replay attaches instead of re-running.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Execution {
    /// Idempotency token: hash(uid, generation, sqlDigest, attempt).
    pub token: String,
    pub attempt: u32,
    /// Engine's execution id (Athena QueryExecutionId; the token locally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Starting | Running | Succeeded | Failed | Cancelled
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_scanned: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_location: Option<String>,
    /// Where the SVG chart of the result is (next to the result), when one was drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result's columns with the engine's types and the role the approved SQL gives each
    /// (read by the chart, `results -o json`, the console and the chat card, so none of them
    /// guesses a column's meaning from its text). Empty for results recorded before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ResultColumn>,
    /// The one-line answer of a one-row result (shown instead of a chart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
}

/// One column of a result: its name, the engine's type and its role in the query.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResultColumn {
    pub name: String,
    /// The engine's type in SQL spelling: `bigint`, `integer`, `double`, `decimal(15,2)`,
    /// `date`, `timestamp`, `varchar`, `boolean`, … (from DataFusion's Arrow schema or Athena's
    /// `ResultSetMetadata`); empty when the engine did not say.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// `dimension` (a group key, a non-aggregated select item, `date_trunc`/`EXTRACT` of a time)
    /// or `measure` (an aggregate, or arithmetic over aggregates), read from the approved SQL;
    /// absent when the SQL's shape could not say (then charts fall back to the text rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ColumnRole>,
}

/// What a result column means to the query that produced it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ColumnRole {
    /// Says *which* row: an axis, a series or a label, never a value to add up.
    Dimension,
    /// Says *how much*: the values a chart draws.
    Measure,
}

/// The kind of value a column's engine type holds, for formatting and typed output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Integer,
    /// Fixed point with this many digits after the point.
    Decimal(u32),
    Float,
    Date,
    Timestamp,
    Boolean,
    Text,
    /// Unknown or another type (intervals, lists): shown as the engine's text.
    Other,
}

impl ValueKind {
    /// Integer, decimal or floating point.
    pub fn is_numeric(self) -> bool {
        matches!(self, ValueKind::Integer | ValueKind::Decimal(_) | ValueKind::Float)
    }
    /// Date or timestamp.
    pub fn is_temporal(self) -> bool {
        matches!(self, ValueKind::Date | ValueKind::Timestamp)
    }
}

impl ResultColumn {
    /// The kind of value the column's type holds (`decimal(15,2)` → `Decimal(2)`).
    pub fn kind(&self) -> ValueKind {
        let t = self.type_.trim().to_ascii_lowercase();
        let base = t.split(['(', ' ']).next().unwrap_or("");
        match base {
            "tinyint" | "smallint" | "integer" | "int" | "bigint" => ValueKind::Integer,
            "real" | "float" | "double" => ValueKind::Float,
            "decimal" | "numeric" => {
                let scale = t
                    .split_once('(')
                    .and_then(|(_, rest)| rest.trim_end_matches(')').split(',').nth(1).map(str::trim))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                ValueKind::Decimal(scale)
            }
            "date" => ValueKind::Date,
            "timestamp" => ValueKind::Timestamp,
            "boolean" => ValueKind::Boolean,
            "varchar" | "char" | "string" => ValueKind::Text,
            _ => ValueKind::Other,
        }
    }
}

/// The answer of a one-row result: its measures as labelled values (one measure is the
/// headline, `revenue: 21,356,596,030.63`), and the row's dimensions as the context they hold.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Answer {
    pub values: Vec<AnswerValue>,
    /// The row's dimension values (`r_name: ASIA`), when it has any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<AnswerValue>,
}

/// One labelled value, formatted for its type (thousands separators, the decimal's scale).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnswerValue {
    pub name: String,
    /// `null` for SQL NULL.
    pub value: Option<String>,
}

impl Answer {
    /// The answer on one line: `revenue: 21,356,596,030.63`, or `a: 1 · b: 2 (r_name ASIA)`.
    pub fn line(&self) -> String {
        let show = |v: &AnswerValue| format!("{}: {}", v.name, v.value.as_deref().unwrap_or("NULL"));
        let mut out: Vec<String> = self.values.iter().map(show).collect::<Vec<_>>();
        let mut line = out.join(" · ");
        if !self.context.is_empty() {
            out = self.context.iter().map(|v| format!("{} {}", v.name, v.value.as_deref().unwrap_or("NULL"))).collect();
            line.push_str(&format!(" ({})", out.join(", ")));
        }
        line
    }
}

/// A bounded preview of the result, small enough for a DynamoDB item.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preview {
    pub columns: Vec<String>,
    /// Cells rendered as strings; `null` for SQL NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// True when the result had more rows (or bytes) than the preview keeps.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

/// Kubernetes-style condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Generated | Approved | Executed | Ready | Notified | ...
    #[serde(rename = "type")]
    pub type_: String,
    /// True | False | Unknown
    pub status: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
}

/// One entry of the audit trail.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    /// Generated | Decision | DecisionRefused | Executed | Failed | Observed | ...
    pub event: String,
    #[serde(default)]
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An append-only decision record: `approve`, `refine` or `reject` of exactly one
/// `(uid, generation, sqlDigest, round)`. Created only if absent; never edited.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Decision {
    /// Deterministic: hash of (uid, generation, round, by) — one decision per person per round,
    /// so a redelivered queue message or a double click writes nothing new.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: u64,
    pub round: u32,
    pub sql_digest: String,
    pub decision: DecisionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub by: String,
    pub at: DateTime<Utc>,
    /// Where it came from: cli | sqs | console | chat.
    #[serde(default)]
    pub source: String,
    /// The approver accepts an estimate over `limits.maxBytesScanned`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_over_budget: bool,
}

/// The controller's approval policy, stored so the CLI can refuse at once what it can check.
///
/// Every identity in it (`approvers`, per-database `approvers`, `overBudgetApprovers`) is
/// compared with deciders and requesters under one rule (`approval::identity`): trimmed,
/// default-ignorable code points removed, NFKC, Unicode full case folding. So `Alice` here
/// admits `alice`, ` ALICE ` and fullwidth `ａｌｉｃｅ`; four-eyes treats `Rita` and `rita\u{200b}` as
/// the requester `rita`; an entry that normalises to nothing admits nobody.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Who may decide on any database without its own list; empty = anyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Admin approvers per database: for a database listed here, only these may decide.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, DatabasePolicy>,
    /// Four-eyes: the requester may not approve their own request.
    #[serde(default)]
    pub four_eyes: bool,
    /// Default and maximum approval wait (e.g. `24h`); specs may only shorten it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout: Option<DurationSpec>,
    /// Who may approve a request whose estimate exceeds its `limits.maxBytesScanned`
    /// (`approve --allow-over-budget`), among those allowed to decide on it at all; empty =
    /// any of them (the explicit flag is then the safeguard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_budget_approvers: Vec<String>,
    /// Who each channel's principal is: user → the principals that are that user (an STS
    /// assumed-role ARN with its session, an IAM user ARN, an OIDC subject or e-mail from the
    /// console, a local user name). When not empty, requesters and deciders are resolved through
    /// it before every comparison (allow-lists, four-eyes, over-budget approvers), so one person
    /// arriving over two channels is one user; under four-eyes an identity it does not map may
    /// not approve. Compared under the identity rule (trim, NFKC, case folding, no
    /// default-ignorables); a user's own name maps to itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<String, Vec<String>>,
    /// Trusted shapes (off by default): a request whose canonical SQL is exactly an
    /// instantiation of a fresh `VerifiedQuery` of its namespace and database (the template with
    /// only its typed parameters bound) runs without a new human decision, provided the query's
    /// verifier may decide on the request under this policy (and under four-eyes is not its
    /// requester) and the estimate is within `limits.maxBytesScanned`. It is recorded as a
    /// decision by the policy naming the verified query and its verifier, bound to the digest
    /// like any other. Any other difference needs a human.
    #[serde(default, skip_serializing_if = "is_false")]
    pub auto_approve_verified: bool,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabasePolicy {
    pub approvers: Vec<String>,
}
