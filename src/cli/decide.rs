//! `sqlctl approve|refine|reject NAME`: write a decision record bound to exactly the SQL the
//! decider saw: `(uid, generation, round, sqlDigest)`. On a terminal, approve shows the SQL and
//! asks; without one, `--digest` is required so nobody approves SQL they have not seen.
//!
//! A request whose scan estimate exceeds its `limits.maxBytesScanned` (condition
//! `BudgetExceeded=True`) is approved only with `--allow-over-budget`, from an approver the
//! policy allows (`overBudgetApprovers`); a plain approve is refused with what to do.

use std::time::Duration;
#[cfg(feature = "aws")]
use std::time::Instant;

use super::{Exit, get_request, output};
use crate::approval::{self, DecisionInput, SubmitError};
use crate::config::Context;
use crate::spec::quantity::human_bytes;
use crate::spec::text::escape_hidden;
use crate::spec::{DecisionKind, QueryRequest};

/// What every decision command takes: the request, the digest reviewed, who decides, and how
/// long to wait for the decision to be recorded.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The request: NAME, or TYPE/NAME (queryrequest/NAME, qr/NAME).
    #[arg(value_parser = super::request_name)]
    pub name: String,
    /// The full sqlDigest you reviewed: all 64 hex characters, as `describe` shows it. A prefix
    /// (as `get -o wide` shows for reading) is refused.
    #[arg(long)]
    pub digest: Option<String>,
    /// Decide as this approver (default: the OS user).
    #[arg(long = "as", value_name = "NAME")]
    pub as_: Option<String>,
    #[command(flatten)]
    pub send: SendArgs,
}

impl Target {
    async fn load(&self, g: &Context) -> anyhow::Result<QueryRequest> {
        let store = g.store().await?;
        get_request(store.as_ref(), g, &self.name).await
    }

