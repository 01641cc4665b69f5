//! The `Notifier`: tells humans what needs them (approval requests) and what happened (results,
//! failures). Google Chat and SQS in production; the log on a laptop.
//!
//! # Two kinds of channel
//!
//! * **Required** channels (the SQS request queue) carry approval requests to machines that act
//!   on them. Their failure is an `Err`: the controller does not record the notification as sent
//!   and tries again, so delivery is at least once.
//! * **Best-effort** channels (Google Chat) tell people. They retry within a short bound and then
//!   give up, reporting what went wrong in the returned [`Delivery`]; the controller records that
//!   as a `Notified=False` condition and goes on. A dead or slow webhook never blocks, fails or
//!   repeats a query.
//!
//! # Once, and at most one repeat
//!
//! The controller records each notification in status right after it was sent (the approval
//! round's `approvalRequested`, the terminal `notified` marker), so a restart does not send it
//! again. A crash between sending and recording repeats that one message, never more; Google
//! Chat additionally deduplicates the repeat by its deterministic `requestId`.

pub mod gchat;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::spec::quantity::{format_duration, parse_duration};
use crate::spec::{QueryRequest, QueryRequestStatus};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notification failed: {0}")]
    Failed(String),
}

/// What a notification achieved on its best-effort channels (required channels report through
/// `Err` instead). Empty when everything was delivered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Best-effort channels that gave up, in the order they were tried.
    pub undelivered: Vec<Undelivered>,
}

/// One best-effort channel that could not deliver a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    /// `gchat`.
    pub channel: &'static str,
    /// The `Notified` condition's reason, e.g. `ChatDeliveryFailed` (see [`gchat`]).
    pub reason: &'static str,
    /// Why, for people; never contains a secret (webhook URLs are redacted).
    pub message: String,
}

impl Delivery {
    /// Everything was delivered.
    pub fn delivered() -> Delivery {
        Delivery::default()
    }

    /// One channel gave up.
    pub fn undelivered(channel: &'static str, reason: &'static str, message: impl Into<String>) -> Delivery {
        Delivery { undelivered: vec![Undelivered { channel, reason, message: message.into() }] }
    }

    /// Both outcomes, `self`'s first.
    pub fn and(mut self, other: Delivery) -> Delivery {
        self.undelivered.extend(other.undelivered);
        self
    }

    pub fn is_complete(&self) -> bool {
        self.undelivered.is_empty()
    }

    /// Records the outcome in the `Notified` condition: `False` with the first undelivered
    /// channel's reason (and every channel's message), or `True`/`Sent` when everything was
    /// delivered and an earlier failure is on record (so a recovered channel clears it). A clean
    /// history stays free of the condition.
    pub fn record(&self, status: &mut QueryRequestStatus) {
        match self.undelivered.first() {
            Some(first) => {
                let message =
                    self.undelivered.iter().map(|u| format!("{}: {}", u.channel, u.message)).collect::<Vec<_>>();
                status.set_condition("Notified", "False", first.reason, message.join("; "));
            }
            None if status.condition("Notified").is_some() => status.set_condition("Notified", "True", "Sent", ""),
            None => {}
        }
    }
}

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// The request entered AwaitingApproval for its current round. `Err` when a required
    /// channel failed (the caller retries); otherwise what the best-effort channels achieved.
    async fn approval_requested(&self, req: &QueryRequest) -> Result<Delivery, NotifyError>;
    /// The request reached a terminal phase; errors as for [`Notifier::approval_requested`].
    async fn finished(&self, req: &QueryRequest) -> Result<Delivery, NotifyError>;
}

/// Writes notifications to the log (the embedded default).
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn approval_requested(&self, req: &QueryRequest) -> Result<Delivery, NotifyError> {
        let st = req.status.as_ref();
        let g = st.and_then(|s| s.generated.as_ref());
        tracing::info!(
            name = %req.metadata.name,
            namespace = req.metadata.namespace(),
            uid = req.uid(),
            generation = req.generation(),
            sql_digest = g.map(|g| g.sql_digest.as_str()).unwrap_or(""),
            "approval requested: run `sqlctl approve {}` (or refine / reject)",
            req.metadata.name
        );
        Ok(Delivery::delivered())
    }

    async fn finished(&self, req: &QueryRequest) -> Result<Delivery, NotifyError> {
        tracing::info!(
            name = %req.metadata.name,
            namespace = req.metadata.namespace(),
            uid = req.uid(),
            generation = req.generation(),
            phase = %req.phase(),
            "request finished"
        );
        Ok(Delivery::delivered())
    }
}

