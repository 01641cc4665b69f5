//! One reconcile step: from spec + status alone decide the next step, do it, write status with a
//! fenced compare-and-set, and say when to look again.
//!
//! Every side effect is ordered so that a crash between it and the status write is harmless on
//! replay: the execution intent (token, attempt) is written before the engine is asked to start,
//! the engine is idempotent per token, notifications are recorded after they are sent (at least
//! once), and decisions are read from append-only records rather than from status.

use std::time::Duration;

use chrono::Utc;

use super::{Action, Context, Error};
use crate::approval;
use crate::catalog::CatalogError;
use crate::engine::{EngineError, ExecState, QueryJob};
use crate::generate::{FollowUp, GenerateError, GenerateInput, PriorTurn, semantic, verified};
use crate::guard;
use crate::spec::quantity::human_bytes;
use crate::spec::semantic::SemanticModel;
use crate::spec::verified::VerifiedQuery;
use crate::spec::{
    ApprovalStatus, Attempt, CANCEL_FINALIZER, DecisionKind, DecisionsSeen, EffectiveLimits, EngineKind, Estimate,
    Execution, FollowedRequest, Generated, HistoryEntry, ObjectKey, Phase, QueryRequest, QueryRequestStatus, SqlSource,
    SqlSourceKind, digest::token, sql_digest,
};
use crate::spec::{Object, ObjectKind};
use crate::store::{ArchiveBatch, notified_marker};

/// The status keeps at most this many history entries; older ones move to the store's history
/// archive (the audit trail is bounded in the record, never cut).
pub const HISTORY_CAP: usize = 100;
/// A transiently failed query is retried as a new attempt at most this many times in all.
pub const MAX_EXEC_ATTEMPTS: u32 = 3;
/// Failed pre-approval attempts (transient plan or catalog errors, each an engine call that may
/// be billed) after which a Pending request ends Failed instead of retrying forever.
pub const MAX_PRE_APPROVAL_ATTEMPTS: u32 = 5;
/// Longest wait for an engine's scan estimate before the request goes on without one.
pub const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How many verified queries an LLM prompt shows as examples.
const EXAMPLES: usize = 3;

/// `NAME@generation` of a semantic model, as `status.generated.source.semanticModel` records it.
fn model_ref(m: &SemanticModel) -> String {
    format!("{}@{}", m.metadata.name, m.metadata.generation.unwrap_or(0))
}

/// How often a follow-up waiting for its earlier request looks again.
const FOLLOW_UP_POLL: Duration = Duration::from_secs(2);
/// How many requests up a chain of follow-ups without SQL the cycle check looks.
const MAX_FOLLOW_UP_CHAIN: usize = 32;

/// What a step decided should change in the status: built by a handler from what it read and
/// did, applied in one place ([`Reconciler::stage`]; [`Reconciler::apply`] also writes it with
/// the fenced compare-and-set). The phase change is checked against the phase graph there.
#[derive(Default)]
#[must_use]
struct Change {
    /// Starts the status over for generation `n`: the phase and the audit trail are kept,
    /// everything the old generation decided or ran is cleared. Applied first.
    restart_at: Option<u64>,
    /// Opens a new approval round that ends at this deadline: the round number moves on and
    /// nothing is requested, decided or run in it yet.
    open_round: Option<chrono::DateTime<Utc>>,
    phase: Option<Phase>,
    /// `(type, status, reason, message)`, set in order.
    conditions: Vec<(&'static str, &'static str, String, String)>,
    /// Audit entries to append (the generation is stamped when applied).
    history: Vec<HistoryEntry>,
    execution: Option<Execution>,
    approval: Option<Option<ApprovalStatus>>,
    generated: Option<Option<Generated>>,
    decisions_seen: Option<DecisionsSeen>,
    pre_approval_attempts: Option<u32>,
    estimate: Option<Option<Estimate>>,
    charted: Option<crate::chart::Charted>,
    /// Adds (true) or removes (false) the cancel finalizer.
    cancel_finalizer: Option<bool>,
}

impl Change {
    fn to(phase: Phase) -> Self {
        Change { phase: Some(phase), ..Default::default() }
    }

    fn phase(mut self, phase: Phase) -> Self {
        self.phase = Some(phase);
        self
    }

    /// The request ends Failed: `cond` and `Ready` say why, the history records it, and no
    /// query is left for a delete to cancel.
    fn failed(cond: &'static str, reason: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Reconciler::event("Failed");
        e.message = Some(format!("{reason}: {message}"));
        Change::to(Phase::Failed)
            .condition(cond, "False", reason, message.clone())
            .condition("Ready", "False", reason, message)
            .event(e)
            .cancel_finalizer(false)
    }

    fn condition(
        mut self,
        type_: &'static str,
        status: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.conditions.push((type_, status, reason.into(), message.into()));
        self
    }

    fn event(mut self, e: HistoryEntry) -> Self {
        self.history.push(e);
        self
    }

    fn execution(mut self, x: Execution) -> Self {
        self.execution = Some(x);
        self
    }

    fn approval(mut self, a: Option<ApprovalStatus>) -> Self {
        self.approval = Some(a);
        self
    }

    fn cancel_finalizer(mut self, on: bool) -> Self {
        self.cancel_finalizer = Some(on);
        self
    }

    /// Nothing to write.
    fn is_empty(&self) -> bool {
        self.restart_at.is_none()
            && self.open_round.is_none()
            && self.estimate.is_none()
            && self.phase.is_none()
            && self.conditions.is_empty()
            && self.history.is_empty()
            && self.execution.is_none()
            && self.approval.is_none()
            && self.generated.is_none()
            && self.decisions_seen.is_none()
            && self.pre_approval_attempts.is_none()
            && self.charted.is_none()
            && self.cancel_finalizer.is_none()
    }
}

/// A handler's answer: what changes, when to look again, and what to count once it is stored.
#[must_use]
struct Step {
    change: Change,
    then: Action,
    /// Counted only after the change is written (a failed write is replayed, not counted twice).
    succeeded: Option<(String, u64, Duration)>,
}

impl Step {
    /// Write `change`, then look again at once.
    fn now(change: Change) -> Self {
        Step::after(change, Duration::ZERO)
    }

    fn after(change: Change, delay: Duration) -> Self {
        Step { change, then: Action::requeue(delay), succeeded: None }
    }

    /// The handler wrote what it changed itself (a step with two writes): only `then` is left.
    fn written(then: Action) -> Self {
        Step { change: Change::default(), then, succeeded: None }
    }
}

/// Runs one step for `req` (freshly read from the store).
pub async fn reconcile(req: QueryRequest, ctx: &Context) -> Result<Action, Error> {
    let mut r = Reconciler { ctx, req, status: QueryRequestStatus::default() };
    r.status = r.req.status.clone().unwrap_or_default();
    r.note_backlog();
    r.run().await
}

struct Reconciler<'a> {
    ctx: &'a Context,
    req: QueryRequest,
    status: QueryRequestStatus,
}

