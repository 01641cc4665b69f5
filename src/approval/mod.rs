//! Decisions: who may decide what, and writing decision records.
//!
//! One code path for every channel (CLI, SQS, console, chat): [`check`] is the policy (used by the
//! writer to refuse at once, and by the controller to re-check every record), [`submit`] builds
//! and writes a record bound to `(uid, generation, round, sqlDigest)`.
//!
//! # Budget
//!
//! A request whose estimate (`status.estimate`, made before approval) exceeds its
//! `limits.maxBytesScanned` is [`over_budget`]: a plain approve is refused, and only an approve
//! that says so (`allow_over_budget`, `sqlctl approve --allow-over-budget`) from someone the
//! policy allows (`overBudgetApprovers`; empty = anyone allowed to decide) counts. Such an
//! approval lets the run scan up to [`OVER_BUDGET_HEADROOM`] times the accepted estimate (never
//! less than the limit): the approver accepted that estimate, not any amount. On Athena the
//! workgroup's per-query cutoff stays the global ceiling above all of this.
//!
//! # Identities
//!
//! Every comparison of who someone is — a decider against the allow-lists (policy `approvers`,
//! per-database `approvers`, `overBudgetApprovers`, the spec's `approval.approvers`), against
//! the requester for four-eyes, and the body's `by` against an SQS sender — goes through
//! [`identity`]: trimmed, default-ignorable code points removed, NFKC, full case folding. So
//! `Rita`, ` rita `, `rita\u{200b}` and fullwidth `ｒｉｔａ` are one user. The `by` that is stored
//! and shown stays as the channel reported it.

use crate::identity;
pub mod sqs;
pub mod verify;

use std::time::Duration;

use chrono::Utc;

use crate::spec::digest::DigestMismatch;
use crate::spec::quantity::human_bytes;
use crate::spec::{Decision, DecisionKind, Estimate, Phase, Policy, QueryRequest, digest::token, digest_matches};
use crate::store::{DecisionOutcome, Store, StoreError};

/// Default approval wait when neither the policy nor the spec says otherwise.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// An over-budget approval lets the run scan up to this many times the estimate it accepted.
/// The estimate is a forecast, not a meter: it mostly errs high (DataFusion skipping row groups
/// at run time, +21% worst case on the TPC-H eval set at scale 1; Athena pruning inside files),
/// but it can err low (data added between approval and run, a CTE Athena scans twice). Twice
/// leaves room for that while still stopping a query that reads far more than anyone agreed to.
pub const OVER_BUDGET_HEADROOM: u64 = 2;

/// An estimate over the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget {
    pub estimate: u64,
    pub budget: u64,
}

/// Whether `req`'s estimate exceeds its `limits.maxBytesScanned` (both must be known).
pub fn over_budget(req: &QueryRequest) -> Option<OverBudget> {
    estimate_over_budget(req.status.as_ref()?.estimate.as_ref(), req.spec.effective_limits().max_bytes_scanned)
}

/// The rule behind [`over_budget`], for a status being built.
pub fn estimate_over_budget(estimate: Option<&Estimate>, budget: Option<u64>) -> Option<OverBudget> {
    let (estimate, budget) = (estimate?.bytes, budget?);
    (estimate > budget).then_some(OverBudget { estimate, budget })
}

/// The most a run of `req` may scan: `limits.maxBytesScanned`, raised to
/// [`OVER_BUDGET_HEADROOM`] × the estimate when the approval accepted an estimate over it.
/// `None`: no limit (the Athena workgroup cutoff still applies there).
pub fn scan_ceiling(req: &QueryRequest) -> Option<u64> {
    let budget = req.spec.effective_limits().max_bytes_scanned?;
    let st = req.status.as_ref();
    let accepted = st.and_then(|s| s.approval.as_ref()).is_some_and(|a| a.allow_over_budget);
    match (accepted, st.and_then(|s| s.estimate.as_ref())) {
        (true, Some(e)) => Some(budget.max(e.bytes.saturating_mul(OVER_BUDGET_HEADROOM))),
        _ => Some(budget),
    }
}

