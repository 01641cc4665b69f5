//! [`ObjectStatus`]: what the controller writes on a `SemanticModel` or `VerifiedQuery`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::Condition;

/// Condition type set on a model or verified query that no longer plans against the catalog.
pub const STALE_CONDITION: &str = "Stale";

/// What the controller writes on a `SemanticModel` or `VerifiedQuery`: whether it still plans
/// against the catalog, and the shapes of the tables it was planned against (drift is a change
/// of one of them).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectStatus {
    /// The generation this status describes.
    #[serde(default)]
    pub observed_generation: u64,
    /// When it was last planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_at: Option<DateTime<Utc>>,
    /// Tables the object reads, each with a digest of the shape (column names and types) the
    /// catalog gave when it was last planned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub table_shapes: BTreeMap<String, String>,
    /// VerifiedQuery: the template in the guard's canonical rendering (placeholders `:name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_sql: Option<String>,
    /// VerifiedQuery: sha256 of the canonical template (`spec::verified::template_digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_digest: Option<String>,
    /// `Stale`: True with the planning error when it no longer plans, False when it does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl ObjectStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Sets (or updates) a condition; `lastTransitionTime` moves only when `status` changes.
    pub fn set_condition(&mut self, type_: &str, status: &str, reason: &str, message: impl Into<String>) {
        set_condition(&mut self.conditions, type_, status, reason, message.into());
    }

    /// `Stale` is True.
    pub fn is_stale(&self) -> bool {
        self.condition(STALE_CONDITION).is_some_and(|c| c.status == "True")
    }
}

/// Sets condition `type_` in `conditions`; its `lastTransitionTime` moves only when `status` does.
pub fn set_condition(conditions: &mut Vec<Condition>, type_: &str, status: &str, reason: &str, message: String) {
    let now = Utc::now();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now;
        }
        c.status = status.into();
        c.reason = reason.into();
        c.message = message;
    } else {
        conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: now,
        });
    }
}
