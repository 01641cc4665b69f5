//! The `Generator`: turns a question (plus schema context, earlier SQL and feedback, and the last
//! error) into a SQL proposal. Bedrock, OpenAI-compatible and offline providers plug in here.

#[cfg(feature = "aws")]
pub mod bedrock;
pub mod offline;
pub mod openai;
pub mod prompt;
pub mod semantic;
pub mod verified;

use async_trait::async_trait;

use crate::catalog::Table;
use crate::spec::EngineKind;

/// One earlier proposal and what the approver said about it (refine).
#[derive(Clone, Debug, PartialEq)]
pub struct PriorTurn {
    pub sql: String,
    pub feedback: String,
}

/// Everything a provider sees.
#[derive(Clone, Debug)]
pub struct GenerateInput {
    pub question: String,
    pub database: String,
    pub engine: EngineKind,
    pub tables: Vec<Table>,
    pub history: Vec<PriorTurn>,
    /// The guard's or the planner's complaint about the previous attempt.
    pub last_error: Option<String>,
    /// Notes from the data team the answer must follow ("always match names with ILIKE",
    /// "TSC means total sales count"): an eval case's instructions today, a semantic model's
    /// instructions field later. LLM providers see them in the prompt; the offline generator
    /// reads only the question and declines what it cannot place.
    pub instructions: Vec<String>,
    /// The earlier request this question follows up on (`spec.followUp`), when there is one.
    pub follow_up: Option<FollowUp>,
    /// The database's semantic model (metrics, filters, time dimensions, relationships) for the
    /// prompt; its descriptions, synonyms and samples are already in `tables` (see
    /// [`semantic::enrich`]) and its instructions in `instructions`.
    pub semantic: Option<crate::spec::semantic::SemanticModelSpec>,
    /// The verified queries most like the question, as examples for an LLM prompt.
    pub examples: Vec<verified::Example>,
}

/// What a follow-up question builds on: the earlier request's question, how its SQL was refined,
/// the SQL itself and its result columns.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FollowUp {
    /// The earlier request's name (for the prompt and for messages).
    pub name: String,
    /// Its question; `None` when it was hand-written SQL.
    pub question: Option<String>,
    /// The refine turns that shaped its SQL, oldest first.
    pub history: Vec<PriorTurn>,
    /// The SQL it ran (or last proposed, when it has not run).
    pub sql: String,
    /// Its result columns as `(name, engine type)`, when it ran; empty otherwise.
    pub columns: Vec<(String, String)>,
}

/// What every provider returns.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlProposal {
    pub sql: String,
    #[serde(default)]
    pub explanation: String,
    #[serde(default)]
    pub tables_used: Vec<String>,
    #[serde(default)]
    pub confidence: f64,
    #[serde(default)]
    pub assumptions: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("model temporarily unavailable: {0}")]
    Transient(String),
    /// The model declined or cannot answer: the request fails with this reason.
    #[error("cannot answer: {0}")]
    CannotAnswer(String),
    /// The reply could not be used (malformed); counts as a failed attempt.
    #[error("unusable model output: {0}")]
    Malformed(String),
}

#[async_trait]
pub trait Generator: Send + Sync + 'static {
    /// `provider/model`, recorded in `status.generated.model`.
    fn model(&self) -> String;
    async fn generate(&self, input: &GenerateInput) -> Result<(SqlProposal, Option<(u64, u64)>), GenerateError>;
}