/// Why a decision is refused. Every message says what to do instead.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Refusal {
    #[error("{name} is {phase}, not AwaitingApproval: there is nothing to decide{hint}")]
    WrongPhase { name: String, phase: Phase, hint: String },
    #[error(
        "digest {given} does not match the SQL awaiting approval ({current}): the SQL changed since you looked; run `sqlctl describe {name}` and decide on what is there now"
    )]
    StaleDigest { name: String, given: String, current: String },
    #[error(
        "{why}; run `sqlctl describe {name}` and copy the full digest shown there (or approve on a terminal, which shows the SQL and records its full digest)"
    )]
    DigestNotFull { name: String, why: String },
    #[error(
        "approving {name} needs the full sqlDigest of the SQL you reviewed (--digest, 64 hex characters): run `sqlctl describe {name}`"
    )]
    DigestRequired { name: String },
    #[error(
        "this decision names {what} which is no longer current for {name} (the request was changed, refined or recreated); run `sqlctl describe {name}`"
    )]
    Stale { name: String, what: String },
    #[error("{by} may not decide on {name}: {why}")]
    NotAllowed { name: String, by: String, why: String },
    #[error("four-eyes policy: {by} requested {name} and may not approve it; ask another approver")]
    FourEyes { name: String, by: String },
    #[error(
        "refine regenerates SQL from the question, but {name} has hand-written spec.sql: edit spec.sql and `sqlctl apply` it instead"
    )]
    RefineHandWritten { name: String },
    #[error("refine needs --feedback saying what to change")]
    EmptyFeedback,
    #[error("{by} already decided on this SQL of {name} ({existing}); nothing was written")]
    AlreadyDecided { name: String, by: String, existing: String },
    #[error(
        "{name} is estimated to scan {}, over its limits.maxBytesScanned of {}: if that is acceptable, approve with `sqlctl approve {name} --allow-over-budget`; otherwise refine it to read less, or reject it",
        human_bytes(*estimate), human_bytes(*budget)
    )]
    OverBudget { name: String, estimate: u64, budget: u64 },
    #[error(
        "{by} may not approve {name} over its scan budget: the policy's overBudgetApprovers are {allowed}; ask one of them"
    )]
    OverBudgetNotAllowed { name: String, by: String, allowed: String },
}

/// Who may decide on a request in `database`, after the policy and the spec's narrowing.
/// `None` means anyone.
pub fn allowed_deciders(policy: &Policy, req: &QueryRequest) -> Option<Vec<String>> {
    let db = &req.spec.catalog.database;
    let base: Option<Vec<String>> = match policy.databases.get(db) {
        Some(p) => Some(p.approvers.clone()),
        None if !policy.approvers.is_empty() => Some(policy.approvers.clone()),
        None => None,
    };
    let spec = &req.spec.approval.approvers;
    match (base, spec.is_empty()) {
        (None, true) => None,
        (None, false) => Some(spec.clone()),
        (Some(b), true) => Some(b),
        // Intersected under the identity rule: the policy's `Alice` and the spec's `alice` are
        // one person (kept as the policy spells it).
        (Some(b), false) => Some(b.into_iter().filter(|a| identity::listed(spec, a)).collect()),
    }
}

/// May `by` verify queries on `database` (write a `VerifiedQuery`, `sqlctl verify`)? The same
/// people who may approve there: the database's admin approvers, else the policy's approvers,
/// else anyone; identities resolved through the policy's `identities` first. A verified query
/// stands for an approval of every instantiation of it, so it needs an approver's say.
pub fn may_verify(policy: &Policy, database: &str, by: &str) -> Result<String, String> {
    if identity::normalize(by).is_empty() {
        return Err("the verifier's identity is empty (or only invisible characters), which names nobody".into());
    }
    let who = identity::resolve(&policy.identities, by).unwrap_or_else(|| by.to_string());
    let allowed: Option<&Vec<String>> = match policy.databases.get(database) {
        Some(p) => Some(&p.approvers),
        None if !policy.approvers.is_empty() => Some(&policy.approvers),
        None => None,
    };
    match allowed {
        Some(list) if !identity::listed(list, &who) => Err(if list.is_empty() {
            format!("the policy leaves nobody allowed to approve on database {database:?}, so nobody may verify there")
        } else {
            format!(
                "only those who may approve on database {database:?} may verify queries there ({}); {by} is not one of them",
                list.join(", ")
            )
        }),
        _ => Ok(who),
    }
}

/// The approval wait for a request: the spec may shorten the policy's, never lengthen it.
pub fn approval_timeout(policy: &Policy, req: &QueryRequest) -> Duration {
    let max = policy.approval_timeout.as_ref().map(|d| d.as_duration()).unwrap_or(DEFAULT_APPROVAL_TIMEOUT);
    match &req.spec.approval.timeout {
        Some(t) => t.as_duration().min(max),
        None => max,
    }
}

