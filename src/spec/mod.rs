//! The resources of `sqlctl.dev/v1alpha1` (`QueryRequest`, `SemanticModel`, `VerifiedQuery`):
//! types, quantities, validation, loading and the digests.
//!
//! This module imports no other module of the crate: everything else builds on it.

pub mod digest;
pub mod load;
pub mod object;
pub mod quantity;
pub mod semantic;
pub mod status;
pub mod text;
pub mod types;
pub mod validate;
pub mod verified;

use std::fmt;
use std::time::Duration;

pub use digest::{EffectiveLimits, digest_matches, sql_digest};
pub use object::{Object, ObjectKind};
pub use quantity::{ByteSize, DurationSpec};
pub use semantic::{SEMANTIC_MODEL_KIND, SemanticModel, SemanticModelSpec};
pub use status::{ObjectStatus, STALE_CONDITION};
pub use types::*;
pub use verified::{
    ParameterType, Provenance, TemplateParameter, VERIFIED_QUERY_KIND, VerifiedQuery, VerifiedQuerySpec,
};

/// Preview rows kept when `limits.maxRows` is absent.
pub const DEFAULT_MAX_ROWS: u64 = 1000;
/// Upper bound for `limits.maxRows` (the preview must fit a 400 KB DynamoDB item).
pub const MAX_MAX_ROWS: u64 = 100_000;
/// Result file size limit when `limits.maxResultBytes` is absent: 1 GiB.
pub const DEFAULT_MAX_RESULT_BYTES: u64 = 1 << 30;
/// Query timeout when `limits.timeout` is absent.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest query timeout accepted.
pub const MAX_QUERY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest approval wait accepted in a spec.
pub const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;
/// Longest hand-written SQL accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 100_000;

/// `namespace/name`: how the controller's queue and the CLI name a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ObjectMeta {
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

impl QueryRequest {
    /// A new request named `name` over `database`: the current `apiVersion` and `kind`, the
    /// default namespace, an otherwise empty spec and no status. The one way requests are built
    /// in code (`ask`, tests, benches); fill in the rest with the `with_*` methods or directly.
    pub fn new(name: impl Into<String>, database: impl Into<String>) -> Self {
        QueryRequest {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: ObjectMeta { name: name.into(), ..Default::default() },
            spec: QueryRequestSpec {
                catalog: CatalogRef { database: database.into(), tables: vec![] },
                ..Default::default()
            },
            status: None,
        }
    }
    /// Asks `question` in plain language.
    #[must_use]
    pub fn with_question(mut self, question: impl Into<String>) -> Self {
        self.spec.question = Some(question.into());
        self
    }
    /// Runs the hand-written `sql`.
    #[must_use]
    pub fn with_sql(mut self, sql: impl Into<String>) -> Self {
        self.spec.sql = Some(sql.into());
        self
    }
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.metadata.namespace = Some(namespace.into());
        self
    }
    #[must_use]
    pub fn with_labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.metadata.labels.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }
    #[must_use]
    pub fn with_status(mut self, status: QueryRequestStatus) -> Self {
        self.status = Some(status);
        self
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(self.metadata.namespace(), &self.metadata.name)
    }
    pub fn uid(&self) -> &str {
        self.metadata.uid.as_deref().unwrap_or("")
    }
    pub fn generation(&self) -> u64 {
        self.metadata.generation.unwrap_or(0)
    }
    pub fn phase(&self) -> Phase {
        self.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }
    pub fn requester(&self) -> Option<&str> {
        self.metadata.annotations.get(REQUESTER_ANNOTATION).map(String::as_str)
    }
}

impl HistoryEntry {
    /// An audit-trail entry for `event` of `generation`, stamped now, with nothing else set.
    pub fn new(event: impl Into<String>, generation: u64) -> Self {
        HistoryEntry {
            at: chrono::Utc::now(),
            event: event.into(),
            generation,
            sql: None,
            sql_digest: None,
            by: None,
            decision: None,
            decision_id: None,
            feedback: None,
            message: None,
        }
    }
}

impl QueryRequestSpec {
    /// Limits with defaults applied.
    pub fn effective_limits(&self) -> EffectiveLimits {
        EffectiveLimits {
            max_rows: self.limits.max_rows.unwrap_or(DEFAULT_MAX_ROWS),
            max_bytes_scanned: self.limits.max_bytes_scanned.as_ref().map(ByteSize::bytes),
            timeout_ms: self
                .limits
                .timeout
                .as_ref()
                .map(DurationSpec::as_duration)
                .unwrap_or(DEFAULT_QUERY_TIMEOUT)
                .as_millis() as u64,
            max_result_bytes: self.limits.max_result_bytes.as_ref().map_or(DEFAULT_MAX_RESULT_BYTES, ByteSize::bytes),
        }
    }
}

impl QueryRequestStatus {
    /// Sets (or updates) a condition; `lastTransitionTime` moves only when `status` changes.
    pub fn set_condition(&mut self, type_: &str, status: &str, reason: &str, message: impl Into<String>) {
        let message = message.into();
        let now = chrono::Utc::now();
        if let Some(c) = self.conditions.iter_mut().find(|c| c.type_ == type_) {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
        } else {
            self.conditions.push(Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message,
                last_transition_time: now,
            });
        }
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// JSON Schema of the resource, as written to `schemas/queryrequest.v1alpha1.json`.
pub fn json_schema() -> String {
    json_schema_of(ObjectKind::QueryRequest)
}

/// JSON Schema of `kind`, as written to `schemas/<kind>.v1alpha1.json`.
pub fn json_schema_of(kind: ObjectKind) -> String {
    let schema = match kind {
        ObjectKind::QueryRequest => schemars::schema_for!(QueryRequest),
        ObjectKind::SemanticModel => schemars::schema_for!(SemanticModel),
        ObjectKind::VerifiedQuery => schemars::schema_for!(VerifiedQuery),
    };
    let mut s = serde_json::to_string_pretty(&schema).expect("schema serializes");
    s.push('\n');
    s
}

/// Where `schemas/` keeps the schema of `kind`, relative to the repository root.
pub fn schema_file(kind: ObjectKind) -> String {
    format!("schemas/{}.v1alpha1.json", kind.resource())
}
