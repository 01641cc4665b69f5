//! Approvals over two SQS queues.
//!
//! * [`SqsNotifier`] sends one [`ApprovalRequestMessage`] to the request queue when a request
//!   enters AwaitingApproval (the controller records that it did; delivery is at least once, so
//!   consumers deduplicate by `uid`, `generation`, `round` and `sqlDigest`), and a `Finished`
//!   message when it ends.
//! * [`ResponseConsumer`] long-polls the response queue for [`DecisionMessage`]s and writes each
//!   as a decision record through [`super::submit`] — the same code path as `sqlctl approve`. A
//!   message is deleted only after its record is written (a crash in between redelivers it, and
//!   the deterministic decision id makes the rewrite a no-op). A malformed or refused message is
//!   sent explicitly to the dead-letter queue with the reason as a message attribute, then
//!   deleted, with a log line saying why: never lost, never applied. A written decision wakes
//!   the request so it reconciles at once.
//!
//! # Who decided
//!
//! The decider is who AWS says sent the message — its `SenderId` — not what the body claims.
//! [`SenderPolicy`] maps sender ids to principals through `SQLCTL_SQS_SENDERS` (`ID=who,…`):
//!
//! * an IAM user id (`AIDA…`) to a name or the user's ARN;
//! * a role's unique id (`AROA…`) to the role's ARN: a session of that role (`AROA…:alice`)
//!   decides as `arn:aws:sts::ACCOUNT:assumed-role/ROLE/alice`, the same ARN STS reports to the
//!   session itself, which the policy's `identities` map can name. A session of any other role
//!   is refused, whatever its session name says: the role is checked, not just the name.
//!
//! A body's `by` must then be absent or name that principal (its ARN or short name). Senders
//! listed as trusted relays (a chat bot that posts on behalf of people it authenticated itself)
//! may name any `by`. Everything else is refused.
//!
//! The messages, the sender policy and the counters are in every build; the queue clients
//! ([`SqsNotifier`], [`ResponseConsumer`], [`send_decision`]) only with the `aws` feature.

use std::collections::{BTreeMap, HashMap};
#[cfg(feature = "aws")]
use std::sync::Arc;
#[cfg(feature = "aws")]
use std::time::Duration;

#[cfg(feature = "aws")]
use async_trait::async_trait;
#[cfg(feature = "aws")]
use aws_sdk_sqs::Client;
#[cfg(feature = "aws")]
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
#[cfg(feature = "aws")]
use tokio::sync::watch;

#[cfg(feature = "aws")]
use super::{DecisionInput, SubmitError};
#[cfg(feature = "aws")]
use crate::aws;
#[cfg(feature = "aws")]
use crate::engine::Waker;
#[cfg(feature = "aws")]
use crate::notify::{Delivery, Notifier, NotifyError};
use crate::spec::{DEFAULT_NAMESPACE, DecisionKind, Estimate, ObjectKey, QueryRequest};
#[cfg(feature = "aws")]
use crate::store::Store;

/// `source` of decision records written from SQS.
pub const SOURCE: &str = "sqs";
/// Message attribute carrying why a message went to the dead-letter queue.
pub const REASON_ATTRIBUTE: &str = "sqlctl-dlq-reason";

/// Sent to the request queue when a request awaits a decision.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRequestMessage {
    /// `ApprovalRequest`.
    #[serde(rename = "type")]
    pub type_: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: u64,
    pub round: u32,
    pub sql_digest: String,
    pub sql: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub explanation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// How to act on it: the CLI commands (and, where configured, console URLs).
    #[serde(default)]
    pub links: BTreeMap<String, String>,
}

/// Read from the response queue: one human decision on exactly one SQL.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionMessage {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub uid: String,
    pub generation: u64,
    /// The approval round answered. Required: a redelivered message from an earlier round must
    /// never count in a later one (after a refine that produced the same SQL, the digest alone
    /// would match again).
    pub round: u32,
    pub sql_digest: String,
    /// approve | refine | reject
    pub decision: String,
    #[serde(default)]
    pub feedback: Option<String>,
    /// Who decided; must match the sender unless the sender is a trusted relay.
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub allow_over_budget: bool,
}

impl DecisionMessage {
    /// The message for a decision bound by [`super::bind`] (texts already bounded).
    pub fn of(d: &crate::spec::Decision) -> DecisionMessage {
        DecisionMessage {
            name: d.name.clone(),
            namespace: Some(d.namespace.clone()),
            uid: d.uid.clone(),
            generation: d.generation,
            round: d.round,
            sql_digest: d.sql_digest.clone(),
            decision: d.decision.as_str().to_string(),
            feedback: d.feedback.clone(),
            by: Some(d.by.clone()).filter(|b| !b.is_empty()),
            comment: d.comment.clone(),
            allow_over_budget: d.allow_over_budget,
        }
    }
}