/// Checks one decision against the request's current state and the policy. Used by writers
/// (to refuse at once) and by the controller (to re-check every record before projecting it).
pub fn check(policy: &Policy, req: &QueryRequest, d: &Decision) -> Result<(), Refusal> {
    let name = req.metadata.name.clone();
    let status = req.status.clone().unwrap_or_default();
    if status.phase != Phase::AwaitingApproval {
        return Err(Refusal::WrongPhase { name, phase: status.phase, hint: String::new() });
    }
    if d.uid != req.uid() {
        return Err(Refusal::Stale { name, what: format!("uid {}", d.uid) });
    }
    // A decision is bound to the object, not just its uid: uids are minted by whoever creates the
    // record, so a record that copied another's uid must not ride on that one's decisions.
    if d.namespace != req.metadata.namespace() || d.name != req.metadata.name {
        return Err(Refusal::Stale { name, what: format!("object {}/{}", d.namespace, d.name) });
    }
    if d.generation != req.generation() || status.observed_generation != req.generation() {
        return Err(Refusal::Stale { name, what: format!("generation {}", d.generation) });
    }
    if d.round != status.approval_round {
        return Err(Refusal::Stale { name, what: format!("approval round {}", d.round) });
    }
    let current = status.generated.as_ref().map(|g| g.sql_digest.clone()).unwrap_or_default();
    if d.sql_digest != current {
        return Err(Refusal::StaleDigest { name, given: d.sql_digest.clone(), current });
    }
    if identity::normalize(&d.by).is_empty() {
        let why = "the decider's identity is empty (or only invisible characters), which names nobody".to_string();
        return Err(Refusal::NotAllowed { name, by: d.by.clone(), why });
    }
    // Channels spell people their own way (an STS ARN, an OIDC e-mail, a local user): the
    // policy's `identities` map turns each principal into one user before any comparison.
    let decider = match identity::resolve(&policy.identities, &d.by) {
        Some(user) => user,
        None if policy.four_eyes && d.decision == DecisionKind::Approve => {
            let why = "the policy's identities do not map this identity to a user, and under four-eyes an unmapped identity may not approve (add it to policy.identities)".to_string();
            return Err(Refusal::NotAllowed { name, by: d.by.clone(), why });
        }
        None => d.by.clone(),
    };
    // An unmapped requester is their short name: the conservative side for four-eyes (an ARN
    // whose session name is the decider's user counts as the decider).
    let requester =
        req.requester().map(|r| identity::resolve(&policy.identities, r).unwrap_or_else(|| identity::short_name(r)));
    if let Some(allowed) = allowed_deciders(policy, req)
        && !identity::listed(&allowed, &decider)
    {
        let why = if allowed.is_empty() {
            "the policy and spec.approval.approvers leave nobody allowed to decide".to_string()
        } else {
            format!("allowed deciders are {}", allowed.join(", "))
        };
        return Err(Refusal::NotAllowed { name, by: d.by.clone(), why });
    }
    if d.decision == DecisionKind::Approve
        && policy.four_eyes
        && requester.as_deref().is_some_and(|r| identity::same(r, &decider))
    {
        return Err(Refusal::FourEyes { name, by: d.by.clone() });
    }
    if d.decision == DecisionKind::Approve
        && let Some(over) = over_budget(req)
    {
        if !d.allow_over_budget {
            return Err(Refusal::OverBudget { name, estimate: over.estimate, budget: over.budget });
        }
        let allowed = &policy.over_budget_approvers;
        if !allowed.is_empty() && !identity::listed(allowed, &decider) {
            return Err(Refusal::OverBudgetNotAllowed { name, by: d.by.clone(), allowed: allowed.join(", ") });
        }
    }
    if d.decision == DecisionKind::Refine {
        if req.spec.sql.is_some() {
            return Err(Refusal::RefineHandWritten { name });
        }
        if d.feedback.as_deref().map(str::trim).unwrap_or("").is_empty() {
            return Err(Refusal::EmptyFeedback);
        }
    }
    Ok(())
}

/// Bounds on every text a decision carries (in characters), applied where a decision is built
/// ([`bind`]) and again where the controller copies one into status ([`bounded`]): a record
/// written by other means never makes a status too large to store.
pub const MAX_COMMENT_CHARS: usize = 1_000;
pub const MAX_FEEDBACK_CHARS: usize = 4_000;
pub const MAX_BY_CHARS: usize = 256;
/// Appended to a text cut at its bound.
pub const TRUNCATED: &str = "…(truncated)";

/// `text` cut to at most `max` characters, marker included, ending in [`TRUNCATED`] when cut.
pub fn bound_text(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let marker = TRUNCATED.chars().count();
    if max < marker {
        return text.chars().take(max).collect();
    }
    let mut out: String = text.chars().take(max - marker).collect();
    out.push_str(TRUNCATED);
    out
}

