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
//! is given up and reported in the [`Delivery`], which the controller records as
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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Delivery, Notifier, NotifyError};
use crate::spec::quantity::{format_duration, human_bytes};
use crate::spec::{DEFAULT_NAMESPACE, Phase, Preview, QueryRequest};

/// The channel name in [`Delivery`] and metrics.
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
const REDACTED: &str = "REDACTED";

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

// ---------------------------------------------------------------------------------------------
// The webhook and its redaction

/// A validated webhook URL that knows its own secret parts, so nothing it touches leaks them.
#[derive(Clone)]
pub struct Webhook {
    url: Url,
    /// Substrings to scrub from any text: the URL, its query values (raw and decoded), longest first.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Webhook({})", self.redacted())
    }
}

impl Webhook {
    /// Validates a webhook URL: https (http only to a loopback host), with a host. Errors never
    /// repeat the URL.
    pub fn parse(raw: &str) -> Result<Webhook, String> {
        let raw = raw.trim();
        let url = Url::parse(raw).map_err(|e| format!("the Google Chat webhook is not a URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            s => {
                return Err(format!(
                    "the Google Chat webhook must be an https:// URL (got {s}://); http:// is accepted only for loopback test servers"
                ));
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the Google Chat webhook URL names no host".into());
        }
        let mut secrets = vec![raw.to_string(), url.as_str().to_string()];
        for (_, v) in url.query_pairs() {
            secrets.push(v.into_owned());
        }
        for kv in url.query().unwrap_or("").split('&') {
            if let Some((_, v)) = kv.split_once('=') {
                secrets.push(v.to_string());
            }
        }
        if let Some(p) = url.password() {
            secrets.push(p.to_string());
        }
        secrets.retain(|s| s.chars().count() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok(Webhook { url, secrets })
    }

    /// The URL with every query value (key, token) and any user info replaced by `REDACTED`.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// `text` with every secret part of this webhook replaced by `REDACTED`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }

    /// Where one message is posted: the webhook plus its thread and idempotency parameters.
    pub fn post_url(&self, thread_key: &str, request_id: &str) -> Url {
        let mut u = self.url.clone();
        let kept: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| !matches!(k.as_ref(), "threadKey" | "messageReplyOption" | "requestId"))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("threadKey", thread_key)
            .append_pair("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD")
            .append_pair("requestId", request_id);
        u
    }
}

fn is_loopback(u: &Url) -> bool {
    let Some(host) = u.host_str() else { return false };
    host.eq_ignore_ascii_case("localhost")
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_fragment(None);
    let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
    if keys.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(keys.iter().map(|k| (k.as_str(), REDACTED)));
    }
    // Keep the form readable: `REDACTED` needs no escaping, and `?key=REDACTED&token=REDACTED`
    // says which parameters were there.
    u.to_string()
}

/// A webhook URL for display (`sqlctl config view`, logs): query values and user info replaced by
/// `REDACTED`; a string that is not a URL is not shown at all.
pub fn redact_url(s: &str) -> String {
    match Url::parse(s.trim()) {
        Ok(u) => redact(&u),
        Err(_) => "(not a URL; not shown)".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Where the webhook comes from

/// The webhook: given directly (flag / environment) or read from AWS Secrets Manager.
pub enum WebhookSource {
    Fixed(Webhook),
    SecretsManager(SecretWebhook),
}

impl WebhookSource {
    async fn get(&self, opts: &ChatOptions) -> Result<Webhook, String> {
        match self {
            WebhookSource::Fixed(w) => Ok(w.clone()),
            WebhookSource::SecretsManager(s) => s.get(opts.secret_ttl, opts.timeout).await,
        }
    }

    async fn invalidate(&self) {
        if let WebhookSource::SecretsManager(s) = self {
            s.invalidate().await;
        }
    }
}

struct Cached {
    webhook: Webhook,
    fetched: Instant,
    stale: bool,
}

/// The webhook URL in a Secrets Manager secret: the secret string is the URL, or a JSON object
/// with a `url` (or `webhookUrl`, `webhook`) field. Cached for the TTL; a failed re-read keeps
/// using the last good value.
pub struct SecretWebhook {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl SecretWebhook {
    pub fn new(client: aws_sdk_secretsmanager::Client, arn: impl Into<String>) -> SecretWebhook {
        SecretWebhook { client, arn: arn.into(), cache: tokio::sync::Mutex::new(None) }
    }

    async fn get(&self, ttl: Duration, timeout: Duration) -> Result<Webhook, String> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| !c.stale && c.fetched.elapsed() < ttl) {
            return Ok(c.webhook.clone());
        }
        let fetched = match tokio::time::timeout(timeout.max(Duration::from_secs(1)), self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "reading the Google Chat webhook from Secrets Manager secret {} timed out after {}",
                self.arn,
                format_duration(timeout)
            )),
        };
        match (fetched, cache.as_mut()) {
            (Ok(w), _) => {
                *cache = Some(Cached { webhook: w.clone(), fetched: Instant::now(), stale: false });
                Ok(w)
            }
            (Err(e), Some(c)) => {
                tracing::warn!(secret = %self.arn, error = %e, "could not re-read the Google Chat webhook secret; using the last value read");
                c.fetched = Instant::now();
                c.stale = false;
                Ok(c.webhook.clone())
            }
            (Err(e), None) => Err(e),
        }
    }

    async fn invalidate(&self) {
        if let Some(c) = self.cache.lock().await.as_mut() {
            c.stale = true;
        }
    }

    /// Reads and parses the secret (no cache).
    pub async fn fetch(&self) -> Result<Webhook, String> {
        let out = self.client.get_secret_value().secret_id(&self.arn).send().await.map_err(|e| {
            format!(
                "reading the Google Chat webhook from Secrets Manager secret {}: {}; check the ARN and that this role may call secretsmanager:GetSecretValue on it",
                self.arn,
                crate::aws::describe(&e)
            )
        })?;
        let text = out.secret_string().ok_or_else(|| {
            format!("Secrets Manager secret {} has no SecretString: store the webhook URL as text", self.arn)
        })?;
        parse_secret(text).map_err(|e| format!("Secrets Manager secret {}: {e}", self.arn))
    }
}

