//! Claude (or another tool-using model) on Amazon Bedrock through the Converse API.
//!
//! The model answers by calling the one tool [`TOOL_NAME`], whose input schema is generated from
//! [`SqlProposal`], with a *forced* tool choice: the reply is a `toolUse` block holding JSON that
//! either deserializes into a proposal or is [`GenerateError::Malformed`] (the controller then makes
//! another attempt with that error in the prompt). SQL is never scraped out of prose.
//!
//! Configuration comes from the standard AWS chain (`aws_config::defaults`): region from
//! `AWS_REGION` (or `--bedrock-region`), credentials from the environment, profile, SSO-less
//! container or instance roles, and an endpoint override from `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, which is how the tests point the real SDK at a loopback
//! server. The SDK's own retries are turned off so that one policy ([`Retry`]: bounded,
//! exponential, jittered) decides how long a reconcile may wait for a throttled model; past it the
//! error is [`GenerateError::Transient`] and the controller requeues with its own backoff.
//!
//! Forced tool choice (`toolChoice: {tool: {name}}`) is supported by Anthropic Claude 3+, Amazon
//! Nova and Mistral Large models on Bedrock; other models refuse it with a ValidationException.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseOutput as ConverseReply, InferenceConfiguration, Message,
    SpecificToolChoice, SystemContentBlock, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::{Document, Number};
use backon::Retryable as _;

use super::prompt::{self, Prompt, PromptOptions, Retry, TOOL_DESCRIPTION, TOOL_NAME};
use super::{GenerateError, GenerateInput, Generator, SqlProposal};

/// An example model id for error messages and docs (Claude 3.5 Sonnet v2). Bedrock model ids and
/// cross-region inference profiles (`us.anthropic…`, `eu.anthropic…`) differ by account and
/// region, so sqlctl requires one to be configured instead of guessing.
pub const EXAMPLE_MODEL: &str = "anthropic.claude-3-5-sonnet-20241022-v2:0";

/// Knobs of the Bedrock provider; `Default` is what `sqlctl controller` uses.
#[derive(Clone, Debug, PartialEq)]
pub struct BedrockOptions {
    /// Region of the Bedrock endpoint when it differs from the SDK's (`AWS_REGION`): models are
    /// enabled per region, often not the one that holds the data.
    pub region: Option<String>,
    /// What goes into the prompt.
    pub prompt: PromptOptions,
    /// Retries of throttling, 5xx and timeouts.
    pub retry: Retry,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one call (the model writes one short SQL statement).
    pub request_timeout: Duration,
    /// Cap on output tokens: a proposal is short; a runaway reply costs money.
    pub max_tokens: i32,
}

impl Default for BedrockOptions {
    fn default() -> Self {
        BedrockOptions {
            region: None,
            prompt: PromptOptions::default(),
            retry: Retry::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_tokens: 2048,
        }
    }
}

/// A [`Generator`] backed by the Bedrock Converse API.
#[derive(Debug)]
pub struct BedrockGenerator {
    client: Client,
    model: String,
    opts: BedrockOptions,
    tools: ToolConfiguration,
}

impl BedrockGenerator {
    /// Loads the standard AWS configuration (region, credentials, endpoint overrides) and builds
    /// the client. Fails when no region is configured, since every call would fail.
    pub async fn new(model: String, opts: BedrockOptions) -> anyhow::Result<Self> {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::from_sdk_config(model, &sdk, opts)
    }

