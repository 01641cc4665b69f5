//! The `VerifiedQuery` resource: a question a person has checked the answer to, kept as a
//! template.
//!
//! The question (and its paraphrases), the canonical SQL with typed parameters in place of the
//! literals a question supplies (`WHERE r_name = :region AND o_orderdate >= :start`), the
//! database, who verified it and when, and where it came from (the request it was verified from).
//! `status.templateDigest` is the sha256 of the canonical template ([`template_digest`]), and
//! `status.conditions` says whether it still plans against the catalog (`Stale`).
//!
//! How a template is matched against SQL and instantiated is the guard's (`guard::template`),
//! which parses with the engine's parser; this module holds the data and the checks that need no
//! parser.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::status::ObjectStatus;
use super::types::{API_VERSION, ObjectMeta};
use super::validate::{
    FieldError, check_header, check_metadata, check_text, index_path, validate_column, validate_identifier,
    validate_name,
};
use super::{MAX_QUESTION_CHARS, MAX_SQL_BYTES};

/// `kind` of a verified query.
pub const VERIFIED_QUERY_KIND: &str = "VerifiedQuery";
/// Most paraphrases of one question.
pub const MAX_PARAPHRASES: usize = 32;
/// Most parameters of one template.
pub const MAX_PARAMETERS: usize = 32;
/// Longest parameter example, in characters.
pub const MAX_EXAMPLE_CHARS: usize = 1000;
/// Longest `verifiedBy`, in characters (an identity as a channel spells it, ARNs included).
pub const MAX_VERIFIER_CHARS: usize = 256;
/// Version tag hashed first in [`template_digest`].
pub const TEMPLATE_DIGEST_VERSION: &str = "sqlctl.dev/template-digest/v1";

/// A verified question and its SQL, as a template with typed parameters.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "VerifiedQuery")]
pub struct VerifiedQuery {
    /// Always `sqlctl.dev/v1alpha1`.
    pub api_version: String,
    /// Always `VerifiedQuery`.
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: VerifiedQuerySpec,
    /// Written by the controller only; ignored by `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ObjectStatus>,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifiedQuerySpec {
    /// The question, as a person asked it.
    pub question: String,
    /// Other ways to ask the same question.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paraphrases: Vec<String>,
    /// The database the SQL reads.
    pub database: String,
    /// The SQL, with a named placeholder (`:region`) wherever a parameter goes: one read-only
    /// query the guard accepts once the placeholders hold their examples.
    pub sql: String,
    /// One entry per placeholder in `sql`, each declared once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<TemplateParameter>,
    /// Who verified the answer. Set by sqlctl to whoever applies or verifies it (a file may name
    /// only the person applying it), and that person must be allowed to approve on `database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by: Option<String>,
    /// When; set by sqlctl with `verifiedBy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    /// The request it was verified from (`sqlctl verify`), when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// One typed parameter of a template: a literal the question supplies.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateParameter {
    /// The placeholder's name without the colon: lower-case letters, digits and `_`.
    pub name: String,
    /// What the literal is: `string`, `number` or `date` (`YYYY-MM-DD`).
    #[serde(rename = "type")]
    pub type_: ParameterType,
    /// The column whose values it holds (`region.r_name`), when it is compared to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The value that ran when the query was verified (`ASIA`, `1995`, `1995-01-01`).
    pub example: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The type of a template parameter.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    /// A single-quoted string literal.
    #[default]
    String,
    /// A numeric literal (`10`, `0.05`).
    Number,
    /// A date: `DATE 'YYYY-MM-DD'`, or a string literal holding one.
    Date,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Number => "number",
            ParameterType::Date => "date",
        }
    }

    /// Is `value` a value of this type (as written in `example`, without quotes)?
    pub fn admits(self, value: &str) -> bool {
        match self {
            ParameterType::String => !value.contains('\0'),
            ParameterType::Number => is_number(value),
            ParameterType::Date => is_date(value),
        }
    }
}

/// An unsigned decimal number as SQL writes it: `10`, `0.05`, `1e6`, `.5`.
pub fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 64 {
        return false;
    }
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    let dots = mantissa.bytes().filter(|&c| c == b'.').count();
    let mantissa_ok = digits > 0 && dots <= 1 && mantissa.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// A calendar date `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// Where a verified query came from: the request whose run was verified.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provenance {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: u64,
    /// The digest the approval of that run named.
    pub sql_digest: String,
}