/// The secret string: a URL, or JSON with a `url` / `webhookUrl` / `webhook` field. Errors never
/// repeat the secret.
pub fn parse_secret(text: &str) -> Result<Webhook, String> {
    let t = text.trim();
    if !t.starts_with('{') {
        return Webhook::parse(t);
    }
    let v: Value =
        serde_json::from_str(t).map_err(|_| "the secret starts with '{' but is not valid JSON".to_string())?;
    let url = ["url", "webhookUrl", "webhook"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .ok_or_else(|| "the secret's JSON has no \"url\" field holding the webhook URL".to_string())?;
    Webhook::parse(url)
}

// ---------------------------------------------------------------------------------------------
// Process-wide counters (rendered by `notify::render_metrics`)

static CIRCUIT_OPEN: AtomicBool = AtomicBool::new(false);

fn requests() -> &'static Mutex<BTreeMap<String, u64>> {
    static R: OnceLock<Mutex<BTreeMap<String, u64>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn count_request(status: &str) {
    *requests().lock().unwrap_or_else(|p| p.into_inner()).entry(status.to_string()).or_insert(0) += 1;
}

/// Webhook HTTP attempts of this process by status code (`200`, `429`, …), `timeout` or `error`.
pub fn request_counts() -> BTreeMap<String, u64> {
    requests().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Is the circuit open (sends being skipped) right now?
pub fn circuit_open() -> bool {
    CIRCUIT_OPEN.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    probe_started: Option<Instant>,
    last_error: String,
}

/// Opens after `threshold` failed messages in a row; while open, sends are skipped; after the
/// cool-down one probe goes through (others keep skipping) and its outcome closes or re-opens it.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

enum Admit {
    Go { probe: bool },
    Skip { failures: u32, last_error: String, retry_in: Duration },
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker { threshold: threshold.max(1), cooldown, state: Mutex::new(BreakerState::default()) }
    }

    fn admit(&self) -> Admit {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let Some(until) = s.open_until else { return Admit::Go { probe: false } };
        // A probe that never reported (its reconcile was cancelled) does not block forever.
        let probing = s.probe_started.is_some_and(|t| now.duration_since(t) < self.cooldown);
        if now < until || probing {
            return Admit::Skip {
                failures: s.failures,
                last_error: s.last_error.clone(),
                retry_in: until.saturating_duration_since(now),
            };
        }
        s.probe_started = Some(now);
        Admit::Go { probe: true }
    }

    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).open_until.is_some()
    }

    fn success(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = BreakerState::default();
        CIRCUIT_OPEN.store(false, Ordering::Relaxed);
    }

    /// Returns true when this failure opened (or re-opened) the circuit.
    fn failure(&self, error: &str, probe: bool) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.failures += 1;
        s.last_error = error.to_string();
        s.probe_started = None;
        if probe || s.failures >= self.threshold {
            s.open_until = Some(Instant::now() + self.cooldown);
            CIRCUIT_OPEN.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

// ---------------------------------------------------------------------------------------------
// The notifier

/// Posts cards to a Google Chat space through its incoming webhook (see the module docs).
pub struct GoogleChat {
    http: reqwest::Client,
    source: WebhookSource,
    opts: ChatOptions,
    breaker: Breaker,
}

/// How one HTTP attempt failed.
#[derive(Debug)]
enum CallError {
    /// Worth another try (after at least `after` when the server said so).
    Retry { message: String, after: Option<Duration> },
    /// Chat refused the message: retrying the same request cannot help.
    Refused { status: u16, message: String },
}

impl CallError {
    fn message(&self) -> &str {
        match self {
            CallError::Retry { message, .. } | CallError::Refused { message, .. } => message,
        }
    }
}

impl GoogleChat {
    /// Builds the HTTP client (nothing is sent).
    pub fn new(source: WebhookSource, opts: ChatOptions) -> Result<GoogleChat, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sqlctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the Google Chat HTTP client: {e}"))?;
        let breaker = Breaker::new(opts.breaker_threshold, opts.breaker_cooldown);
        Ok(GoogleChat { http, source, opts, breaker })
    }

    pub fn options(&self) -> &ChatOptions {
        &self.opts
    }

    /// Resolves the webhook once (reads the secret, if that is where it is), for a start-up
    /// check; returns its redacted form.
    pub async fn check(&self) -> Result<String, String> {
        self.source.get(&self.opts).await.map(|w| w.redacted())
    }

    /// Sends one message: circuit breaker, webhook, bounded retries, text fallback; never fails.
    async fn deliver(&self, req: &QueryRequest, kind: &'static str, msg: ChatMessage) -> Delivery {
        let (name, ns) = (req.metadata.name.as_str(), req.metadata.namespace());
        let probe = match self.breaker.admit() {
            Admit::Go { probe } => probe,
            Admit::Skip { failures, last_error, retry_in } => {
                super::count(CHANNEL, kind, "skipped");
                let message = format!(
                    "{kind} message not sent: the last {failures} Google Chat messages failed (last: {last_error}); sending resumes in {}",
                    format_duration(Duration::from_secs(retry_in.as_secs().max(1)))
                );
                tracing::warn!(name, namespace = ns, kind, reason = REASON_CIRCUIT_OPEN, error = %message, "google chat notification skipped");
                return Delivery::undelivered(CHANNEL, REASON_CIRCUIT_OPEN, message);
            }
        };
        let webhook = match self.source.get(&self.opts).await {
            Ok(w) => w,
            Err(e) => {
                self.breaker.failure(&e, probe);
                super::count(CHANNEL, kind, "failed");
                tracing::warn!(name, namespace = ns, kind, reason = REASON_WEBHOOK_UNAVAILABLE, error = %e, "google chat notification not delivered");
                return Delivery::undelivered(
                    CHANNEL,
                    REASON_WEBHOOK_UNAVAILABLE,
                    format!("{kind} message not sent: {e}"),
                );
            }
        };
        let thread = thread_key(req);
        let started = Instant::now();
        let attempts = if probe { 1 } else { self.opts.attempts.max(1) };
        let (mut result, mut tries) =
            self.send(&webhook, &webhook.post_url(&thread, &msg.request_id), &msg.card, attempts).await;
        if let Err(CallError::Refused { status: 400, message }) = &result {
            tracing::warn!(name, namespace = ns, kind, error = %message, "google chat refused the card; sending it as plain text");
            let text_id = request_id(&[&msg.request_id, "text"]);
            let (r, n) = self.send(&webhook, &webhook.post_url(&thread, &text_id), &msg.text, 1).await;
            result = r;
            tries += n;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                self.breaker.success();
                super::count(CHANNEL, kind, "sent");
                tracing::info!(
                    name,
                    namespace = ns,
                    kind,
                    attempts = tries,
                    elapsed_ms,
                    "google chat notification sent"
                );
                Delivery::delivered()
            }
            Err(e) => {
                let reason = match e {
                    CallError::Refused { status, .. } => {
                        if matches!(status, 401 | 403 | 404) {
                            self.source.invalidate().await;
                        }
                        REASON_REJECTED
                    }
                    CallError::Retry { .. } => REASON_DELIVERY_FAILED,
                };
                let opened = self.breaker.failure(e.message(), probe);
                super::count(CHANNEL, kind, "failed");
                let message = format!(
                    "{kind} message not delivered after {tries} attempt{}: {}",
                    if tries == 1 { "" } else { "s" },
                    e.message()
                );
                tracing::warn!(name, namespace = ns, kind, reason, attempts = tries, elapsed_ms, circuit_opened = opened, error = %message, "google chat notification not delivered");
                Delivery::undelivered(CHANNEL, reason, message)
            }
        }
    }

    /// Up to `attempts` POSTs of `body`; returns the outcome and the attempts made.
    async fn send(&self, webhook: &Webhook, url: &Url, body: &Value, attempts: u32) -> (Result<(), CallError>, u32) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.post(webhook, url, body).await {
                Ok(()) => return (Ok(()), attempt),
                Err(e) => e,
            };
            let CallError::Retry { message, after } = err else { return (Err(err), attempt) };
            if attempt >= attempts {
                return (Err(CallError::Retry { message, after }), attempt);
            }
            let wait = match after {
                Some(a) if a > self.opts.max_retry_after => {
                    let message = format!(
                        "{message}; Retry-After {} exceeds the {} this controller waits",
                        format_duration(a),
                        format_duration(self.opts.max_retry_after)
                    );
                    return (Err(CallError::Retry { message, after }), attempt);
                }
                Some(a) => a,
                None => self.backoff(attempt),
            };
            tracing::warn!(attempt, retry_in_ms = wait.as_millis() as u64, error = %message, "google chat webhook call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Exponential from `min_backoff`, capped, with jitter (half fixed, half random).
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.opts.min_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(self.opts.max_backoff);
        let unit = (uuid::Uuid::new_v4().as_u128() % 1_000) as f64 / 1_000.0;
        base / 2 + base.mul_f64(unit / 2.0)
    }

    /// One POST.
    async fn post(&self, webhook: &Webhook, url: &Url, body: &Value) -> Result<(), CallError> {
        let resp = match self.http.post(url.clone()).json(body).send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(webhook, e)),
        };
        let status = resp.status().as_u16();
        count_request(&status.to_string());
        let retry_after =
            resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let text = resp.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let message =
            webhook.scrub(&format!("{} answered HTTP {status}: {}", webhook.redacted(), error_message(&text)));
        match status {
            408 | 429 | 500..=599 => Err(CallError::Retry { message, after: retry_after }),
            401 | 403 | 404 => Err(CallError::Refused {
                status,
                message: format!("{message}; the webhook was refused: check SQLCTL_GCHAT_WEBHOOK or its secret"),
            }),
            _ => Err(CallError::Refused { status, message }),
        }
    }

    fn transport_error(&self, webhook: &Webhook, e: reqwest::Error) -> CallError {
        let what = if e.is_timeout() {
            count_request("timeout");
            format!("timed out after {}", format_duration(self.opts.timeout))
        } else {
            count_request("error");
            if e.is_connect() { "could not connect".to_string() } else { "failed".to_string() }
        };
        let detail = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
        CallError::Retry {
            message: webhook.scrub(&format!("request to {} {what}{detail}", webhook.redacted())),
            after: None,
        }
    }
}

