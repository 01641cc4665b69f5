//! `sqlctl approve|refine|reject NAME`: write a decision record bound to exactly the SQL the
//! decider saw: `(uid, generation, round, sqlDigest)`. On a terminal, approve shows the SQL and
//! asks; without one, `--digest` is required so nobody approves SQL they have not seen.
//!
//! A request whose scan estimate exceeds its `limits.maxBytesScanned` (condition
//! `BudgetExceeded=True`) is approved only with `--allow-over-budget`, from an approver the
//! policy allows (`overBudgetApprovers`); a plain approve is refused with what to do.

use super::{Exit, get_request, output};
use crate::approval::{self, DecisionInput, SubmitError};
use crate::config::GlobalOpts;
use crate::spec::quantity::human_bytes;
use crate::spec::text::escape_hidden;
use crate::spec::{DecisionKind, QueryRequest};

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    pub name: String,
    /// The full sqlDigest you reviewed: all 64 hex characters, as `describe` shows it. A prefix
    /// (as `get -o wide` shows for reading) is refused.
    #[arg(long)]
    pub digest: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    /// Decide as this approver (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
    /// Do not ask for confirmation (still requires --digest).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Accept a scan estimate over the request's limits.maxBytesScanned (condition
    /// BudgetExceeded=True). The run may then scan up to twice the estimate.
    #[arg(long)]
    pub allow_over_budget: bool,
}

#[derive(clap::Args, Debug)]
pub struct RefineArgs {
    pub name: String,
    /// What should change in the SQL.
    #[arg(long, required = true)]
    pub feedback: String,
    #[arg(long)]
    pub digest: Option<String>,
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RejectArgs {
    pub name: String,
    /// Why (recorded in the history).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub digest: Option<String>,
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
}

/// Shows the SQL awaiting approval (for the confirmation prompt and `ask`).
pub fn show_sql(r: &QueryRequest) {
    let st = r.status.clone().unwrap_or_default();
    if let Some(g) = &st.generated {
        // Hidden characters (controls, bidi overrides, zero-width) are shown escaped, so the
        // terminal shows exactly what runs; the digest recorded is the full digest of this SQL.
        eprintln!("SQL for {} (generation {}, digest {}):", r.metadata.name, r.generation(), g.sql_digest);
        for line in escape_hidden(&g.sql).lines() {
            eprintln!("    {line}");
        }
        if !g.explanation.is_empty() {
            eprintln!("Explanation: {}", escape_hidden(&g.explanation));
        }
    }
    if let Some(e) = &st.estimate {
        eprintln!("Estimate: {} to scan, US${:.4} ({})", human_bytes(e.bytes), e.cost_usd, e.method);
    }
    if let Some(over) = approval::over_budget(r) {
        eprintln!(
            "Over budget: the estimate exceeds limits.maxBytesScanned ({}); approving needs --allow-over-budget",
            human_bytes(over.budget)
        );
    }
}

impl ApproveArgs {
    pub async fn run(self, g: &GlobalOpts) -> anyhow::Result<()> {
        let store = g.store().await?;
        let r = get_request(store.as_ref(), g, &self.name).await?;
        let mut digest = self.digest.clone();
        if digest.is_none() {
            if self.yes || !output::stdin_is_tty() {
                return Err(Exit::usage(format!(
                    "approve without a terminal needs --digest: review the SQL with `sqlctl describe {}` and pass its full digest (all 64 hex characters)",
                    self.name
                )));
            }
            if r.status.as_ref().and_then(|s| s.generated.as_ref()).is_some() {
                show_sql(&r);
            }
            let current = r.status.as_ref().and_then(|s| s.generated.as_ref()).map(|g| g.sql_digest.clone());
            if let Some(d) = current.filter(|_| r.phase() == crate::spec::Phase::AwaitingApproval) {
                match output::prompt("Approve this SQL? [y/N] ").as_deref() {
                    Some("y") | Some("Y") | Some("yes") => digest = Some(d),
                    _ => return Err(Exit::refused("not approved; nothing was written")),
                }
            }
        }
        decide(
            g,
            &r,
            DecisionInput {
                decision: DecisionKind::Approve,
                by: g.decider(self.as_.as_deref()).await?,
                digest,
                feedback: None,
                comment: self.comment,
                source: "cli".into(),
                allow_over_budget: self.allow_over_budget,
            },
        )
        .await
    }
}

impl RefineArgs {
    pub async fn run(self, g: &GlobalOpts) -> anyhow::Result<()> {
        if self.feedback.trim().is_empty() {
            return Err(Exit::usage("--feedback must say what should change"));
        }
        if self.feedback.chars().count() > crate::spec::MAX_QUESTION_CHARS {
            return Err(Exit::usage(format!(
                "--feedback is longer than {} characters",
                crate::spec::MAX_QUESTION_CHARS
            )));
        }
        let store = g.store().await?;
        let r = get_request(store.as_ref(), g, &self.name).await?;
        decide(
            g,
            &r,
            DecisionInput {
                decision: DecisionKind::Refine,
                by: g.decider(self.as_.as_deref()).await?,
                digest: self.digest,
                feedback: Some(self.feedback),
                comment: None,
                source: "cli".into(),
                allow_over_budget: false,
            },
        )
        .await
    }
}

impl RejectArgs {
    pub async fn run(self, g: &GlobalOpts) -> anyhow::Result<()> {
        let store = g.store().await?;
        let r = get_request(store.as_ref(), g, &self.name).await?;
        decide(
            g,
            &r,
            DecisionInput {
                decision: DecisionKind::Reject,
                by: g.decider(self.as_.as_deref()).await?,
                digest: self.digest,
                feedback: None,
                comment: self.reason,
                source: "cli".into(),
                allow_over_budget: false,
            },
        )
        .await
    }
}

/// Writes the decision through the shared path; refusals exit 1 with the reason.
pub async fn decide(g: &GlobalOpts, r: &QueryRequest, input: DecisionInput) -> anyhow::Result<()> {
    let store = g.store().await?;
    match approval::submit(store.as_ref(), r, &input).await {
        Ok(d) => {
            println!(
                "queryrequest/{} {} by {} recorded (generation {}, round {}, digest {})",
                r.metadata.name,
                match d.decision {
                    DecisionKind::Approve => "approval",
                    DecisionKind::Refine => "refine",
                    DecisionKind::Reject => "rejection",
                },
                d.by,
                d.generation,
                d.round,
                d.sql_digest
            );
            Ok(())
        }
        Err(SubmitError::Refused(why)) => Err(Exit::refused(format!("refused: {why}"))),
        Err(SubmitError::Store(e)) => Err(e.into()),
    }
}