/// Several notifiers in order. The first `Err` stops the rest (the caller retries the whole
/// notification, so a later channel is not sent twice for one failure of an earlier one); the
/// deliveries of the others are merged.
pub struct Fanout(pub Vec<Arc<dyn Notifier>>);

#[async_trait]
impl Notifier for Fanout {
    async fn approval_requested(&self, req: &QueryRequest) -> Result<Delivery, NotifyError> {
        let mut out = Delivery::delivered();
        for n in &self.0 {
            out = out.and(n.approval_requested(req).await?);
        }
        Ok(out)
    }

    async fn finished(&self, req: &QueryRequest) -> Result<Delivery, NotifyError> {
        let mut out = Delivery::delivered();
        for n in &self.0 {
            out = out.and(n.finished(req).await?);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Where people are told about requests: Google Chat, and what the messages may contain.
/// Flattened into the global options; `config` turns it into notifiers.
#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Notification options")]
pub struct NotifyOpts {
    /// Google Chat incoming-webhook URL (https://chat.googleapis.com/v1/spaces/…/messages?key=…&token=…).
    /// It is a credential: prefer the environment variable or --gchat-webhook-secret-arn (a flag
    /// shows in the process list). Never put it in a request spec.
    #[arg(long, global = true, env = "SQLCTL_GCHAT_WEBHOOK", hide_env_values = true, value_name = "URL")]
    pub gchat_webhook: Option<String>,
    /// AWS Secrets Manager secret holding the Google Chat webhook URL (the secret string is the
    /// URL, or JSON with a `url` field); read at start and every 5 minutes (rotation).
    #[arg(long, global = true, env = "SQLCTL_GCHAT_WEBHOOK_SECRET_ARN", value_name = "ARN")]
    pub gchat_webhook_secret_arn: Option<String>,
    /// Time allowed for one Google Chat request (connect + answer).
    #[arg(long, global = true, env = "SQLCTL_GCHAT_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub gchat_timeout: Duration,
    /// Google Chat requests per message, the first included (429, 5xx and timeouts are retried
    /// with capped exponential backoff, honouring Retry-After), before the message is given up.
    #[arg(long, global = true, env = "SQLCTL_GCHAT_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=10), value_name = "N")]
    pub gchat_attempts: u32,
    /// Put a preview of the result rows in chat messages: `true` (default) or `false` (rows,
    /// bytes and cost only; the rows stay where the result is stored).
    #[arg(long, global = true, env = "SQLCTL_NOTIFY_PREVIEW", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub notify_preview: bool,
    /// Base URL of the approval console; chat messages link to <URL>/requests/<namespace>/<name>.
    #[arg(long, global = true, env = "SQLCTL_CONSOLE_URL", value_name = "URL")]
    pub console_url: Option<String>,
    /// Show each result's chart in the Google Chat card as an image: a presigned S3 URL of the
    /// stored PNG, valid this long (1m to 7d; off by default). Whoever sees the card, or is
    /// forwarded its URL, can fetch that chart until it expires without AWS credentials. Needs
    /// results in S3 and a build with the `png` feature.
    #[arg(long, global = true, env = "SQLCTL_GCHAT_CHART_IMAGE", value_parser = parse_image_ttl, value_name = "DURATION")]
    pub gchat_chart_image: Option<Duration>,
}

/// `--gchat-chart-image`: a lifetime S3 can sign (at most 7 days) and a card can use (1 minute).
fn parse_image_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(60) || d > Duration::from_secs(7 * 86_400) {
        return Err(format!("{s}: a chart image URL lives between 1m and 7d"));
    }
    Ok(d)
}

/// Never prints the webhook (it is a credential).
impl std::fmt::Debug for NotifyOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyOpts")
            .field("gchat_webhook", &self.webhook().map(gchat::redact_url))
            .field("gchat_webhook_secret_arn", &self.secret_arn())
            .field("gchat_timeout", &self.gchat_timeout)
            .field("gchat_attempts", &self.gchat_attempts)
            .field("notify_preview", &self.notify_preview)
            .field("console_url", &self.console_url)
            .field("gchat_chart_image", &self.gchat_chart_image)
            .finish()
    }
}