#[async_trait]
impl Notifier for GoogleChat {
    async fn approval_requested(&self, req: &QueryRequest) -> Result<Delivery, NotifyError> {
        Ok(self.deliver(req, "approval", approval_message(req, &self.opts)).await)
    }

    async fn finished(&self, req: &QueryRequest) -> Result<Delivery, NotifyError> {
        Ok(self.deliver(req, "finished", finished_message(req, &self.opts)).await)
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// Google's JSON error message when there is one, else the body's start.
fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string));
    let s = from_json.unwrap_or_else(|| body.trim().to_string());
    let (mut p, cut) = truncate(&s.replace(['\n', '\r'], " "), 300);
    if cut {
        p.push('…');
    }
    if p.is_empty() { "(empty body)".into() } else { p }
}

// ---------------------------------------------------------------------------------------------
// Identity of threads and messages

/// One thread per request (a deleted and recreated request starts a new one).
pub fn thread_key(req: &QueryRequest) -> String {
    format!("sqlctl-{}-{}-{}", req.metadata.namespace(), req.metadata.name, req.uid())
}

/// A deterministic UUID-shaped id from `parts` (Chat's `requestId`: the same id returns the
/// message already created instead of posting another).
pub fn request_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let x = hex::encode(&h.finalize()[..16]);
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..32])
}

// ---------------------------------------------------------------------------------------------
// Messages

/// One message in its two forms, with its idempotency id.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    /// Chat's `requestId` for this message.
    pub request_id: String,
    /// The card message (`cardsV2` and `fallbackText`).
    pub card: Value,
    /// The same as plain text (`text`), sent when Chat refuses the card.
    pub text: Value,
}

/// How much of the user's content a message carries; smaller budgets are tried until the message
/// fits [`MAX_MESSAGE_BYTES`].
#[derive(Clone, Copy, Debug)]
struct Budget {
    sql: usize,
    text: usize,
    rows: usize,
    cols: usize,
    cell: usize,
}

const BUDGETS: [Budget; 4] = [
    Budget { sql: 8_000, text: 2_000, rows: 10, cols: 8, cell: 32 },
    Budget { sql: 3_000, text: 800, rows: 5, cols: 6, cell: 20 },
    Budget { sql: 1_000, text: 300, rows: 3, cols: 4, cell: 12 },
    Budget { sql: 300, text: 100, rows: 0, cols: 0, cell: 0 },
];

/// The approval card for `req` (in AwaitingApproval).
pub fn approval_message(req: &QueryRequest, opts: &ChatOptions) -> ChatMessage {
    let st = req.status.clone().unwrap_or_default();
    let sql_digest = st.generated.as_ref().map(|g| g.sql_digest.clone()).unwrap_or_default();
    let id = request_id(&[
        "sqlctl-gchat-v1",
        req.uid(),
        "approval",
        &req.generation().to_string(),
        &st.approval_round.to_string(),
        &sql_digest,
    ]);
    fit(id, |b| approval_parts(req, opts, b))
}

/// The result, failure, rejection or timeout card for `req` (in a terminal phase).
pub fn finished_message(req: &QueryRequest, opts: &ChatOptions) -> ChatMessage {
    let id =
        request_id(&["sqlctl-gchat-v1", req.uid(), "finished", &req.generation().to_string(), req.phase().as_str()]);
    fit(id, |b| finished_parts(req, opts, b))
}

/// Builds with shrinking budgets until the card message fits.
fn fit(request_id: String, build: impl Fn(Budget) -> (Value, String)) -> ChatMessage {
    let mut last = None;
    for b in BUDGETS {
        let (card, text) = build(b);
        let card_msg = json!({"fallbackText": text, "cardsV2": [card]});
        if card_msg.to_string().len() > MAX_MESSAGE_BYTES {
            last = Some(text);
            continue;
        }
        return ChatMessage { request_id, card: card_msg, text: json!({ "text": text }) };
    }
    // Unreachable with the smallest budget (a few KiB at most); keep the text only if not.
    let text = last.expect("at least one budget");
    let (text, _) = truncate(&text, 4_000);
    ChatMessage { request_id, card: json!({ "text": text }), text: json!({ "text": text }) }
}

fn approval_parts(req: &QueryRequest, opts: &ChatOptions, b: Budget) -> (Value, String) {
    let st = req.status.clone().unwrap_or_default();
    let g = st.generated.clone().unwrap_or_default();
    let (name, ns) = (req.metadata.name.as_str(), req.metadata.namespace());
    let cmds = decide_commands(req, &g.sql_digest);
    let subtitle = format!("{ns} · generation {} · round {}", req.generation(), st.approval_round);

    let mut sections = Vec::new();
    if let Some(q) = req.spec.question.as_deref().filter(|q| !q.trim().is_empty()) {
        sections.push(section(Some("Question"), vec![para(&html_text(q, b.text))]));
    }
    let (sql_html, sql_note) = sql_block(&g.sql, b.sql, name, ns);
    let mut sql_widgets = vec![para(&sql_html)];
    if let Some(n) = sql_note {
        sql_widgets.push(para(&n));
    }
    let sql_header = if req.spec.sql.is_some() { "SQL (hand-written)" } else { "SQL" };
    sections.push(section(Some(sql_header), sql_widgets));

    let mut details = Vec::new();
    if !g.explanation.trim().is_empty() {
        details.push(field("Explanation", &html_text(&g.explanation, b.text)));
    }
    if !g.assumptions.is_empty() {
        details.push(field("Assumptions", &html_text(&g.assumptions.join("\n"), b.text)));
    }
    if req.spec.sql.is_none() {
        details.push(field("Confidence", &format!("{:.0}%", g.confidence.clamp(0.0, 1.0) * 100.0)));
    }
    let tables = if g.tables_used.is_empty() { "—".to_string() } else { g.tables_used.join(", ") };
    details.push(field("Tables", &esc(&format!("{} · {}", req.spec.catalog.database, tables))));
    details.push(field("Estimated scan", &esc(&estimate_text(&st.estimate))));
    details.push(field("Requested by", &esc(req.requester().unwrap_or("unknown"))));
    let model = if g.model.is_empty() { String::new() } else { format!(" · {}", g.model) };
    details.push(field("Generation", &esc(&format!("{} (round {}){model}", req.generation(), st.approval_round))));
    details.push(field("Digest", &format!("<code>{}</code>", esc(short_digest(&g.sql_digest)))));
    if let Some(d) = st.approval_deadline {
        details.push(field("Decide before", &esc(&d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))));
    }
    sections.push(section(Some("Details"), details));

    let how = cmds
        .iter()
        .map(|(label, cmd)| format!("<b>{label}</b><br><code>{}</code>", esc(cmd)))
        .collect::<Vec<_>>()
        .join("<br>");
    let mut decide = vec![para(&how)];
    if let Some(link) = console_link(opts, ns, name) {
        decide.push(button("Open in console", &link));
    }
    sections.push(section(Some("How to decide"), decide));

    let card = card("approval", &format!("Approval needed: {name}"), &subtitle, sections);

    let mut text =
        format!("*Approval needed*: {ns}/{name} (generation {}, round {})\n", req.generation(), st.approval_round);
    if let Some(q) = req.spec.question.as_deref() {
        text.push_str(&format!("Question: {}\n", plain(q, b.text.min(500))));
    }
    text.push_str(&format!("```\n{}\n```\n", plain_code(&g.sql, b.sql.min(1_500))));
    text.push_str(&format!("Estimated scan: {}\n", estimate_text(&st.estimate)));
    text.push_str(&format!("Requested by: {}\n", plain(req.requester().unwrap_or("unknown"), 100)));
    for (label, cmd) in &cmds {
        text.push_str(&format!("{label}: `{cmd}`\n"));
    }
    if let Some(link) = console_link(opts, ns, name) {
        text.push_str(&format!("Console: {link}\n"));
    }
    (card, text.trim_end().to_string())
}

