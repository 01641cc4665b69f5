//! Any OpenAI-compatible server (`POST {base_url}/chat/completions`): a local Ollama, llama.cpp or
//! vLLM on a laptop, or OpenAI itself.
//!
//! The request offers one function tool, [`TOOL_NAME`], whose `parameters` are the schemars schema
//! of [`SqlProposal`], and forces it with `tool_choice`; the proposal is parsed from
//! `choices[0].message.tool_calls[…].function.arguments`. Some local servers ignore tools and
//! answer in `content`: then one JSON object is parsed from that text, and anything else is
//! [`GenerateError::Malformed`] (the controller feeds the error back on its next attempt). SQL is
//! never scraped out of prose.
//!
//! The API key is optional (local servers need none). It is read from the environment by the
//! config layer, sent only as `Authorization: Bearer …`, and never logged or printed: the
//! generator's `Debug` output redacts it. 429, 408, 5xx, connect errors and timeouts are retried
//! with the shared bounded [`Retry`] policy (honouring `Retry-After` up to its cap), then become
//! [`GenerateError::Transient`].

use std::time::Duration;

use async_trait::async_trait;
use backon::Retryable as _;
use serde_json::{Value, json};

use super::prompt::{self, Prompt, PromptOptions, Retry, TOOL_DESCRIPTION, TOOL_NAME};
use super::{GenerateError, GenerateInput, Generator, SqlProposal};

/// Knobs of the OpenAI-compatible provider.
#[derive(Clone, PartialEq)]
pub struct OpenAiOptions {
    /// Base URL up to and including the API version, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    /// Bearer token; `None` sends no `Authorization` header (local servers).
    pub api_key: Option<String>,
    /// What goes into the prompt.
    pub prompt: PromptOptions,
    /// Retries of 429, 5xx, connect errors and timeouts.
    pub retry: Retry,
    /// TCP (+ TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one whole call; local models on a CPU can be slow.
    pub request_timeout: Duration,
}