impl VerifiedQuery {
    /// A new verified query named `name`: `question` answered by `sql` on `database`.
    pub fn new(
        name: impl Into<String>,
        database: impl Into<String>,
        question: impl Into<String>,
        sql: impl Into<String>,
    ) -> Self {
        VerifiedQuery {
            api_version: API_VERSION.into(),
            kind: VERIFIED_QUERY_KIND.into(),
            metadata: ObjectMeta { name: name.into(), ..Default::default() },
            spec: VerifiedQuerySpec {
                question: question.into(),
                database: database.into(),
                sql: sql.into(),
                ..Default::default()
            },
            status: None,
        }
    }

    pub fn parameter(&self, name: &str) -> Option<&TemplateParameter> {
        self.spec.parameters.iter().find(|p| p.name == name)
    }

    /// Usable for answering and for auto-approval: planned at its current generation, and not
    /// `Stale`.
    pub fn is_fresh(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.observed_generation == self.metadata.generation.unwrap_or(0)
                && s.template_digest.is_some()
                && s.condition("Stale").is_some_and(|c| c.status == "False")
        })
    }
}

/// The digest of a canonical template on `database`: sha256 over a versioned, length-prefixed
/// encoding (as [`super::digest::sql_digest`]), lower-case hex.
pub fn template_digest(database: &str, canonical_template: &str, parameters: &[TemplateParameter]) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update(b"=");
        h.update((value.len() as u64).to_be_bytes());
        h.update(value);
        h.update(b"\n");
    };
    field("version", TEMPLATE_DIGEST_VERSION.as_bytes());
    field("database", database.as_bytes());
    field("sql", canonical_template.as_bytes());
    for p in parameters {
        field("parameter", p.name.as_bytes());
        field("type", p.type_.as_str().as_bytes());
    }
    hex::encode(h.finalize())
}