fn finished_parts(req: &QueryRequest, opts: &ChatOptions, b: Budget) -> (Value, String) {
    let st = req.status.clone().unwrap_or_default();
    let (name, ns) = (req.metadata.name.as_str(), req.metadata.namespace());
    let phase = st.phase;
    let subtitle = format!("{ns} · generation {}", req.generation());
    let mut sections = Vec::new();
    if let Some(q) = req.spec.question.as_deref().filter(|q| !q.trim().is_empty()) {
        sections.push(section(Some("Question"), vec![para(&html_text(q, b.text.min(500)))]));
    }
    let mut text;
    let title;
    if phase == Phase::Done {
        title = format!("Done: {name}");
        let ex = st.execution.clone().unwrap_or_default();
        let mut stats = vec![
            field("Rows", &ex.rows.map(|r| r.to_string()).unwrap_or_else(|| "—".into())),
            field("Bytes scanned", &esc(&ex.bytes_scanned.map(human_bytes).unwrap_or_else(|| "—".into()))),
            field("Cost", &esc(&ex.cost_usd.map(usd).unwrap_or_else(|| "—".into()))),
            field(
                "Duration",
                &esc(&ex
                    .duration_ms
                    .map(|ms| format_duration(Duration::from_millis(ms)))
                    .unwrap_or_else(|| "—".into())),
            ),
        ];
        if let Some(a) = &st.approval {
            stats.push(field("Approved by", &esc(&a.by)));
        }
        sections.push(section(Some("Result"), stats));
        let mut preview_text = String::new();
        if let Some(p) = ex.preview.as_ref().filter(|p| opts.preview && b.rows > 0 && !p.columns.is_empty()) {
            let (table, note) = preview_table(p, ex.rows, b);
            let plain_table = plain_code(&table.replace('\u{a0}', " "), usize::MAX);
            preview_text = format!("```\n{plain_table}\n```\n{note}\n");
            sections.push(section(
                Some("Preview"),
                vec![
                    para(&format!("<code>{}</code>", esc(&table).replace('\n', "<br>"))),
                    para(&format!("<i>{}</i>", esc(&note))),
                ],
            ));
        }
        let mut full = Vec::new();
        if let Some(loc) = &ex.output_location {
            full.push(field("Full result", &esc(loc)));
        }
        if let Some(loc) = &ex.chart_location {
            full.push(field("Chart", &esc(loc)));
        }
        full.push(para(&format!("<code>{}</code>", esc(&format!("sqlctl results {name}{}", ns_flag(ns))))));
        if let Some(link) = console_link(opts, ns, name) {
            full.push(button("Open in console", &link));
        }
        sections.push(section(Some("Where the result is"), full));
        text = format!(
            "*Done*: {ns}/{name}: {} rows, {} scanned, {}, {}\n",
            ex.rows.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
            ex.bytes_scanned.map(human_bytes).unwrap_or_else(|| "?".into()),
            ex.cost_usd.map(usd).unwrap_or_else(|| "cost unknown".into()),
            ex.duration_ms.map(|ms| format_duration(Duration::from_millis(ms))).unwrap_or_else(|| "?".into()),
        );
        text.push_str(&preview_text);
        if let Some(loc) = &ex.output_location {
            text.push_str(&format!("Full result: {}\n", plain(loc, 500)));
        }
        if let Some(loc) = &ex.chart_location {
            text.push_str(&format!("Chart: {}\n", plain(loc, 500)));
        }
        text.push_str(&format!("`sqlctl results {name}{}`\n", ns_flag(ns)));
    } else {
        let (label, reason, message) = outcome(&st);
        title = format!("{label}: {name}");
        let mut w = vec![field("Reason", &esc(&reason))];
        if !message.is_empty() {
            w.push(field("Details", &html_text(&message, b.text)));
        }
        if let Some(a) = st.approval.as_ref().filter(|_| phase == Phase::Rejected) {
            w.push(field("Rejected by", &esc(&a.by)));
        }
        sections.push(section(Some(label), w));
        if let Some(g) = st.generated.as_ref().filter(|g| !g.sql.is_empty()) {
            let (sql_html, note) = sql_block(&g.sql, b.sql.min(2_000), name, ns);
            let mut ws = vec![para(&sql_html)];
            if let Some(n) = note {
                ws.push(para(&n));
            }
            sections.push(section(Some("SQL"), ws));
        }
        let mut more = vec![para(&format!("<code>{}</code>", esc(&format!("sqlctl describe {name}{}", ns_flag(ns)))))];
        if let Some(link) = console_link(opts, ns, name) {
            more.push(button("Open in console", &link));
        }
        sections.push(section(Some("More"), more));
        text = format!("*{label}*: {ns}/{name}: {reason}\n");
        if !message.is_empty() {
            text.push_str(&format!("{}\n", plain(&message, b.text.min(1_000))));
        }
        text.push_str(&format!("`sqlctl describe {name}{}`\n", ns_flag(ns)));
    }
    if let Some(link) = console_link(opts, ns, name) {
        text.push_str(&format!("Console: {link}\n"));
    }
    let card = card(&format!("finished-{}", phase.as_str().to_ascii_lowercase()), &title, &subtitle, sections);
    (card, text.trim_end().to_string())
}

/// Label, reason and message of a request that did not finish Done.
fn outcome(st: &crate::spec::QueryRequestStatus) -> (&'static str, String, String) {
    let ready = st.condition("Ready");
    let approved = st.condition("Approved");
    let label = match st.phase {
        Phase::Rejected => "Rejected",
        Phase::TimedOut => "Timed out",
        _ => "Failed",
    };
    let reason = ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()).unwrap_or_else(|| st.phase.to_string());
    let mut message = ready.map(|c| c.message.clone()).unwrap_or_default();
    if message.is_empty() && matches!(st.phase, Phase::Rejected | Phase::TimedOut) {
        message = approved.map(|c| c.message.clone()).unwrap_or_default();
    }
    if message.is_empty() {
        message = st.execution.as_ref().and_then(|e| e.error.clone()).unwrap_or_default();
    }
    (label, reason, message)
}