impl NotifyOpts {
    /// The webhook URL, when set and not empty.
    pub fn webhook(&self) -> Option<&str> {
        self.gchat_webhook.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    /// The secret ARN, when set and not empty.
    pub fn secret_arn(&self) -> Option<&str> {
        self.gchat_webhook_secret_arn.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    /// Is Google Chat configured at all?
    pub fn chat_enabled(&self) -> bool {
        self.webhook().is_some() || self.secret_arn().is_some()
    }

    /// The chat options these flags describe (validated: the console URL must be http(s)).
    pub fn chat_options(&self) -> Result<gchat::ChatOptions, String> {
        let console_url = match self.console_url.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(u) => {
                Some(gchat::parse_console_url(u).map_err(|e| format!("--console-url / SQLCTL_CONSOLE_URL: {e}"))?)
            }
        };
        Ok(gchat::ChatOptions {
            timeout: self.gchat_timeout.max(Duration::from_millis(100)),
            attempts: self.gchat_attempts.max(1),
            preview: self.notify_preview,
            console_url,
            chart_image_ttl: self.gchat_chart_image,
            ..gchat::ChatOptions::default()
        })
    }

    /// What `sqlctl config view` shows: settings, the webhook redacted.
    pub fn describe(&self) -> BTreeMap<&'static str, serde_json::Value> {
        let mut m = BTreeMap::new();
        let webhook = match self.webhook() {
            Some(u) => format!("{} (set, redacted)", gchat::redact_url(u)).into(),
            None => serde_json::Value::Null,
        };
        m.insert("gchatWebhook", webhook);
        m.insert("gchatWebhookSecretArn", self.secret_arn().map(str::to_string).into());
        m.insert("gchatTimeout", format_duration(self.gchat_timeout).into());
        m.insert("gchatAttempts", self.gchat_attempts.into());
        m.insert("preview", self.notify_preview.into());
        m.insert("consoleUrl", self.console_url.clone().filter(|s| !s.trim().is_empty()).into());
        m.insert("gchatChartImage", self.gchat_chart_image.map(format_duration).into());
        m
    }
}

// ---------------------------------------------------------------------------------------------
// Metrics

type Counts = BTreeMap<(&'static str, &'static str, &'static str), u64>;

fn counts() -> &'static Mutex<Counts> {
    static COUNTS: OnceLock<Mutex<Counts>> = OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

/// Counts one notification outcome: `channel` (gchat), `kind` (approval | finished), `result`
/// (sent | failed | skipped).
pub(crate) fn count(channel: &'static str, kind: &'static str, result: &'static str) {
    *counts().lock().unwrap_or_else(|p| p.into_inner()).entry((channel, kind, result)).or_insert(0) += 1;
}

/// Notification outcomes of this process so far, by (channel, kind, result).
pub fn notification_counts() -> BTreeMap<(&'static str, &'static str, &'static str), u64> {
    counts().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The notification metrics at one instant: `sqlctl_notifications_total{channel,kind,result}`,
/// `sqlctl_gchat_requests_total{status}` (every HTTP attempt by status code, `timeout` or
/// `error`) and `sqlctl_gchat_circuit_open`, the last two from the Google Chat notifier's handle
/// (none: no requests, closed). The controller's registry encodes one per scrape.
#[derive(Debug, Clone, Default)]
pub struct NotifyMetrics {
    counts: Counts,
    chat_requests: BTreeMap<String, u64>,
    circuit_open: bool,
}

impl NotifyMetrics {
    pub fn snapshot(chat: Option<&gchat::ChatMetrics>) -> Self {
        NotifyMetrics {
            counts: notification_counts(),
            chat_requests: chat.map(gchat::ChatMetrics::request_counts).unwrap_or_default(),
            circuit_open: chat.is_some_and(gchat::ChatMetrics::circuit_open),
        }
    }

    /// Encodes these series into a registry's encoder (the families are declared even when empty).
    pub fn encode_into(
        &self,
        encoder: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let mut m = encoder.encode_descriptor(
            "sqlctl_notifications",
            "Notifications by channel, kind and result (sent, failed, skipped)",
            None,
            MetricType::Counter,
        )?;
        for ((channel, kind, result), v) in &self.counts {
            let labels = [("channel", *channel), ("kind", *kind), ("result", *result)];
            ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
        }
        let mut m = encoder.encode_descriptor(
            "sqlctl_gchat_requests",
            "Google Chat webhook requests by HTTP status (or timeout, error)",
            None,
            MetricType::Counter,
        )?;
        for (status, v) in &self.chat_requests {
            let labels = [("status", status.as_str())];
            ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
        }
        let m = encoder.encode_descriptor(
            "sqlctl_gchat_circuit_open",
            "1 while Google Chat sends are skipped after repeated failures",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.circuit_open as i64).encode(m)
    }
}

impl prometheus_client::collector::Collector for NotifyMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_into(&mut encoder)
    }
}