impl Reconciler<'_> {
    /// Tells the metrics whether this request waits for a decision, and since when (the
    /// approval backlog's age on `/metrics`).
    fn note_backlog(&self) {
        let since = (self.status.phase == Phase::AwaitingApproval && self.req.metadata.deletion_timestamp.is_none())
            .then(|| {
                self.status
                    .condition("Approved")
                    .filter(|c| c.reason == "AwaitingApproval")
                    .map(|c| c.last_transition_time)
                    .unwrap_or_else(Utc::now)
            });
        self.ctx.metrics.awaiting_approval(&self.req.key(), since);
    }

    async fn run(&mut self) -> Result<Action, Error> {
        if self.req.metadata.deletion_timestamp.is_some() {
            return self.finalize().await;
        }
        let generation = self.req.generation();
        if self.status.observed_generation != generation {
            return self.observe_new_generation().await;
        }
        match self.status.phase {
            Phase::Pending => match self.generate().await {
                Err(e @ (Error::Engine(EngineError::Transient(_)) | Error::Catalog(CatalogError::Transient(_)))) => {
                    self.pre_approval_failed(e).await
                }
                Err(e) => Err(e),
                Ok(step) => self.finish(step).await,
            },
            Phase::Generated => self.enter_awaiting_approval().await,
            Phase::AwaitingApproval => {
                let step = self.await_decision().await?;
                self.finish(step).await
            }
            Phase::Executing => {
                let step = self.execute().await?;
                self.finish(step).await
            }
            Phase::Done | Phase::Rejected | Phase::Failed | Phase::TimedOut => self.notify_finished().await,
        }
    }

    fn name(&self) -> &str {
        &self.req.metadata.name
    }

    fn engine_kind(&self) -> EngineKind {
        self.req.spec.engine.unwrap_or(self.ctx.config.default_engine)
    }

    /// Appends to the audit trail. Entries past [`HISTORY_CAP`] are moved to the archive by
    /// [`Self::archive_overflow`] before the status is written.
    fn history(&mut self, mut e: HistoryEntry) {
        e.generation = self.req.generation();
        self.status.history.push(e);
    }

    /// Moves the oldest history entries past [`HISTORY_CAP`] to the store's append-only archive
    /// (numbered on from `status.historyArchived`), never the current generation's latest
    /// Generated entry: the SQL awaiting a decision stays in the record. Replays are harmless:
    /// a step that fails after archiving re-reads the old status and archives the same entries
    /// under the same numbers again.
    async fn archive_overflow(&mut self) -> Result<(), Error> {
        let n = self.status.history.len();
        if n <= HISTORY_CAP {
            return Ok(());
        }
        let generation = self.req.generation();
        let keep = self.status.history.iter().rposition(|h| h.event == "Generated" && h.generation == generation);
        let evict: Vec<usize> = (0..n).filter(|i| Some(*i) != keep).take(n - HISTORY_CAP).collect();
        let entries: Vec<HistoryEntry> = evict.iter().map(|&i| self.status.history[i].clone()).collect();
        let fence = self.ctx.fence()?;
        let (key, uid) = (self.req.key(), self.req.uid().to_string());
        let batch = ArchiveBatch { key: &key, uid: &uid, first_index: self.status.history_archived, entries: &entries };
        self.ctx.store.archive_history(batch, Some(&fence)).await?;
        let mut i = 0;
        self.status.history.retain(|_| {
            let gone = evict.binary_search(&i).is_ok();
            i += 1;
            !gone
        });
        self.status.history_archived += entries.len() as u64;
        Ok(())
    }

    /// An entry for `event`; [`Self::history`] stamps the generation.
    fn event(event: &str) -> HistoryEntry {
        HistoryEntry::new(event, 0)
    }

    /// Writes status (and finalizers) with CAS + fence, logging phase transitions.
    async fn write(&mut self) -> Result<(), Error> {
        self.archive_overflow().await?;
        let before = self.req.phase();
        let mut next = self.req.clone();
        next.status = Some(self.status.clone());
        let fence = self.ctx.fence()?;
        let written = match self.ctx.store.update_status(&next, Some(&fence)).await {
            Ok(w) => w,
            // Retrying the same write can never succeed: end in a clear terminal state instead.
            Err(crate::store::StoreError::TooLarge(why)) => {
                self.shrink_too_large(&why, &fence).await;
                let mut next = self.req.clone();
                next.status = Some(self.status.clone());
                self.ctx.store.update_status(&next, Some(&fence)).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.ctx.note_written(&written);
        if before != self.status.phase || self.req.status.is_none() {
            self.ctx.metrics.transition(self.status.phase);
            let reason = self.status.conditions.last().map(|c| c.reason.clone()).unwrap_or_default();
            tracing::info!(
                name = %written.metadata.name,
                namespace = written.metadata.namespace(),
                uid = written.uid(),
                generation = written.generation(),
                phase = %self.status.phase,
                from = %before,
                reason = %reason,
                "phase transition"
            );
        }
        self.req = written;
        self.note_backlog();
        Ok(())
    }

    /// A status the store cannot hold even trimmed: the big fields (generated SQL and
    /// explanation, the approval comment, the preview, history — archived first when it can be)
    /// are dropped, messages bounded, and the request ends Failed with reason `StatusTooLarge`.
    async fn shrink_too_large(&mut self, why: &str, fence: &crate::store::Fence) {
        tracing::error!(name = %self.req.metadata.name, uid = self.req.uid(), error = %why, "status too large to store; failing the request");
        let history = std::mem::take(&mut self.status.history);
        if !history.is_empty() {
            let (key, uid) = (self.req.key(), self.req.uid().to_string());
            let at = self.status.history_archived;
            let batch = ArchiveBatch { key: &key, uid: &uid, first_index: at, entries: &history };
            match self.ctx.store.archive_history(batch, Some(fence)).await {
                Ok(()) => self.status.history_archived += history.len() as u64,
                Err(e) => {
                    tracing::warn!(name = %self.req.metadata.name, error = %e, "history of a too-large status could not be archived; dropped")
                }
            }
        }
        self.status.generated = None;
        if let Some(a) = self.status.approval.as_mut() {
            a.comment = None;
        }
        if let Some(x) = self.status.execution.as_mut() {
            x.preview = None;
            x.error = x.error.as_deref().map(|e| approval::bound_text(e, 500));
        }
        for c in &mut self.status.conditions {
            c.message = approval::bound_text(&c.message, 500);
        }
        self.fail(
            "Ready",
            "StatusTooLarge",
            format!(
                "the status could not be stored ({}); generated SQL, comments, preview and history were dropped",
                approval::bound_text(why, 300)
            ),
        );
    }

    /// Changes the phase, checked against the phase graph ([`super::transitions::TRANSITIONS`]):
    /// a change it does not list is a bug (a panic in debug builds, an error log in release).
    fn enter(&mut self, to: Phase) {
        let from = self.status.phase;
        if !super::transitions::allowed(from, to) {
            tracing::error!(name = %self.req.metadata.name, uid = self.req.uid(), %from, %to, "phase change not in the phase graph");
            debug_assert!(false, "phase change {from} → {to} is not in the phase graph");
        }
        self.status.phase = to;
    }

    fn fail(&mut self, cond: &'static str, reason: &str, message: impl Into<String>) {
        self.stage(Change::failed(cond, reason, message));
    }

    /// Applies `change` to the status in memory, in one order: fields, phase (checked against
    /// the graph), conditions, history, finalizer.
    fn stage(&mut self, change: Change) {
        let Change {
            restart_at,
            open_round,
            phase,
            conditions,
            history,
            execution,
            approval,
            generated,
            decisions_seen,
            pre_approval_attempts,
            estimate,
            charted,
            cancel_finalizer,
        } = change;
        if let Some(generation) = restart_at {
            self.status = QueryRequestStatus {
                phase: self.status.phase,
                observed_generation: generation,
                history: std::mem::take(&mut self.status.history),
                history_archived: self.status.history_archived,
                ..Default::default()
            };
        }
        if let Some(deadline) = open_round {
            self.status.approval_round += 1;
            self.status.approval_deadline = Some(deadline);
            self.status.approval_requested = false;
            self.status.approval = None;
            self.status.execution = None;
        }
        if let Some(e) = estimate {
            self.status.estimate = e;
        }
        if let Some(n) = pre_approval_attempts {
            self.status.pre_approval_attempts = n;
        }
        if let Some(x) = execution {
            self.status.execution = Some(x);
        }
        if let Some(a) = approval {
            self.status.approval = a;
        }
        if let Some(g) = generated {
            self.status.generated = g;
        }
        if let Some(m) = decisions_seen {
            self.status.decisions_seen = Some(m);
        }
        if let Some(to) = phase {
            self.enter(to);
        }
        for (type_, status, reason, message) in conditions {
            self.status.set_condition(type_, status, &reason, message);
        }
        if let Some(c) = charted {
            c.record(&mut self.status);
        }
        for e in history {
            self.history(e);
        }
        match cancel_finalizer {
            Some(true) if !self.req.metadata.finalizers.iter().any(|f| f == CANCEL_FINALIZER) => {
                self.req.metadata.finalizers.push(CANCEL_FINALIZER.into())
            }
            Some(false) => self.req.metadata.finalizers.retain(|f| f != CANCEL_FINALIZER),
            _ => {}
        }
    }

    /// Stages `change` and writes it, when it changes anything.
    async fn apply(&mut self, change: Change) -> Result<(), Error> {
        if change.is_empty() {
            return Ok(());
        }
        self.stage(change);
        self.write().await
    }

    /// Applies a handler's step: the one place a step's change is written and its requeue
    /// returned.
    async fn finish(&mut self, step: Step) -> Result<Action, Error> {
        self.apply(step.change).await?;
        if let Some((engine, bytes, took)) = step.succeeded {
            self.ctx.metrics.query_finished("succeeded");
            self.ctx.metrics.observe_query(&engine, "succeeded", took);
            self.ctx.metrics.bytes_scanned(&engine, bytes);
        }
        Ok(step.then)
    }

    async fn finalize(&mut self) -> Result<Action, Error> {
        if let Some(exec) = self.status.execution.clone()
            && (exec.state == "Running" || exec.state == "Starting")
            && let Some(engine) = self.ctx.engines.get(&self.engine_kind()).cloned()
        {
            let id = match &exec.id {
                Some(id) => Some(id.clone()),
                // A delete that raced a start: the start's status write (with the execution id)
                // lost its compare-and-set to the deletion. The query is found by its token:
                // starting again with the same token attaches to it (Athena's ClientRequestToken,
                // the local engine's execution map), and it is then stopped. If the first start
                // never reached the engine, this starts the approved query only to stop it.
                None if exec.state == "Starting" => match self.job(&exec) {
                    Ok(job) => match engine.start(&job, self.ctx.waker.clone()).await {
                        Ok(id) => Some(id),
                        Err(EngineError::Permanent(m)) => {
                            tracing::warn!(name = %self.req.metadata.name, uid = self.req.uid(), error = %m, "delete during a start: the engine refused the token lookup; nothing to stop");
                            None
                        }
                        Err(e) => return Err(Error::Engine(e)),
                    },
                    Err(_) => None,
                },
                None => None,
            };
            if let Some(id) = id {
                engine.cancel(&id).await.map_err(Error::Engine)?;
                self.ctx.metrics.query_finished("cancelled");
            }
        }
        // The query is cancelled: clear the finalizer (a status write, as the store requires),
        // then remove the record. A crash in between leaves a marked record without finalizers,
        // which the next look removes.
        if !self.req.metadata.finalizers.is_empty() {
            self.req.metadata.finalizers.clear();
            self.write().await?;
        }
        let fence = self.ctx.fence()?;
        self.ctx.store.finalize(&self.req, Some(&fence)).await?;
        self.ctx.forget_running(&self.req.key());
        tracing::info!(name = %self.req.metadata.name, namespace = self.req.metadata.namespace(), uid = self.req.uid(), "deleted after finalizers");
        Ok(Action::await_change())
    }

    async fn observe_new_generation(&mut self) -> Result<Action, Error> {
        let generation = self.req.generation();
        if self.status.phase == Phase::Executing {
            // The spec changed under a running query: it answers a question nobody asks anymore.
            if let Some(Execution { id: Some(id), .. }) = &self.status.execution
                && let Some(engine) = self.ctx.engines.get(&self.engine_kind())
            {
                let _ = engine.cancel(id).await;
            }
        }
        let mut e = Self::event("Observed");
        e.message = Some(format!("generation {generation} observed"));
        let change = Change { restart_at: Some(generation), ..Change::to(Phase::Pending) }
            .event(e)
            .condition("Ready", "False", "Pending", "")
            .cancel_finalizer(false);
        self.finish(Step::now(change)).await
    }

    /// Pending: guard hand-written SQL, or generate (with self-correction) from the question.
    async fn generate(&mut self) -> Result<Step, Error> {
        let kind = self.engine_kind();
        let Some(engine) = self.ctx.engines.get(&kind).cloned() else {
            let why = format!(
                "engine {} is not configured on this controller (available: {})",
                kind.as_str(),
                self.ctx.engine_names()
            );
            return Ok(Step::now(Change::failed("Generated", "EngineUnavailable", why)));
        };
        let db = self.req.spec.catalog.database.clone();
        let tables = match self.ctx.catalog.tables(&db).await {
            Ok(t) => t,
            Err(e @ CatalogError::Transient(_)) => return Err(Error::Catalog(e)),
            Err(e) => return Ok(Step::now(Change::failed("Generated", "CatalogError", e.to_string()))),
        };
        let known: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
        let allowed = self.req.spec.catalog.tables.clone();
        let limits = self.req.spec.effective_limits();

        if let Some(sql) = self.req.spec.sql.clone() {
            let change = match guard::check(&sql, &db, &known, &allowed) {
                Err(e) => Change::failed("Generated", "GuardRejected", e.reason),
                // From here on only the canonical text exists: it is planned, digested, shown
                // and run (DESIGN §5).
                Ok(checked) => match engine.plan(&db, &checked.sql).await {
                    Err(EngineError::Transient(m)) => return Err(Error::Engine(EngineError::Transient(m))),
                    // The engine cannot plan anything as configured (a missing workgroup, no
                    // permission): not the SQL's fault, so no PlanFailed and nothing for the
                    // model. Say which setting to fix, and back off until it works.
                    Err(e @ EngineError::Unavailable { .. }) => return self.engine_unavailable(e).await,
                    Err(EngineError::Permanent(m)) => Change::failed("Generated", "PlanFailed", m),
                    Ok(()) => {
                        let digest = sql_digest(kind, &db, &checked.sql, &limits);
                        self.accepted(
                            Generated {
                                sql: checked.sql,
                                sql_digest: digest,
                                explanation: "hand-written SQL (spec.sql)".into(),
                                confidence: 1.0,
                                tables_used: checked.tables,
                                model: "user".into(),
                                attempts: vec![],
                                assumptions: vec![],
                                follows: None,
                                source: Some(SqlSource { kind: SqlSourceKind::User, ..Default::default() }),
                            },
                            "HandWritten",
                        )
                    }
                },
            };
            return Ok(Step::now(change));
        }

        // What the data team taught about this database: its semantic model's descriptions,
        // synonyms and samples go into the tables every generator (and the matcher) reads.
        let (model, verified) = self.knowledge(&db).await?;
        let mut tables = tables;
        if let Some(m) = &model {
            semantic::enrich(&mut tables, &m.spec);
        }
        let refined = self.status.history.iter().any(|h| h.event == "Refined" && h.generation == self.req.generation());
        // A question a verified query answers (not a follow-up, not under refinement) gets that
        // query's template with the question's values bound: the generator is not asked.
        if self.req.spec.follow_up.is_none()
            && !refined
            && let Some(q) = self.req.spec.question.as_deref()
            && let Some(answer) = verified::answer(q, &db, &verified, &tables)
        {
            match guard::check(&answer.sql, &db, &known, &allowed) {
                Err(e) => {
                    tracing::warn!(name = %self.req.metadata.name, verified_query = %answer.name, reason = %e.reason, "a verified answer was refused by the guard; generating instead")
                }
                Ok(checked) => match engine.plan(&db, &checked.sql).await {
                    Err(EngineError::Transient(m)) => return Err(Error::Engine(EngineError::Transient(m))),
                    Err(e @ EngineError::Unavailable { .. }) => return self.engine_unavailable(e).await,
                    Err(EngineError::Permanent(m)) => {
                        tracing::warn!(name = %self.req.metadata.name, verified_query = %answer.name, error = %m, "a verified answer does not plan; generating instead")
                    }
                    Ok(()) => {
                        let digest = sql_digest(kind, &db, &checked.sql, &limits);
                        let values: Vec<String> = answer.bindings.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                        let by = answer.verified_by.clone().unwrap_or_else(|| "unknown".into());
                        let explanation = if values.is_empty() {
                            format!("the verified query {} (verified by {by})", answer.name)
                        } else {
                            format!("the verified query {} (verified by {by}) with {}", answer.name, values.join(", "))
                        };
                        let source = SqlSource {
                            kind: SqlSourceKind::VerifiedQuery,
                            verified_query: Some(answer.name.clone()),
                            verified_by: answer.verified_by.clone(),
                            template_digest: answer.template_digest.clone(),
                            parameters: answer
                                .bindings
                                .iter()
                                .map(|(k, v)| (k.clone(), v.value().to_string()))
                                .collect(),
                            semantic_model: model.as_ref().map(model_ref),
                            examples: vec![],
                        };
                        let g = Generated {
                            sql: checked.sql,
                            sql_digest: digest,
                            explanation,
                            confidence: 1.0,
                            tables_used: checked.tables,
                            model: format!("verified/{}", answer.name),
                            attempts: vec![],
                            assumptions: vec![],
                            follows: None,
                            source: Some(source),
                        };
                        return Ok(Step::now(self.accepted(g, "VerifiedQuery")));
                    }
                },
            }
        }

        let Some(generator) = self.ctx.generator.clone() else {
            let mut change = Change::default();
            if self.status.condition("Generated").map(|c| c.reason.as_str()) != Some("NoGenerator") {
                change = change.condition(
                    "Generated",
                    "False",
                    "NoGenerator",
                    "no SQL generator is configured on this controller: plain-language questions need one; use spec.sql for hand-written SQL",
                );
            }
            return Ok(Step::after(change, self.ctx.config.resync));
        };

        let (follow_up, follows) = match self.req.spec.follow_up.clone() {
            None => (None, None),
            Some(f) => match self.follow_up(&f.of, &db).await? {
                Ok((context, link)) => (Some(context), Some(link)),
                Err(step) => return Ok(step),
            },
        };
        let question = self.req.spec.question.clone().unwrap_or_default();
        let history: Vec<PriorTurn> = self
            .status
            .history
            .iter()
            .filter(|h| h.event == "Refined" && h.generation == self.req.generation())
            .map(|h| PriorTurn {
                sql: h.sql.clone().unwrap_or_default(),
                feedback: h.feedback.clone().unwrap_or_default(),
            })
            .collect();
        // The allow-list narrows what the generator sees, not only what the guard accepts.
        let tables = if allowed.is_empty() {
            tables
        } else {
            tables.into_iter().filter(|t| allowed.iter().any(|a| a.eq_ignore_ascii_case(&t.name))).collect()
        };
        let examples = if refined || follow_up.is_some() {
            vec![]
        } else {
            verified::nearest(&question, &db, &verified, EXAMPLES)
        };
        let source = SqlSource {
            kind: SqlSourceKind::Generator,
            semantic_model: model.as_ref().map(model_ref),
            examples: examples.iter().map(|e| e.name.clone()).collect(),
            ..Default::default()
        };
        let mut input = GenerateInput {
            question,
            database: db.clone(),
            engine: kind,
            tables,
            history,
            last_error: None,
            instructions: model.as_ref().map(|m| semantic::instructions(&m.spec)).unwrap_or_default(),
            follow_up,
            semantic: model.map(|m| m.spec),
            examples,
        };
        let mut attempts: Vec<Attempt> = Vec::new();
        for _ in 0..self.ctx.config.max_attempts.max(1) {
            let started = std::time::Instant::now();
            let outcome = generator.generate(&input).await;
            self.ctx.metrics.observe_generation(&generator.model(), started.elapsed());
            let (proposal, usage) = match outcome {
                Ok(p) => p,
                Err(GenerateError::Transient(m)) => return Err(Error::Generate(m)),
                Err(GenerateError::CannotAnswer(m)) => {
                    attempts.push(Attempt {
                        sql: String::new(),
                        error: Some(format!("cannot answer: {m}")),
                        input_tokens: None,
                        output_tokens: None,
                    });
                    let mut change = Change::failed("Generated", "CannotAnswer", m);
                    change.generated =
                        Some(Some(Generated { attempts, model: generator.model(), follows, ..Default::default() }));
                    return Ok(Step::now(change));
                }
                Err(GenerateError::Malformed(m)) => {
                    attempts.push(Attempt {
                        sql: String::new(),
                        error: Some(m.clone()),
                        input_tokens: None,
                        output_tokens: None,
                    });
                    input.last_error = Some(m);
                    continue;
                }
            };
            let (input_tokens, output_tokens) = usage.map(|(i, o)| (Some(i), Some(o))).unwrap_or((None, None));
            let sql = proposal.sql.trim().trim_end_matches(';').trim().to_string();
            let checked = match guard::check(&sql, &db, &known, &allowed) {
                Err(e) => Err(format!("guard: {}", e.reason)),
                Ok(checked) => match engine.plan(&db, &checked.sql).await {
                    Err(EngineError::Transient(m)) => return Err(Error::Engine(EngineError::Transient(m))),
                    // The engine cannot plan anything as configured (a missing workgroup, no
                    // permission): not the SQL's fault, so no PlanFailed and nothing for the
                    // model. Say which setting to fix, and back off until it works.
                    Err(e @ EngineError::Unavailable { .. }) => return self.engine_unavailable(e).await,
                    Err(EngineError::Permanent(m)) => Err(format!("planning: {m}")),
                    Ok(()) => Ok(checked),
                },
            };
            match checked {
                Err(msg) => {
                    attempts.push(Attempt { sql: sql.clone(), error: Some(msg.clone()), input_tokens, output_tokens });
                    // The provider sees what failed and why (self-correction).
                    input.last_error = Some(format!("{msg}\nThe rejected SQL was:\n{sql}"));
                }
                Ok(checked) => {
                    attempts.push(Attempt { sql: checked.sql.clone(), error: None, input_tokens, output_tokens });
                    let digest = sql_digest(kind, &db, &checked.sql, &limits);
                    let used = checked.tables;
                    return Ok(Step::now(self.accepted(
                        Generated {
                            sql: checked.sql,
                            sql_digest: digest,
                            explanation: proposal.explanation,
                            confidence: proposal.confidence.clamp(0.0, 1.0),
                            tables_used: used,
                            model: generator.model(),
                            attempts,
                            assumptions: proposal.assumptions,
                            follows,
                            source: Some(source),
                        },
                        "Generated",
                    )));
                }
            }
        }
        let last = input.last_error.clone().unwrap_or_else(|| "no usable SQL".into());
        let why = format!("no valid SQL after {} attempts; last error: {last}", self.ctx.config.max_attempts.max(1));
        let mut change = Change::failed("Generated", "GenerationFailed", why);
        change.generated = Some(Some(Generated { attempts, model: generator.model(), follows, ..Default::default() }));
        Ok(Step::now(change))
    }

    /// The semantic model and the verified queries of `db` in this request's namespace that are
    /// fresh (planned at their current generation and not `Stale`): what generation may use.
    /// With several models of one database the first by name is used.
    async fn knowledge(&self, db: &str) -> Result<(Option<SemanticModel>, Vec<VerifiedQuery>), Error> {
        let ns = Some(self.req.metadata.namespace());
        let all = crate::store::LabelSelector::new();
        let model = self
            .ctx
            .store
            .list_objects(ObjectKind::SemanticModel, ns, &all)
            .await?
            .into_iter()
            .filter_map(|o| match o {
                Object::SemanticModel(m) => Some(m),
                Object::VerifiedQuery(_) => None,
            })
            .filter(|m| m.spec.database == db && m.is_fresh())
            .min_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let verified = self
            .ctx
            .store
            .list_objects(ObjectKind::VerifiedQuery, ns, &all)
            .await?
            .into_iter()
            .filter_map(|o| match o {
                Object::VerifiedQuery(v) => Some(v),
                Object::SemanticModel(_) => None,
            })
            .filter(|v| v.spec.database == db && v.is_fresh())
            .collect();
        Ok((model, verified))
    }

    /// What a follow-up question builds on: the earlier request's question, its refinements,
    /// the SQL it ran (or last proposed) and its result columns, plus the link recorded in
    /// `status.generated.follows`. Waits (a condition, and a requeue) while the earlier request
    /// does not exist yet or has no SQL yet — files applied together arrive in any order — and
    /// ends Failed when it can never have any (it ended without SQL, or reads another database).
    async fn follow_up(&mut self, of: &str, db: &str) -> Result<Result<(FollowUp, FollowedRequest), Step>, Error> {
        let ns = self.req.metadata.namespace().to_string();
        let key = ObjectKey::new(&ns, of);
        let waiting = |why: String| {
            let mut change = Change::default();
            if self.status.condition("Generated").is_none_or(|c| c.reason != "WaitingForFollowUp" || c.message != why) {
                change = change.condition("Generated", "Unknown", "WaitingForFollowUp", why);
            }
            Step::after(change, FOLLOW_UP_POLL)
        };
        let Some(earlier) = self.ctx.store.get(&key).await? else {
            return Ok(Err(waiting(format!(
                "spec.followUp.of: queryrequest {of} does not exist in namespace {ns} (yet); waiting for it"
            ))));
        };
        if earlier.spec.catalog.database != db {
            let why = format!(
                "spec.followUp.of: queryrequest {of} reads database {}, this request reads {db}: a follow-up stays in one database",
                earlier.spec.catalog.database
            );
            return Ok(Err(Step::now(Change::failed("Generated", "FollowUpUnusable", why))));
        }
        let status = earlier.status.clone().unwrap_or_default();
        let generated = status.generated.as_ref().filter(|g| !g.sql.is_empty() && !g.sql_digest.is_empty());
        let Some(generated) = generated else {
            if status.phase.is_terminal() && status.observed_generation == earlier.generation() {
                let why =
                    format!("spec.followUp.of: queryrequest {of} ended {} without SQL to follow up on", status.phase);
                return Ok(Err(Step::now(Change::failed("Generated", "FollowUpUnusable", why))));
            }
            // Requests that follow each other in a ring would wait for each other forever.
            let mut next = earlier.spec.follow_up.as_ref().map(|f| f.of.clone());
            for _ in 0..MAX_FOLLOW_UP_CHAIN {
                let Some(name) = next.take() else { break };
                if name == self.req.metadata.name {
                    let why =
                        format!("spec.followUp.of: queryrequest {of} follows up, directly or not, on this request");
                    return Ok(Err(Step::now(Change::failed("Generated", "FollowUpCycle", why))));
                }
                let r = self.ctx.store.get(&ObjectKey::new(&ns, &name)).await?;
                let has_sql =
                    r.as_ref().and_then(|r| r.status.as_ref()?.generated.as_ref()).is_some_and(|g| !g.sql.is_empty());
                if !has_sql {
                    next = r.and_then(|r| r.spec.follow_up.map(|f| f.of));
                }
            }
            return Ok(Err(waiting(format!("waiting for queryrequest {of} to have SQL (it is {})", status.phase))));
        };
        let execution = status.execution.as_ref().filter(|e| e.state == "Succeeded");
        let ran = status.phase == Phase::Done && execution.is_some();
        let columns = match execution {
            Some(e) if ran => e.columns.iter().map(|c| (c.name.clone(), c.type_.clone())).collect(),
            _ => vec![],
        };
        let history = status
            .history
            .iter()
            .filter(|h| h.event == "Refined" && h.generation == earlier.generation())
            .map(|h| PriorTurn {
                sql: h.sql.clone().unwrap_or_default(),
                feedback: h.feedback.clone().unwrap_or_default(),
            })
            .collect();
        let context = FollowUp {
            name: of.to_string(),
            question: earlier.spec.question.clone(),
            history,
            sql: generated.sql.clone(),
            columns,
        };
        let link = FollowedRequest {
            name: of.to_string(),
            uid: earlier.uid().to_string(),
            generation: earlier.generation(),
            sql_digest: generated.sql_digest.clone(),
            ran,
        };
        Ok(Ok((context, link)))
    }

    /// The engine cannot plan anything as configured (a missing workgroup, no permission): not
    /// the SQL's fault, so no PlanFailed and nothing for the model. Says which setting to fix
    /// (written once per message), and backs off until it works.
    async fn engine_unavailable(&mut self, e: EngineError) -> Result<Step, Error> {
        let msg = e.to_string();
        let shown = self.status.condition("Generated");
        if shown.is_none_or(|c| c.reason != "EngineUnavailable" || c.message != msg) {
            self.apply(Change::default().condition("Generated", "Unknown", "EngineUnavailable", msg)).await?;
        }
        Err(Error::Engine(e))
    }

    /// A pre-approval step failed transiently: counts it in `status.preApprovalAttempts`, shows
    /// it as a `PreApproval` condition, and after [`MAX_PRE_APPROVAL_ATTEMPTS`] ends the request
    /// Failed. Below the bound the error goes back to the error policy (backoff).
    async fn pre_approval_failed(&mut self, e: Error) -> Result<Action, Error> {
        // Only what was stored counts: drop whatever the failed step changed in memory.
        self.status = self.req.status.clone().unwrap_or_default();
        let n = self.status.pre_approval_attempts + 1;
        let why = approval::bound_text(&e.to_string(), 500);
        tracing::warn!(name = %self.req.metadata.name, uid = self.req.uid(), attempt = n, error = %why, "pre-approval attempt failed");
        let exhausted = n >= MAX_PRE_APPROVAL_ATTEMPTS;
        let attempt = format!("attempt {n} of {MAX_PRE_APPROVAL_ATTEMPTS} failed: {why}");
        let mut change = if exhausted {
            let last = format!("{n} pre-approval attempts failed; last error: {why}");
            Change::failed("Generated", "PreApprovalAttemptsExhausted", last)
        } else {
            Change::default()
        };
        let reason = if exhausted { "AttemptsExhausted" } else { "AttemptFailed" };
        change.conditions.insert(0, ("PreApproval", "False", reason.into(), attempt));
        change.pre_approval_attempts = Some(n);
        self.apply(change).await?;
        if exhausted { Ok(Action::requeue(Duration::ZERO)) } else { Err(e) }
    }

    /// The SQL that goes to approval: recorded with its digest, and the attempt count reset.
    fn accepted(&self, g: Generated, reason: &'static str) -> Change {
        let mut e = Self::event("Generated");
        e.sql = Some(g.sql.clone());
        e.sql_digest = Some(g.sql_digest.clone());
        e.message = Some(format!("by {} (confidence {:.2})", g.model, g.confidence));
        let mut change = Change::to(Phase::Generated).condition("Generated", "True", reason, "").event(e);
        change.generated = Some(Some(g));
        change.pre_approval_attempts = Some(0);
        change
    }

    /// Generated: estimate the scan, open an approval round with a deadline, then ask for a
    /// decision (the request carries the estimate, so the queue message, the chat card and the
    /// console show it).
    async fn enter_awaiting_approval(&mut self) -> Result<Action, Error> {
        let timeout = approval::approval_timeout(&self.ctx.policy, &self.req);
        let deadline = Utc::now() + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::days(1));
        let waiting = format!("waiting for a decision until {}", deadline.to_rfc3339());
        let change = Change { open_round: Some(deadline), ..self.estimate().await }
            .phase(Phase::AwaitingApproval)
            .condition("Approved", "Unknown", "AwaitingApproval", waiting);
        self.apply(change).await?;
        // Trusted shapes (policy only): an exact instantiation of a verified query is approved
        // by a policy decision record, projected like any other once re-checked.
        if let Some(t) = super::trusted::find(self.ctx, &self.current()).await {
            let d = super::trusted::decision(&self.current(), &t);
            self.ctx.store.create_decision(&d).await?;
            tracing::info!(
                name = %self.req.metadata.name,
                uid = self.req.uid(),
                verified_query = %t.vq.metadata.name,
                verifier = %t.verifier,
                "approval by policy: the SQL is an exact instantiation of a verified query"
            );
            self.status.approval_requested = true;
            self.write().await?;
            return Ok(Action::requeue(Duration::ZERO));
        }
        self.send_approval_request().await
    }

    /// The request with the status as staged so far.
    fn current(&self) -> QueryRequest {
        QueryRequest { status: Some(self.status.clone()), ..self.req.clone() }
    }

    /// Fills `status.estimate` from the engine and sets `Estimated` and, when the request has a
    /// `limits.maxBytesScanned`, `BudgetExceeded`. Never blocks the request: an engine that
    /// cannot estimate (or takes longer than [`ESTIMATE_TIMEOUT`]) leaves no estimate, says why
    /// in `Estimated=False`, and the runtime budget check still applies.
    async fn estimate(&self) -> Change {
        let kind = self.engine_kind();
        let sql = self.status.generated.as_ref().map(|g| g.sql.clone()).unwrap_or_default();
        let db = self.req.spec.catalog.database.clone();
        let outcome = match self.ctx.engines.get(&kind).cloned() {
            None => Err(format!("engine {} is not configured on this controller", kind.as_str())),
            Some(engine) => match tokio::time::timeout(ESTIMATE_TIMEOUT, engine.estimate(&db, &sql)).await {
                Ok(Ok(e)) => Ok(e),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no estimate within {}s", ESTIMATE_TIMEOUT.as_secs())),
            },
        };
        let (change, estimate) = match outcome {
            Ok(e) => (Change::default().condition("Estimated", "True", "Estimated", e.method.clone()), Some(e)),
            Err(why) => {
                tracing::warn!(name = %self.req.metadata.name, uid = self.req.uid(), error = %why, "no scan estimate");
                (Change::default().condition("Estimated", "False", "EstimateFailed", why), None)
            }
        };
        let change = Change { estimate: Some(estimate.clone()), ..change };
        let Some(budget) = self.req.spec.effective_limits().max_bytes_scanned else { return change };
        let name = self.name().to_string();
        match approval::estimate_over_budget(estimate.as_ref(), Some(budget)) {
            Some(over) => {
                let cost = estimate.as_ref().map(|e| e.cost_usd).unwrap_or(0.0);
                change.condition(
                    "BudgetExceeded",
                    "True",
                    "EstimateOverBudget",
                    format!(
                        "estimated scan {} (US${cost:.4}) exceeds limits.maxBytesScanned {}: it runs only with `sqlctl approve {name} --allow-over-budget` (from an approver the policy allows), or refine it to read less",
                        human_bytes(over.estimate),
                        human_bytes(over.budget)
                    ),
                )
            }
            None if estimate.is_some() => {
                let bytes = estimate.as_ref().map(|e| e.bytes).unwrap_or(0);
                change.condition(
                    "BudgetExceeded",
                    "False",
                    "WithinBudget",
                    format!("estimated scan {} of {}", human_bytes(bytes), human_bytes(budget)),
                )
            }
            None => change.condition(
                "BudgetExceeded",
                "Unknown",
                "EstimateUnavailable",
                format!(
                    "no estimate; limits.maxBytesScanned ({}) is enforced while the query runs",
                    human_bytes(budget)
                ),
            ),
        }
    }

    async fn send_approval_request(&mut self) -> Result<Action, Error> {
        match self.ctx.notifier.approval_requested(&self.req).await {
            // Best-effort channels that gave up (chat) are recorded as Notified=False; the
            // round is still marked requested, so neither it nor the query waits on them.
            Ok(delivery) => {
                self.status.approval_requested = true;
                delivery.record(&mut self.status);
                self.write().await?;
                Ok(Action::requeue(self.until_deadline()))
            }
            Err(e) => {
                self.status.set_condition("Notified", "False", "ApprovalRequestFailed", e.to_string());
                self.write().await?;
                Ok(Action::requeue(Duration::from_secs(30).min(self.until_deadline())))
            }
        }
    }

    fn until_deadline(&self) -> Duration {
        let d = self
            .status
            .approval_deadline
            .map(|d| (d - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::ZERO);
        d.min(self.ctx.config.resync)
    }

    /// AwaitingApproval: project the first valid decision of this round; refuse invalid ones; time out.
    async fn await_decision(&mut self) -> Result<Step, Error> {
        let (generation, round) = (self.req.generation(), self.status.approval_round);
        // Each decision record is looked at once, whatever the history still holds: the round's
        // high-water mark of store seqs says which were (issue 10, class 7).
        let mark = self
            .status
            .decisions_seen
            .as_ref()
            .filter(|m| m.generation == generation && m.round == round)
            .map_or(0, |m| m.seq);
        // The deadline does not wait on anything that can fail: past it, a store that cannot
        // list decisions does not keep the round open.
        let past_deadline = self.status.approval_deadline.is_some_and(|d| Utc::now() >= d);
        let scanned = match self.ctx.store.scan_decision_records(self.req.uid(), mark).await {
            Ok(s) => s,
            Err(e) if past_deadline => {
                tracing::warn!(name = %self.req.metadata.name, uid = self.req.uid(), error = %e, "decision records unreadable past the approval deadline; timing out");
                Default::default()
            }
            Err(e) => return Err(e.into()),
        };
        // Records that do not decode are quarantined (condition, log, metric); the rest proceed.
        let mut change = self.quarantine(&scanned.undecodable);
        for rec in
            scanned.records.into_iter().filter(|r| r.decision.generation == generation && r.decision.round == round)
        {
            // Whoever wrote the record, its texts reach status only within their bounds.
            let d = approval::bounded(rec.decision);
            if rec.seq == 0 {
                // Written before the store numbered decisions: only the history can tell.
                let seen = |h: &HistoryEntry| h.decision_id.as_deref() == Some(d.id.as_str());
                if self.status.history.iter().chain(&change.history).any(seen) {
                    continue;
                }
            } else {
                change.decisions_seen = Some(DecisionsSeen { generation, round, seq: rec.seq });
            }
            let verdict = if d.source == super::trusted::POLICY_SOURCE {
                super::trusted::recheck(self.ctx, &self.current(), &d)
                    .await
                    .map_err(|why| format!("approval by policy refused: {why}"))
            } else {
                approval::check(&self.ctx.policy, &self.req, &d).map_err(|r| r.to_string())
            };
            match verdict {
                Err(refusal) => {
                    self.ctx.metrics.decision("refused");
                    tracing::warn!(name = %self.req.metadata.name, uid = self.req.uid(), by = %d.by, decision = d.decision.as_str(), reason = %refusal, "decision refused");
                    let mut e = Self::event("DecisionRefused");
                    e.by = Some(d.by.clone());
                    e.decision = Some(d.decision);
                    e.decision_id = Some(d.id.clone());
                    e.sql_digest = Some(d.sql_digest.clone());
                    e.message = Some(refusal.clone());
                    change = change.event(e).condition(
                        "DecisionRefused",
                        "True",
                        "PolicyRefused",
                        format!("{} by {}: {refusal}", d.decision.as_str(), d.by),
                    );
                }
                Ok(()) => {
                    self.ctx.metrics.decision("accepted");
                    let opened = self.status.condition("Approved").filter(|c| c.reason == "AwaitingApproval");
                    if let Some(c) = opened {
                        self.ctx
                            .metrics
                            .observe_approval_wait((d.at - c.last_transition_time).to_std().unwrap_or_default());
                    }
                    return Ok(Step::now(self.decided(change, &d)));
                }
            }
        }
        if self.status.approval_deadline.is_some_and(|d| Utc::now() >= d) {
            let mut e = Self::event("TimedOut");
            e.message = Some("approval deadline passed".into());
            change.phase = Some(Phase::TimedOut);
            change = change
                .condition("Approved", "False", "ApprovalTimeout", "no valid decision before the approval deadline")
                .condition("Ready", "False", "ApprovalTimeout", "")
                .event(e);
        }
        // Past the deadline the request times out even if its approval request never went out
        // (a queue that keeps failing must not keep the round open, or retry in a tight loop).
        if change.phase.is_none() && !self.status.approval_requested {
            self.apply(change).await?;
            return Ok(Step::written(self.send_approval_request().await?));
        }
        let then = match change.phase {
            Some(_) => Duration::ZERO,
            None => self.until_deadline().max(Duration::from_millis(10)),
        };
        Ok(Step::after(change, then))
    }

    /// What an accepted decision `d` changes, on top of `change` (the refusals and the
    /// high-water mark of the same scan).
    fn decided(&self, change: Change, d: &crate::spec::Decision) -> Change {
        let mut e = Self::event("Decision");
        e.by = Some(d.by.clone());
        e.decision = Some(d.decision);
        e.decision_id = Some(d.id.clone());
        e.sql_digest = Some(d.sql_digest.clone());
        e.feedback = d.feedback.clone();
        e.message = d.comment.clone();
        let mut change = change.event(e);
        let approval = ApprovalStatus {
            decision: d.decision,
            by: d.by.clone(),
            at: d.at,
            generation: d.generation,
            sql_digest: d.sql_digest.clone(),
            comment: d.comment.clone(),
            decision_id: d.id.clone(),
            // Counts only where it was needed (the estimate was over budget).
            allow_over_budget: d.allow_over_budget && approval::over_budget(&self.req).is_some(),
        };
        change.phase = Some(match d.decision {
            DecisionKind::Approve => Phase::Executing,
            DecisionKind::Reject => Phase::Rejected,
            DecisionKind::Refine => Phase::Pending,
        });
        match d.decision {
            // Intent first: the token of attempt 1 is recorded with the transition.
            DecisionKind::Approve => change
                .approval(Some(approval))
                .condition("Approved", "True", "Approved", format!("approved by {}", d.by))
                .execution(self.intent(1))
                .cancel_finalizer(true),
            DecisionKind::Reject => {
                // The comment is kept in the approval (and the history entry); the condition
                // carries an excerpt.
                let why = approval::bound_text(d.comment.as_deref().unwrap_or_default(), 200);
                let why = if why.is_empty() { String::new() } else { format!(": {why}") };
                change
                    .approval(Some(approval))
                    .condition("Approved", "False", "Rejected", format!("rejected by {}{why}", d.by))
                    .condition("Ready", "False", "Rejected", "")
            }
            DecisionKind::Refine => {
                let old = self.status.generated.clone().unwrap_or_default();
                let mut e = Self::event("Refined");
                e.by = Some(d.by.clone());
                e.sql = Some(old.sql);
                e.sql_digest = Some(old.sql_digest);
                e.feedback = d.feedback.clone();
                change.generated = Some(None);
                change
                    .event(e)
                    .approval(None)
                    .condition("Approved", "False", "Refined", format!("{} asked for changes", d.by))
                    .condition("Generated", "Unknown", "Regenerating", "regenerating with refine feedback")
            }
        }
    }

    /// `DecisionQuarantined=True` naming the decision records that do not decode; logs and
    /// counts each record once (the first time the condition names it). Empty when nothing new.
    fn quarantine(&self, bad: &[crate::store::Undecodable]) -> Change {
        if bad.is_empty() {
            return Change::default();
        }
        let shown: Vec<String> = bad
            .iter()
            .take(10)
            .map(|u| format!("{} ({})", approval::bound_text(&u.id, 128), approval::bound_text(&u.why, 160)))
            .collect();
        let more = if bad.len() > 10 { format!(" and {} more", bad.len() - 10) } else { String::new() };
        let message =
            format!("{} decision record(s) skipped because they do not decode: {}{more}", bad.len(), shown.join("; "));
        let old = self.status.conditions.iter().find(|c| c.type_ == "DecisionQuarantined").map(|c| c.message.clone());
        if old.as_deref() == Some(message.as_str()) {
            return Change::default();
        }
        let old = old.unwrap_or_default();
        for u in bad.iter().filter(|u| !old.contains(&approval::bound_text(&u.id, 128))) {
            self.ctx.metrics.decision_quarantined();
            tracing::warn!(name = %self.req.metadata.name, uid = self.req.uid(), record = %approval::bound_text(&u.id, 128), why = %approval::bound_text(&u.why, 160), "decision record quarantined: it does not decode");
        }
        Change::default().condition("DecisionQuarantined", "True", "Undecodable", message)
    }

    fn intent(&self, attempt: u32) -> Execution {
        let digest = self.status.generated.as_ref().map(|g| g.sql_digest.as_str()).unwrap_or("");
        let generation = self.req.generation().to_string();
        Execution {
            token: token(&[self.req.uid(), &generation, digest, &attempt.to_string()]),
            attempt,
            state: "Starting".into(),
            ..Default::default()
        }
    }

    fn job(&self, exec: &Execution) -> Result<QueryJob, String> {
        let g = self.status.generated.as_ref().ok_or("no generated SQL")?;
        let a = self.status.approval.as_ref().ok_or("no approval")?;
        let limits = self.req.spec.effective_limits();
        let db = &self.req.spec.catalog.database;
        // Only canonical SQL runs: text that is not its own canonical form (a record written by
        // an older version, or edited in the store) is refused rather than run (DESIGN §5).
        match guard::check_read_only(&g.sql, db, &self.req.spec.catalog.tables) {
            Ok(c) if c.sql == g.sql => {}
            Ok(_) => {
                return Err(
                    "integrity check failed: the approved SQL is not in canonical form; apply the request again".into(),
                );
            }
            Err(e) => return Err(format!("integrity check failed: the approved SQL no longer passes the guard: {e}")),
        }
        // The engine runs exactly the approved bytes: recompute and compare before every start.
        let digest = sql_digest(self.engine_kind(), db, &g.sql, &limits);
        if digest != a.sql_digest || digest != g.sql_digest || a.generation != self.req.generation() {
            return Err(format!(
                "integrity check failed: the SQL, engine or limits no longer match the approved digest {}",
                a.sql_digest
            ));
        }
        // The engine enforces the ceiling this run was granted, not only the spec's limit: an
        // over-budget approval raises it (see `approval::scan_ceiling`).
        let limits = EffectiveLimits { max_bytes_scanned: approval::scan_ceiling(&self.req), ..limits };
        Ok(QueryJob {
            key: self.req.key(),
            token: exec.token.clone(),
            database: db.clone(),
            sql: g.sql.clone(),
            limits,
            // The uid keeps a deleted and recreated request of the same name from sharing (and
            // overwriting) its predecessor's result files (issue 10, class 6).
            result: crate::results::ResultKey::of(&self.req, exec.attempt),
        })
    }

    /// Executing: start (idempotent per token) → record id → poll → record the outcome once.
    async fn execute(&mut self) -> Result<Step, Error> {
        let kind = self.engine_kind();
        let Some(engine) = self.ctx.engines.get(&kind).cloned() else {
            let why = format!("engine {} is not configured", kind.as_str());
            return Ok(Step::now(Change::failed("Executed", "EngineUnavailable", why)));
        };
        let Some(mut exec) = self.status.execution.clone() else {
            return Ok(Step::now(Change::default().execution(self.intent(1))));
        };
        if exec.state == "Starting" || exec.id.is_none() {
            let job = match self.job(&exec) {
                Ok(j) => j,
                Err(m) => return Ok(Step::now(Change::failed("Executed", "IntegrityCheckFailed", m))),
            };
            let id = match engine.start(&job, self.ctx.waker.clone()).await {
                Ok(id) => id,
                // Approved but over the engine's concurrency cap: wait in Executing, visibly, in
                // approval order (the engine wakes the head of its queue when a slot frees).
                Err(EngineError::Transient(m)) if m.starts_with("Queued") => {
                    let shown = self.status.condition("Queued").is_some_and(|c| c.status == "True");
                    let change = match shown {
                        true => Change::default(),
                        false => Change::default().condition("Queued", "True", "ConcurrencyCap", m),
                    };
                    return Ok(Step::after(change, Duration::from_secs(5)));
                }
                Err(EngineError::Transient(m)) => return Err(Error::Engine(EngineError::Transient(m))),
                // A setup problem is not the query's: back off until it is fixed.
                Err(e @ EngineError::Unavailable { .. }) => return Err(Error::Engine(e)),
                Err(EngineError::Permanent(m)) => return Ok(Step::now(Change::failed("Executed", "QueryFailed", m))),
            };
            self.ctx.metrics.query_started(engine.name());
            // The first attempt's start is what the approver waited for.
            if exec.attempt == 1
                && let Some(a) = &self.status.approval
            {
                self.ctx.metrics.observe_approve_to_executing((Utc::now() - a.at).to_std().unwrap_or_default());
            }
            let mut change = Change::default();
            if self.status.condition("Queued").is_some_and(|c| c.status == "True") {
                change = change.condition("Queued", "False", "Started", "");
            }
            exec.id = Some(id);
            exec.state = "Running".into();
            exec.started_at.get_or_insert_with(Utc::now);
            let running = format!("attempt {}", exec.attempt);
            let change = change.execution(exec).condition("Executed", "Unknown", "Running", running);
            return Ok(Step::after(change, Duration::from_millis(200)));
        }
        let id = exec.id.clone().unwrap_or_default();
        let limits = self.req.spec.effective_limits();
        match engine.poll(&id).await.map_err(Error::Engine)? {
            ExecState::Unknown => {
                // The engine forgot it (a local engine after a restart): start again with the same
                // token. The local engine only reads, and the result is recorded once below.
                exec.state = "Starting".into();
                Ok(Step::now(Change::default().execution(exec)))
            }
            ExecState::Running { bytes_scanned } => {
                let elapsed =
                    exec.started_at.map(|s| (Utc::now() - s).to_std().unwrap_or_default()).unwrap_or_default();
                let over_time = elapsed > Duration::from_millis(limits.timeout_ms) + Duration::from_secs(5);
                let ceiling = approval::scan_ceiling(&self.req);
                let over_budget = matches!((bytes_scanned, ceiling), (Some(b), Some(m)) if b > m);
                if over_time || over_budget {
                    let _ = engine.cancel(&id).await;
                    let why = if over_time {
                        format!("query exceeded its timeout of {}ms", limits.timeout_ms)
                    } else if ceiling != limits.max_bytes_scanned {
                        format!(
                            "query scanned more than {}, twice the estimate the over-budget approval accepted",
                            human_bytes(ceiling.unwrap_or(0))
                        )
                    } else {
                        format!(
                            "query scanned more than limits.maxBytesScanned ({} bytes)",
                            limits.max_bytes_scanned.unwrap_or(0)
                        )
                    };
                    exec.state = "Cancelled".into();
                    exec.error = Some(why.clone());
                    exec.finished_at = Some(Utc::now());
                    self.ctx.metrics.query_finished("cancelled");
                    let reason = if over_time { "QueryTimeout" } else { "BudgetExceeded" };
                    return Ok(Step::now(Change::failed("Executed", reason, why).execution(exec)));
                }
                // Capped exponential poll: 200ms, 400ms, … 5s (engines that finish in-process wake us).
                let next = Duration::from_millis(200)
                    .saturating_mul(1 << (elapsed.as_secs().min(5) as u32))
                    .min(Duration::from_secs(5));
                Ok(Step::after(Change::default(), next))
            }
            ExecState::Succeeded(out) => {
                // The chart is drawn from the stored result and stored next to it before Done is
                // written; a replay redraws it to the same place. It never fails the request.
                let sql = self.status.generated.as_ref().map(|g| g.sql.as_str());
                let chart = crate::chart::produce(self.ctx.results.as_ref(), &self.req, sql, &out).await;
                exec.chart_location = chart.location().map(str::to_string);
                exec.columns = chart.columns.clone();
                exec.answer = chart.answer.clone();
                exec.state = "Succeeded".into();
                exec.finished_at = Some(Utc::now());
                exec.rows = Some(out.rows);
                exec.bytes_scanned = out.bytes_scanned;
                exec.cost_usd = out.cost_usd;
                exec.duration_ms = Some(out.duration_ms);
                exec.output_location = Some(out.output_location.clone());
                exec.preview = Some(out.preview);
                let truncated = out.truncated.as_deref().map(|t| format!("; {t}")).unwrap_or_default();
                let mut e = Self::event("Executed");
                e.message = Some(format!("{} rows, {} ms, {}", out.rows, out.duration_ms, out.output_location));
                let mut change = Change::to(Phase::Done)
                    .execution(exec)
                    .condition(
                        "Executed",
                        "True",
                        "Succeeded",
                        format!("{} rows in {} ms{truncated}", out.rows, out.duration_ms),
                    )
                    .condition("Ready", "True", "Done", "")
                    .event(e)
                    .cancel_finalizer(false);
                change.charted = Some(chart);
                let mut step = Step::now(change);
                step.succeeded = Some((
                    engine.name().to_string(),
                    out.bytes_scanned.unwrap_or(0),
                    Duration::from_millis(out.duration_ms),
                ));
                Ok(step)
            }
            ExecState::Failed { reason, transient } => {
                self.ctx.metrics.query_finished("failed");
                let ran = exec.started_at.map(|s| (Utc::now() - s).to_std().unwrap_or_default()).unwrap_or_default();
                self.ctx.metrics.observe_query(engine.name(), "failed", ran);
                if transient && exec.attempt < MAX_EXEC_ATTEMPTS {
                    let mut e = Self::event("AttemptFailed");
                    e.message = Some(format!("attempt {}: {reason}", exec.attempt));
                    let change = Change::default().event(e).execution(self.intent(exec.attempt + 1)).condition(
                        "Executed",
                        "Unknown",
                        "Retrying",
                        format!("attempt {} failed transiently: {reason}", exec.attempt),
                    );
                    return Ok(Step::after(change, Duration::from_secs(1u64 << exec.attempt.min(5))));
                }
                exec.state = "Failed".into();
                exec.error = Some(reason.clone());
                exec.finished_at = Some(Utc::now());
                Ok(Step::now(Change::failed("Executed", "QueryFailed", reason).execution(exec)))
            }
            ExecState::Cancelled { reason } => {
                exec.state = "Cancelled".into();
                exec.error = Some(reason.clone());
                Ok(Step::now(Change::failed("Executed", "Cancelled", reason).execution(exec)))
            }
        }
    }

    /// Terminal: notify once per (generation, phase); then nothing until the spec changes.
    async fn notify_finished(&mut self) -> Result<Action, Error> {
        let marker = notified_marker(self.req.generation(), self.status.phase);
        let has_finalizer = self.req.metadata.finalizers.iter().any(|f| f == CANCEL_FINALIZER);
        if self.status.notified.as_deref() == Some(marker.as_str()) {
            if has_finalizer {
                self.req.metadata.finalizers.retain(|f| f != CANCEL_FINALIZER);
                self.write().await?;
            }
            return Ok(Action::await_change());
        }
        self.req.metadata.finalizers.retain(|f| f != CANCEL_FINALIZER);
        match self.ctx.notifier.finished(&self.req).await {
            Ok(delivery) => {
                self.status.notified = Some(marker);
                delivery.record(&mut self.status);
                self.write().await?;
                Ok(Action::await_change())
            }
            Err(e) => {
                self.status.set_condition("Notified", "False", "NotifyFailed", e.to_string());
                self.write().await?;
                Ok(Action::requeue(Duration::from_secs(30)))
            }
        }
    }
}