/// The three decisions as exact commands, for the digest under review.
fn decide_commands(req: &QueryRequest, digest: &str) -> [(&'static str, String); 3] {
    let name = &req.metadata.name;
    let n = ns_flag(req.metadata.namespace());
    // The full digest: a prefix is for reading only and is refused as an approval.
    let d = digest;
    [
        ("Approve", format!("sqlctl approve {name}{n} --digest {d}")),
        ("Refine", format!("sqlctl refine {name}{n} --digest {d} --feedback '…'")),
        ("Reject", format!("sqlctl reject {name}{n} --digest {d} --reason '…'")),
    ]
}

fn ns_flag(ns: &str) -> String {
    if ns == DEFAULT_NAMESPACE { String::new() } else { format!(" -n {ns}") }
}

fn short_digest(d: &str) -> &str {
    &d[..d.len().min(12)]
}

fn usd(v: f64) -> String {
    if v > 0.0 && v < 0.0001 {
        "<$0.0001".into()
    } else if v > 0.0 && v < 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.2}")
    }
}

fn estimate_text(e: &Option<crate::spec::Estimate>) -> String {
    match e {
        None => "not estimated".into(),
        Some(e) => {
            let method = if e.method.is_empty() { String::new() } else { format!(" ({})", e.method) };
            format!("{} scanned, about {}{method}", human_bytes(e.bytes), usd(e.cost_usd))
        }
    }
}

/// `<console-url>/requests/<namespace>/<name>`.
fn console_link(opts: &ChatOptions, ns: &str, name: &str) -> Option<String> {
    let mut u = opts.console_url.clone()?;
    u.path_segments_mut().ok()?.pop_if_empty().extend(["requests", ns, name]);
    Some(u.to_string())
}

// ---------------------------------------------------------------------------------------------
// Card building blocks and escaping

fn card(id: &str, title: &str, subtitle: &str, sections: Vec<Value>) -> Value {
    json!({
        "cardId": format!("sqlctl-{id}"),
        "card": {
            "header": {"title": title, "subtitle": subtitle},
            "sections": sections,
        }
    })
}

fn section(header: Option<&str>, widgets: Vec<Value>) -> Value {
    match header {
        Some(h) => json!({"header": h, "widgets": widgets}),
        None => json!({ "widgets": widgets }),
    }
}

fn para(html: &str) -> Value {
    json!({"textParagraph": {"text": html}})
}

fn field(label: &str, html: &str) -> Value {
    json!({"decoratedText": {"topLabel": label, "text": html, "wrapText": true}})
}

fn button(text: &str, url: &str) -> Value {
    json!({"buttonList": {"buttons": [{"text": text, "onClick": {"openLink": {"url": url}}}]}})
}

/// Escapes text for Chat's card HTML subset (`<b>`, `<i>`, `<code>`, `<a>`, `<font>`, `<br>`…):
/// user content can never add markup, links or mentions.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Prose: truncated to `max` characters (with an ellipsis), escaped, line breaks kept.
fn html_text(s: &str, max: usize) -> String {
    let (t, cut) = truncate(s.trim(), max);
    let mut out = esc(&t).replace("\r\n", "\n").replace('\n', "<br>");
    if cut {
        out.push('…');
    }
    out
}

/// SQL in monospace: escaped, line breaks and indentation kept, truncated to `max` characters
/// with a note saying where the whole SQL is.
fn sql_block(sql: &str, max: usize, name: &str, ns: &str) -> (String, Option<String>) {
    // Hidden characters (controls, bidi overrides, zero-width) are shown escaped: the approver
    // reads what runs.
    let sql = crate::spec::text::escape_hidden(sql);
    let sql = sql.as_ref();
    let (t, cut) = truncate(sql.trim_end(), max);
    let lines: Vec<String> = t
        .replace("\r\n", "\n")
        .split('\n')
        .map(|l| {
            let indent = l.len() - l.trim_start_matches(' ').len();
            format!("{}{}", "\u{a0}".repeat(indent), esc(&l[indent..]).replace('\t', "\u{a0}\u{a0}\u{a0}\u{a0}"))
        })
        .collect();
    let html = format!("<code>{}</code>", lines.join("<br>"));
    let note = cut.then(|| {
        format!(
            "<i>SQL truncated: {} of {} characters shown; the whole SQL: </i><code>{}</code>",
            t.chars().count(),
            sql.chars().count(),
            esc(&format!("sqlctl describe {name}{}", ns_flag(ns)))
        )
    });
    (html, note)
}

/// The preview as a fixed-width table (cells padded with no-break spaces) and a note on what it
/// leaves out.
fn preview_table(p: &Preview, total_rows: Option<u64>, b: Budget) -> (String, String) {
    let cols = p.columns.len().min(b.cols);
    let rows = p.rows.len().min(b.rows);
    let cell = |s: &str| -> String {
        let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let (t, cut) = truncate(&s, b.cell.max(2) - 1);
        if cut { format!("{t}…") } else { t }
    };
    let header: Vec<String> = p.columns.iter().take(cols).map(|c| cell(c)).collect();
    let body: Vec<Vec<String>> = p
        .rows
        .iter()
        .take(rows)
        .map(|r| (0..cols).map(|i| cell(r.get(i).and_then(|v| v.as_deref()).unwrap_or("NULL"))).collect())
        .collect();
    let widths: Vec<usize> = (0..cols)
        .map(|i| body.iter().map(|r| r[i].chars().count()).chain([header[i].chars().count()]).max().unwrap_or(1))
        .collect();
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", "\u{a0}".repeat(w - c.chars().count())))
            .collect::<Vec<_>>()
            .join("\u{a0}\u{a0}")
            .trim_end_matches('\u{a0}')
            .to_string()
    };
    let mut out = vec![line(&header)];
    out.push(widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("\u{a0}\u{a0}"));
    out.extend(body.iter().map(|r| line(r)));
    let total = total_rows.unwrap_or(p.rows.len() as u64);
    let mut note = format!("{rows} of {total} rows");
    if cols < p.columns.len() {
        note.push_str(&format!(", {cols} of {} columns", p.columns.len()));
    }
    note.push_str(" shown");
    if p.truncated && total_rows.is_none() {
        note.push_str(" (the result has more)");
    }
    (out.join("\n"), note)
}

/// Plain text for Chat's text format: truncated, and `<` defused so user content cannot mention
/// (`<users/all>`) or link.
fn plain(s: &str, max: usize) -> String {
    let (t, cut) = truncate(s.trim(), max);
    let mut out = t.replace('<', "<\u{200b}");
    if cut {
        out.push('…');
    }
    out
}

/// Code for a text-format fence: truncated, fences and `<` defused.
fn plain_code(s: &str, max: usize) -> String {
    let s = crate::spec::text::escape_hidden(s);
    let (t, cut) = truncate(s.trim(), max);
    let mut out = t.replace("```", "`\u{200b}``").replace('<', "<\u{200b}");
    if cut {
        out.push_str("\n…");
    }
    out
}