/// The notification metrics alone in the Prometheus text format (what `/metrics` shows of them).
pub fn render_metrics(out: &mut String, chat: Option<&gchat::ChatMetrics>) {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(NotifyMetrics::snapshot(chat)));
    let _ = prometheus_client::encoding::prometheus_text::encode(out, &registry);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::QueryRequestStatus;

    struct Failing;
    #[async_trait]
    impl Notifier for Failing {
        async fn approval_requested(&self, _: &QueryRequest) -> Result<Delivery, NotifyError> {
            Err(NotifyError::Failed("queue down".into()))
        }
        async fn finished(&self, _: &QueryRequest) -> Result<Delivery, NotifyError> {
            Ok(Delivery::undelivered("gchat", "ChatDeliveryFailed", "HTTP 500"))
        }
    }

    struct Counting(std::sync::atomic::AtomicU32);
    #[async_trait]
    impl Notifier for Counting {
        async fn approval_requested(&self, _: &QueryRequest) -> Result<Delivery, NotifyError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Delivery::delivered())
        }
        async fn finished(&self, _: &QueryRequest) -> Result<Delivery, NotifyError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Delivery::undelivered("gchat", "ChatCircuitOpen", "skipped"))
        }
    }

    #[tokio::test]
    async fn a_required_failure_stops_the_fanout_and_best_effort_failures_are_merged() {
        let later = Arc::new(Counting(Default::default()));
        let fan = Fanout(vec![Arc::new(Failing), later.clone()]);
        let req = QueryRequest::new("q", "");
        assert!(fan.approval_requested(&req).await.is_err());
        assert_eq!(later.0.load(std::sync::atomic::Ordering::SeqCst), 0, "not sent after a required failure");
        let d = fan.finished(&req).await.unwrap();
        assert_eq!(d.undelivered.len(), 2);
        assert_eq!(d.undelivered[0].reason, "ChatDeliveryFailed");
    }

    #[test]
    fn delivery_is_recorded_in_the_notified_condition() {
        let mut st = QueryRequestStatus::default();
        Delivery::delivered().record(&mut st);
        assert!(st.condition("Notified").is_none(), "a clean history has no condition");
        Delivery::undelivered("gchat", "ChatDeliveryFailed", "HTTP 500 after 3 attempts").record(&mut st);
        let c = st.condition("Notified").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "ChatDeliveryFailed"));
        assert_eq!(c.message, "gchat: HTTP 500 after 3 attempts");
        Delivery::delivered().record(&mut st);
        let c = st.condition("Notified").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Sent"));
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        count("gchat", "approval", "sent");
        let mut out = String::new();
        render_metrics(&mut out, None);
        assert!(out.contains("# TYPE sqlctl_notifications_total counter"), "{out}");
        assert!(
            out.contains("sqlctl_notifications_total{channel=\"gchat\",kind=\"approval\",result=\"sent\"}"),
            "{out}"
        );
        assert!(out.contains("sqlctl_gchat_circuit_open "), "{out}");
    }
}