    /// Builds the client from an already loaded [`aws_config::SdkConfig`] (shared with the other
    /// AWS clients of the process, or made by a test).
    pub fn from_sdk_config(model: String, sdk: &aws_config::SdkConfig, opts: BedrockOptions) -> anyhow::Result<Self> {
        if model.trim().is_empty() {
            anyhow::bail!(
                "the Bedrock model id is empty: pass --model or set SQLCTL_BEDROCK_MODEL (e.g. {EXAMPLE_MODEL})"
            );
        }
        let mut conf =
            aws_sdk_bedrockruntime::config::Builder::from(sdk).retry_config(RetryConfig::disabled()).timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(opts.connect_timeout)
                    .operation_attempt_timeout(opts.request_timeout)
                    .build(),
            );
        if let Some(r) = &opts.region {
            conf = conf.region(Region::new(r.clone()));
        }
        // `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` wins over the global override, as the SDKs document.
        if let Some(url) = crate::aws::service_endpoint("BEDROCK_RUNTIME") {
            conf = conf.endpoint_url(url);
        }
        let conf = conf.build();
        if conf.region().is_none() {
            anyhow::bail!("no AWS region for Bedrock: set AWS_REGION (or --bedrock-region / SQLCTL_BEDROCK_REGION)");
        }
        Ok(BedrockGenerator { client: Client::from_conf(conf), model, opts, tools: tool_configuration()? })
    }

    /// One Converse call with the retry policy applied.
    async fn converse(&self, prompt: &Prompt) -> Result<ConverseOutput, GenerateError> {
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(prompt.user.clone()))
            .build()
            .map_err(|e| GenerateError::Malformed(format!("building the Bedrock request: {e}")))?;
        let call = || async {
            self.client
                .converse()
                .model_id(&self.model)
                .system(SystemContentBlock::Text(prompt.system.clone()))
                .messages(message.clone())
                .tool_config(self.tools.clone())
                .inference_config(
                    InferenceConfiguration::builder().max_tokens(self.opts.max_tokens).temperature(0.0).build(),
                )
                .send()
                .await
                .map_err(classify)
        };
        let tries = self.opts.retry.tries;
        call.retry(self.opts.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &CallError| matches!(e, CallError::Retry(_)))
            .notify(|e, after| tracing::warn!(model = %self.model, error = %e, retry_in = ?after, "Bedrock call failed; retrying"))
            .await
            .map_err(|e| match e {
                CallError::Retry(m) => GenerateError::Transient(format!("Bedrock model {}: {m} (gave up after {tries} tries)", self.model)),
                CallError::Fail(e) => e,
            })
    }
}

#[async_trait]
impl Generator for BedrockGenerator {
    fn model(&self) -> String {
        format!("bedrock/{}", self.model)
    }

    async fn generate(&self, input: &GenerateInput) -> Result<(SqlProposal, Option<(u64, u64)>), GenerateError> {
        let prompt = prompt::build(input, &self.opts.prompt);
        let started = std::time::Instant::now();
        let out = self.converse(&prompt).await?;
        let usage = out.usage().map(|u| (u.input_tokens().max(0) as u64, u.output_tokens().max(0) as u64));
        tracing::debug!(model = %self.model, ?usage, elapsed_ms = started.elapsed().as_millis() as u64, stop_reason = %out.stop_reason(), "Bedrock replied");
        Ok((proposal_from_output(&out)?, usage))
    }
}

/// The `toolConfig` of every request: the answer tool with the schemars schema, forced.
fn tool_configuration() -> anyhow::Result<ToolConfiguration> {
    let spec = ToolSpecification::builder()
        .name(TOOL_NAME)
        .description(TOOL_DESCRIPTION)
        .input_schema(ToolInputSchema::Json(value_to_document(&prompt::tool_schema())))
        .build()?;
    Ok(ToolConfiguration::builder()
        .tools(Tool::ToolSpec(spec))
        .tool_choice(ToolChoice::Tool(SpecificToolChoice::builder().name(TOOL_NAME).build()?))
        .build()?)
}

/// How one failed call is handled.
#[derive(Debug)]
enum CallError {
    /// Throttling, 5xx, timeouts, network: worth another try after a pause.
    Retry(String),
    /// Not worth retrying here: the error for the controller as is.
    Fail(GenerateError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Retry(m) => f.write_str(m),
            CallError::Fail(e) => e.fmt(f),
        }
    }
}