/// `d` with its comment, feedback, `by` and source cut to their bounds.
pub fn bounded(mut d: Decision) -> Decision {
    d.comment = d.comment.map(|c| bound_text(&c, MAX_COMMENT_CHARS));
    d.feedback = d.feedback.map(|f| bound_text(&f, MAX_FEEDBACK_CHARS));
    d.by = bound_text(&d.by, MAX_BY_CHARS);
    d.source = bound_text(&d.source, MAX_BY_CHARS);
    d
}

/// What a human decides, before it is bound to a request.
#[derive(Clone, Debug)]
pub struct DecisionInput {
    pub decision: DecisionKind,
    pub by: String,
    /// The full 64-hex digest the decider saw. Required for approve; a prefix is refused.
    pub digest: Option<String>,
    pub feedback: Option<String>,
    pub comment: Option<String>,
    pub source: String,
    pub allow_over_budget: bool,
}

/// Binds `input` to the request's current `(uid, generation, round, sqlDigest)`.
pub fn bind(req: &QueryRequest, input: &DecisionInput) -> Result<Decision, Refusal> {
    let status = req.status.clone().unwrap_or_default();
    let name = req.metadata.name.clone();
    if status.phase != Phase::AwaitingApproval {
        let hint = match status.phase {
            Phase::Pending | Phase::Generated => "; it has no SQL awaiting approval yet — try again shortly, or `sqlctl wait NAME --for phase=AwaitingApproval`".replace("NAME", &name),
            _ => String::new(),
        };
        return Err(Refusal::WrongPhase { name, phase: status.phase, hint });
    }
    let current = status.generated.as_ref().map(|g| g.sql_digest.clone()).unwrap_or_default();
    match &input.digest {
        Some(given) => match digest_matches(&current, given) {
            Ok(()) => {}
            Err(DigestMismatch::NotFull { .. }) => {
                let why = digest_matches(&current, given).unwrap_err().to_string();
                return Err(Refusal::DigestNotFull { name, why });
            }
            Err(DigestMismatch::Different { given }) => return Err(Refusal::StaleDigest { name, given, current }),
        },
        // Approving runs SQL: it must name what the approver saw. Refine and reject run nothing.
        None if input.decision == DecisionKind::Approve => return Err(Refusal::DigestRequired { name }),
        None => {}
    }
    let generation = req.generation();
    let by = bound_text(&input.by, MAX_BY_CHARS);
    Ok(bounded(Decision {
        // One person, one decision per round, however the channel spelled them.
        id: token(&[req.uid(), &generation.to_string(), &status.approval_round.to_string(), &identity::key(&by)]),
        namespace: req.metadata.namespace().to_string(),
        name: req.metadata.name.clone(),
        uid: req.uid().to_string(),
        generation,
        round: status.approval_round,
        sql_digest: current,
        decision: input.decision,
        feedback: input.feedback.clone(),
        comment: input.comment.clone(),
        by,
        at: Utc::now(),
        source: input.source.clone(),
        allow_over_budget: input.allow_over_budget,
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Binds, checks against the stored policy and writes a decision record (create-if-absent).
pub async fn submit(store: &dyn Store, req: &QueryRequest, input: &DecisionInput) -> Result<Decision, SubmitError> {
    let d = bind(req, input)?;
    let policy = store.get_policy().await?.unwrap_or_default();
    check(&policy, req, &d)?;
    match store.create_decision(&d).await? {
        DecisionOutcome::Created(d) => Ok(d),
        DecisionOutcome::Exists(existing) if existing.decision == d.decision && existing.sql_digest == d.sql_digest => {
            Ok(existing)
        }
        DecisionOutcome::Exists(existing) => Err(Refusal::AlreadyDecided {
            name: req.metadata.name.clone(),
            by: d.by.clone(),
            existing: format!("{} at {}", existing.decision.as_str(), existing.at.to_rfc3339()),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::*;

    fn req(phase: Phase) -> QueryRequest {
        let mut r = QueryRequest::new("q", "tpch").with_question("how many?").with_status(QueryRequestStatus {
            phase,
            observed_generation: 2,
            approval_round: 1,
            generated: Some(Generated { sql: "select 1".into(), sql_digest: "ab".repeat(32), ..Default::default() }),
            ..Default::default()
        });
        (r.metadata.uid, r.metadata.generation) = (Some("u1".into()), Some(2));
        r.metadata.annotations.insert(REQUESTER_ANNOTATION.into(), "rita".into());
        r
    }

    fn input(kind: DecisionKind, by: &str) -> DecisionInput {
        DecisionInput {
            decision: kind,
            by: by.into(),
            digest: Some("ab".repeat(32)),
            feedback: Some("use 2023".into()),
            comment: None,
            source: "cli".into(),
            allow_over_budget: false,
        }
    }

    #[test]
    fn the_policy_maps_each_channels_principal_to_one_user() {
        let r = req(Phase::AwaitingApproval); // requested by `rita`
        let mut policy =
            Policy { four_eyes: true, approvers: vec!["alice".into(), "rita".into()], ..Default::default() };
        policy.identities.insert(
            "rita".into(),
            vec!["arn:aws:sts::123456789012:assumed-role/Approver/rita-laptop".into(), "rita@example.com".into()],
        );
        policy.identities.insert("alice".into(), vec!["Alice.Smith@Example.com".into()]);
        let decide = |by: &str| {
            let d = bind(&r, &input(DecisionKind::Approve, by)).unwrap();
            check(&policy, &r, &d)
        };
        // The requester over another channel is still the requester.
        for by in
            ["rita@example.com", "RITA@example.com", "arn:aws:sts::123456789012:assumed-role/Approver/rita-laptop"]
        {
            assert!(matches!(decide(by), Err(Refusal::FourEyes { .. })), "{by}");
        }
        // Another user's principal is that user, and in the allow-list by the user's name.
        assert_eq!(decide("alice.smith@example.com"), Ok(()));
        // Under four-eyes an unmapped identity may not approve.
        let err = decide("mallory@example.com").unwrap_err();
        assert!(err.to_string().contains("policy.identities"), "{err}");
        // It may still reject (it runs nothing); the allow-list then decides.
        let d = bind(&r, &input(DecisionKind::Reject, "mallory@example.com")).unwrap();
        assert!(matches!(check(&policy, &r, &d), Err(Refusal::NotAllowed { .. })));
    }

    #[test]
    fn approvals_name_the_full_digest_and_prefixes_are_refused() {
        let r = req(Phase::AwaitingApproval);
        for short in ["ab".repeat(6), "ab".repeat(31), "AB".repeat(16)] {
            let mut i = input(DecisionKind::Approve, "alice");
            i.digest = Some(short.clone());
            let err = bind(&r, &i).unwrap_err();
            assert!(matches!(err, Refusal::DigestNotFull { .. }), "{short}: {err}");
            assert!(err.to_string().contains("64 hex characters"), "{err}");
        }
        let mut i = input(DecisionKind::Approve, "alice");
        i.digest = None;
        assert!(matches!(bind(&r, &i).unwrap_err(), Refusal::DigestRequired { .. }));
        // Reject and refine run nothing: they may bind to what is current without a digest.
        let mut i = input(DecisionKind::Reject, "alice");
        i.digest = None;
        assert!(bind(&r, &i).is_ok());
        let mut i = input(DecisionKind::Approve, "alice");
        i.digest = Some("AB".repeat(32));
        assert!(bind(&r, &i).is_ok(), "case does not matter");
    }

    #[test]
    fn a_bound_decision_passes_an_open_policy() {
        let r = req(Phase::AwaitingApproval);
        let d = bind(&r, &input(DecisionKind::Approve, "alice")).unwrap();
        assert_eq!((d.generation, d.round, d.uid.as_str()), (2, 1, "u1"));
        check(&Policy::default(), &r, &d).unwrap();
    }

    #[test]
    fn stale_digest_wrong_phase_and_stale_round_are_refused() {
        let r = req(Phase::AwaitingApproval);
        let mut i = input(DecisionKind::Approve, "alice");
        i.digest = Some("cd".repeat(32));
        assert!(matches!(bind(&r, &i), Err(Refusal::StaleDigest { .. })));
        assert!(matches!(
            bind(&req(Phase::Executing), &input(DecisionKind::Approve, "a")),
            Err(Refusal::WrongPhase { .. })
        ));
        let mut d = bind(&r, &input(DecisionKind::Approve, "alice")).unwrap();
        d.round = 0;
        assert!(matches!(check(&Policy::default(), &r, &d), Err(Refusal::Stale { .. })));
        let mut d = bind(&r, &input(DecisionKind::Approve, "alice")).unwrap();
        d.uid = "recreated".into();
        assert!(matches!(check(&Policy::default(), &r, &d), Err(Refusal::Stale { .. })));
    }

    #[test]
    fn a_decision_for_another_object_with_the_same_uid_is_refused() {
        // Uids are minted by whoever writes the record: a request that copied another's uid,
        // generation and SQL must not ride on that request's approval.
        let r = req(Phase::AwaitingApproval);
        let d = bind(&r, &input(DecisionKind::Approve, "alice")).unwrap();
        let mut other = r.clone();
        other.metadata.name = "copycat".into();
        assert!(matches!(check(&Policy::default(), &other, &d), Err(Refusal::Stale { .. })));
        let mut other = r.clone();
        other.metadata.namespace = Some("elsewhere".into());
        assert!(matches!(check(&Policy::default(), &other, &d), Err(Refusal::Stale { .. })));
        check(&Policy::default(), &r, &d).unwrap();
    }

    #[test]
    fn spec_narrows_policy_never_widens() {
        let mut r = req(Phase::AwaitingApproval);
        let mut p = Policy::default();
        p.databases.insert("tpch".into(), DatabasePolicy { approvers: vec!["alice".into(), "bob".into()] });
        r.spec.approval.approvers = vec!["bob".into(), "mallory".into()];
        assert_eq!(allowed_deciders(&p, &r), Some(vec!["bob".to_string()]));
        let d = bind(&r, &input(DecisionKind::Approve, "mallory")).unwrap();
        assert!(matches!(check(&p, &r, &d), Err(Refusal::NotAllowed { .. })));
        let d = bind(&r, &input(DecisionKind::Approve, "alice")).unwrap();
        assert!(matches!(check(&p, &r, &d), Err(Refusal::NotAllowed { .. })));
        let d = bind(&r, &input(DecisionKind::Approve, "bob")).unwrap();
        check(&p, &r, &d).unwrap();
    }

    #[test]
    fn four_eyes_stops_self_approval_only() {
        let r = req(Phase::AwaitingApproval);
        let p = Policy { four_eyes: true, ..Default::default() };
        let d = bind(&r, &input(DecisionKind::Approve, "rita")).unwrap();
        assert!(matches!(check(&p, &r, &d), Err(Refusal::FourEyes { .. })));
        let d = bind(&r, &input(DecisionKind::Reject, "rita")).unwrap();
        check(&p, &r, &d).unwrap();
    }

    const RITA_SPELLINGS: [&str; 8] =
        ["Rita", "RITA", " rita ", "rita\u{200b}", "ri\u{00ad}ta", "\u{202e}rita\u{202c}", "ｒｉｔａ", "rita\u{fe0f}"];

    #[test]
    fn identities_compare_normalised_for_four_eyes() {
        // The requester is `rita`; every spelling of her is her.
        let r = req(Phase::AwaitingApproval);
        let p = Policy { four_eyes: true, ..Default::default() };
        for by in RITA_SPELLINGS {
            let d = bind(&r, &input(DecisionKind::Approve, by)).unwrap();
            assert!(matches!(check(&p, &r, &d), Err(Refusal::FourEyes { .. })), "{by:?}");
            assert_eq!(d.by, by, "the stored decider is as the channel reported it");
        }
        // And the other way round: a requester spelled oddly against a plain decider.
        let mut odd = r.clone();
        odd.metadata.annotations.insert(REQUESTER_ANNOTATION.into(), "ＲＩＴＡ\u{200d}".into());
        let d = bind(&odd, &input(DecisionKind::Approve, "rita")).unwrap();
        assert!(matches!(check(&p, &odd, &d), Err(Refusal::FourEyes { .. })));
        let d = bind(&odd, &input(DecisionKind::Approve, "alice")).unwrap();
        check(&p, &odd, &d).unwrap();
    }

    #[test]
    fn identities_compare_normalised_in_allow_lists() {
        let mut r = req(Phase::AwaitingApproval);
        let mut p = Policy { approvers: vec!["Alice".into(), "bob\u{200b}".into()], ..Default::default() };
        for by in ["alice", "ALICE", "ａｌｉｃｅ", " Alice\u{2060}", "Bob", "bob"] {
            check(&p, &r, &bind(&r, &input(DecisionKind::Reject, by)).unwrap())
                .unwrap_or_else(|e| panic!("{by:?}: {e}"));
        }
        for by in ["mallory", "alicе" /* Cyrillic е */, "al ice"] {
            let e = check(&p, &r, &bind(&r, &input(DecisionKind::Reject, by)).unwrap()).unwrap_err();
            assert!(matches!(e, Refusal::NotAllowed { .. }), "{by:?}: {e:?}");
        }
        // Per-database lists and the spec's narrowing intersect under the same rule.
        p.databases.insert("tpch".into(), DatabasePolicy { approvers: vec!["Carol".into(), "dave".into()] });
        r.spec.approval.approvers = vec!["ｃａｒｏｌ".into()];
        assert_eq!(allowed_deciders(&p, &r), Some(vec!["Carol".to_string()]));
        check(&p, &r, &bind(&r, &input(DecisionKind::Reject, "carol")).unwrap()).unwrap();
        let e = check(&p, &r, &bind(&r, &input(DecisionKind::Reject, "dave")).unwrap()).unwrap_err();
        assert!(matches!(e, Refusal::NotAllowed { .. }), "{e:?}");
    }

    #[test]
    fn identities_compare_normalised_for_over_budget_approvers() {
        let r = over_budget_request();
        let p = Policy { over_budget_approvers: vec!["Bob".into()], ..Default::default() };
        for by in ["bob", "ＢＯＢ", "bob\u{200c}"] {
            let mut i = input(DecisionKind::Approve, by);
            i.allow_over_budget = true;
            check(&p, &r, &bind(&r, &i).unwrap()).unwrap_or_else(|e| panic!("{by:?}: {e}"));
        }
        let mut i = input(DecisionKind::Approve, "bobby");
        i.allow_over_budget = true;
        assert!(matches!(check(&p, &r, &bind(&r, &i).unwrap()), Err(Refusal::OverBudgetNotAllowed { .. })));
    }

    #[test]
    fn an_invisible_decider_names_nobody() {
        let r = req(Phase::AwaitingApproval);
        for by in ["", "  ", "\u{200b}", "\u{feff}\u{2060}"] {
            let d = bind(&r, &input(DecisionKind::Reject, by)).unwrap();
            assert!(matches!(check(&Policy::default(), &r, &d), Err(Refusal::NotAllowed { .. })), "{by:?}");
        }
    }

    #[test]
    fn one_person_spelled_two_ways_gets_one_decision_id() {
        let r = req(Phase::AwaitingApproval);
        let a = bind(&r, &input(DecisionKind::Approve, "alice")).unwrap();
        let b = bind(&r, &input(DecisionKind::Reject, "Ａｌｉｃｅ\u{200b}")).unwrap();
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, bind(&r, &input(DecisionKind::Approve, "bob")).unwrap().id);
    }

    #[test]
    fn refine_of_hand_written_sql_is_refused_with_what_to_do() {
        let mut r = req(Phase::AwaitingApproval);
        r.spec.question = None;
        r.spec.sql = Some("select 1".into());
        let d = bind(&r, &input(DecisionKind::Refine, "alice")).unwrap();
        let e = check(&Policy::default(), &r, &d).unwrap_err();
        assert!(e.to_string().contains("edit spec.sql"), "{e}");
    }

    fn over_budget_request() -> QueryRequest {
        let mut r = req(Phase::AwaitingApproval);
        r.spec.limits.max_bytes_scanned = Some(crate::spec::quantity::ByteSize::parse("1GiB").unwrap());
        r.status.as_mut().unwrap().estimate =
            Some(Estimate { bytes: 3 << 30, cost_usd: 0.0146, method: "test".into() });
        r
    }

    #[test]
    fn an_estimate_over_budget_needs_an_approval_that_says_so() {
        let r = over_budget_request();
        assert_eq!(over_budget(&r), Some(OverBudget { estimate: 3 << 30, budget: 1 << 30 }));
        let plain = bind(&r, &input(DecisionKind::Approve, "alice")).unwrap();
        let e = check(&Policy::default(), &r, &plain).unwrap_err();
        assert!(matches!(e, Refusal::OverBudget { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("sqlctl approve q --allow-over-budget"), "{text}");
        assert!(text.contains("3.0 GiB") && text.contains("1.0 GiB"), "{text}");
        // Reject and refine need no budget approval.
        check(&Policy::default(), &r, &bind(&r, &input(DecisionKind::Reject, "alice")).unwrap()).unwrap();

        let mut i = input(DecisionKind::Approve, "alice");
        i.allow_over_budget = true;
        let explicit = bind(&r, &i).unwrap();
        assert!(explicit.allow_over_budget);
        check(&Policy::default(), &r, &explicit).unwrap();

        // The policy may name who accepts budgets; they must still be allowed to decide.
        let p = Policy { over_budget_approvers: vec!["bob".into()], ..Default::default() };
        let e = check(&p, &r, &explicit).unwrap_err();
        assert!(matches!(e, Refusal::OverBudgetNotAllowed { .. }) && e.to_string().contains("bob"), "{e}");
        let mut i = input(DecisionKind::Approve, "bob");
        i.allow_over_budget = true;
        check(&p, &r, &bind(&r, &i).unwrap()).unwrap();
        let narrowed = Policy { approvers: vec!["alice".into()], ..p };
        assert!(matches!(check(&narrowed, &r, &bind(&r, &i).unwrap()), Err(Refusal::NotAllowed { .. })));
    }

    #[test]
    fn within_budget_or_without_an_estimate_a_plain_approve_is_enough() {
        let mut r = over_budget_request();
        r.status.as_mut().unwrap().estimate.as_mut().unwrap().bytes = 1 << 30;
        assert_eq!(over_budget(&r), None, "equal to the budget is within it");
        let p = Policy { over_budget_approvers: vec!["bob".into()], ..Default::default() };
        check(&p, &r, &bind(&r, &input(DecisionKind::Approve, "alice")).unwrap()).unwrap();
        r.status.as_mut().unwrap().estimate = None;
        check(&p, &r, &bind(&r, &input(DecisionKind::Approve, "alice")).unwrap()).unwrap();
    }

    #[test]
    fn an_over_budget_approval_raises_the_scan_ceiling_to_twice_the_estimate() {
        let mut r = over_budget_request();
        assert_eq!(scan_ceiling(&r), Some(1 << 30), "not yet approved: the limit");
        r.status.as_mut().unwrap().approval = Some(ApprovalStatus {
            decision: DecisionKind::Approve,
            by: "alice".into(),
            at: chrono::Utc::now(),
            generation: 2,
            sql_digest: "ab".repeat(32),
            comment: None,
            decision_id: "d".into(),
            allow_over_budget: true,
        });
        assert_eq!(scan_ceiling(&r), Some(6 << 30));
        r.status.as_mut().unwrap().approval.as_mut().unwrap().allow_over_budget = false;
        assert_eq!(scan_ceiling(&r), Some(1 << 30));
        r.spec.limits.max_bytes_scanned = None;
        assert_eq!(scan_ceiling(&r), None);
    }

    #[test]
    fn approval_timeout_is_capped_by_policy() {
        let mut r = req(Phase::AwaitingApproval);
        let p = Policy { approval_timeout: Some(DurationSpec::parse("1h").unwrap()), ..Default::default() };
        r.spec.approval.timeout = Some(DurationSpec::parse("2h").unwrap());
        assert_eq!(approval_timeout(&p, &r), Duration::from_secs(3600));
        r.spec.approval.timeout = Some(DurationSpec::parse("5m").unwrap());
        assert_eq!(approval_timeout(&p, &r), Duration::from_secs(300));
    }

    #[test]
    fn hole3_bound_text_cuts_at_the_bound_with_a_marker() {
        assert_eq!(bound_text("short", 10), "short");
        assert_eq!(bound_text(&"x".repeat(10), 10), "x".repeat(10), "exactly at the bound: kept");
        let cut = bound_text(&"é".repeat(5000), 1000);
        assert_eq!(cut.chars().count(), 1000, "counted in characters, marker included");
        assert!(cut.ends_with(TRUNCATED) && cut.starts_with("éé"));
        assert_eq!(bound_text("abcdef", 3).chars().count(), 3, "a bound shorter than the marker still holds");
    }

    #[test]
    fn hole3_bind_bounds_comment_feedback_and_by() {
        let r = req(Phase::AwaitingApproval);
        let mut i = input(DecisionKind::Reject, &"b".repeat(10_000));
        i.comment = Some("c".repeat(360_000));
        i.feedback = Some("f".repeat(120_000));
        let d = bind(&r, &i).unwrap();
        assert_eq!(d.comment.as_ref().unwrap().chars().count(), MAX_COMMENT_CHARS);
        assert!(d.comment.as_ref().unwrap().ends_with(TRUNCATED));
        assert_eq!(d.feedback.as_ref().unwrap().chars().count(), MAX_FEEDBACK_CHARS);
        assert_eq!(d.by.chars().count(), MAX_BY_CHARS);
        assert!(d.by.ends_with(TRUNCATED));
        // The id is that of the bounded name: the same long name always gives the same id.
        assert_eq!(bind(&r, &i).unwrap().id, d.id);
        // A record that bypassed bind is bounded the same way before it reaches status.
        let mut raw = d.clone();
        raw.comment = Some("c".repeat(360_000));
        raw.by = "b".repeat(10_000);
        let b = bounded(raw);
        assert_eq!((b.comment, b.by), (d.comment, d.by));
        // Short texts are untouched.
        let d = bind(&r, &input(DecisionKind::Approve, "alice")).unwrap();
        assert_eq!((d.by.as_str(), d.feedback.as_deref()), ("alice", Some("use 2023")));
    }
}
