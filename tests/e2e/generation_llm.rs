//! The LLM providers through their real clients — the AWS SDK's Converse call and reqwest's
//! chat-completions call — against loopback servers that speak each wire format and record every
//! request, first in process (retries, malformed output, the request's shape) and then through the
//! `sqlctl controller` binary (self-correction, a model that never gets it right, refine).
//!
//! Nothing leaves 127.0.0.1: every server binds port 0 on loopback inside the test process, and
//! the controllers get `AWS_ENDPOINT_URL` pointing there, static test credentials and
//! `AWS_EC2_METADATA_DISABLED`.

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlctl::catalog::{Column, Table};
#[cfg(feature = "aws")]
use sqlctl::generate::bedrock::{BedrockGenerator, BedrockOptions};
use sqlctl::generate::openai::{OpenAiGenerator, OpenAiOptions};
use sqlctl::generate::prompt::{Retry, TOOL_NAME};
use sqlctl::generate::{FollowUp, GenerateError, GenerateInput, Generator, PriorTurn};
use sqlctl::spec::EngineKind;

use crate::harness::*;

// ---------------------------------------------------------------------------------------------
// A recording loopback server.

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Recorded {
    path: String,
    /// Lower-case header names.
    headers: HashMap<String, String>,
    body: Value,
}

impl Recorded {
    /// Every text the model would read: system and message contents, joined.
    fn prompt(&self) -> String {
        fn strings(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                Value::Object(o) => o.values().for_each(|x| strings(x, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        strings(&self.body["system"], &mut out);
        strings(&self.body["messages"], &mut out);
        out.join("\n")
    }
}

/// What the fake server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply { status, headers: vec![], body: body.to_string(), delay: Duration::ZERO }
    }
}

type Script = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Box<Script>,
}

/// An HTTP server on 127.0.0.1:0, on a runtime of its own (so sync tests and the binary can use
/// it), answering the n-th request (from 0) with `script(n, request)`. Stops when dropped.
struct Fake {
    shared: Arc<Shared>,
    server: Served,
}

impl Fake {
    fn start(script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Fake {
        let shared = Arc::new(Shared { requests: Mutex::new(Vec::new()), script: Box::new(script) });
        let state = shared.clone();
        let server = Served::start(1, |_| axum::Router::new().fallback(handle).with_state(state));
        Fake { shared, server }
    }

    fn url(&self) -> String {
        self.server.url()
    }

    fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }
}

async fn handle(
    axum::extract::State(st): axum::extract::State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let rec = Recorded {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let n = {
        let mut r = st.requests.lock().unwrap();
        r.push(rec.clone());
        r.len() - 1
    };
    let reply = (st.script)(n, &rec);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut b = axum::response::Response::builder().status(reply.status).header("content-type", "application/json");
    for (k, v) in reply.headers {
        b = b.header(k, v);
    }
    b.body(axum::body::Body::from(reply.body)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Wire formats.

/// A Converse reply whose only content is a call of the answer tool with `input`.
#[cfg(feature = "aws")]
fn converse_tool(input: Value, usage: (u64, u64)) -> Reply {
    Reply::json(
        200,
        json!({
            "output": {"message": {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "t1", "name": TOOL_NAME, "input": input}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": usage.0, "outputTokens": usage.1, "totalTokens": usage.0 + usage.1},
            "metrics": {"latencyMs": 1}
        }),
    )
}

#[cfg(feature = "aws")]
fn converse_sql(sql: &str) -> Reply {
    converse_tool(
        json!({"sql": sql, "explanation": "counts rows", "tablesUsed": ["orders"], "confidence": 0.9}),
        (321, 45),
    )
}

/// A Converse error the way Bedrock sends it: status plus `x-amzn-errortype`.
#[cfg(feature = "aws")]
fn converse_error(status: u16, kind: &str) -> Reply {
    let mut r = Reply::json(status, json!({"message": format!("{kind} from the fake")}));
    r.headers.push(("x-amzn-errortype", kind.to_string()));
    r
}

/// A chat-completions reply calling the answer tool with `arguments` (a JSON string on the wire).
fn chat_tool(arguments: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": TOOL_NAME, "arguments": arguments}}
            ]}}],
            "usage": {"prompt_tokens": 210, "completion_tokens": 17, "total_tokens": 227}
        }),
    )
}