/// Checks everything serde (and a parser) need not: returns every problem found.
pub fn validate(vq: &VerifiedQuery) -> Vec<FieldError> {
    let mut errs = Vec::new();
    check_header(&vq.api_version, &vq.kind, VERIFIED_QUERY_KIND, &mut errs);
    check_metadata(&vq.metadata, &mut errs);
    let s = &vq.spec;
    check_text("spec.question", &s.question, MAX_QUESTION_CHARS, true, &mut errs);
    if s.paraphrases.len() > MAX_PARAPHRASES {
        errs.push(FieldError::new(
            "spec.paraphrases",
            format!("at most {MAX_PARAPHRASES} paraphrases are allowed (got {})", s.paraphrases.len()),
        ));
    }
    for (i, p) in s.paraphrases.iter().enumerate() {
        check_text(&index_path("spec.paraphrases", i), p, MAX_QUESTION_CHARS, true, &mut errs);
    }
    if let Err(m) = validate_identifier(&s.database) {
        errs.push(FieldError::new("spec.database", m));
    }
    if s.sql.trim().is_empty() {
        errs.push(FieldError::new("spec.sql", "must not be blank"));
    } else if s.sql.len() > MAX_SQL_BYTES {
        errs.push(FieldError::new("spec.sql", format!("must be at most {MAX_SQL_BYTES} bytes (got {})", s.sql.len())));
    } else if s.sql.contains('\0') {
        errs.push(FieldError::new("spec.sql", "must not contain NUL characters"));
    }
    if s.parameters.len() > MAX_PARAMETERS {
        errs.push(FieldError::new(
            "spec.parameters",
            format!("at most {MAX_PARAMETERS} parameters are allowed (got {})", s.parameters.len()),
        ));
    }
    let mut seen = HashSet::new();
    for (i, p) in s.parameters.iter().enumerate() {
        let path = index_path("spec.parameters", i);
        if let Err(m) = validate_identifier(&p.name) {
            errs.push(FieldError::new(format!("{path}.name"), m));
        } else if !seen.insert(p.name.as_str()) {
            errs.push(FieldError::new(
                format!("{path}.name"),
                format!("parameter {:?} is declared more than once", p.name),
            ));
        }
        if let Some(c) = &p.column {
            let ok = match c.split_once('.') {
                Some((t, col)) => validate_identifier(t).is_ok() && validate_column(col).is_ok(),
                None => validate_column(c).is_ok(),
            };
            if !ok {
                errs.push(FieldError::new(
                    format!("{path}.column"),
                    format!("{c:?} is not a column: write `table.column` or `column`"),
                ));
            }
        }
        if p.example.chars().count() > MAX_EXAMPLE_CHARS {
            errs.push(FieldError::new(
                format!("{path}.example"),
                format!("must be at most {MAX_EXAMPLE_CHARS} characters"),
            ));
        } else if !p.type_.admits(&p.example) {
            let want = match p.type_ {
                ParameterType::String => "a string without NUL characters",
                ParameterType::Number => "an unsigned number such as 10 or 0.05",
                ParameterType::Date => "a date written YYYY-MM-DD",
            };
            errs.push(FieldError::new(format!("{path}.example"), format!("{:?} is not {want}", p.example)));
        }
        if let Some(d) = &p.description {
            check_text(&format!("{path}.description"), d, super::semantic::MAX_DESCRIPTION_CHARS, true, &mut errs);
        }
    }
    if let Some(v) = &s.verified_by {
        // An identity as a channel spells it: a user name, an e-mail, an ARN.
        check_text("spec.verifiedBy", v, MAX_VERIFIER_CHARS, false, &mut errs);
        if v.chars().any(char::is_whitespace) {
            errs.push(FieldError::new("spec.verifiedBy", "must not contain spaces"));
        }
    }
    if let Some(p) = &s.provenance {
        if let Err(m) = validate_name(&p.namespace) {
            errs.push(FieldError::new("spec.provenance.namespace", m));
        }
        if let Err(m) = validate_name(&p.name) {
            errs.push(FieldError::new("spec.provenance.name", m));
        }
        if p.uid.is_empty() || p.uid.len() > 64 || !p.uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            errs.push(FieldError::new("spec.provenance.uid", "must be the request's uid"));
        }
        if p.sql_digest.len() != 64 || !p.sql_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            errs.push(FieldError::new("spec.provenance.sqlDigest", "must be the 64 hex characters of a sqlDigest"));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> VerifiedQuery {
        let mut vq = VerifiedQuery::new(
            "revenue-by-region",
            "tpch",
            "What was the revenue in ASIA in 1995?",
            "select sum(l_extendedprice) from lineitem where l_shipmode = :mode and l_shipdate >= :start",
        );
        vq.spec.parameters = vec![
            TemplateParameter {
                name: "mode".into(),
                type_: ParameterType::String,
                column: Some("lineitem.l_shipmode".into()),
                example: "AIR".into(),
                description: None,
            },
            TemplateParameter {
                name: "start".into(),
                type_: ParameterType::Date,
                column: None,
                example: "1995-01-01".into(),
                description: None,
            },
        ];
        vq
    }

    #[test]
    fn a_good_verified_query_has_no_errors() {
        assert_eq!(validate(&good()), vec![]);
    }

    #[test]
    fn parameters_are_declared_once_and_examples_have_their_type() {
        let mut vq = good();
        vq.spec.parameters[1].name = "mode".into();
        vq.spec.parameters[0].column = Some("a.b.c".into());
        vq.spec.parameters.push(TemplateParameter {
            name: "n".into(),
            type_: ParameterType::Number,
            example: "ten".into(),
            ..Default::default()
        });
        vq.spec.verified_by = Some("eve smith".into());
        let paths: Vec<String> = validate(&vq).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            ["spec.parameters[0].column", "spec.parameters[1].name", "spec.parameters[2].example", "spec.verifiedBy"]
        );
    }

    #[test]
    fn numbers_and_dates() {
        for ok in ["10", "0.05", ".5", "1e6", "2E-3"] {
            assert!(is_number(ok), "{ok}");
        }
        for bad in ["", "-1", "1.2.3", "e5", "1e", "0x10", "1_000"] {
            assert!(!is_number(bad), "{bad}");
        }
        assert!(is_date("1995-01-31"));
        assert!(!is_date("1995-02-30") && !is_date("1995-1-1") && !is_date("95-01-01"));
    }

    #[test]
    fn the_template_digest_is_versioned_and_covers_types() {
        let vq = good();
        let d = template_digest("tpch", &vq.spec.sql, &vq.spec.parameters);
        assert_eq!(d.len(), 64);
        assert_ne!(d, template_digest("tpch2", &vq.spec.sql, &vq.spec.parameters));
        let mut p = vq.spec.parameters.clone();
        p[1].type_ = ParameterType::String;
        assert_ne!(d, template_digest("tpch", &vq.spec.sql, &p));
    }
}