impl OpenAiOptions {
    /// Options for `base_url` with the defaults: no key, 5 s connect, 60 s per call.
    pub fn new(base_url: impl Into<String>) -> Self {
        OpenAiOptions {
            base_url: base_url.into(),
            api_key: None,
            prompt: PromptOptions::default(),
            retry: Retry::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for OpenAiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiOptions")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("prompt", &self.prompt)
            .field("retry", &self.retry)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A [`Generator`] backed by an OpenAI-compatible chat-completions endpoint.
#[derive(Debug)]
pub struct OpenAiGenerator {
    http: reqwest::Client,
    /// `{base_url}/chat/completions`.
    url: reqwest::Url,
    model: String,
    opts: OpenAiOptions,
}

impl OpenAiGenerator {
    /// Validates the base URL and builds the HTTP client (no request is sent).
    pub fn new(model: String, opts: OpenAiOptions) -> anyhow::Result<Self> {
        if model.trim().is_empty() {
            anyhow::bail!("the model name is empty: pass --model (e.g. llama3.1 for Ollama)");
        }
        let base = opts.base_url.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(&format!("{base}/chat/completions"))
            .map_err(|e| anyhow::anyhow!("--openai-base-url {base:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("--openai-base-url {base:?} must be an http:// or https:// URL");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(concat!("sqlctl/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(OpenAiGenerator { http, url, model, opts })
    }

    /// The request body: system + user messages, the answer tool, forced.
    fn body(&self, prompt: &Prompt) -> Value {
        json!({
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            "tools": [{
                "type": "function",
                "function": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "parameters": prompt::tool_schema()},
            }],
            "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
        })
    }

    /// The endpoint for messages: without user info, so a URL with credentials never reaches a log.
    fn endpoint(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_password(None);
        let _ = u.set_username("");
        u.to_string()
    }

    /// One call: the parsed JSON reply, or why not.
    async fn call(&self, body: &Value) -> Result<Value, CallError> {
        let mut req = self.http.post(self.url.clone()).json(body);
        if let Some(key) = &self.opts.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                CallError::Fail(GenerateError::Malformed(format!(
                    "{} replied with something that is not JSON ({e}): {:?}",
                    self.endpoint(),
                    preview(&text)
                )))
            });
        }
        let message =
            format!("{} answered HTTP {}: {}", self.endpoint(), status.as_u16(), preview(&error_message(&text)));
        Err(match status.as_u16() {
            408 | 429 | 500..=599 => CallError::Retry { message, after: retry_after },
            // The operator's to fix (key, URL, a model not pulled): requeue, do not fail requests.
            401 | 403 | 404 => CallError::Fail(GenerateError::Transient(format!(
                "{message}; check --openai-base-url, --model and the API key"
            ))),
            // The server refused this request (e.g. a prompt over the context length): a failed attempt.
            _ => CallError::Fail(GenerateError::Malformed(message)),
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> CallError {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "failed"
        };
        CallError::Retry { message: format!("request to {} {what}: {}", self.endpoint(), e.without_url()), after: None }
    }
}

#[async_trait]
impl Generator for OpenAiGenerator {
    fn model(&self) -> String {
        format!("openai/{}", self.model)
    }

    async fn generate(&self, input: &GenerateInput) -> Result<(SqlProposal, Option<(u64, u64)>), GenerateError> {
        let prompt = prompt::build(input, &self.opts.prompt);
        let body = self.body(&prompt);
        let max_delay = self.opts.retry.max_delay;
        let tries = self.opts.retry.tries;
        let started = std::time::Instant::now();
        let reply = (|| self.call(&body))
            .retry(self.opts.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &CallError| matches!(e, CallError::Retry { .. }))
            .adjust(move |e: &CallError, planned| match (e, planned) {
                (CallError::Retry { after: Some(after), .. }, Some(d)) => Some(d.max(*after).min(max_delay)),
                (_, d) => d,
            })
            .notify(|e, after| tracing::warn!(model = %self.model, error = %e, retry_in = ?after, "model server call failed; retrying"))
            .await
            .map_err(|e| match e {
                CallError::Retry { message, .. } => GenerateError::Transient(format!("{message} (gave up after {tries} tries)")),
                CallError::Fail(e) => e,
            })?;
        let usage = usage(&reply);
        tracing::debug!(model = %self.model, ?usage, elapsed_ms = started.elapsed().as_millis() as u64, "model server replied");
        Ok((proposal_from_reply(&reply)?, usage))
    }
}

/// How one failed call is handled.
#[derive(Debug)]
enum CallError {
    /// Worth another try, after at least `after` when the server said so (Retry-After).
    Retry { message: String, after: Option<Duration> },
    /// The error for the controller as is.
    Fail(GenerateError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Retry { message, .. } => f.write_str(message),
            CallError::Fail(e) => e.fmt(f),
        }
    }
}

fn preview(s: &str) -> String {
    let s = s.trim();
    let mut p: String = s.chars().take(300).collect();
    if p.len() < s.len() {
        p.push('…');
    }
    p
}

/// The `error.message` of an OpenAI-style error body, else the body.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| match &v["error"] {
            Value::String(s) => Some(s.clone()),
            e => e["message"].as_str().map(str::to_string),
        })
        .unwrap_or_else(|| body.to_string())
}

/// `usage.prompt_tokens` / `usage.completion_tokens`, when the server reports them.
fn usage(reply: &Value) -> Option<(u64, u64)> {
    let u = &reply["usage"];
    Some((u["prompt_tokens"].as_u64()?, u["completion_tokens"].as_u64()?))
}