/// Sends one decision to the response queue: how `sqlctl approve|refine|reject` decide on
/// `--backend aws`. People's roles may send messages but not write decision records; the
/// controller takes the decider from the message's `SenderId` ([`SenderPolicy`]) and writes
/// the record. Returns the SQS message id.
#[cfg(feature = "aws")]
pub async fn send_decision(client: &Client, queue_url: &str, m: &DecisionMessage) -> anyhow::Result<String> {
    let body = serde_json::to_string(m)?;
    let out =
        client.send_message().queue_url(queue_url).message_body(body).send().await.map_err(|e| {
            anyhow::anyhow!("sending the decision to {queue_url} (SQS SendMessage): {}", aws::describe(&e))
        })?;
    Ok(out.message_id().unwrap_or_default().to_string())
}

/// Builds the approval request message for `req` (in AwaitingApproval).
pub fn approval_request(req: &QueryRequest) -> ApprovalRequestMessage {
    let st = req.status.clone().unwrap_or_default();
    let g = st.generated.clone().unwrap_or_default();
    let name = req.metadata.name.clone();
    let ns = req.metadata.namespace().to_string();
    let n = if ns == DEFAULT_NAMESPACE { String::new() } else { format!(" -n {ns}") };
    // Machines pass the full digest: a prefix is for reading only and is refused as an approval.
    let full = &g.sql_digest;
    let links = BTreeMap::from([
        ("describe".to_string(), format!("sqlctl describe {name}{n}")),
        ("approve".to_string(), format!("sqlctl approve {name}{n} --digest {full}")),
        ("refine".to_string(), format!("sqlctl refine {name}{n} --digest {full} --feedback '…'")),
        ("reject".to_string(), format!("sqlctl reject {name}{n} --digest {full}")),
    ]);
    ApprovalRequestMessage {
        type_: "ApprovalRequest".into(),
        name,
        namespace: ns,
        uid: req.uid().to_string(),
        generation: req.generation(),
        round: st.approval_round,
        sql_digest: g.sql_digest,
        sql: g.sql,
        explanation: g.explanation,
        estimate: st.estimate,
        requester: req.requester().map(str::to_string),
        deadline: st.approval_deadline,
        links,
    }
}

/// Sends approval requests (and `Finished` notices) to the request queue, then passes them to
/// an inner notifier (the log, a chat webhook).
#[cfg(feature = "aws")]
pub struct SqsNotifier {
    client: Client,
    queue_url: String,
    inner: Arc<dyn Notifier>,
}

#[cfg(feature = "aws")]
impl SqsNotifier {
    pub fn new(client: Client, queue_url: impl Into<String>, inner: Arc<dyn Notifier>) -> SqsNotifier {
        SqsNotifier { client, queue_url: queue_url.into(), inner }
    }

    async fn send(&self, body: String, kind: &str) -> Result<(), NotifyError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes(
                "type",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(kind)
                    .build()
                    .map_err(|e| NotifyError::Failed(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| {
                NotifyError::Failed(format!("SQS SendMessage to {}: {}", self.queue_url, aws::describe(&e)))
            })?;
        Ok(())
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl Notifier for SqsNotifier {
    async fn approval_requested(&self, req: &QueryRequest) -> Result<Delivery, NotifyError> {
        let body = serde_json::to_string(&approval_request(req)).map_err(|e| NotifyError::Failed(e.to_string()))?;
        self.send(body, "ApprovalRequest").await?;
        self.inner.approval_requested(req).await
    }

    async fn finished(&self, req: &QueryRequest) -> Result<Delivery, NotifyError> {
        let st = req.status.clone().unwrap_or_default();
        let body = serde_json::json!({
            "type": "Finished",
            "name": req.metadata.name,
            "namespace": req.metadata.namespace(),
            "uid": req.uid(),
            "generation": req.generation(),
            "phase": st.phase,
            "reason": st.condition("Ready").map(|c| c.reason.clone()),
            "outputLocation": st.execution.as_ref().and_then(|e| e.output_location.clone()),
        });
        self.send(body.to_string(), "Finished").await?;
        self.inner.finished(req).await
    }
}

/// One role whose sessions may send decisions: parsed from its ARN
/// (`arn:PARTITION:iam::ACCOUNT:role[/path]/NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderRole {
    pub arn: String,
    partition: String,
    account: String,
    name: String,
}

impl SenderRole {
    pub fn parse(arn: &str) -> Result<SenderRole, String> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        match parts.as_slice() {
            ["arn", partition, "iam", "", account, resource]
                if !partition.is_empty() && !account.is_empty() && resource.starts_with("role/") =>
            {
                let name = resource.rsplit('/').next().unwrap_or_default();
                if name.is_empty() {
                    return Err(format!("{arn:?} names no role"));
                }
                Ok(SenderRole {
                    arn: arn.to_string(),
                    partition: partition.to_string(),
                    account: account.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("{arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")),
        }
    }

    /// The ARN STS gives a session of this role (role paths are not part of it).
    pub fn session_arn(&self, session: &str) -> String {
        format!("arn:{}:sts::{}:assumed-role/{}/{}", self.partition, self.account, self.name, session)
    }
}

/// Maps SQS sender ids to principals (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderPolicy {
    /// IAM user id (or any non-role sender id) → who it is (a name or an ARN).
    pub names: HashMap<String, String>,
    /// Role unique id (`AROA…`) → the role whose sessions may decide.
    pub roles: HashMap<String, SenderRole>,
    /// Senders whose message's `by` is trusted; `*` trusts every sender (emulators only).
    pub relays: Vec<String>,
}

impl SenderPolicy {
    /// Parses `ID=who,ID2=who2` (a role id maps to its role ARN) and a comma list of relay ids.
    pub fn parse(names: Option<&str>, relays: Option<&str>) -> Result<SenderPolicy, String> {
        let mut p = SenderPolicy::default();
        for entry in names.unwrap_or("").split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, who) = entry
                .split_once('=')
                .map(|(i, w)| (i.trim(), w.trim()))
                .filter(|(i, w)| !i.is_empty() && !w.is_empty())
                .ok_or_else(|| format!("SQLCTL_SQS_SENDERS entry {entry:?} is not SENDER_ID=name"))?;
            if id.contains(':') {
                return Err(format!(
                    "SQLCTL_SQS_SENDERS entry {entry:?}: map a role by its unique id alone (AROA…=arn:aws:iam::ACCOUNT:role/NAME), not one session"
                ));
            }
            if id.starts_with("AROA") || who.contains(":role/") {
                let role = SenderRole::parse(who).map_err(|e| format!("SQLCTL_SQS_SENDERS entry {entry:?}: {e}"))?;
                p.roles.insert(id.to_string(), role);
            } else {
                p.names.insert(id.to_string(), who.to_string());
            }
        }
        p.relays =
            relays.unwrap_or("").split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect();
        Ok(p)
    }

