//! Sending: [`GoogleChat`], the notifier. One message goes through the circuit breaker, gets the
//! webhook, is posted with bounded retries (capped exponential backoff with jitter, honouring
//! `Retry-After`) and, when Chat refuses the card, once more as plain text; what happened is
//! counted in the notifier's [`ChatMetrics`] and returned as a [`Delivery`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Url;
use serde_json::Value;

use super::breaker::{Admit, Breaker};
use super::cards::{ChatMessage, approval_message, finished_message_with_image, request_id, thread_key};
use super::html::truncate;
use super::metrics::ChatMetrics;
use super::webhook::{Webhook, WebhookSource};
use super::{
    CHANNEL, ChatOptions, REASON_CIRCUIT_OPEN, REASON_DELIVERY_FAILED, REASON_REJECTED, REASON_WEBHOOK_UNAVAILABLE,
};
use crate::notify::{Delivery, Notifier, NotifyError};
use crate::spec::QueryRequest;
use crate::spec::quantity::format_duration;

/// Posts cards to a Google Chat space through its incoming webhook (see the module docs).
pub struct GoogleChat {
    http: reqwest::Client,
    source: WebhookSource,
    opts: ChatOptions,
    breaker: Breaker,
    metrics: Arc<ChatMetrics>,
    /// Where chart PNGs are presigned for the result card (with `opts.chart_image_ttl`).
    images: Option<Arc<dyn crate::results::ResultStore>>,
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
    /// Builds the HTTP client (nothing is sent). The notifier counts into `metrics` (see
    /// [`GoogleChat::metrics`]).
    pub fn new(source: WebhookSource, opts: ChatOptions, metrics: Arc<ChatMetrics>) -> Result<GoogleChat, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sqlctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the Google Chat HTTP client: {e}"))?;
        let breaker = Breaker::new(opts.breaker_threshold, opts.breaker_cooldown, metrics.clone());
        Ok(GoogleChat { http, source, opts, breaker, metrics, images: None })
    }

    /// Shows result charts as images, presigned from `results` (when `chart_image_ttl` is set).
    pub fn with_chart_images(mut self, results: Arc<dyn crate::results::ResultStore>) -> Self {
        self.images = Some(results);
        self
    }

    /// The presigned URL of the request's chart PNG, when images are on and one is stored.
    async fn chart_image(&self, req: &QueryRequest) -> Option<String> {
        let (ttl, store) = (self.opts.chart_image_ttl?, self.images.as_ref()?);
        let exec = req.status.as_ref()?.execution.as_ref()?;
        exec.chart_location.as_ref()?;
        let csv = exec.output_location.as_deref()?;
        let png = crate::results::sibling_location(csv, crate::results::Artifact::ChartPng)?;
        match store.presign(&png, ttl).await {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(request = %req.key(), error = %e, "no chart image in the chat card");
                None
            }
        }
    }

    pub fn options(&self) -> &ChatOptions {
        &self.opts
    }

    /// The counters this notifier writes (requests by status, whether the circuit is open), for
    /// whoever renders metrics.
    pub fn metrics(&self) -> &Arc<ChatMetrics> {
        &self.metrics
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
                crate::notify::count(CHANNEL, kind, "skipped");
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
                crate::notify::count(CHANNEL, kind, "failed");
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
                crate::notify::count(CHANNEL, kind, "sent");
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
                crate::notify::count(CHANNEL, kind, "failed");
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
        self.metrics.count_request(&status.to_string());
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
            self.metrics.count_request("timeout");
            format!("timed out after {}", format_duration(self.opts.timeout))
        } else {
            self.metrics.count_request("error");
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
        let image = self.chart_image(req).await;
        Ok(self.deliver(req, "finished", finished_message_with_image(req, &self.opts, image.as_deref())).await)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::notify::gchat::html::{esc, plain};
    use crate::notify::gchat::testing::{done, fast, request, server};
    use crate::spec::Phase;

    fn chat(url: &str, opts: ChatOptions) -> GoogleChat {
        GoogleChat::new(WebhookSource::Fixed(Webhook::parse(url).unwrap()), opts, Default::default()).unwrap()
    }

    fn no_secret(d: &Delivery) {
        let s = format!("{d:?}");
        assert!(!s.contains("KEYSECRET123") && !s.contains("TOKSECRET456"), "{s}");
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
    // Against a recording loopback server (`testing::server`).

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
        // The notifier's own counters (its metrics handle) say the same.
        assert!(c.metrics().circuit_open());
        assert_eq!(c.metrics().request_counts(), BTreeMap::from([("500".to_string(), 6)]));
        // After the cool-down one probe (a single attempt) goes through.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let d = c.approval_requested(&req).await.unwrap();
        assert_eq!(d.undelivered[0].reason, REASON_DELIVERY_FAILED);
        assert!(d.undelivered[0].message.contains("after 1 attempt:"), "{d:?}");
        assert_eq!(srv.seen.lock().unwrap().len(), 7);
        assert!(c.metrics().circuit_open(), "the failed probe re-opened it");
        assert_eq!(c.metrics().request_counts()["500"], 7);
        // Rendered for /metrics from the handle, under the same names as before.
        let mut out = String::new();
        crate::notify::render_metrics(&mut out, Some(c.metrics()));
        assert!(out.contains("\nsqlctl_gchat_requests_total{status=\"500\"} 7\n"), "{out}");
        assert!(out.contains("\nsqlctl_gchat_circuit_open 1\n"), "{out}");
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
}
