//! Verifying a request that ran: the `VerifiedQuery` that `sqlctl verify` and the console's
//! Verify form make from it, with the same checks on both paths.
//!
//! The verified query holds the request's question (or one given for hand-written SQL), the
//! exact SQL that ran as a template (`guard::template::propose` turns the literals a question
//! supplies into typed parameters), the approver of that run as `verifiedBy`, and the
//! request's namespace, name, uid, generation and sqlDigest as provenance. Only a request in
//! phase Done at its current generation, whose approval named the SQL that ran, can be
//! verified, and only by someone allowed to approve on its database ([`super::may_verify`]).

use crate::spec::{Phase, Policy, Provenance, QueryRequest, VerifiedQuery};

/// Why a request cannot be verified. Every message says what to do instead.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("{name} is {phase}, not Done: only a request whose approved SQL ran can be verified")]
    NotDone { name: String, phase: Phase },
    #[error(
        "{name} has hand-written SQL and no question: say what it answers with --question \"…\" (a verified query is found by its question)"
    )]
    NoQuestion { name: String },
    #[error("{name} has no recorded approval of the SQL that ran, so there is nobody to name as its verifier")]
    NoApproval { name: String },
    #[error("{by} may not verify {name}: {why}")]
    NotAllowed { name: String, by: String, why: String },
    #[error("{0}")]
    Invalid(String),
}

/// The VerifiedQuery that verifying `req` as `by` (under `policy`) makes, named `vq_name`:
/// checked like an applied one (validation and the template check), not yet stored.
/// `column_table` names the table of a bare column, when the catalog knows it.
pub fn build(
    req: &QueryRequest,
    vq_name: &str,
    question: Option<&str>,
    by: &str,
    policy: &Policy,
    column_table: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<VerifiedQuery, Refusal> {
    let name = req.metadata.name.clone();
    let st = req.status.clone().unwrap_or_default();
    if st.phase != Phase::Done || st.observed_generation != req.generation() {
        return Err(Refusal::NotDone { name, phase: st.phase });
    }
    let question = question.map(str::to_string).or_else(|| req.spec.question.clone());
    let Some(question) = question.filter(|q| !q.trim().is_empty()) else {
        return Err(Refusal::NoQuestion { name });
    };
    let (Some(generated), Some(approval)) = (st.generated.as_ref(), st.approval.as_ref()) else {
        return Err(Refusal::NoApproval { name });
    };
    if approval.sql_digest != generated.sql_digest || approval.generation != req.generation() {
        return Err(Refusal::NoApproval { name });
    }
    let database = req.spec.catalog.database.clone();
    super::may_verify(policy, &database, by).map_err(|why| Refusal::NotAllowed {
        name: name.clone(),
        by: by.to_string(),
        why,
    })?;
    let (template, parameters) = crate::guard::template::propose(&generated.sql, column_table)
        .map_err(|e| Refusal::Invalid(format!("the SQL that ran cannot be made a template: {e}")))?;
    let mut vq = VerifiedQuery::new(vq_name, &database, question, template);
    vq.metadata.namespace = Some(req.metadata.namespace().to_string());
    vq.spec.parameters = parameters;
    vq.spec.verified_by = Some(approval.by.clone());
    vq.spec.verified_at = Some(chrono::Utc::now());
    vq.spec.provenance = Some(Provenance {
        namespace: req.metadata.namespace().to_string(),
        name: req.metadata.name.clone(),
        uid: req.uid().to_string(),
        generation: req.generation(),
        sql_digest: generated.sql_digest.clone(),
    });
    let errs = crate::spec::verified::validate(&vq);
    let errs = if errs.is_empty() { crate::guard::template::check_verified_query(&vq) } else { errs };
    if !errs.is_empty() {
        let all: Vec<String> = errs.iter().map(ToString::to_string).collect();
        return Err(Refusal::Invalid(format!("the verified query would be invalid: {}", all.join("; "))));
    }
    Ok(vq)
}