    /// Who decided: from the sender id, or the body's `by` for a trusted relay.
    pub fn decider(&self, sender_id: Option<&str>, by: Option<&str>) -> Result<String, String> {
        use crate::identity::{same, short_name};
        let by = by.map(str::trim).filter(|b| !b.is_empty());
        let sender = sender_id.unwrap_or("");
        if self.relays.iter().any(|r| r == "*" || r == sender) {
            return by
                .map(str::to_string)
                .ok_or_else(|| format!("message from relay {sender} does not say who decided (by)"));
        }
        let who = match sender.split_once(':') {
            // A role session (`AROA…:session`): only of a listed role.
            Some((role_id, session)) => match self.roles.get(role_id) {
                Some(_) if session.is_empty() => {
                    return Err(format!("sender {sender:?} is a role session without a session name"));
                }
                Some(role) => role.session_arn(session),
                None => {
                    return Err(format!(
                        "sender {sender:?} is a session of role {role_id}, which is not a decision sender: map the approver role's id to its ARN in SQLCTL_SQS_SENDERS (AROA…=arn:aws:iam::ACCOUNT:role/NAME)"
                    ));
                }
            },
            None => match self.names.get(sender) {
                Some(n) => n.clone(),
                None => {
                    return Err(format!(
                        "sender {sender:?} is not mapped to an approver (SQLCTL_SQS_SENDERS) and is not a trusted relay"
                    ));
                }
            },
        };
        match by {
            // Compared under the identity rule (`Alice` and `alice` are one person), by ARN or
            // by short name; what is recorded is the sender's principal, as AWS reported it.
            Some(b) if !same(&who, b) && !same(&short_name(&who), &short_name(b)) => {
                Err(format!("the message says by {b:?} but was sent by {sender} ({who})"))
            }
            _ => Ok(who),
        }
    }
}

/// Longest reason (and sender) attribute put on a dead-lettered message, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;

/// `s` as an SQS attribute value: hidden characters escaped, only characters SQS accepts
/// (XML 1.0: tab, newline, CR, U+0020–U+D7FF, U+E000–U+FFFD, U+10000 and up), at most `max`
/// characters with "…(truncated)". The reason echoes a sender's text, so it must never be what
/// makes dead-lettering fail.
pub fn attribute_text(s: &str, max: usize) -> String {
    let escaped = crate::spec::text::escape_hidden(s);
    let clean: String = escaped
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'.. => c,
            _ => '\u{fffd}',
        })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut out: String = clean.chars().take(max).collect();
    out.push_str("…(truncated)");
    out
}

/// What became of one response message.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// A decision record was written (or already existed): message deleted, request woken.
    Recorded { key: ObjectKey, decision: DecisionKind, by: String },
    /// Refused or malformed: sent to the dead-letter queue and deleted.
    DeadLettered { reason: String },
    /// Could not be handled now (store unavailable): left for redelivery.
    Retry { reason: String },
}

/// Counts of one receive-and-handle pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    pub received: usize,
    pub recorded: usize,
    pub dead_lettered: usize,
    pub retried: usize,
}

fn totals() -> &'static std::sync::Mutex<PollStats> {
    static TOTALS: std::sync::OnceLock<std::sync::Mutex<PollStats>> = std::sync::OnceLock::new();
    TOTALS.get_or_init(Default::default)
}