/// The first `max` characters of `s`, and whether anything was cut.
fn truncate(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((i, _)) => (s[..i].to_string(), true),
        None => (s.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::spec::*;

    const HOOK: &str =
        "https://chat.googleapis.com/v1/spaces/AAAAxyz/messages?key=AIzaSyKEYKEYKEY&token=tok3n-s3cr3t%3D";

    fn request(phase: Phase) -> QueryRequest {
        QueryRequest {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: ObjectMeta {
                name: "top-customers".into(),
                namespace: Some("growth".into()),
                uid: Some("uid-1".into()),
                generation: Some(2),
                annotations: [(REQUESTER_ANNOTATION.to_string(), "alice".to_string())].into(),
                ..Default::default()
            },
            spec: QueryRequestSpec {
                question: Some("Who spent the most <b>& why</b>? <users/all>".into()),
                catalog: CatalogRef { database: "tpch".into(), tables: vec![] },
                ..Default::default()
            },
            status: Some(QueryRequestStatus {
                phase,
                observed_generation: 2,
                approval_round: 1,
                generated: Some(Generated {
                    sql: "select c_name, sum(o_totalprice) as total\nfrom orders\n  join customer on c_custkey = o_custkey\nwhere o_comment <> 'x' and 1 < 2\ngroup by 1 order by 2 desc limit 10".into(),
                    sql_digest: "0123456789abcdef".repeat(4),
                    explanation: "Sums <totals> per customer".into(),
                    confidence: 0.87,
                    tables_used: vec!["orders".into(), "customer".into()],
                    model: "offline".into(),
                    ..Default::default()
                }),
                estimate: Some(Estimate { bytes: 3 * 1024 * 1024, cost_usd: 0.00002, method: "footer".into() }),
                ..Default::default()
            }),
        }
    }

    fn done(rows: usize, cols: usize) -> QueryRequest {
        let mut r = request(Phase::Done);
        let st = r.status.as_mut().unwrap();
        // From JSON, so fields added to the type later keep their defaults here.
        st.approval = Some(
            serde_json::from_value(json!({
                "decision": "Approve", "by": "bob", "at": "2026-01-01T00:00:00Z", "generation": 2,
                "sqlDigest": "d", "decisionId": "x",
            }))
            .unwrap(),
        );
        st.execution = Some(Execution {
            token: "t".into(),
            attempt: 1,
            state: "Succeeded".into(),
            rows: Some(rows as u64),
            bytes_scanned: Some(5 * 1024 * 1024),
            cost_usd: Some(0.031),
            duration_ms: Some(1_500),
            output_location: Some("s3://results/growth/top-customers/abc.csv".into()),
            chart_location: Some("s3://results/growth/top-customers/abc.svg".into()),
            preview: Some(Preview {
                columns: (0..cols).map(|i| format!("col{i}")).collect(),
                rows: (0..rows)
                    .map(|r| (0..cols).map(|c| if c == 1 { None } else { Some(format!("<v{r}.{c}>")) }).collect())
                    .collect(),
                truncated: false,
            }),
            ..Default::default()
        });
        r
    }

    fn texts(v: &Value) -> String {
        v.to_string()
    }

    #[test]
    fn the_approval_card_has_everything_needed_to_decide_and_escapes_user_content() {
        let opts = ChatOptions {
            console_url: Some(parse_console_url("https://console.example.com/sqlctl/").unwrap()),
            ..Default::default()
        };
        let m = approval_message(&request(Phase::AwaitingApproval), &opts);
        let card = &m.card["cardsV2"][0];
        assert_eq!(card["cardId"], "sqlctl-approval");
        assert_eq!(card["card"]["header"]["title"], "Approval needed: top-customers");
        assert_eq!(card["card"]["header"]["subtitle"], "growth · generation 2 · round 1");
        let all = texts(&m.card);
        assert!(all.contains("Who spent the most &lt;b&gt;&amp; why&lt;/b&gt;? &lt;users/all&gt;"), "{all}");
        assert!(!all.contains("<users/all>") && !all.contains("<b>&"), "user content never becomes markup: {all}");
        assert!(all.contains("<code>select c_name"), "SQL in monospace: {all}");
        assert!(all.contains("<br>\u{a0}\u{a0}join customer"), "line breaks and indentation kept: {all}");
        assert!(all.contains("o_comment &lt;&gt; &#39;x&#39; and 1 &lt; 2"), "{all}");
        assert!(all.contains("Sums &lt;totals&gt; per customer"), "{all}");
        assert!(all.contains("87%"), "{all}");
        assert!(all.contains("tpch · orders, customer"), "{all}");
        assert!(all.contains("3.0 MiB scanned, about &lt;$0.0001 (footer)"), "{all}");
        assert!(all.contains("alice"), "{all}");
        assert!(all.contains("sqlctl approve top-customers -n growth --digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), "{all}");
        assert!(
            all.contains("sqlctl refine top-customers -n growth --digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef --feedback &#39;…&#39;"),
            "{all}"
        );
        assert!(all.contains("sqlctl reject top-customers -n growth --digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), "{all}");
        let buttons: Vec<&Value> = card["card"]["sections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["widgets"].as_array().unwrap())
            .filter_map(|w| w.get("buttonList"))
            .collect();
        assert_eq!(buttons.len(), 1);
        assert_eq!(
            buttons[0]["buttons"][0]["onClick"]["openLink"]["url"],
            "https://console.example.com/sqlctl/requests/growth/top-customers"
        );
        // The text forms: the fallback and the plain-text message say the same, mentions defused.
        let text = m.text["text"].as_str().unwrap();
        assert_eq!(m.card["fallbackText"], text);
        assert!(text.contains("`sqlctl approve top-customers -n growth --digest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef`"), "{text}");
        assert!(text.contains("```\nselect c_name"), "{text}");
        assert!(!text.contains("<users/all>"), "{text}");
        // No console URL: no button.
        let plain = approval_message(&request(Phase::AwaitingApproval), &ChatOptions::default());
        assert!(!texts(&plain.card).contains("buttonList"));
        // The id is stable for the same round and changes with the next.
        assert_eq!(plain.request_id, m.request_id);
        let mut next = request(Phase::AwaitingApproval);
        next.status.as_mut().unwrap().approval_round = 2;
        assert_ne!(approval_message(&next, &opts).request_id, m.request_id);
    }

    #[test]
    fn the_result_card_shows_stats_a_small_preview_and_where_the_result_is() {
        let m = finished_message(&done(25, 3), &ChatOptions::default());
        let card = &m.card["cardsV2"][0]["card"];
        assert_eq!(card["header"]["title"], "Done: top-customers");
        let all = texts(&m.card);
        for needle in [
            "\"Rows\"",
            "25",
            "5.0 MiB",
            "$0.03",
            "1s500ms",
            "bob",
            "s3://results/growth/top-customers/abc.csv",
            "abc.svg",
            "sqlctl results top-customers -n growth",
            "10 of 25 rows shown",
            "&lt;v0.0&gt;",
            "NULL",
        ] {
            assert!(all.contains(needle), "{needle} missing: {all}");
        }
        assert!(!all.contains("<v9.0>") && all.contains("&lt;v9.0&gt;") && !all.contains("v10.0"), "{all}");
        // Preview off: no row leaves for chat.
        let off = finished_message(&done(25, 3), &ChatOptions { preview: false, ..Default::default() });
        let all = texts(&off.card) + &texts(&off.text);
        assert!(!all.contains("v0.0") && !all.contains("Preview"), "{all}");
        assert!(all.contains("25") && all.contains("abc.csv"), "{all}");
    }

    #[test]
    fn failure_rejection_and_timeout_cards_say_why() {
        let mut f = request(Phase::Failed);
        f.status.as_mut().unwrap().set_condition("Ready", "False", "QueryFailed", "column x does not exist");
        let all = texts(&finished_message(&f, &ChatOptions::default()).card);
        assert!(
            all.contains("Failed: top-customers")
                && all.contains("QueryFailed")
                && all.contains("column x does not exist"),
            "{all}"
        );
        assert!(all.contains("sqlctl describe top-customers -n growth"), "{all}");

        let mut r = request(Phase::Rejected);
        let st = r.status.as_mut().unwrap();
        st.set_condition("Approved", "False", "Rejected", "rejected by carol: too <expensive>");
        st.set_condition("Ready", "False", "Rejected", "");
        let m = finished_message(&r, &ChatOptions::default());
        let all = texts(&m.card);
        assert!(
            all.contains("Rejected: top-customers") && all.contains("rejected by carol: too &lt;expensive&gt;"),
            "{all}"
        );
        assert!(m.text["text"].as_str().unwrap().starts_with("*Rejected*: growth/top-customers: Rejected"), "{m:?}");

        let mut t = request(Phase::TimedOut);
        let st = t.status.as_mut().unwrap();
        st.set_condition("Approved", "False", "ApprovalTimeout", "no valid decision before the approval deadline");
        st.set_condition("Ready", "False", "ApprovalTimeout", "");
        let all = texts(&finished_message(&t, &ChatOptions::default()).card);
        assert!(
            all.contains("Timed out: top-customers") && all.contains("ApprovalTimeout") && all.contains("deadline"),
            "{all}"
        );
        let ids: std::collections::HashSet<String> =
            [&f, &r, &t].iter().map(|q| finished_message(q, &ChatOptions::default()).request_id).collect();
        assert_eq!(ids.len(), 3, "one id per terminal phase");
    }

    #[test]
    fn huge_content_is_truncated_to_fit_a_chat_message() {
        let mut r = done(200, 40);
        let st = r.status.as_mut().unwrap();
        st.generated.as_mut().unwrap().sql = "select '<&>' as x, ".repeat(5_000);
        st.execution.as_mut().unwrap().preview.as_mut().unwrap().rows.iter_mut().for_each(|row| {
            row.iter_mut().for_each(|c| *c = Some("&".repeat(500)));
        });
        r.spec.question = Some("why? ".repeat(5_000));
        let a = approval_message(&r, &ChatOptions::default());
        let size = a.card.to_string().len();
        assert!(size <= MAX_MESSAGE_BYTES, "{size}");
        assert!(texts(&a.card).contains("SQL truncated"), "a note says so");
        assert!(a.text.to_string().len() <= MAX_MESSAGE_BYTES);
        let f = finished_message(&r, &ChatOptions::default());
        let size = f.card.to_string().len();
        assert!(size <= MAX_MESSAGE_BYTES, "{size}");
        assert!(texts(&f.card).contains("columns shown"), "{}", texts(&f.card));
    }

    #[test]
    fn webhooks_are_validated_and_never_shown() {
        let w = Webhook::parse(HOOK).unwrap();
        let red = w.redacted();
        assert_eq!(red, "https://chat.googleapis.com/v1/spaces/AAAAxyz/messages?key=REDACTED&token=REDACTED");
        assert_eq!(redact_url(HOOK), red);
        assert_eq!(format!("{w:?}"), format!("Webhook({red})"));
        let leaked = format!(
            "error sending request for url ({HOOK}): key AIzaSyKEYKEYKEY token tok3n-s3cr3t= or tok3n-s3cr3t%3D"
        );
        let scrubbed = w.scrub(&leaked);
        assert!(!scrubbed.contains("AIzaSyKEYKEYKEY") && !scrubbed.contains("tok3n-s3cr3t"), "{scrubbed}");
        assert!(redact_url("not a url with token abc").contains("not shown"));
        // https only, except loopback test servers; errors never repeat the URL.
        let e = Webhook::parse("http://chat.example.com/hook?key=SECRETKEY").unwrap_err();
        assert!(e.contains("https://") && !e.contains("SECRETKEY"), "{e}");
        assert!(Webhook::parse("http://127.0.0.1:9/v1?key=k").is_ok());
        assert!(Webhook::parse("http://localhost:9/v1?key=k").is_ok());
        let e = Webhook::parse("chat.googleapis.com/v1?key=SECRETKEY").unwrap_err();
        assert!(!e.contains("SECRETKEY"), "{e}");
        // The post URL keeps key and token, adds the thread and idempotency parameters once.
        let u = Webhook::parse(&format!("{HOOK}&threadKey=old")).unwrap().post_url("sqlctl-ns-q-uid", "rid");
        let pairs: Vec<(String, String)> = u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(
            pairs,
            vec![
                ("key".into(), "AIzaSyKEYKEYKEY".into()),
                ("token".into(), "tok3n-s3cr3t=".into()),
                ("threadKey".into(), "sqlctl-ns-q-uid".into()),
                ("messageReplyOption".into(), "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD".into()),
                ("requestId".into(), "rid".into()),
            ]
        );
    }

    #[test]
    fn secrets_hold_a_url_or_json_with_one() {
        assert_eq!(parse_secret(&format!("  {HOOK}\n")).unwrap().redacted(), redact_url(HOOK));
        assert_eq!(parse_secret(&json!({"url": HOOK}).to_string()).unwrap().redacted(), redact_url(HOOK));
        assert_eq!(parse_secret(&json!({"webhookUrl": HOOK}).to_string()).unwrap().redacted(), redact_url(HOOK));
        let e = parse_secret(r#"{"token": "SECRETVALUE"}"#).unwrap_err();
        assert!(e.contains("\"url\"") && !e.contains("SECRETVALUE"), "{e}");
        let e = parse_secret("{SECRETVALUE").unwrap_err();
        assert!(!e.contains("SECRETVALUE"), "{e}");
    }

    #[test]
    fn escaping_and_retry_after() {
        assert_eq!(esc("<a href=\"x\">'&'</a>\u{7}"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(plain("hi <users/all>", 100), "hi <\u{200b}users/all>");
        assert_eq!(truncate("héllo", 2), ("hé".to_string(), true));
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let d = parse_retry_after(&later).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            error_message(r#"{"error":{"code":400,"message":"Invalid JSON payload","status":"INVALID_ARGUMENT"}}"#),
            "Invalid JSON payload"
        );
        assert_eq!(thread_key(&request(Phase::Done)), "sqlctl-growth-top-customers-uid-1");
        assert_eq!(request_id(&["a", "b"]).len(), 36);
        assert_ne!(request_id(&["ab", ""]), request_id(&["a", "b"]), "length-prefixed parts");
    }

    // -----------------------------------------------------------------------------------------
    // Against a recording loopback server.

    #[derive(Clone, Debug)]
    struct Seen {
        query: BTreeMap<String, String>,
        body: Value,
    }

    type Script = dyn Fn(usize) -> (u16, Vec<(&'static str, String)>, Duration) + Send + Sync;

    struct Server {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    async fn server(
        script: impl Fn(usize) -> (u16, Vec<(&'static str, String)>, Duration) + Send + Sync + 'static,
    ) -> Server {
        let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
        let script: Arc<Script> = Arc::new(script);
        let n = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = seen.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
            let (s, script, n) = (s.clone(), script.clone(), n.clone());
            async move {
                let query = Url::parse(&format!("http://x/?{}", uri.query().unwrap_or("")))
                    .unwrap()
                    .query_pairs()
                    .into_owned()
                    .collect();
                s.lock().unwrap().push(Seen { query, body: serde_json::from_slice(&body).unwrap_or(Value::Null) });
                let (status, headers, delay) = script(n.fetch_add(1, Ordering::SeqCst));
                tokio::time::sleep(delay).await;
                let mut b = axum::response::Response::builder().status(status);
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                b.body(axum::body::Body::from(r#"{"error":{"message":"backend says no"}}"#)).unwrap()
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server {
            url: format!("http://127.0.0.1:{port}/v1/spaces/AAAA/messages?key=KEYSECRET123&token=TOKSECRET456"),
            seen,
        }
    }

    fn fast() -> ChatOptions {
        ChatOptions {
            timeout: Duration::from_millis(400),
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(80),
            max_retry_after: Duration::from_secs(2),
            breaker_cooldown: Duration::from_millis(300),
            ..Default::default()
        }
    }

    fn chat(url: &str, opts: ChatOptions) -> GoogleChat {
        GoogleChat::new(WebhookSource::Fixed(Webhook::parse(url).unwrap()), opts).unwrap()
    }

    fn no_secret(d: &Delivery) {
        let s = format!("{d:?}");
        assert!(!s.contains("KEYSECRET123") && !s.contains("TOKSECRET456"), "{s}");
    }

    #[tokio::test]
    async fn rate_limits_are_retried_after_retry_after_and_messages_share_a_thread() {
        let srv = server(|n| match n {
            0 => (429, vec![("retry-after", "1".into())], Duration::ZERO),
            _ => (200, vec![], Duration::ZERO),
        })
        .await;
        let c = chat(&srv.url, fast());
        let start = Instant::now();
        let d = c.approval_requested(&request(Phase::AwaitingApproval)).await.unwrap();
        assert!(d.is_complete(), "{d:?}");
        assert!(start.elapsed() >= Duration::from_millis(950), "Retry-After honoured: {:?}", start.elapsed());
        assert!(c.finished(&done(3, 2)).await.unwrap().is_complete());
        let seen = srv.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].query["requestId"], seen[1].query["requestId"], "a retry is the same request");
        assert_ne!(seen[1].query["requestId"], seen[2].query["requestId"]);
        for s in &seen {
            assert_eq!(s.query["threadKey"], "sqlctl-growth-top-customers-uid-1");
            assert_eq!(s.query["messageReplyOption"], "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD");
            assert_eq!(s.query["key"], "KEYSECRET123");
        }
        assert_eq!(seen[1].body["cardsV2"][0]["cardId"], "sqlctl-approval");
        assert_eq!(seen[2].body["cardsV2"][0]["cardId"], "sqlctl-finished-done");
    }

    #[tokio::test]
    async fn server_errors_give_up_after_the_bound_and_open_the_circuit() {
        let srv = server(|_| (500, vec![], Duration::ZERO)).await;
        let c = chat(&srv.url, ChatOptions { breaker_threshold: 2, ..fast() });
        let req = request(Phase::AwaitingApproval);
        let d = c.approval_requested(&req).await.unwrap();
        no_secret(&d);
        assert_eq!(d.undelivered[0].reason, REASON_DELIVERY_FAILED);
        assert!(d.undelivered[0].message.contains("after 3 attempts"), "{d:?}");
        assert!(d.undelivered[0].message.contains("HTTP 500: backend says no"), "{d:?}");
        assert!(d.undelivered[0].message.contains("key=REDACTED&token=REDACTED"), "{d:?}");
        assert_eq!(srv.seen.lock().unwrap().len(), 3);
        // Second failure opens the circuit; the third message is skipped without a request.
        assert_eq!(c.finished(&done(1, 1)).await.unwrap().undelivered[0].reason, REASON_DELIVERY_FAILED);
        assert_eq!(srv.seen.lock().unwrap().len(), 6);
        let start = Instant::now();
        let d = c.approval_requested(&req).await.unwrap();
        assert_eq!(d.undelivered[0].reason, REASON_CIRCUIT_OPEN, "{d:?}");
        // No request and no wait: far below one attempt's 5 s timeout even on a loaded machine.
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(srv.seen.lock().unwrap().len(), 6);
        assert!(c.breaker.is_open());
        // After the cool-down one probe (a single attempt) goes through.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let d = c.approval_requested(&req).await.unwrap();
        assert_eq!(d.undelivered[0].reason, REASON_DELIVERY_FAILED);
        assert!(d.undelivered[0].message.contains("after 1 attempt:"), "{d:?}");
        assert_eq!(srv.seen.lock().unwrap().len(), 7);
    }

    #[tokio::test]
    async fn a_hanging_webhook_times_out_within_the_bound() {
        let srv = server(|_| (200, vec![], Duration::from_secs(5))).await;
        let c = chat(&srv.url, ChatOptions { attempts: 2, ..fast() });
        let start = Instant::now();
        let d = c.finished(&done(1, 1)).await.unwrap();
        let took = start.elapsed();
        no_secret(&d);
        assert_eq!(d.undelivered[0].reason, REASON_DELIVERY_FAILED);
        assert!(d.undelivered[0].message.contains("timed out after 400ms"), "{d:?}");
        assert!(took < Duration::from_millis(1_500), "2 × 400 ms + backoff: {took:?}");
    }

    #[tokio::test]
    async fn a_refused_card_is_sent_as_text_and_a_bad_webhook_is_reported() {
        let srv = server(|n| if n == 0 { (400, vec![], Duration::ZERO) } else { (200, vec![], Duration::ZERO) }).await;
        let c = chat(&srv.url, fast());
        assert!(c.approval_requested(&request(Phase::AwaitingApproval)).await.unwrap().is_complete());
        let seen = srv.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].body.get("cardsV2").is_some() && seen[1].body.get("cardsV2").is_none());
        assert!(seen[1].body["text"].as_str().unwrap().contains("sqlctl approve top-customers"));
        assert_ne!(seen[0].query["requestId"], seen[1].query["requestId"]);

        let gone = server(|_| (404, vec![], Duration::ZERO)).await;
        let c = chat(&gone.url, fast());
        let d = c.finished(&done(1, 1)).await.unwrap();
        no_secret(&d);
        assert_eq!(d.undelivered[0].reason, REASON_REJECTED);
        assert!(
            d.undelivered[0].message.contains("HTTP 404") && d.undelivered[0].message.contains("after 1 attempt"),
            "{d:?}"
        );
        assert_eq!(gone.seen.lock().unwrap().len(), 1, "a 404 is not retried");

        // Nothing listens: connection refused, redacted.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let c = chat(
            &format!("http://127.0.0.1:{port}/x?key=KEYSECRET123&token=TOKSECRET456"),
            ChatOptions { attempts: 1, ..fast() },
        );
        let d = c.finished(&done(1, 1)).await.unwrap();
        no_secret(&d);
        assert!(d.undelivered[0].message.contains("could not connect"), "{d:?}");
    }

    mod against_moto {
        use super::*;
        use crate::aws::testing::{config_for, moto_url, unique};

        #[tokio::test]
        async fn the_webhook_is_read_from_secrets_manager() {
            let Some(url) = moto_url() else { return };
            let conf = config_for(&url).await;
            let sm = crate::aws::secretsmanager(&conf);
            let srv = server(|_| (200, vec![], Duration::ZERO)).await;
            let name = unique("gchat-webhook");
            let arn = sm
                .create_secret()
                .name(&name)
                .secret_string(json!({ "url": srv.url }).to_string())
                .send()
                .await
                .unwrap()
                .arn()
                .unwrap()
                .to_string();
            let c =
                GoogleChat::new(WebhookSource::SecretsManager(SecretWebhook::new(sm.clone(), &arn)), fast()).unwrap();
            let shown = c.check().await.unwrap();
            assert!(shown.ends_with("key=REDACTED&token=REDACTED"), "{shown}");
            assert!(c.approval_requested(&request(Phase::AwaitingApproval)).await.unwrap().is_complete());
            assert_eq!(srv.seen.lock().unwrap().len(), 1);
            assert_eq!(srv.seen.lock().unwrap()[0].query["token"], "TOKSECRET456");

            // A missing secret: a clear reason, nothing sent.
            let missing = GoogleChat::new(
                WebhookSource::SecretsManager(SecretWebhook::new(sm.clone(), format!("{arn}-missing"))),
                fast(),
            )
            .unwrap();
            let d = missing.finished(&done(1, 1)).await.unwrap();
            assert_eq!(d.undelivered[0].reason, REASON_WEBHOOK_UNAVAILABLE, "{d:?}");
            assert!(d.undelivered[0].message.contains("GetSecretValue"), "{d:?}");
            // A secret that is no webhook: refused without repeating it.
            let bad = unique("gchat-bad");
            let bad_arn = sm
                .create_secret()
                .name(&bad)
                .secret_string("ftp://SECRETHOST/x")
                .send()
                .await
                .unwrap()
                .arn()
                .unwrap()
                .to_string();
            let e = SecretWebhook::new(sm, bad_arn).fetch().await.unwrap_err();
            assert!(e.contains("https://") && !e.contains("SECRETHOST"), "{e}");
        }
    }
}