    /// A decision of `kind` by this command's decider on `digest`, with nothing else said.
    async fn input(&self, g: &Context, kind: DecisionKind, digest: Option<String>) -> anyhow::Result<DecisionInput> {
        Ok(DecisionInput {
            decision: kind,
            by: g.decider(self.as_.as_deref()).await?,
            digest,
            feedback: None,
            comment: None,
            source: "cli".into(),
            allow_over_budget: false,
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long)]
    pub comment: Option<String>,
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
    #[command(flatten)]
    pub target: Target,
    /// What should change in the SQL.
    #[arg(long, required = true)]
    pub feedback: String,
}

#[derive(clap::Args, Debug)]
pub struct RejectArgs {
    #[command(flatten)]
    pub target: Target,
    /// Why (recorded in the history).
    #[arg(long)]
    pub reason: Option<String>,
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
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let t = &self.target;
        let r = t.load(g).await?;
        let mut digest = t.digest.clone();
        if digest.is_none() {
            if self.yes || !output::stdin_is_tty() {
                return Err(Exit::usage(format!(
                    "approve without a terminal needs --digest: review the SQL with `sqlctl describe {}` and pass its full digest (all 64 hex characters)",
                    t.name
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
        let input = DecisionInput {
            comment: self.comment,
            allow_over_budget: self.allow_over_budget,
            ..t.input(g, DecisionKind::Approve, digest).await?
        };
        decide(g, &r, input, &t.send).await
    }
}

impl RefineArgs {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        if self.feedback.trim().is_empty() {
            return Err(Exit::usage("--feedback must say what should change"));
        }
        if self.feedback.chars().count() > crate::spec::MAX_QUESTION_CHARS {
            return Err(Exit::usage(format!(
                "--feedback is longer than {} characters",
                crate::spec::MAX_QUESTION_CHARS
            )));
        }
        let t = &self.target;
        let r = t.load(g).await?;
        let input = DecisionInput {
            feedback: Some(self.feedback),
            ..t.input(g, DecisionKind::Refine, t.digest.clone()).await?
        };
        decide(g, &r, input, &t.send).await
    }
}

impl RejectArgs {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let t = &self.target;
        let r = t.load(g).await?;
        let input = DecisionInput { comment: self.reason, ..t.input(g, DecisionKind::Reject, t.digest.clone()).await? };
        decide(g, &r, input, &t.send).await
    }
}

/// How long approve/refine/reject wait on `--backend aws` for the controller to record a
/// decision sent over SQS.
#[derive(clap::Args, Debug, Clone)]
pub struct SendArgs {
    /// On --backend aws: how long to wait for the controller to record the decision sent over
    /// SQS (0: send and return).
    #[arg(long = "wait", value_name = "DURATION", default_value = "60s", value_parser = crate::spec::quantity::parse_duration)]
    pub wait: Duration,
}

impl Default for SendArgs {
    fn default() -> Self {
        SendArgs { wait: Duration::from_secs(60) }
    }
}

fn noun(kind: DecisionKind) -> &'static str {
    match kind {
        DecisionKind::Approve => "approval",
        DecisionKind::Refine => "refine",
        DecisionKind::Reject => "rejection",
    }
}

fn print_recorded(name: &str, kind: DecisionKind, by: &str, generation: u64, round: u32, digest: &str) {
    println!(
        "queryrequest/{name} {} by {by} recorded (generation {generation}, round {round}, digest {digest})",
        noun(kind)
    );
}

/// Decides through the shared path; refusals exit 1 with the reason. Locally the decision
/// record is written here. On `--backend aws` people never write decision records: the
/// decision is checked here (to refuse at once, with the same reasons), sent to the controller
/// over SQS, whose sender AWS authenticates, and the command waits for the controller to
/// record it.
pub async fn decide(g: &Context, r: &QueryRequest, input: DecisionInput, send: &SendArgs) -> anyhow::Result<()> {
    let store = g.store().await?;
    #[cfg(not(feature = "aws"))]
    let _ = send; // only --backend aws sends (and waits)
    #[cfg(feature = "aws")]
    if g.is_aws() {
        return decide_over_sqs(g, store.as_ref(), r, &input, send.wait).await;
    }
    match approval::submit(store.as_ref(), r, &input).await {
        Ok(d) => {
            print_recorded(&r.metadata.name, d.decision, &d.by, d.generation, d.round, &d.sql_digest);
            Ok(())
        }
        Err(SubmitError::Refused(why)) => Err(Exit::refused(format!("refused: {why}"))),
        Err(SubmitError::Store(e)) => Err(e.into()),
    }
}

/// The history entries that record `d` having been looked at by the controller.
#[cfg(feature = "aws")]
fn seen(r: &QueryRequest, d: &crate::spec::Decision) -> Vec<crate::spec::HistoryEntry> {
    r.status
        .as_ref()
        .map(|s| {
            s.history
                .iter()
                .filter(|h| {
                    matches!(h.event.as_str(), "Decision" | "DecisionRefused")
                        && h.generation == d.generation
                        && h.decision == Some(d.decision)
                        && h.sql_digest.as_deref() == Some(d.sql_digest.as_str())
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(feature = "aws")]
async fn decide_over_sqs(
    g: &Context,
    store: &dyn crate::store::Store,
    r: &QueryRequest,
    input: &DecisionInput,
    wait: Duration,
) -> anyhow::Result<()> {
    let refused = |why: approval::Refusal| Exit::refused(format!("refused: {why}"));
    let d = approval::bind(r, input).map_err(refused)?;
    let policy = store.get_policy().await?.unwrap_or_default();
    approval::check(&policy, r, &d).map_err(refused)?;
    let Some(url) = g.aws.response_queue_url.as_deref().filter(|u| !u.is_empty()) else {
        return Err(Exit::usage(
            "on --backend aws decisions go to the controller over SQS: set SQLCTL_RESPONSE_QUEUE_URL (--response-queue-url; `sqlctl aws bootstrap` prints it)",
        ));
    };
    let before = seen(r, &d).len();
    let aws = g.aws_sdk().await;
    let id =
        approval::sqs::send_decision(&crate::aws::sqs(&aws.conf), url, &approval::sqs::DecisionMessage::of(&d)).await?;
    let name = &r.metadata.name;
    eprintln!("sent the {} of queryrequest/{name} to the controller over SQS (message {id})", noun(d.decision));
    if wait.is_zero() {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        let now = get_request(store, g, name).await?;
        if now.uid() != r.uid() {
            return Err(Exit::refused(format!(
                "queryrequest/{name} was deleted and recreated while the decision was on its way; it cannot apply to the new one"
            )));
        }
        if let Some(h) = seen(&now, &d).get(before) {
            if h.event == "DecisionRefused" {
                let why = h.message.as_deref().map(escape_hidden).unwrap_or_default();
                return Err(Exit::refused(format!("refused by the controller: {why}")));
            }
            let by = h.by.as_deref().unwrap_or(&d.by);
            print_recorded(name, d.decision, &escape_hidden(by), d.generation, d.round, &d.sql_digest);
            return Ok(());
        }
        let st = now.status.clone().unwrap_or_default();
        if st.phase != crate::spec::Phase::AwaitingApproval
            || st.approval_round != d.round
            || now.generation() != d.generation
        {
            println!(
                "queryrequest/{name} moved on before this decision was recorded: it is {} (round {}); see `sqlctl describe {name}`",
                st.phase, st.approval_round
            );
            return Ok(());
        }
        if started.elapsed() >= wait {
            return Err(Exit::refused(format!(
                "sent the decision (SQS message {id}), but the controller has not recorded it within {}: is a controller running (`sqlctl get` shows phases moving)? The message stays queued until one takes it; one it refuses goes to the response queue's dead-letter queue with the reason in its sqlctl-dlq-reason attribute",
                crate::spec::quantity::format_duration(wait)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