/// Sorts an SDK error into retry / configuration problem / unusable request.
///
/// Configuration problems (credentials, IAM, a model not enabled in the region) are
/// [`GenerateError::Transient`] without retries here: they are the operator's to fix, not the
/// request's fault, so the controller keeps requeueing with backoff instead of failing requests.
/// A request Bedrock refuses as invalid (e.g. a prompt over the model's context) is
/// [`GenerateError::Malformed`]: it counts as a failed attempt and the request ends Failed with
/// the reason when every attempt fails.
fn classify(err: SdkError<ConverseError>) -> CallError {
    match &err {
        SdkError::TimeoutError(_) => CallError::Retry("timed out".into()),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            CallError::Retry(format!("{}", DisplayErrorContext(&err)))
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_string();
            let message = format!(
                "{} (HTTP {status}): {}",
                if code.is_empty() { "error" } else { &code },
                se.err().message().unwrap_or("")
            );
            match code.as_str() {
                "ThrottlingException"
                | "ServiceUnavailableException"
                | "InternalServerException"
                | "ModelNotReadyException"
                | "ModelTimeoutException" => CallError::Retry(message),
                "AccessDeniedException"
                | "ResourceNotFoundException"
                | "UnrecognizedClientException"
                | "ExpiredTokenException"
                | "InvalidSignatureException" => CallError::Fail(GenerateError::Transient(format!(
                    "Bedrock refused the call, check the controller's configuration: {message}"
                ))),
                _ if status == 429 || status >= 500 => CallError::Retry(message),
                _ if status == 401 || status == 403 || status == 404 => CallError::Fail(GenerateError::Transient(
                    format!("Bedrock refused the call, check the controller's configuration: {message}"),
                )),
                _ => CallError::Fail(GenerateError::Malformed(format!("Bedrock refused the request: {message}"))),
            }
        }
        // Construction failures are configuration (no region, no credentials): fix and requeue.
        _ => CallError::Fail(GenerateError::Transient(format!("calling Bedrock: {}", DisplayErrorContext(&err)))),
    }
}

/// The proposal in a Converse reply: the input of the `answer_with_sql` tool-use block.
fn proposal_from_output(out: &ConverseOutput) -> Result<SqlProposal, GenerateError> {
    let Some(ConverseReply::Message(msg)) = out.output() else {
        return Err(GenerateError::Malformed("Bedrock returned no message".into()));
    };
    let tool = msg.content().iter().find_map(|b| match b {
        ContentBlock::ToolUse(t) if t.name() == TOOL_NAME => Some(t),
        _ => None,
    });
    match tool {
        Some(t) => prompt::proposal_from_json(document_to_value(t.input())),
        None => {
            let text: String =
                msg.content().iter().filter_map(|b| b.as_text().ok()).cloned().collect::<Vec<_>>().join(" ");
            let preview: String = text.chars().take(200).collect();
            Err(GenerateError::Malformed(format!(
                "the model did not call {TOOL_NAME} (stop reason {}){}",
                out.stop_reason(),
                if preview.is_empty() { String::new() } else { format!("; it wrote: {preview:?}") }
            )))
        }
    }
}

/// JSON → Smithy document (the tool's input schema).
fn value_to_document(v: &serde_json::Value) -> Document {
    match v {
        serde_json::Value::Null => Document::Null,
        serde_json::Value::Bool(b) => Document::Bool(*b),
        serde_json::Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        serde_json::Value::String(s) => Document::String(s.clone()),
        serde_json::Value::Array(a) => Document::Array(a.iter().map(value_to_document).collect()),
        serde_json::Value::Object(o) => {
            Document::Object(o.iter().map(|(k, v)| (k.clone(), value_to_document(v))).collect::<HashMap<_, _>>())
        }
    }
}

