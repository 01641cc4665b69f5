//! Trusted shapes: a request whose SQL is exactly an instantiation of a verified query may run
//! without a new human decision, by policy only (`policy.autoApproveVerified`, off by default).
//!
//! When a request enters AwaitingApproval, [`find`] looks for a `VerifiedQuery` of its namespace
//! and database that the SQL about to run instantiates ([`eligible`]): the query's template with
//! only its typed parameters bound (`guard::template::matches`, an AST comparison; any other
//! difference, down to one token, is no match), the query fresh (planned at its generation and
//! not `Stale`, its planned template digest the one its spec gives now), its verifier one who
//! may decide on this request under the policy (and the spec's narrowing), under four-eyes not
//! the request's requester, and the estimate within `limits.maxBytesScanned` (an over-budget
//! run always needs a human's `--allow-over-budget`).
//!
//! The approval is then a decision record like any other, bound to `(uid, generation, round,
//! sqlDigest)`, written by the controller with source `policy` and `by` naming the verified
//! query ([`decision`]), its comment naming the verifier, the template digest and the values
//! bound. It is projected like every decision, after [`recheck`] proves it again from the
//! records as they are at that moment, so a record that merely claims to be the policy's
//! approves nothing. The guard and the engine's read-only wall apply as to every query.

use super::Context;
use crate::approval;
use crate::guard::template::{Bindings, check_template, could_match, matches};
use crate::identity;
use crate::spec::digest::token;
use crate::spec::{Decision, DecisionKind, ObjectKind, QueryRequest, VerifiedQuery};
use crate::store::LabelSelector;

/// `source` of a decision the policy made.
pub const POLICY_SOURCE: &str = "policy";
/// `by` of a policy decision: this prefix, then the verified query's `namespace/name`.
pub const POLICY_BY_PREFIX: &str = "policy:verifiedquery/";

/// A verified query the request's SQL instantiates, with who verified it and the values bound.
#[derive(Clone, Debug)]
pub struct Trusted {
    pub vq: VerifiedQuery,
    pub verifier: String,
    pub bindings: Bindings,
}

/// Why `vq` does (or does not) let `req` run without a human: see the module docs.
pub fn eligible(ctx: &Context, req: &QueryRequest, vq: &VerifiedQuery) -> Result<Trusted, String> {
    let policy = &ctx.policy;
    if !policy.auto_approve_verified {
        return Err("the policy does not let verified queries approve (autoApproveVerified is off)".into());
    }
    let db = &req.spec.catalog.database;
    if vq.metadata.namespace() != req.metadata.namespace() || &vq.spec.database != db {
        return Err("the verified query is of another namespace or database".into());
    }
    if !vq.is_fresh() {
        return Err("the verified query is not planned at its generation, or is Stale".into());
    }
    let sql = req.status.as_ref().and_then(|s| s.generated.as_ref()).map(|g| g.sql.as_str()).unwrap_or_default();
    // Text first (no parsing): most verified queries are not this shape at all.
    if let Some(planned) = vq.status.as_ref().and_then(|s| s.canonical_sql.as_deref())
        && !could_match(planned, sql)
    {
        return Err("the SQL is not an instantiation of the verified template".into());
    }
    let template = check_template(vq).map_err(|e| format!("the verified query's template is refused: {e}"))?;
    if vq.status.as_ref().and_then(|s| s.template_digest.as_deref()) != Some(template.digest.as_str()) {
        return Err("the verified query's planned template is not the one its spec gives".into());
    }
    let Some(verifier) = vq.spec.verified_by.clone().filter(|v| !identity::normalize(v).is_empty()) else {
        return Err("the verified query names no verifier".into());
    };
    let who = identity::resolve(&policy.identities, &verifier).unwrap_or_else(|| verifier.clone());
    if let Some(allowed) = approval::allowed_deciders(policy, req)
        && !identity::listed(&allowed, &who)
    {
        return Err(format!("its verifier {verifier} may not decide on this request"));
    }
    if policy.four_eyes {
        let requester = req
            .requester()
            .map(|r| identity::resolve(&policy.identities, r).unwrap_or_else(|| identity::short_name(r)));
        if requester.as_deref().is_some_and(|r| identity::same(r, &who)) {
            return Err(format!("four-eyes: its verifier {verifier} requested this request"));
        }
    }
    if approval::over_budget(req).is_some() {
        return Err("the estimate exceeds limits.maxBytesScanned, which takes a human's --allow-over-budget".into());
    }
    let bindings = matches(vq, sql).ok_or("the SQL is not an instantiation of the verified template")?;
    Ok(Trusted { vq: vq.clone(), verifier, bindings })
}

