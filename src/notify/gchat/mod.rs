//! Google Chat incoming-webhook notifications (cardsV2).
//!
//! Three messages per request, all in one thread (`threadKey` derived from namespace, name and
//! uid; `messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`):
//!
//! * an **approval card** per approval round: the question, the SQL in monospace, explanation,
//!   confidence, tables, the estimate (bytes, cost), requester and generation, and how to decide
//!   — the exact `sqlctl approve | refine | reject` commands with the digest and, with
//!   `--console-url`, an *Open in console* button (`<console-url>/requests/<namespace>/<name>`);
//! * a **result card** when the query is Done: rows, bytes scanned, cost, duration, a small
//!   preview table (not with `--notify-preview=false`) and where the full result (and chart) is;
//! * a **failure, rejection or timeout card** with the reason.
//!
//! Every message carries a plain-text `fallbackText`; a card Chat refuses (HTTP 400) is sent once
//! more as that text. User content (question, SQL, explanation, cells) is escaped for Chat's
//! HTML subset and sizes are bounded (Chat takes at most 32,000 bytes per message): long SQL and
//! wide previews are truncated with a note saying so.
//!
//! # Best effort, bounded
//!
//! Each request attempt has `--gchat-timeout` (5 s); 429, 408, 5xx, timeouts and connection
//! errors are retried up to `--gchat-attempts` (3) in all, with capped exponential backoff and
//! jitter, honouring `Retry-After` up to 10 s (a longer one gives up at once). Then the message
//! is given up and reported in the [`Delivery`](super::Delivery), which the controller records as
//! `Notified=False` with one of these reasons:
//!
//! | reason | meaning |
//! |---|---|
//! | `ChatDeliveryFailed` | 429 / 5xx / timeouts / connection errors on every attempt |
//! | `ChatRejected` | Chat refused the message (4xx other than 408/429: a wrong, revoked or deleted webhook) |
//! | `ChatCircuitOpen` | not sent: the last 3 messages failed; sends resume after a 30 s cool-down |
//! | `ChatWebhookUnavailable` | the Secrets Manager secret could not be read or holds no webhook URL |
//!
//! After 3 failed messages in a row the circuit opens for 30 s, so a dead webhook costs each
//! reconcile nothing; then one probe (a single attempt) decides whether it closes again.
//!
//! # Once
//!
//! The controller records each notification in status right after it is sent, so a restart does
//! not repeat it; a crash mid-send repeats that one message. Each message also carries a
//! deterministic `requestId` (from uid, generation, round or phase), with which Chat returns the
//! existing message instead of posting a second one — retries after a lost answer do not
//! duplicate either.
//!
//! # The webhook is a credential
//!
//! Its `key` and `token` post to the space. It comes from `SQLCTL_GCHAT_WEBHOOK` or a Secrets
//! Manager secret (`SQLCTL_GCHAT_WEBHOOK_SECRET_ARN`, re-read every 5 minutes so a rotation takes
//! effect, and at once after a 401/403/404), never from a spec. It is never logged: errors and
//! messages show [`redact_url`]'s form (`…/messages?key=REDACTED&token=REDACTED`) and every text
//! that leaves this module is scrubbed of the URL's secret parts. Only `https://` is accepted
//! (plain `http://` for loopback test servers).
//!
//! # Where things are
//!
//! * `webhook`: the webhook URL, its validation and redaction, and where it comes from (given,
//!   or read from Secrets Manager and cached);
//! * `cards`: the messages (approval, result, failure cards and their text forms), their
//!   thread and idempotency ids, and the size budgets that make them fit;
//! * `html`: card building blocks and escaping for Chat's HTML subset and text format;
//! * `metrics`: [`ChatMetrics`], the counters a notifier is given and `/metrics` reads;
//! * `breaker`: the circuit breaker;
//! * `transport`: [`GoogleChat`], the notifier: breaker, webhook, bounded retries, fallback.
//!
//! They import one way: `transport` uses all the others, `cards` uses `html`, `breaker` uses
//! `metrics`; `webhook`, `html` and `metrics` use none of their siblings.

mod breaker;
mod cards;
mod html;
mod metrics;
#[cfg(test)]
mod testing;
mod transport;
mod webhook;

use std::time::Duration;

use reqwest::Url;

pub use cards::{ChatMessage, approval_message, finished_message, request_id, thread_key};
pub use html::esc;
pub use metrics::ChatMetrics;
pub use transport::GoogleChat;
#[cfg(feature = "aws")]
pub use webhook::SecretWebhook;
pub use webhook::{Webhook, WebhookSource, parse_secret, redact_url};

/// The channel name in [`Delivery`](super::Delivery) and metrics.
pub const CHANNEL: &str = "gchat";
/// `Notified` reason: every attempt failed transiently (429, 5xx, timeouts, connection errors).
pub const REASON_DELIVERY_FAILED: &str = "ChatDeliveryFailed";
/// `Notified` reason: Chat refused the message (4xx other than 408/429).
pub const REASON_REJECTED: &str = "ChatRejected";
/// `Notified` reason: not sent because the circuit breaker is open.
pub const REASON_CIRCUIT_OPEN: &str = "ChatCircuitOpen";
/// `Notified` reason: the webhook URL could not be read from Secrets Manager.
pub const REASON_WEBHOOK_UNAVAILABLE: &str = "ChatWebhookUnavailable";

/// What Chat accepts per message is 32,000 bytes; this leaves room for the request's framing.
pub const MAX_MESSAGE_BYTES: usize = 30_000;

/// How messages are sent and what they contain.
#[derive(Clone, Debug)]
pub struct ChatOptions {
    /// Per HTTP attempt (connect + answer).
    pub timeout: Duration,
    /// HTTP attempts per message, the first included.
    pub attempts: u32,
    /// First backoff; doubled per retry, with jitter.
    pub min_backoff: Duration,
    /// Longest backoff between two attempts.
    pub max_backoff: Duration,
    /// Longest `Retry-After` waited for; a longer one gives the message up at once.
    pub max_retry_after: Duration,
    /// Result rows in the result card.
    pub preview: bool,
    /// Approval console base URL, for the *Open in console* button.
    pub console_url: Option<Url>,
    /// Failed messages in a row that open the circuit.
    pub breaker_threshold: u32,
    /// How long an open circuit skips sends before one probe.
    pub breaker_cooldown: Duration,
    /// How long a webhook read from Secrets Manager is used before it is read again.
    pub secret_ttl: Duration,
    /// Show the chart in the result card as an image: a presigned URL of the stored PNG valid
    /// this long (`None`, the default: no image; the card names the chart's location only).
    pub chart_image_ttl: Option<Duration>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            timeout: Duration::from_secs(5),
            attempts: 3,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
            preview: true,
            console_url: None,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(30),
            secret_ttl: Duration::from_secs(300),
            chart_image_ttl: None,
        }
    }
}

/// Parses `--console-url` (http or https).
pub fn parse_console_url(s: &str) -> Result<Url, String> {
    let u = Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{s:?} must be an http:// or https:// URL"));
    }
    Ok(u)
}
