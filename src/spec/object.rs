//! The kinds of the API group side by side: [`ObjectKind`] names them (as kubectl's resource
//! types do) and [`Object`] holds one stored object of the kinds besides `QueryRequest`.
//!
//! `QueryRequest` keeps its own store calls (its status drives the reconcile loop); the other
//! kinds share one generic set (create, get, list, update with compare-and-set, status, delete),
//! which take and return an [`Object`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ObjectKey;
use super::semantic::{SEMANTIC_MODEL_KIND, SemanticModel};
use super::status::ObjectStatus;
use super::types::{KIND, ObjectMeta};
use super::verified::{VERIFIED_QUERY_KIND, VerifiedQuery};

/// A kind of the `sqlctl.dev/v1alpha1` group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    QueryRequest,
    SemanticModel,
    VerifiedQuery,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [ObjectKind::QueryRequest, ObjectKind::SemanticModel, ObjectKind::VerifiedQuery];

    /// The `kind` field: `SemanticModel`.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::QueryRequest => KIND,
            ObjectKind::SemanticModel => SEMANTIC_MODEL_KIND,
            ObjectKind::VerifiedQuery => VERIFIED_QUERY_KIND,
        }
    }

    /// The lower-case singular kubectl prints before a name: `semanticmodel/tpch`.
    pub fn resource(self) -> &'static str {
        match self {
            ObjectKind::QueryRequest => "queryrequest",
            ObjectKind::SemanticModel => "semanticmodel",
            ObjectKind::VerifiedQuery => "verifiedquery",
        }
    }

    /// The plural: `semanticmodels`.
    pub fn plural(self) -> &'static str {
        match self {
            ObjectKind::QueryRequest => "queryrequests",
            ObjectKind::SemanticModel => "semanticmodels",
            ObjectKind::VerifiedQuery => "verifiedqueries",
        }
    }

    /// The short name: `sm`.
    pub fn short(self) -> &'static str {
        match self {
            ObjectKind::QueryRequest => "qr",
            ObjectKind::SemanticModel => "sm",
            ObjectKind::VerifiedQuery => "vq",
        }
    }

    /// The kind a `kind:` field names (exactly, as Kubernetes compares it).
    pub fn from_kind(kind: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// A resource type as `get`/`describe`/`delete` take it: plural, singular, short name or
    /// kind, case-insensitive (`semanticmodels`, `semanticmodel`, `sm`, `SemanticModel`).
    pub fn parse_resource(s: &str) -> Option<ObjectKind> {
        let s = s.to_ascii_lowercase();
        ObjectKind::ALL.into_iter().find(|k| {
            [k.plural(), k.resource(), k.short()].contains(&s.as_str()) || k.as_str().eq_ignore_ascii_case(&s)
        })
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object of a kind other than `QueryRequest`, as the store's generic calls take it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Object {
    SemanticModel(SemanticModel),
    VerifiedQuery(VerifiedQuery),
}

impl From<SemanticModel> for Object {
    fn from(m: SemanticModel) -> Self {
        Object::SemanticModel(m)
    }
}

impl From<VerifiedQuery> for Object {
    fn from(v: VerifiedQuery) -> Self {
        Object::VerifiedQuery(v)
    }
}

impl Object {
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::SemanticModel(_) => ObjectKind::SemanticModel,
            Object::VerifiedQuery(_) => ObjectKind::VerifiedQuery,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::SemanticModel(o) => &o.metadata,
            Object::VerifiedQuery(o) => &o.metadata,
        }
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::SemanticModel(o) => &mut o.metadata,
            Object::VerifiedQuery(o) => &mut o.metadata,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let m = self.metadata();
        ObjectKey::new(m.namespace(), &m.name)
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    pub fn uid(&self) -> &str {
        self.metadata().uid.as_deref().unwrap_or("")
    }

    pub fn generation(&self) -> u64 {
        self.metadata().generation.unwrap_or(0)
    }

    /// The database the object is about.
    pub fn database(&self) -> &str {
        match self {
            Object::SemanticModel(o) => &o.spec.database,
            Object::VerifiedQuery(o) => &o.spec.database,
        }
    }

    pub fn status(&self) -> Option<&ObjectStatus> {
        match self {
            Object::SemanticModel(o) => o.status.as_ref(),
            Object::VerifiedQuery(o) => o.status.as_ref(),
        }
    }

    pub fn status_mut(&mut self) -> &mut Option<ObjectStatus> {
        match self {
            Object::SemanticModel(o) => &mut o.status,
            Object::VerifiedQuery(o) => &mut o.status,
        }
    }

    /// `apiVersion` and `kind` as the store writes them (from the variant, whatever the client
    /// sent).
    pub fn stamp_type(&mut self) {
        let kind = self.kind().as_str().to_string();
        let (api, k) = match self {
            Object::SemanticModel(o) => (&mut o.api_version, &mut o.kind),
            Object::VerifiedQuery(o) => (&mut o.api_version, &mut o.kind),
        };
        *api = super::API_VERSION.to_string();
        *k = kind;
    }

    /// The spec as JSON: what a store compares to decide whether the generation moves.
    pub fn spec_json(&self) -> String {
        match self {
            Object::SemanticModel(o) => serde_json::to_string(&o.spec),
            Object::VerifiedQuery(o) => serde_json::to_string(&o.spec),
        }
        .unwrap_or_default()
    }

    /// Takes `other`'s spec (same kind; otherwise nothing changes). Returns whether it differed.
    pub fn replace_spec(&mut self, other: &Object) -> bool {
        let changed = self.spec_json() != other.spec_json();
        match (self, other) {
            (Object::SemanticModel(a), Object::SemanticModel(b)) => a.spec = b.spec.clone(),
            (Object::VerifiedQuery(a), Object::VerifiedQuery(b)) => a.spec = b.spec.clone(),
            _ => return false,
        }
        changed
    }

    /// Parses a stored JSON document of `kind`.
    pub fn from_json(kind: ObjectKind, json: &str) -> Result<Object, String> {
        match kind {
            ObjectKind::SemanticModel => serde_json::from_str(json).map(Object::SemanticModel),
            ObjectKind::VerifiedQuery => serde_json::from_str(json).map(Object::VerifiedQuery),
            ObjectKind::QueryRequest => return Err("a QueryRequest is not a generic object".into()),
        }
        .map_err(|e| e.to_string())
    }

    /// The object as JSON (the whole document, status included).
    pub fn to_json(&self) -> String {
        match self {
            Object::SemanticModel(o) => serde_json::to_string(o),
            Object::VerifiedQuery(o) => serde_json::to_string(o),
        }
        .unwrap_or_default()
    }

    pub fn as_semantic_model(&self) -> Option<&SemanticModel> {
        match self {
            Object::SemanticModel(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_verified_query(&self) -> Option<&VerifiedQuery> {
        match self {
            Object::VerifiedQuery(o) => Some(o),
            _ => None,
        }
    }
}