#[cfg(feature = "aws")]
fn record(s: PollStats) {
    let mut t = totals().lock().unwrap_or_else(|p| p.into_inner());
    t.received += s.received;
    t.recorded += s.recorded;
    t.dead_lettered += s.dead_lettered;
    t.retried += s.retried;
}

/// What this process's response consumer has handled since it started (for `/metrics`:
/// `sqlctl_sqs_decision_messages_total{outcome}`).
pub fn consumer_totals() -> PollStats {
    *totals().lock().unwrap_or_else(|p| p.into_inner())
}

/// Long-polls the response queue and writes decisions.
#[cfg(feature = "aws")]
pub struct ResponseConsumer {
    client: Client,
    queue_url: String,
    dlq_url: Option<String>,
    store: Arc<dyn Store>,
    waker: Option<Waker>,
    senders: SenderPolicy,
    /// Long-poll wait per receive (20 s in production; shorter in tests).
    pub wait_seconds: i32,
}

#[cfg(feature = "aws")]
impl ResponseConsumer {
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        store: Arc<dyn Store>,
        senders: SenderPolicy,
    ) -> ResponseConsumer {
        ResponseConsumer {
            client,
            queue_url: queue_url.into(),
            dlq_url: None,
            store,
            waker: None,
            senders,
            wait_seconds: 20,
        }
    }

    /// Who to wake when a decision is written (the controller's work queue).
    #[must_use]
    pub fn with_waker(mut self, waker: Waker) -> Self {
        self.waker = Some(waker);
        self
    }

    /// The dead-letter queue, when it cannot be found from the queue's redrive policy.
    #[must_use]
    pub fn with_dlq(mut self, url: impl Into<String>) -> Self {
        self.dlq_url = Some(url.into());
        self
    }

    pub fn dlq_url(&self) -> Option<&str> {
        self.dlq_url.as_deref()
    }

    /// Finds the dead-letter queue from the response queue's `RedrivePolicy`.
    pub async fn resolve_dlq(&mut self) -> anyhow::Result<()> {
        if self.dlq_url.is_some() {
            return Ok(());
        }
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("SQS GetQueueAttributes {}: {}", self.queue_url, aws::describe(&e)))?;
        let Some(policy) = attrs.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy)) else {
            anyhow::bail!(
                "the response queue {} has no redrive policy, so refused messages have no dead-letter queue; create one (`sqlctl aws bootstrap` does)",
                self.queue_url
            );
        };
        let arn = serde_json::from_str::<serde_json::Value>(policy)?["deadLetterTargetArn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (account, name) = {
            let mut parts = arn.rsplitn(3, ':');
            let name = parts.next().unwrap_or_default().to_string();
            let account = parts.next().unwrap_or_default().to_string();
            (account, name)
        };
        let url = self
            .client
            .get_queue_url()
            .queue_name(&name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("SQS GetQueueUrl {name}: {}", aws::describe(&e)))?;
        self.dlq_url = url.queue_url().map(str::to_string);
        Ok(())
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if let Err(e) = self.resolve_dlq().await {
            tracing::error!(error = %e, "SQS response queue: no dead-letter queue; refused messages are left for the queue's own redrive");
        }
        tracing::info!(queue = %self.queue_url, dlq = self.dlq_url.as_deref().unwrap_or("-"), "consuming decisions from SQS");
        let mut backoff = Duration::from_secs(1);
        loop {
            let pass = tokio::select! {
                r = self.poll_once() => r,
                _ = shutdown.wait_for(|v| *v) => return,
            };
            match pass {
                Ok(stats) => {
                    record(stats);
                    backoff = Duration::from_secs(1)
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "SQS receive failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|v| *v) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// One long-poll receive and the handling of what it returned.
    pub async fn poll_once(&self) -> anyhow::Result<PollStats> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::SenderId)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("SQS ReceiveMessage {}: {}", self.queue_url, aws::describe(&e)))?;
        let mut stats = PollStats::default();
        for msg in out.messages() {
            stats.received += 1;
            // One message's failure (a DeleteMessage or dead-letter send that fails) never skips
            // the rest of the batch: it is logged and the message is left for redelivery.
            if let Err(e) = self.settle(msg, &mut stats).await {
                stats.retried += 1;
                tracing::error!(error = %e, message_id = msg.message_id().unwrap_or(""), "SQS decision message left for redelivery");
            }
        }
        Ok(stats)
    }

    /// Handles one received message: records, dead-letters or leaves it.
    async fn settle(&self, msg: &aws_sdk_sqs::types::Message, stats: &mut PollStats) -> anyhow::Result<()> {
        let sender = msg.attributes().and_then(|a| a.get(&MessageSystemAttributeName::SenderId)).map(String::as_str);
        let body = msg.body().unwrap_or_default();
        let handled = self.handle(body, sender).await;
        let receipt = msg.receipt_handle().unwrap_or_default();
        match &handled {
            Handled::Recorded { key, decision, by } => {
                self.delete(receipt).await?;
                stats.recorded += 1;
                tracing::info!(name = %key.name, namespace = %key.namespace, decision = decision.as_str(), by = %by, "decision from SQS recorded");
                if let Some(w) = &self.waker {
                    w(key);
                }
            }
            Handled::DeadLettered { reason } => {
                let Some(dlq) = &self.dlq_url else {
                    tracing::error!(reason = %reason, message_id = msg.message_id().unwrap_or(""), "refused SQS message left in the queue: no dead-letter queue known (its redrive policy will move it)");
                    stats.retried += 1;
                    return Ok(());
                };
                let attr = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(attribute_text(reason, MAX_REASON_CHARS))
                    .build()?;
                let mut send = self
                    .client
                    .send_message()
                    .queue_url(dlq)
                    .message_body(body)
                    .message_attributes(REASON_ATTRIBUTE, attr);
                if let Some(s) = sender {
                    send = send.message_attributes(
                        "sqlctl-sender-id",
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(attribute_text(s, MAX_REASON_CHARS))
                            .build()?,
                    );
                }
                send.send().await.map_err(|e| {
                    anyhow::anyhow!("SQS SendMessage to the dead-letter queue {dlq}: {}", aws::describe(&e))
                })?;
                self.delete(receipt).await?;
                stats.dead_lettered += 1;
                tracing::warn!(reason = %reason, sender = sender.unwrap_or("-"), message_id = msg.message_id().unwrap_or(""), "SQS decision message refused: moved to the dead-letter queue");
            }
            Handled::Retry { reason } => {
                stats.retried += 1;
                tracing::warn!(reason = %reason, "SQS decision message not handled now; it will be redelivered");
            }
        }
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> anyhow::Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("SQS DeleteMessage: {}", aws::describe(&e)))?;
        Ok(())
    }

    /// Parses, checks and writes one decision message.
    pub async fn handle(&self, body: &str, sender: Option<&str>) -> Handled {
        let refuse = |reason: String| Handled::DeadLettered { reason };
        let m: DecisionMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => return refuse(format!("malformed decision message: {e}")),
        };
        let Some(kind) = DecisionKind::parse(&m.decision) else {
            return refuse(format!(
                "malformed decision message: decision {:?} is not approve, refine or reject",
                m.decision
            ));
        };
        let by = match self.senders.decider(sender, m.by.as_deref()) {
            Ok(b) => b,
            Err(e) => return refuse(format!("identity: {e}")),
        };
        let key = ObjectKey::new(m.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()), &m.name);
        let req = match self.store.get(&key).await {
            Ok(Some(r)) => r,
            Ok(None) => return refuse(format!("queryrequest {key} not found")),
            Err(e) if e.is_transient() => return Handled::Retry { reason: e.to_string() },
            Err(e) => return Handled::Retry { reason: e.to_string() },
        };
        if req.uid() != m.uid {
            return refuse(format!(
                "{key} has uid {}, not {}: the request was deleted and recreated since",
                req.uid(),
                m.uid
            ));
        }
        if req.generation() != m.generation {
            return refuse(format!(
                "{key} is at generation {}, not {}: the spec changed since",
                req.generation(),
                m.generation
            ));
        }
        let round = req.status.as_ref().map(|s| s.approval_round).unwrap_or(0);
        if m.round != round {
            let r = m.round;
            return refuse(format!("{key} is in approval round {round}, not {r}: the SQL was refined since"));
        }
        let input = DecisionInput {
            decision: kind,
            by: by.clone(),
            digest: Some(m.sql_digest.clone()),
            feedback: m.feedback.clone(),
            comment: m.comment.clone(),
            source: SOURCE.into(),
            allow_over_budget: m.allow_over_budget,
        };
        match super::submit(self.store.as_ref(), &req, &input).await {
            Ok(d) => Handled::Recorded { key, decision: d.decision, by },
            Err(SubmitError::Refused(r)) => refuse(format!("refused: {r}")),
            Err(SubmitError::Store(e)) => Handled::Retry { reason: e.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_map_to_approvers_and_bodies_cannot_impersonate() {
        let p = SenderPolicy::parse(Some("AIDAALICE=alice, AIDABOB=bob"), Some("AROABOT:chatbot")).unwrap();
        assert_eq!(p.decider(Some("AIDAALICE"), None), Ok("alice".into()));
        assert_eq!(p.decider(Some("AIDAALICE"), Some("alice")), Ok("alice".into()));
        assert!(p.decider(Some("AIDAALICE"), Some("bob")).unwrap_err().contains("sent by"));
        // The body's `by` is compared under the identity rule; the sender's name is what counts.
        for spelling in ["Alice", " alice ", "alice\u{200b}", "ａｌｉｃｅ"] {
            assert_eq!(p.decider(Some("AIDAALICE"), Some(spelling)), Ok("alice".into()), "{spelling:?}");
        }
        assert!(p.decider(Some("AIDAALICE"), Some("alicia")).is_err());
        // A session of a role nobody listed is refused, whatever its session name says.
        let e = p.decider(Some("AROAXYZ:carol"), None).unwrap_err();
        assert!(e.contains("not a decision sender") && e.contains("SQLCTL_SQS_SENDERS"), "{e}");
        assert!(p.decider(Some("AIDASTRANGER"), Some("alice")).is_err());
        assert!(p.decider(None, Some("alice")).is_err());
        assert_eq!(
            p.decider(Some("AROABOT:chatbot"), Some("dave")),
            Ok("dave".into()),
            "a trusted relay speaks for others"
        );
        assert!(p.decider(Some("AROABOT:chatbot"), None).is_err());
        assert!(SenderPolicy::parse(Some("nonsense"), None).is_err());
        let all = SenderPolicy::parse(None, Some("*")).unwrap();
        assert_eq!(all.decider(Some("anything"), Some("erin")), Ok("erin".into()));
    }

    #[test]
    fn role_sessions_decide_as_their_sts_arn_and_only_for_listed_roles() {
        let approver = "arn:aws:iam::123456789012:role/teams/sqlctl-approver";
        let p = SenderPolicy::parse(Some(&format!("AROAAPPROVER={approver}, AIDAALICE=alice")), None).unwrap();
        let alice = "arn:aws:sts::123456789012:assumed-role/sqlctl-approver/alice";
        assert_eq!(p.decider(Some("AROAAPPROVER:alice"), None).as_deref(), Ok(alice), "role path dropped, as STS does");
        // The CLI sends its own STS ARN (or short name) as `by`: either agrees with the sender.
        assert_eq!(p.decider(Some("AROAAPPROVER:alice"), Some(alice)).as_deref(), Ok(alice));
        assert_eq!(p.decider(Some("AROAAPPROVER:alice"), Some("Alice")).as_deref(), Ok(alice));
        assert!(p.decider(Some("AROAAPPROVER:alice"), Some("bob")).unwrap_err().contains("sent by"));
        // The requester role's sessions, or any other role's, cannot send decisions.
        assert!(p.decider(Some("AROAREQUESTER:alice"), Some(alice)).unwrap_err().contains("not a decision sender"));
        assert!(p.decider(Some("AROAAPPROVER:"), None).is_err(), "a session needs a name");
        // Malformed mappings are refused at start, with what to write.
        for bad in [
            "AROAX=alice",
            "AROAX=arn:aws:iam::1:user/alice",
            "AROAX:alice=arn:aws:iam::1:role/r",
            "AROAX=arn:aws:iam::1:role/",
            "=alice",
        ] {
            assert!(SenderPolicy::parse(Some(bad), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn forged_identities_fail_against_the_policy_map_with_sts_arns() {
        use crate::spec::*;
        let p = SenderPolicy::parse(
            Some("AROAAPPROVER=arn:aws:iam::123456789012:role/sqlctl-approver,AROAREQ=arn:aws:iam::123456789012:role/sqlctl-requester"),
            None,
        )
        .unwrap();
        let mut policy = Policy { four_eyes: true, ..Default::default() };
        policy
            .identities
            .insert("rita".into(), vec!["arn:aws:sts::123456789012:assumed-role/sqlctl-requester/rita".into()]);
        policy.identities.insert(
            "alice".into(),
            vec!["arn:aws:sts::123456789012:assumed-role/sqlctl-approver/alice".into(), "alice@example.com".into()],
        );
        let mut req = QueryRequest::new("q", "").with_sql("select 1").with_status(QueryRequestStatus {
            phase: Phase::AwaitingApproval,
            observed_generation: 1,
            approval_round: 1,
            generated: Some(Generated { sql: "select 1".into(), sql_digest: "ab".repeat(32), ..Default::default() }),
            ..Default::default()
        });
        (req.metadata.uid, req.metadata.generation) = (Some("u1".into()), Some(1));
        req.metadata
            .annotations
            .insert(REQUESTER_ANNOTATION.into(), "arn:aws:sts::123456789012:assumed-role/sqlctl-requester/rita".into());
        let decide = |policy: &Policy, sender: &str| -> Result<(), String> {
            let by = p.decider(Some(sender), None)?;
            let input = crate::approval::DecisionInput {
                decision: DecisionKind::Approve,
                by,
                digest: Some("ab".repeat(32)),
                feedback: None,
                comment: None,
                source: SOURCE.into(),
                allow_over_budget: false,
            };
            let d = crate::approval::bind(&req, &input).map_err(|e| e.to_string())?;
            crate::approval::check(policy, &req, &d).map_err(|e| e.to_string())
        };
        assert_eq!(decide(&policy, "AROAAPPROVER:alice"), Ok(()));
        // An approver-role session nobody mapped may not approve under four-eyes.
        assert!(decide(&policy, "AROAAPPROVER:mallory").unwrap_err().contains("unmapped"));
        // Spelling tricks in the session name do not reach alice either.
        assert!(decide(&policy, "AROAAPPROVER:alice\u{200b}x").is_err());
        // A session named after alice in another (listed) role is not alice: unmapped.
        assert!(decide(&policy, "AROAREQ:alice").unwrap_err().contains("unmapped"));
        // And in a role nobody listed it is not a decision sender at all.
        assert!(decide(&policy, "AROAOTHER:alice").unwrap_err().contains("not a decision sender"));
        // rita through the approver role (if she may assume it) is still rita: four-eyes.
        let mut both = policy.clone();
        both.identities
            .get_mut("rita")
            .unwrap()
            .push("arn:aws:sts::123456789012:assumed-role/sqlctl-approver/rita".into());
        assert!(decide(&both, "AROAAPPROVER:rita").unwrap_err().contains("four-eyes"));
        // Without a map, people are their short names: rita's approver session is still rita.
        let plain = Policy { four_eyes: true, ..Default::default() };
        assert!(decide(&plain, "AROAAPPROVER:rita").unwrap_err().contains("four-eyes"));
        assert_eq!(decide(&plain, "AROAAPPROVER:alice"), Ok(()));
    }

    #[test]
    fn dead_letter_reasons_fit_sqs_whatever_the_sender_wrote() {
        let hostile = format!("refused: {}\u{0}\u{1b}\u{fffe}{}", "x".repeat(500_000), '\u{202e}');
        let a = attribute_text(&hostile, MAX_REASON_CHARS);
        assert!(a.chars().count() <= MAX_REASON_CHARS + 20 && a.ends_with("…(truncated)"), "{}", a.len());
        let a = attribute_text("a\u{0}b\u{1b}c\u{fffe}d\u{202e}", 100);
        assert_eq!(a, "a\\u{0000}b\\u{001B}c\u{fffd}d\\u{202E}");
        assert!(a.chars().all(|c| c == '\t' || c == '\n' || c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}'));
    }

    #[test]
    fn decision_messages_are_strict_json() {
        let ok =
            r#"{"name":"q","uid":"u","generation":2,"round":1,"sqlDigest":"ab","decision":"approve","by":"alice"}"#;
        let m: DecisionMessage = serde_json::from_str(ok).unwrap();
        assert_eq!((m.name.as_str(), m.generation, m.round, m.namespace), ("q", 2, 1, None));
        // `round` is required: a message without it could count in a later round.
        let err = serde_json::from_str::<DecisionMessage>(
            r#"{"name":"q","uid":"u","generation":2,"sqlDigest":"ab","decision":"approve","by":"alice"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("round"), "{err}");
        assert!(
            serde_json::from_str::<DecisionMessage>(
                r#"{"name":"q","uid":"u","generation":2,"sqlDigest":"ab","decision":"approve","bogus":1}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<DecisionMessage>(r#"{"name":"q"}"#).is_err());
    }

    #[cfg(feature = "aws")]
    mod against_moto {
        use super::*;
        use crate::aws::testing::{config_for, moto_url, unique};
        use crate::notify::LogNotifier;
        use crate::spec::*;
        use crate::store::dynamodb::DynamoStore;

        async fn queue_pair(sqs: &Client) -> (String, String) {
            let name = unique("responses");
            let dlq = sqs
                .create_queue()
                .queue_name(format!("{name}-dlq"))
                .send()
                .await
                .unwrap()
                .queue_url()
                .unwrap()
                .to_string();
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&dlq)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes()
                .unwrap()[&QueueAttributeName::QueueArn]
                .clone();
            let redrive = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": "5"}).to_string();
            let q = sqs
                .create_queue()
                .queue_name(&name)
                .attributes(QueueAttributeName::RedrivePolicy, redrive)
                .send()
                .await
                .unwrap();
            (q.queue_url().unwrap().to_string(), dlq)
        }

        async fn awaiting(store: &DynamoStore, name: &str) -> QueryRequest {
            let r = store.create(QueryRequest::new(name, "tpch").with_question("how many?")).await.unwrap();
            let mut w = r.clone();
            w.status = Some(QueryRequestStatus {
                phase: Phase::AwaitingApproval,
                observed_generation: 1,
                approval_round: 1,
                approval_requested: true,
                generated: Some(Generated {
                    sql: "select 1".into(),
                    sql_digest: "ab".repeat(32),
                    explanation: "one".into(),
                    ..Default::default()
                }),
                ..Default::default()
            });
            store.update_status(&w, None).await.unwrap()
        }

        async fn send(sqs: &Client, url: &str, body: serde_json::Value) {
            sqs.send_message().queue_url(url).message_body(body.to_string()).send().await.unwrap();
        }

        async fn drain(sqs: &Client, url: &str) -> Vec<(String, Option<String>)> {
            let mut out = Vec::new();
            for _ in 0..3 {
                let r = sqs
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(10)
                    .message_attribute_names("All")
                    .send()
                    .await
                    .unwrap();
                for m in r.messages() {
                    let reason = m
                        .message_attributes()
                        .and_then(|a| a.get(REASON_ATTRIBUTE))
                        .and_then(|v| v.string_value())
                        .map(str::to_string);
                    out.push((m.body().unwrap_or_default().to_string(), reason));
                    sqs.delete_message()
                        .queue_url(url)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
            }
            out
        }

        #[tokio::test]
        async fn decisions_are_recorded_and_bad_messages_go_to_the_dead_letter_queue() {
            let Some(url) = moto_url() else { return };
            let conf = config_for(&url).await;
            let ddb = aws::dynamodb(&conf);
            let table = unique("sqs-test");
            DynamoStore::create_table(&ddb, &table).await.unwrap();
            let store = Arc::new(DynamoStore::new(ddb, table));
            let sqs = aws::sqs(&conf);
            let (queue, dlq) = queue_pair(&sqs).await;

            // The request message a reviewer receives.
            let (req_queue, _) = queue_pair(&sqs).await;
            let q = awaiting(&store, "q").await;
            let notifier = SqsNotifier::new(sqs.clone(), &req_queue, Arc::new(LogNotifier));
            notifier.approval_requested(&q).await.unwrap();
            let got = drain(&sqs, &req_queue).await;
            let m: ApprovalRequestMessage = serde_json::from_str(&got[0].0).unwrap();
            assert_eq!((m.name.as_str(), m.uid.as_str(), m.generation, m.round), ("q", q.uid(), 1, 1));
            assert_eq!(m.sql, "select 1");
            assert!(m.links["approve"].ends_with(&format!("--digest {}", "ab".repeat(32))), "{}", m.links["approve"]);

            let r = awaiting(&store, "r").await;
            let woken = Arc::new(std::sync::Mutex::new(Vec::new()));
            let w = woken.clone();
            // moto's SenderId is one fixed IAM user id: map it to alice.
            let senders = SenderPolicy::parse(Some("AIDAIT2UOQQY3AUEKVGXU=alice"), None).unwrap();
            let mut consumer = ResponseConsumer::new(sqs.clone(), &queue, store.clone(), senders)
                .with_waker(Arc::new(move |k: &ObjectKey| w.lock().unwrap().push(k.clone())));
            consumer.wait_seconds = 1;
            consumer.resolve_dlq().await.unwrap();
            assert_eq!(consumer.dlq_url(), Some(dlq.as_str()));

            let decision = |req: &QueryRequest, kind: &str| serde_json::json!({"name": req.metadata.name, "uid": req.uid(), "generation": 1, "round": 1, "sqlDigest": "ab".repeat(32), "decision": kind});
            send(&sqs, &queue, decision(&q, "approve")).await;
            send(&sqs, &queue, decision(&q, "approve")).await; // redelivered / duplicate: no second record
            send(&sqs, &queue, serde_json::json!({"name": "r", "oops": true})).await;
            let mut stale = decision(&r, "approve");
            stale["sqlDigest"] = "cd".repeat(32).into();
            send(&sqs, &queue, stale).await;
            let mut impostor = decision(&r, "reject");
            impostor["by"] = "mallory".into();
            send(&sqs, &queue, impostor).await;
            let mut recreated = decision(&r, "reject");
            recreated["uid"] = "someone-else".into();
            send(&sqs, &queue, recreated).await;
            send(&sqs, &queue, serde_json::json!({"name": "r", "uid": r.uid(), "generation": 1, "round": 1, "sqlDigest": "ab".repeat(32), "decision": "refine"})).await;

            let mut total = PollStats::default();
            for _ in 0..5 {
                let s = consumer.poll_once().await.unwrap();
                total.received += s.received;
                total.recorded += s.recorded;
                total.dead_lettered += s.dead_lettered;
                if total.received >= 7 {
                    break;
                }
            }
            assert_eq!(total, PollStats { received: 7, recorded: 2, dead_lettered: 5, retried: 0 }, "{total:?}");
            let decisions = store.list_decisions(q.uid()).await.unwrap();
            assert_eq!(decisions.len(), 1);
            assert_eq!(
                (decisions[0].by.as_str(), decisions[0].source.as_str(), decisions[0].decision),
                ("alice", "sqs", DecisionKind::Approve)
            );
            assert!(store.list_decisions(r.uid()).await.unwrap().is_empty());
            assert_eq!(woken.lock().unwrap().len(), 2);

            let mut reasons: Vec<String> =
                drain(&sqs, &dlq).await.into_iter().map(|(_, r)| r.unwrap_or_default()).collect();
            reasons.sort();
            assert_eq!(reasons.len(), 5, "{reasons:?}");
            assert!(reasons.iter().any(|r| r.contains("malformed")), "{reasons:?}");
            assert!(reasons.iter().any(|r| r.contains("does not match")), "{reasons:?}");
            assert!(reasons.iter().any(|r| r.contains("sent by")), "{reasons:?}");
            assert!(reasons.iter().any(|r| r.contains("recreated")), "{reasons:?}");
            assert!(reasons.iter().any(|r| r.contains("feedback")), "refine without feedback: {reasons:?}");
            assert!(drain(&sqs, &queue).await.is_empty(), "every message was deleted from the response queue");
        }
    }
}