/// Smithy document → JSON (the tool-use input), for serde to deserialize.
fn document_to_value(d: &Document) -> serde_json::Value {
    match d {
        Document::Null => serde_json::Value::Null,
        Document::Bool(b) => serde_json::Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => (*u).into(),
        Document::Number(Number::NegInt(i)) => (*i).into(),
        Document::Number(Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
        }
        Document::String(s) => serde_json::Value::String(s.clone()),
        Document::Array(a) => serde_json::Value::Array(a.iter().map(document_to_value).collect()),
        Document::Object(o) => {
            serde_json::Value::Object(o.iter().map(|(k, v)| (k.clone(), document_to_value(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::types::{StopReason, ToolUseBlock};

    fn reply(content: Vec<ContentBlock>, stop: StopReason) -> ConverseOutput {
        ConverseOutput::builder()
            .output(ConverseReply::Message(
                Message::builder().role(ConversationRole::Assistant).set_content(Some(content)).build().unwrap(),
            ))
            .stop_reason(stop)
            .build()
            .unwrap()
    }

    fn tool_use(name: &str, input: serde_json::Value) -> ContentBlock {
        ContentBlock::ToolUse(
            ToolUseBlock::builder().tool_use_id("t1").name(name).input(value_to_document(&input)).build().unwrap(),
        )
    }

    #[test]
    fn documents_round_trip_json() {
        let v = serde_json::json!({"a": [1, -2, 2.5, "x", true, null], "b": {"c": "d"}});
        assert_eq!(document_to_value(&value_to_document(&v)), v);
    }

    #[test]
    fn the_tool_is_forced_and_carries_the_schemars_schema() {
        let t = tool_configuration().unwrap();
        match t.tool_choice() {
            Some(ToolChoice::Tool(c)) => assert_eq!(c.name(), TOOL_NAME),
            other => panic!("{other:?}"),
        }
        let Tool::ToolSpec(spec) = &t.tools()[0] else { panic!() };
        let Some(ToolInputSchema::Json(schema)) = spec.input_schema() else { panic!() };
        assert_eq!(document_to_value(schema), prompt::tool_schema());
    }

    #[test]
    fn a_tool_use_block_becomes_a_proposal() {
        let out = reply(
            vec![
                ContentBlock::Text("thinking".into()),
                tool_use(TOOL_NAME, serde_json::json!({"sql": "select 1", "confidence": 0.8})),
            ],
            StopReason::ToolUse,
        );
        let p = proposal_from_output(&out).unwrap();
        assert_eq!((p.sql.as_str(), p.confidence), ("select 1", 0.8));
    }

    #[test]
    fn replies_without_the_tool_or_with_bad_input_are_malformed() {
        let text_only = reply(vec![ContentBlock::Text("SELECT 1".into())], StopReason::EndTurn);
        match proposal_from_output(&text_only) {
            Err(GenerateError::Malformed(m)) => assert!(m.contains("did not call") && m.contains("SELECT 1"), "{m}"),
            other => panic!("{other:?}"),
        }
        let other_tool = reply(vec![tool_use("other", serde_json::json!({"sql": "select 1"}))], StopReason::ToolUse);
        assert!(matches!(proposal_from_output(&other_tool), Err(GenerateError::Malformed(_))));
        let bad = reply(vec![tool_use(TOOL_NAME, serde_json::json!({"sql": ["x"]}))], StopReason::ToolUse);
        assert!(matches!(proposal_from_output(&bad), Err(GenerateError::Malformed(_))));
        let none = ConverseOutput::builder().stop_reason(StopReason::EndTurn).build().unwrap();
        assert!(matches!(proposal_from_output(&none), Err(GenerateError::Malformed(_))));
    }

    #[tokio::test]
    async fn a_model_id_and_a_region_are_required() {
        let sdk = aws_config::SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        let e = BedrockGenerator::from_sdk_config("m".into(), &sdk, BedrockOptions::default()).unwrap_err();
        assert!(e.to_string().contains("AWS_REGION"), "{e}");
        let e = BedrockGenerator::from_sdk_config(" ".into(), &sdk, BedrockOptions::default()).unwrap_err();
        assert!(e.to_string().contains("--model"), "{e}");
        let g = BedrockGenerator::from_sdk_config(
            "m".into(),
            &sdk,
            BedrockOptions { region: Some("us-west-2".into()), ..Default::default() },
        )
        .unwrap();
        assert_eq!(g.model(), "bedrock/m");
    }
}
