//! The webhook URL and where it comes from. It is a credential: [`Webhook`] validates it and
//! knows its secret parts, so every text it touches can be scrubbed of them; [`WebhookSource`]
//! gives it directly or reads it from a Secrets Manager secret ([`SecretWebhook`], cached).

#[cfg(feature = "aws")]
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;

use super::ChatOptions;
#[cfg(feature = "aws")]
use crate::spec::quantity::format_duration;

const REDACTED: &str = "REDACTED";

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
    /// Only with the `aws` feature.
    #[cfg(feature = "aws")]
    SecretsManager(SecretWebhook),
}

impl WebhookSource {
    pub(super) async fn get(&self, opts: &ChatOptions) -> Result<Webhook, String> {
        match self {
            WebhookSource::Fixed(w) => {
                let _ = opts;
                Ok(w.clone())
            }
            #[cfg(feature = "aws")]
            WebhookSource::SecretsManager(s) => s.get(opts.secret_ttl, opts.timeout).await,
        }
    }

    pub(super) async fn invalidate(&self) {
        #[cfg(feature = "aws")]
        if let WebhookSource::SecretsManager(s) = self {
            s.invalidate().await;
        }
    }
}

#[cfg(feature = "aws")]
struct Cached {
    webhook: Webhook,
    fetched: Instant,
    stale: bool,
}

/// The webhook URL in a Secrets Manager secret: the secret string is the URL, or a JSON object
/// with a `url` (or `webhookUrl`, `webhook`) field. Cached for the TTL; a failed re-read keeps
/// using the last good value.
#[cfg(feature = "aws")]
pub struct SecretWebhook {
    client: aws_sdk_secretsmanager::Client,
    arn: String,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

#[cfg(feature = "aws")]
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HOOK: &str =
        "https://chat.googleapis.com/v1/spaces/AAAAxyz/messages?key=AIzaSyKEYKEYKEY&token=tok3n-s3cr3t%3D";

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

    #[cfg(feature = "aws")]
    mod against_moto {
        use super::*;
        use crate::aws::testing::{config_for, moto_url, unique};
        use crate::notify::Notifier;
        use crate::notify::gchat::testing::{done, fast, request, server};
        use crate::notify::gchat::{GoogleChat, REASON_WEBHOOK_UNAVAILABLE};
        use crate::spec::Phase;

        #[tokio::test]
        async fn the_webhook_is_read_from_secrets_manager() {
            let Some(url) = moto_url() else { return };
            let conf = config_for(&url).await;
            let sm = crate::aws::secretsmanager(&conf);
            let srv = server(|_| (200, vec![], Duration::ZERO)).await;
            let secret = |name: &str, value: String| {
                let sm = sm.clone();
                let name = unique(name);
                async move {
                    sm.create_secret().name(name).secret_string(value).send().await.unwrap().arn().unwrap().to_string()
                }
            };
            let arn = secret("gchat-webhook", json!({ "url": srv.url }).to_string()).await;
            let c = GoogleChat::new(
                WebhookSource::SecretsManager(SecretWebhook::new(sm.clone(), &arn)),
                fast(),
                Default::default(),
            )
            .unwrap();
            let shown = c.check().await.unwrap();
            assert!(shown.ends_with("key=REDACTED&token=REDACTED"), "{shown}");
            assert!(c.approval_requested(&request(Phase::AwaitingApproval)).await.unwrap().is_complete());
            assert_eq!(srv.seen.lock().unwrap().len(), 1);
            assert_eq!(srv.seen.lock().unwrap()[0].query["token"], "TOKSECRET456");

            // A missing secret: a clear reason, nothing sent.
            let missing = GoogleChat::new(
                WebhookSource::SecretsManager(SecretWebhook::new(sm.clone(), format!("{arn}-missing"))),
                fast(),
                Default::default(),
            )
            .unwrap();
            let d = missing.finished(&done(1, 1)).await.unwrap();
            assert_eq!(d.undelivered[0].reason, REASON_WEBHOOK_UNAVAILABLE, "{d:?}");
            assert!(d.undelivered[0].message.contains("GetSecretValue"), "{d:?}");
            // A secret that is no webhook: refused without repeating it.
            let bad_arn = secret("gchat-bad", "ftp://SECRETHOST/x".into()).await;
            let e = SecretWebhook::new(sm, bad_arn).fetch().await.unwrap_err();
            assert!(e.contains("https://") && !e.contains("SECRETHOST"), "{e}");
        }
    }
}