fn chat_sql(sql: &str) -> Reply {
    chat_tool(
        &json!({"sql": sql, "explanation": "counts rows", "tablesUsed": ["orders"], "confidence": 0.8}).to_string(),
    )
}

// ---------------------------------------------------------------------------------------------
// In process: the providers through their real clients.

fn input() -> GenerateInput {
    let col = |n: &str, t: &str| Column { name: n.into(), data_type: t.into(), ..Default::default() };
    GenerateInput {
        question: "How many orders are there?".into(),
        database: "tpch".into(),
        engine: EngineKind::Local,
        tables: vec![Table {
            name: "orders".into(),
            columns: vec![col("o_orderkey", "bigint"), col("o_orderdate", "date")],
            ..Default::default()
        }],
        history: vec![PriorTurn { sql: "select 1".into(), feedback: "count the orders".into() }],
        last_error: Some("guard: unknown table \"orderz\"".into()),
        instructions: vec![],
        follow_up: None,
        semantic: None,
        examples: vec![],
    }
}

/// Fast retries so the retry tests take milliseconds.
fn quick_retry() -> Retry {
    Retry { tries: 4, min_delay: Duration::from_millis(10), max_delay: Duration::from_millis(50) }
}

#[cfg(feature = "aws")]
async fn bedrock(fake: &Fake) -> BedrockGenerator {
    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(fake.url())
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await;
    let opts = BedrockOptions { retry: quick_retry(), request_timeout: Duration::from_secs(10), ..Default::default() };
    BedrockGenerator::from_sdk_config("test-model".into(), &sdk, opts).unwrap()
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn bedrock_a_tool_use_reply_becomes_a_proposal_with_its_token_usage() {
    let fake = Fake::start(|_, _| converse_sql("select count(*) from orders"));
    let g = bedrock(&fake).await;
    let (p, usage) = g.generate(&input()).await.unwrap();
    assert_eq!(p.sql, "select count(*) from orders");
    assert_eq!((p.confidence, p.tables_used.clone()), (0.9, vec!["orders".to_string()]));
    assert_eq!(usage, Some((321, 45)));
    assert_eq!(g.model(), "bedrock/test-model");

    // The request: the Converse path for the model, SigV4-signed, the forced tool with the
    // schemars schema, and a prompt that carries the dialect, the refine history and the error.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/model/test-model/converse");
    assert!(r.headers["authorization"].starts_with("AWS4-HMAC-SHA256"), "{:?}", r.headers);
    let tc = &r.body["toolConfig"];
    assert_eq!(tc["toolChoice"], json!({"tool": {"name": TOOL_NAME}}), "{tc}");
    assert_eq!(tc["tools"][0]["toolSpec"]["name"], TOOL_NAME);
    assert_eq!(tc["tools"][0]["toolSpec"]["inputSchema"]["json"], sqlctl::generate::prompt::tool_schema());
    assert_eq!(tc["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["sql"]["type"], "string");
    assert_eq!(r.body["messages"][0]["role"], "user");
    let prompt = r.prompt();
    for needle in [
        "Apache DataFusion SQL",
        "o_orderdate date",
        "How many orders are there?",
        "count the orders",
        "unknown table \"orderz\"",
    ] {
        assert!(prompt.contains(needle), "the prompt lacks {needle:?}:\n{prompt}");
    }
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn bedrock_throttling_is_retried_and_then_succeeds() {
    let fake =
        Fake::start(|n, _| if n == 0 { converse_error(429, "ThrottlingException") } else { converse_sql("select 1") });
    let g = bedrock(&fake).await;
    let (p, _) = g.generate(&input()).await.unwrap();
    assert_eq!(p.sql, "select 1");
    assert_eq!(fake.requests().len(), 2);
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn bedrock_a_model_that_stays_unavailable_is_transient_after_bounded_tries() {
    let fake = Fake::start(|_, _| converse_error(503, "ServiceUnavailableException"));
    let g = bedrock(&fake).await;
    match g.generate(&input()).await {
        Err(GenerateError::Transient(m)) => {
            assert!(m.contains("ServiceUnavailableException") && m.contains("4 tries"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 4, "the SDK's own retries are off; ours are bounded");
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn bedrock_malformed_model_output_is_malformed_and_not_retried() {
    let text_only = json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "SELECT count(*) FROM orders"}]}},
        "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}, "metrics": {"latencyMs": 1}
    });
    let fake = Fake::start(move |n, _| match n {
        0 => Reply::json(200, text_only.clone()),
        1 => converse_tool(json!({"sql": ["not", "a", "string"]}), (1, 1)),
        _ => converse_tool(json!({"query": "select 1"}), (1, 1)),
    });
    let g = bedrock(&fake).await;
    for _ in 0..3 {
        match g.generate(&input()).await {
            Err(GenerateError::Malformed(m)) => assert!(!m.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(fake.requests().len(), 3);
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn bedrock_a_refused_request_counts_as_a_failed_attempt() {
    let fake = Fake::start(|_, _| converse_error(400, "ValidationException"));
    let g = bedrock(&fake).await;
    assert!(
        matches!(g.generate(&input()).await, Err(GenerateError::Malformed(m)) if m.contains("ValidationException"))
    );
    assert_eq!(fake.requests().len(), 1);
}

/// Issue 14: without any semantic model the prompt lists the join paths the retriever infers from
/// names alone (`author.oid` ↔ `organization.oid`, neither declared anywhere), and the data
/// team's instructions — on both wire formats.
#[cfg(feature = "aws")]
#[tokio::test]
async fn both_providers_see_inferred_join_paths_and_instructions_in_the_prompt() {
    let col = |n: &str, t: &str| Column { name: n.into(), data_type: t.into(), ..Default::default() };
    let inp = GenerateInput {
        question: "Which organizations have authors who wrote more than 3 papers?".into(),
        database: "academic".into(),
        engine: EngineKind::Local,
        tables: vec![
            Table {
                name: "author".into(),
                columns: vec![col("aid", "bigint"), col("name", "varchar"), col("oid", "bigint")],
                ..Default::default()
            },
            Table {
                name: "organization".into(),
                columns: vec![col("oid", "bigint"), col("name", "varchar"), col("continent", "varchar")],
                ..Default::default()
            },
        ],
        history: vec![],
        last_error: None,
        instructions: vec!["Always filter names using ILIKE".into()],
        follow_up: None,
        semantic: None,
        examples: vec![],
    };
    let check = |prompt: &str| {
        for needle in ["joins:", "author.oid = organization.oid", "Always filter names using ILIKE"] {
            assert!(prompt.contains(needle), "the prompt lacks {needle:?}:\n{prompt}");
        }
    };
    let fake = Fake::start(|_, _| converse_sql("select 1"));
    bedrock(&fake).await.generate(&inp).await.unwrap();
    check(&fake.requests()[0].prompt());
    let fake = Fake::start(|_, _| chat_sql("select 1"));
    openai(&fake, None).generate(&inp).await.unwrap();
    check(&fake.requests()[0].prompt());
}

/// Issue 14 item 8: a follow-up's prompt carries the earlier question, its SQL and its result
/// columns, on both wire formats.
#[cfg(feature = "aws")]
#[tokio::test]
async fn both_providers_see_the_request_a_follow_up_builds_on() {
    let inp = GenerateInput {
        question: "now by clerk".into(),
        follow_up: Some(FollowUp {
            name: "per-priority".into(),
            question: Some("How many orders per priority?".into()),
            history: vec![],
            sql: "SELECT o_orderpriority, count(*) AS n FROM orders GROUP BY o_orderpriority".into(),
            columns: vec![("o_orderpriority".into(), "varchar".into()), ("n".into(), "bigint".into())],
        }),
        ..input()
    };
    let check = |prompt: &str| {
        for needle in [
            "follows up on (per-priority)",
            "Earlier question: How many orders per priority?",
            "GROUP BY o_orderpriority",
            "Its result columns: o_orderpriority (varchar), n (bigint)",
            "now by clerk",
        ] {
            assert!(prompt.contains(needle), "the prompt lacks {needle:?}:\n{prompt}");
        }
    };
    let fake = Fake::start(|_, _| converse_sql("select 1"));
    bedrock(&fake).await.generate(&inp).await.unwrap();
    check(&fake.requests()[0].prompt());
    let fake = Fake::start(|_, _| chat_sql("select 1"));
    openai(&fake, None).generate(&inp).await.unwrap();
    check(&fake.requests()[0].prompt());
}

/// Issue 14 item 3: the semantic model's metrics and the nearest verified queries reach the
/// prompt on both wire formats.
#[cfg(feature = "aws")]
#[tokio::test]
async fn both_providers_see_the_semantic_model_and_verified_examples() {
    use sqlctl::generate::verified::Example;
    use sqlctl::spec::semantic::{Metric, SemanticModelSpec};
    let inp = GenerateInput {
        semantic: Some(SemanticModelSpec {
            database: "tpch".into(),
            metrics: vec![Metric {
                name: "order_value".into(),
                expression: "sum(o_totalprice)".into(),
                table: Some("orders".into()),
                synonyms: vec!["sales".into()],
                description: None,
            }],
            ..Default::default()
        }),
        examples: vec![Example {
            name: "orders-1995".into(),
            question: "How many orders were placed in 1995?".into(),
            sql: "SELECT count(*) FROM orders WHERE o_orderdate >= DATE '1995-01-01'".into(),
            verified_by: Some("alice".into()),
        }],
        ..input()
    };
    let check = |prompt: &str| {
        for needle in [
            "order_value = sum(o_totalprice) [on orders] (also: sales)",
            "Verified queries for similar questions",
            "How many orders were placed in 1995? (orders-1995, verified by alice)",
            "o_orderdate >= DATE '1995-01-01'",
        ] {
            assert!(prompt.contains(needle), "the prompt lacks {needle:?}:\n{prompt}");
        }
    };
    let fake = Fake::start(|_, _| converse_sql("select 1"));
    bedrock(&fake).await.generate(&inp).await.unwrap();
    check(&fake.requests()[0].prompt());
    let fake = Fake::start(|_, _| chat_sql("select 1"));
    openai(&fake, None).generate(&inp).await.unwrap();
    check(&fake.requests()[0].prompt());
}

fn openai(fake: &Fake, key: Option<&str>) -> OpenAiGenerator {
    let opts = OpenAiOptions {
        api_key: key.map(str::to_string),
        retry: quick_retry(),
        request_timeout: Duration::from_millis(500),
        ..OpenAiOptions::new(format!("{}/v1", fake.url()))
    };
    OpenAiGenerator::new("test-model".into(), opts).unwrap()
}

#[tokio::test]
async fn openai_tool_calls_become_a_proposal_and_no_key_means_no_authorization_header() {
    let fake = Fake::start(|_, _| chat_sql("select count(*) from orders"));
    let g = openai(&fake, None);
    let (p, usage) = g.generate(&input()).await.unwrap();
    assert_eq!((p.sql.as_str(), p.confidence), ("select count(*) from orders", 0.8));
    assert_eq!(usage, Some((210, 17)));
    assert_eq!(g.model(), "openai/test-model");
    let reqs = fake.requests();
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert!(!r.headers.contains_key("authorization"), "{:?}", r.headers);
    assert_eq!(r.body["model"], "test-model");
    assert_eq!(r.body["tool_choice"], json!({"type": "function", "function": {"name": TOOL_NAME}}));
    assert_eq!(r.body["tools"][0]["type"], "function");
    assert_eq!(r.body["tools"][0]["function"]["parameters"], sqlctl::generate::prompt::tool_schema());
    assert_eq!(r.body["messages"][0]["role"], "system");
    let prompt = r.prompt();
    for needle in ["Apache DataFusion SQL", "count the orders", "unknown table \"orderz\""] {
        assert!(prompt.contains(needle), "the prompt lacks {needle:?}:\n{prompt}");
    }
}

#[tokio::test]
async fn openai_a_configured_key_is_sent_as_a_bearer_token() {
    let fake = Fake::start(|_, _| chat_sql("select 1"));
    openai(&fake, Some("sk-test-123")).generate(&input()).await.unwrap();
    assert_eq!(fake.requests()[0].headers["authorization"], "Bearer sk-test-123");
}

#[tokio::test]
async fn openai_429_and_500_are_retried_and_then_succeed() {
    let fake = Fake::start(|n, _| match n {
        0 => {
            let mut r = Reply::json(429, json!({"error": {"message": "rate limited"}}));
            r.headers.push(("retry-after", "0".into()));
            r
        }
        1 => Reply::json(500, json!({"error": {"message": "boom"}})),
        _ => chat_sql("select 1"),
    });
    let (p, _) = openai(&fake, None).generate(&input()).await.unwrap();
    assert_eq!(p.sql, "select 1");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn openai_timeouts_are_retried_then_transient() {
    let fake = Fake::start(|_, _| Reply { delay: Duration::from_secs(3), ..chat_sql("select 1") });
    let started = Instant::now();
    match openai(&fake, None).generate(&input()).await {
        Err(GenerateError::Transient(m)) => assert!(m.contains("timed out"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 4);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn openai_a_bad_key_is_transient_and_not_retried() {
    let fake = Fake::start(|_, _| Reply::json(401, json!({"error": {"message": "invalid api key"}})));
    match openai(&fake, Some("sk-wrong")).generate(&input()).await {
        Err(GenerateError::Transient(m)) => assert!(m.contains("401") && !m.contains("sk-wrong"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn openai_malformed_arguments_are_malformed_and_json_in_content_is_accepted() {
    let fake = Fake::start(|n, _| match n {
        0 => chat_tool("{\"sql\": "),
        1 => chat_tool("{\"query\": \"select 1\"}"),
        2 => Reply::json(200, json!({"choices": [{"message": {"role": "assistant", "content": "SELECT 1"}}]})),
        _ => Reply::json(
            200,
            json!({"choices": [{"message": {"role": "assistant", "content": "```json\n{\"sql\": \"select 2\"}\n```"}}]}),
        ),
    });
    let g = openai(&fake, None);
    for _ in 0..3 {
        assert!(matches!(g.generate(&input()).await, Err(GenerateError::Malformed(_))));
    }
    let (p, usage) = g.generate(&input()).await.unwrap();
    assert_eq!((p.sql.as_str(), usage), ("select 2", None));
}

// ---------------------------------------------------------------------------------------------
// Through the binary: a controller with an LLM provider.

/// A `sqlctl controller` with extra environment (the harness's `Env::controller` clears it),
/// logging to the harness's first controller log so `wait_phase` failures show it. Killed on drop.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn controller(env: &Env, args: &[&str], vars: &[(&str, String)]) -> Controller {
    let log = std::fs::File::create(env.home.path().join("controller-0.log")).unwrap();
    let child = env
        .cmd()
        .arg("controller")
        .args(["--retry-period", "200ms", "--renew-deadline", "1s", "--lease-duration", "2s", "--resync", "2s"])
        .args(args)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Controller(child)
}

fn openai_controller(env: &Env, fake: &Fake) -> Controller {
    let base = format!("{}/v1", fake.url());
    controller(env, &["--generator", "openai", "--openai-base-url", &base, "--model", "test-model"], &[])
}

fn question_spec(name: &str, question: &str) -> String {
    format!(
        "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\nspec:\n  question: {question}\n  catalog:\n    database: tpch\n"
    )
}

fn condition<'a>(v: &'a Value, ty: &str) -> &'a Value {
    v["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == ty)).unwrap_or(&Value::Null)
}

#[test]
fn a_guard_error_goes_back_to_the_model_which_then_gets_it_right() {
    let env = Env::new();
    let fake = Fake::start(|n, _| {
        if n == 0 { chat_sql("select count(*) as n from orderz") } else { chat_sql("select count(*) as n from orders") }
    });
    let _c = openai_controller(&env, &fake);
    let o = env.apply(&question_spec("self-correct", "How many orders are there?"));
    assert_eq!(o.code, 0, "{o:?}");
    let v = env.wait_phase("self-correct", "AwaitingApproval", T);
    let g = &v["status"]["generated"];
    assert_eq!(g["sql"], "SELECT count(*) AS n FROM orders");
    assert_eq!(g["model"], "openai/test-model");
    let attempts = g["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{g}");
    assert_eq!(attempts[0]["sql"], "select count(*) as n from orderz");
    assert_eq!((&attempts[1]["inputTokens"], &attempts[1]["outputTokens"]), (&json!(210), &json!(17)));
    let err = attempts[0]["error"].as_str().expect("the first attempt's error");
    assert!(err.contains("orderz"), "{err}");
    assert!(attempts[1]["error"].is_null());
    // The guard's complaint reached the model in the second request, and not in the first.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].prompt().contains(err), "second prompt lacks {err:?}:\n{}", reqs[1].prompt());
    assert!(!reqs[0].prompt().contains(err));
}

#[test]
fn a_model_that_never_writes_valid_sql_fails_the_request_with_the_last_error() {
    let env = Env::new();
    let fake = Fake::start(|n, _| chat_sql(&format!("select count(*) from no_such_table_{n}")));
    let _c = openai_controller(&env, &fake);
    env.apply(&question_spec("hopeless", "How many widgets are there?"));
    let v = env.wait_phase("hopeless", "Failed", T);
    let cond = condition(&v, "Generated");
    assert_eq!(cond["reason"], "GenerationFailed", "{v}");
    let attempts = v["status"]["generated"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "--max-attempts defaults to 3");
    let last = attempts[2]["error"].as_str().unwrap();
    assert!(last.contains("no_such_table_2"), "{last}");
    let msg = cond["message"].as_str().unwrap();
    assert!(msg.contains(last), "the failure names the last error: {msg}");
    // Each retry saw the error of the attempt before it.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[2].prompt().contains(attempts[1]["error"].as_str().unwrap()));
}

#[test]
fn refine_feeds_the_feedback_to_the_model_and_binds_approval_to_the_new_sql() {
    const ALL: &str = "select count(*) as n from orders";
    const Y1995: &str = "select count(*) as n from orders where extract(year from o_orderdate) = 1995";
    let env = Env::new();
    let fake = Fake::start(|_, r| if r.prompt().contains("only 1995") { chat_sql(Y1995) } else { chat_sql(ALL) });
    let _c = openai_controller(&env, &fake);
    // What is stored, shown and fed back is the guard's canonical text of what the model wrote.
    let canon = |sql: &str| sqlctl::guard::check_read_only(sql, "tpch", &[]).unwrap().sql;
    env.apply(&question_spec("refined", "How many orders are there?"));
    let v = env.wait_phase("refined", "AwaitingApproval", T);
    assert_eq!(v["status"]["generated"]["sql"], canon(ALL).as_str());
    let old = env.digest("refined");

    env.ok(&["refine", "refined", "--feedback", "only 1995", "--digest", &old]);
    let start = Instant::now();
    let v = loop {
        let v = env.get("refined");
        if v["status"]["phase"] == "AwaitingApproval" && v["status"]["generated"]["sqlDigest"] != old.as_str() {
            break v;
        }
        assert!(start.elapsed() < T, "no new SQL after refine: {v}\n{}", env.controller_log(0));
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(v["status"]["generated"]["sql"], canon(Y1995).as_str());
    // The feedback and the SQL it was about reached the model.
    let reqs = fake.requests();
    let last = reqs.last().unwrap().prompt();
    assert!(last.contains("only 1995") && last.contains(&canon(ALL)), "{last}");
    assert!(!reqs[0].prompt().contains("only 1995"));

    let new = env.digest("refined");
    assert_ne!(old, new);
    let o = env.run(&["approve", "refined", "--digest", &old]);
    assert_eq!(o.code, 1, "approving the SQL before the refine must be refused: {o:?}");
    env.ok(&["approve", "refined", "--digest", &new]);
    let v = env.wait_phase("refined", "Done", T);
    assert_eq!(v["status"]["approval"]["sqlDigest"], new.as_str());
}

/// A follow-up through the controller on the LLM path: the model sees the SQL that ran and its
/// result columns, and the new request links to the one it follows.
#[test]
fn a_follow_up_reaches_the_model_with_the_sql_that_ran_and_its_columns() {
    const PER: &str = "select o_orderpriority, count(*) as n from orders group by o_orderpriority";
    const Y1995: &str = "select o_orderpriority, count(*) as n from orders where extract(year from o_orderdate) = 1995 group by o_orderpriority";
    let env = Env::new();
    let fake = Fake::start(|_, r| if r.prompt().contains("only 1995") { chat_sql(Y1995) } else { chat_sql(PER) });
    let _c = openai_controller(&env, &fake);
    let canon = |sql: &str| sqlctl::guard::check_read_only(sql, "tpch", &[]).unwrap().sql;
    env.apply(&question_spec("per-priority", "How many orders per priority?"));
    env.wait_phase("per-priority", "AwaitingApproval", T);
    let d = env.digest("per-priority");
    env.ok(&["approve", "per-priority", "--digest", &d]);
    let done = env.wait_phase("per-priority", "Done", T);

    let o = env.run(&[
        "ask",
        "--follow-up",
        "per-priority",
        "only 1995",
        "--name",
        "in-1995",
        "--timeout",
        "1s",
        "--no-controller",
    ]);
    assert!(o.stderr.contains("queryrequest/in-1995 created"), "{o:?}");
    let v = env.wait_phase("in-1995", "AwaitingApproval", T);
    assert_eq!(v["status"]["generated"]["sql"], canon(Y1995).as_str());
    let follows = &v["status"]["generated"]["follows"];
    assert_eq!(
        (&follows["name"], &follows["uid"], &follows["ran"]),
        (&json!("per-priority"), &done["metadata"]["uid"], &json!(true))
    );
    assert_eq!(follows["sqlDigest"], d.as_str());
    let prompt = fake.requests().last().unwrap().prompt();
    for needle in [
        "Earlier question: How many orders per priority?".to_string(),
        canon(PER),
        "Its SQL (it ran)".into(),
        "Its result columns: o_orderpriority".into(),
    ] {
        assert!(prompt.contains(&needle), "the prompt lacks {needle:?}:\n{prompt}");
    }
}

/// Through the controller: a fresh SemanticModel and VerifiedQuery of the database reach the
/// model's prompt (metrics, instructions, the verified query as an example), and the request
/// records what it was shown.
#[test]
fn the_controller_gives_the_model_the_databases_semantic_model_and_verified_queries() {
    let env = Env::new();
    let fake = Fake::start(|_, _| chat_sql("select count(*) as n from orders"));
    let _c = controller(
        &env,
        &[
            "--generator",
            "openai",
            "--openai-base-url",
            &format!("{}/v1", fake.url()),
            "--model",
            "m",
            "--plan-interval",
            "300ms",
        ],
        &[],
    );
    let model = "apiVersion: sqlctl.dev/v1alpha1\nkind: SemanticModel\nmetadata:\n  name: tpch\nspec:\n  database: tpch\n  tables:\n    - name: orders\n      description: one row per order\n  metrics:\n    - {name: order_value, table: orders, expression: sum(o_totalprice), synonyms: [sales]}\n  instructions: Sales means the sum of order totals.\n";
    let vq = "apiVersion: sqlctl.dev/v1alpha1\nkind: VerifiedQuery\nmetadata:\n  name: orders-in-a-year\nspec:\n  question: How many orders were placed in 1995?\n  database: tpch\n  sql: \"select count(*) as n from orders where o_orderdate >= :from and o_orderdate < :to\"\n  parameters:\n    - {name: from, type: date, example: '1995-01-01'}\n    - {name: to, type: date, example: '1996-01-01'}\n";
    assert_eq!(env.run_stdin(&["apply", "-f", "-", "--as", "alice"], format!("{model}---\n{vq}").as_bytes()).code, 0);
    let start = Instant::now();
    loop {
        let o = env.ok(&["get", "vq", "orders-in-a-year", "-o", "json"]);
        let sm = env.ok(&["get", "sm", "tpch", "-o", "json"]);
        let fresh = |t: &str| t.contains("\"type\": \"Stale\"") && t.contains("\"status\": \"False\"");
        if fresh(&o.stdout) && fresh(&sm.stdout) {
            break;
        }
        assert!(start.elapsed() < T, "not planned: {}\n{}", o.stdout, sm.stdout);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Not the verified question (another shape), so the model answers, with it as an example.
    env.apply(&question_spec("monthly", "How many orders were placed per month in 1995?"));
    let v = env.wait_phase("monthly", "AwaitingApproval", T);
    let src = &v["status"]["generated"]["source"];
    assert_eq!(src["kind"], "generator", "{v}");
    assert_eq!(src["semanticModel"], "tpch@1", "{v}");
    assert_eq!(src["examples"], json!(["orders-in-a-year"]), "{v}");
    let prompt = fake.requests().last().unwrap().prompt();
    for needle in [
        "order_value = sum(o_totalprice) [on orders] (also: sales)",
        "one row per order",
        "Sales means the sum of order totals.",
        "How many orders were placed in 1995? (orders-in-a-year, verified by alice)",
        "DATE '1996-01-01'",
    ] {
        assert!(prompt.contains(needle), "the prompt lacks {needle:?}:\n{prompt}");
    }
}

#[cfg(feature = "aws")]
#[test]
fn a_bedrock_controller_reaches_the_model_through_aws_endpoint_url_and_rides_out_throttling() {
    let env = Env::new();
    let fake = Fake::start(|n, _| {
        if n == 0 {
            converse_error(429, "ThrottlingException")
        } else {
            converse_sql("select count(*) as n from orders")
        }
    });
    let vars = [
        ("AWS_ENDPOINT_URL", fake.url()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let _c = controller(&env, &["--generator", "bedrock", "--model", "test-model"], &vars);
    env.apply(&question_spec("on-bedrock", "How many orders are there?"));
    let v = env.wait_phase("on-bedrock", "AwaitingApproval", T);
    let g = &v["status"]["generated"];
    assert_eq!(g["model"], "bedrock/test-model");
    assert_eq!(g["sql"], "SELECT count(*) AS n FROM orders");
    assert_eq!((&g["attempts"][0]["inputTokens"], &g["attempts"][0]["outputTokens"]), (&json!(321), &json!(45)));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "one throttled call, one retry");
    assert!(reqs.iter().all(|r| r.path == "/model/test-model/converse"));
    assert_eq!(reqs[1].body["toolConfig"]["toolChoice"]["tool"]["name"], TOOL_NAME);
    let digest = env.digest("on-bedrock");
    env.ok(&["approve", "on-bedrock", "--digest", &digest]);
    env.wait_phase("on-bedrock", "Done", T);
}

#[test]
fn an_llm_generator_without_its_settings_is_a_clear_startup_error() {
    let env = Env::new();
    let o = env.run(&["controller", "--generator", "bedrock"]);
    assert_ne!(o.code, 0);
    if cfg!(feature = "aws") {
        assert!(o.stderr.contains("--model") && o.stderr.contains("SQLCTL_BEDROCK_MODEL"), "{o:?}");
    } else {
        assert_eq!(o.code, 2, "{o:?}");
        assert!(o.stderr.contains("--generator bedrock") && o.stderr.contains("--features aws"), "{o:?}");
    }
    let o = env.run(&["controller", "--generator", "openai", "--model", "m"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("--openai-base-url"), "{o:?}");
    let o = env.run(&["controller", "--generator", "openai", "--openai-base-url", "http://127.0.0.1:9/v1"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("--model"), "{o:?}");
}