/// The proposal in a chat-completions reply: the answer tool's arguments (a JSON string, or an
/// object from servers that decode it), else one JSON object in `content`.
fn proposal_from_reply(reply: &Value) -> Result<SqlProposal, GenerateError> {
    let msg = &reply["choices"][0]["message"];
    if !msg.is_object() {
        return Err(GenerateError::Malformed(format!(
            "the reply has no choices[0].message: {}",
            preview(&reply.to_string())
        )));
    }
    if let Some(calls) = msg["tool_calls"].as_array().filter(|c| !c.is_empty()) {
        let Some(call) = calls.iter().find(|c| c["function"]["name"] == TOOL_NAME) else {
            let names: Vec<&str> = calls.iter().filter_map(|c| c["function"]["name"].as_str()).collect();
            return Err(GenerateError::Malformed(format!("the model called {names:?} instead of {TOOL_NAME}")));
        };
        return match &call["function"]["arguments"] {
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(v) => prompt::proposal_from_json(v),
                Err(e) => Err(GenerateError::Malformed(format!(
                    "the {TOOL_NAME} arguments are not JSON ({e}): {:?}",
                    preview(s)
                ))),
            },
            v @ Value::Object(_) => prompt::proposal_from_json(v.clone()),
            other => Err(GenerateError::Malformed(format!("the {TOOL_NAME} call has no arguments object: {other}"))),
        };
    }
    match msg["content"].as_str().filter(|c| !c.trim().is_empty()) {
        Some(text) => prompt::proposal_from_text(text),
        None => Err(GenerateError::Malformed(format!("the model neither called {TOOL_NAME} nor wrote an answer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool_reply(args: Value) -> Value {
        json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": TOOL_NAME, "arguments": args}}
        ]}}], "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}})
    }

    #[test]
    fn tool_call_arguments_become_a_proposal_as_string_or_object() {
        let args = json!({"sql": "select 1", "confidence": 0.7});
        let p = proposal_from_reply(&tool_reply(Value::String(args.to_string()))).unwrap();
        assert_eq!((p.sql.as_str(), p.confidence), ("select 1", 0.7));
        assert_eq!(proposal_from_reply(&tool_reply(args)).unwrap(), p);
        assert_eq!(usage(&tool_reply(json!({}))), Some((120, 30)));
        assert_eq!(usage(&json!({})), None);
    }

    #[test]
    fn plain_content_with_a_json_object_is_accepted_and_prose_is_not() {
        let r = json!({"choices": [{"message": {"content": "```json\n{\"sql\": \"select 2\"}\n```"}}]});
        assert_eq!(proposal_from_reply(&r).unwrap().sql, "select 2");
        let r = json!({"choices": [{"message": {"content": "SELECT 2"}}]});
        assert!(matches!(proposal_from_reply(&r), Err(GenerateError::Malformed(_))));
    }

    #[test]
    fn malformed_replies_are_malformed() {
        for r in [
            tool_reply(Value::String("{not json".into())),
            tool_reply(json!({"query": "select 1"})),
            tool_reply(json!(7)),
            json!({"choices": []}),
            json!({"choices": [{"message": {"content": ""}}]}),
            json!({"choices": [{"message": {"tool_calls": [{"function": {"name": "other", "arguments": "{}"}}]}}]}),
        ] {
            assert!(matches!(proposal_from_reply(&r), Err(GenerateError::Malformed(_))), "{r}");
        }
    }

    #[test]
    fn the_request_forces_the_tool_with_the_schemars_schema() {
        let g = OpenAiGenerator::new("m".into(), OpenAiOptions::new("http://127.0.0.1:1/v1/")).unwrap();
        assert_eq!(g.url.as_str(), "http://127.0.0.1:1/v1/chat/completions");
        let b = g.body(&Prompt { system: "S".into(), user: "U".into() });
        assert_eq!(b["tool_choice"], json!({"type": "function", "function": {"name": TOOL_NAME}}));
        assert_eq!(b["tools"][0]["function"]["parameters"], prompt::tool_schema());
        assert_eq!(b["messages"][0], json!({"role": "system", "content": "S"}));
        assert_eq!(b["messages"][1], json!({"role": "user", "content": "U"}));
        assert_eq!(g.model(), "openai/m");
    }

    #[test]
    fn the_key_never_shows_in_debug_output_nor_user_info_in_messages() {
        let g = OpenAiGenerator::new(
            "m".into(),
            OpenAiOptions { api_key: Some("sk-secret".into()), ..OpenAiOptions::new("http://u:p@127.0.0.1:1/v1") },
        )
        .unwrap();
        let dbg = format!("{g:?}");
        assert!(!dbg.contains("sk-secret") && dbg.contains("<redacted>"), "{dbg}");
        assert_eq!(g.endpoint(), "http://127.0.0.1:1/v1/chat/completions");
    }

    #[test]
    fn bad_base_urls_and_empty_models_are_refused() {
        assert!(OpenAiGenerator::new("m".into(), OpenAiOptions::new("not a url")).is_err());
        assert!(OpenAiGenerator::new("m".into(), OpenAiOptions::new("ftp://host/v1")).is_err());
        assert!(OpenAiGenerator::new("".into(), OpenAiOptions::new("http://127.0.0.1:1/v1")).is_err());
    }

    #[test]
    fn error_bodies_yield_their_message() {
        assert_eq!(error_message(r#"{"error": {"message": "model not found"}}"#), "model not found");
        assert_eq!(error_message(r#"{"error": "boom"}"#), "boom");
        assert_eq!(error_message("plain"), "plain");
    }
}