/// The first verified query (by name) that lets `req` (its status holding the SQL and the
/// estimate of the round just opened) run without a human, if the policy allows any.
pub async fn find(ctx: &Context, req: &QueryRequest) -> Option<Trusted> {
    if !ctx.policy.auto_approve_verified {
        return None;
    }
    let listed =
        ctx.store.list_objects(ObjectKind::VerifiedQuery, Some(req.metadata.namespace()), &LabelSelector::new()).await;
    let objects = match listed {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(name = %req.metadata.name, error = %e, "could not list verified queries; asking a human");
            return None;
        }
    };
    objects.iter().filter_map(|o| o.as_verified_query()).find_map(|vq| eligible(ctx, req, vq).ok())
}

/// The decision record of the policy's approval of `req`'s current round through `t`.
pub fn decision(req: &QueryRequest, t: &Trusted) -> Decision {
    let st = req.status.clone().unwrap_or_default();
    let digest = st.generated.as_ref().map(|g| g.sql_digest.clone()).unwrap_or_default();
    let by = format!("{POLICY_BY_PREFIX}{}/{}", t.vq.metadata.namespace(), t.vq.metadata.name);
    let bound: Vec<String> = t.bindings.iter().map(|(k, v)| format!(":{k} = {v}")).collect();
    let template_digest = t.vq.status.as_ref().and_then(|s| s.template_digest.clone()).unwrap_or_default();
    let comment = format!(
        "exact instantiation of verifiedquery {}/{} (verified by {}, template digest {template_digest}){}",
        t.vq.metadata.namespace(),
        t.vq.metadata.name,
        t.verifier,
        if bound.is_empty() { String::new() } else { format!(" with {}", bound.join(", ")) }
    );
    let generation = req.generation();
    Decision {
        id: token(&[req.uid(), &generation.to_string(), &st.approval_round.to_string(), &by]),
        namespace: req.metadata.namespace().to_string(),
        name: req.metadata.name.clone(),
        uid: req.uid().to_string(),
        generation,
        round: st.approval_round,
        sql_digest: digest,
        decision: DecisionKind::Approve,
        feedback: None,
        comment: Some(approval::bound_text(&comment, approval::MAX_COMMENT_CHARS)),
        by,
        at: chrono::Utc::now(),
        source: POLICY_SOURCE.into(),
        allow_over_budget: false,
    }
}

/// Proves a policy decision `d` again before it is projected: bound to the request's current
/// uid, object, generation, round and digest, an approval, and the verified query it names
/// still [`eligible`] now.
pub async fn recheck(ctx: &Context, req: &QueryRequest, d: &Decision) -> Result<(), String> {
    let st = req.status.clone().unwrap_or_default();
    let current = st.generated.as_ref().map(|g| g.sql_digest.as_str()).unwrap_or_default();
    if d.uid != req.uid()
        || d.namespace != req.metadata.namespace()
        || d.name != req.metadata.name
        || d.generation != req.generation()
        || d.round != st.approval_round
        || d.sql_digest != current
    {
        return Err("it names another request, generation, round or digest".into());
    }
    if d.decision != DecisionKind::Approve {
        return Err("the policy only approves".into());
    }
    let Some((ns, name)) = d.by.strip_prefix(POLICY_BY_PREFIX).and_then(|r| r.split_once('/')) else {
        return Err("it names no verified query".into());
    };
    let key = crate::spec::ObjectKey::new(ns, name);
    let obj = ctx
        .store
        .get_object(ObjectKind::VerifiedQuery, &key)
        .await
        .map_err(|e| format!("reading verifiedquery {key}: {e}"))?
        .ok_or_else(|| format!("verifiedquery {key} does not exist"))?;
    let vq = obj.as_verified_query().ok_or("not a verified query")?;
    eligible(ctx, req, vq).map(|_| ())
}
