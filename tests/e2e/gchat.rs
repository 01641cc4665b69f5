//! Google Chat notifications through the real `sqlctl controller`: `SQLCTL_GCHAT_WEBHOOK` points
//! at a loopback server, written here, that records every message and answers as each test's
//! script says — 429 with Retry-After, 500 forever, a hang past the timeout, a hang the
//! controller is killed in. The webhook's key and token must never show in a log or in status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const KEY: &str = "KEYs3cretKEY";
const TOKEN: &str = "TOKs3cretTOK";

// ---------------------------------------------------------------------------------------------
// A recording webhook.

/// One message as the webhook saw it.
#[derive(Clone, Debug)]
struct Seen {
    query: BTreeMap<String, String>,
    body: Value,
}

impl Seen {
    /// `approval`, `finished-done`, … (from the card id), or `text`.
    fn kind(&self) -> String {
        self.body["cardsV2"][0]["cardId"]
            .as_str()
            .map(|s| s.trim_start_matches("sqlctl-").to_string())
            .unwrap_or_else(|| "text".into())
    }
}

/// What the webhook answers: a status, headers, and a delay first (cut short when the server stops).
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
}

fn ok() -> Reply {
    Reply { status: 200, headers: vec![], delay: Duration::ZERO }
}

type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

struct Shared {
    seen: Mutex<Vec<Seen>>,
    script: Box<Script>,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// An HTTP server on 127.0.0.1:0 on a runtime of its own, answering the n-th message with
/// `script(n, message)`. Dropping it releases hung answers and stops it.
struct Webhook {
    shared: Arc<Shared>,
    server: Served,
}

impl Webhook {
    fn start(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Webhook {
        let mut shared = None;
        let server = Served::start(1, |stopping| {
            let state = Arc::new(Shared { seen: Mutex::new(vec![]), script: Box::new(script), stop: stopping });
            shared = Some(state.clone());
            axum::Router::new().fallback(handle).with_state(state)
        });
        Webhook { shared: shared.unwrap(), server }
    }

    /// The webhook URL as Google hands it out, with its key and token.
    fn url(&self) -> String {
        format!("{}/v1/spaces/AAAAtest/messages?key={KEY}&token={TOKEN}", self.server.url())
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Seen> {
        let start = Instant::now();
        loop {
            let s = self.seen();
            if s.len() >= n {
                return s;
            }
            assert!(start.elapsed() < timeout, "the webhook got {} of {n} messages: {s:#?}", s.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn handle(
    axum::extract::State(st): axum::extract::State<Arc<Shared>>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let query = reqwest::Url::parse(&format!("http://x/?{}", uri.query().unwrap_or("")))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let seen = Seen { query, body: serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let n = {
        let mut s = st.seen.lock().unwrap();
        s.push(seen.clone());
        s.len() - 1
    };
    let reply = (st.script)(n, &seen);
    if !reply.delay.is_zero() {
        let mut stop = st.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(reply.delay) => {}
            _ = stop.wait_for(|v| *v) => {}
        }
    }
    let mut b = axum::response::Response::builder().status(reply.status).header("content-type", "application/json");
    for (k, v) in reply.headers {
        b = b.header(k, v);
    }
    let body = if reply.status == 200 {
        r#"{"name":"spaces/AAAAtest/messages/m1","thread":{"name":"spaces/AAAAtest/threads/t1"}}"#
    } else {
        r#"{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}"#
    };
    b.body(axum::body::Body::from(body)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The controller with a webhook.

/// `sqlctl controller` with `SQLCTL_GCHAT_WEBHOOK` and `vars`; killed when dropped.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Controller {
    fn start(env: &Env, webhook: &str, vars: &[(&str, &str)], tag: &str) -> Controller {
        let log = env.home.path().join(format!("gchat-controller-{tag}.log"));
        let mut cmd = env.cmd();
        cmd.env("SQLCTL_GCHAT_WEBHOOK", webhook);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd
            .args(["controller", "--retry-period", "200ms", "--renew-deadline", "1s", "--lease-duration", "2s"])
            .args(["--resync", "2s"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Controller { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill_9(&mut self) {
        signal(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn notified(v: &Value) -> Option<Value> {
    v["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Notified").cloned()
}

/// Polls `name` until `pred` holds on its JSON.
fn wait_until(env: &Env, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let o = env.run(&["get", name, "-o", "json"]);
        if o.code == 0 {
            let v: Value = serde_json::from_str(&o.stdout).unwrap();
            if pred(&v) {
                return v;
            }
            assert!(start.elapsed() < T, "{name}: {what} never happened: {v:#}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(KEY) && !text.contains(TOKEN), "{what} leaks the webhook's key or token:\n{text}");
}

/// Runs `cmd` to completion, killing it (and failing) after `limit`.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> Out {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}: {:?}", Out::from(child.wait_with_output().unwrap()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap().into()
}

fn approve(env: &Env, name: &str) {
    let d = env.digest(name);
    env.ok(&["approve", name, "--digest", &d]);
}

// ---------------------------------------------------------------------------------------------

#[test]
fn approval_then_result_card_in_one_thread_with_a_429_retried() {
    let hook = Webhook::start(|n, _| match n {
        0 => Reply { status: 429, headers: vec![("retry-after", "1".into())], delay: Duration::ZERO },
        _ => ok(),
    });
    let env = Env::new();
    let c = Controller::start(&env, &hook.url(), &[("SQLCTL_CONSOLE_URL", "https://console.example.com")], "flow");
    env.apply(&sql_spec("chatty", "select n_name, n_regionkey from nation order by n_name"));
    let v = wait_until(&env, "chatty", "approval recorded", |v| v["status"]["approvalRequested"] == true);
    assert_eq!(v["status"]["phase"], "AwaitingApproval");
    assert!(notified(&v).is_none(), "delivered after one retry: {v:#}");
    let seen = hook.wait_for(2, T);
    assert_eq!((seen[0].kind().as_str(), seen[1].kind().as_str()), ("approval", "approval"));
    assert_eq!(seen[0].query["requestId"], seen[1].query["requestId"], "the retry is the same message");
    let card = seen[1].body.to_string();
    let digest = env.digest("chatty");
    assert!(card.contains(&format!("sqlctl approve chatty --digest {digest}")), "the full digest: {card}");
    assert!(card.contains("<code>SELECT n_name, n_regionkey FROM nation"), "SQL in monospace: {card}");
    assert!(card.contains("https://console.example.com/requests/default/chatty"), "{card}");

    approve(&env, "chatty");
    let v = wait_until(&env, "chatty", "result notified", |v| v["status"]["notified"].as_str().is_some());
    assert_eq!(v["status"]["phase"], "Done");
    assert!(notified(&v).is_none(), "{v:#}");
    let seen = hook.wait_for(3, T);
    assert_eq!(seen[2].kind(), "finished-done");
    let result = seen[2].body.to_string();
    for needle in ["\"Rows\"", "25", "ALGERIA", "10 of 25 rows shown", "sqlctl results chatty", "Open in console"] {
        assert!(result.contains(needle), "{needle} missing from the result card: {result}");
    }
    let uid = v["metadata"]["uid"].as_str().unwrap();
    for s in &seen {
        assert_eq!(s.query["threadKey"], format!("sqlctl-default-chatty-{uid}"), "one thread: {s:?}");
        assert_eq!(s.query["messageReplyOption"], "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD");
        assert_eq!((s.query["key"].as_str(), s.query["token"].as_str()), (KEY, TOKEN));
    }
    // Nothing more arrives: each notification is recorded once sent.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.seen().len(), 3);
    let log = c.log();
    assert!(log.contains("google chat notification sent"), "{log}");
    assert!(log.contains("google chat webhook call failed; retrying"), "{log}");
    assert_no_secret("the controller log", &log);
    assert_no_secret("status", &v.to_string());
}

#[test]
fn a_webhook_failing_with_500_is_reported_and_never_blocks_the_query() {
    let hook = Webhook::start(|_, _| Reply { status: 500, headers: vec![], delay: Duration::ZERO });
    let env = Env::new();
    let c = Controller::start(&env, &hook.url(), &[("SQLCTL_NOTIFY_PREVIEW", "false")], "500");
    env.apply(&sql_spec("unheard", "select n_name from nation order by n_name"));
    let v = wait_until(&env, "unheard", "Notified=False", |v| notified(v).is_some_and(|c| c["status"] == "False"));
    assert_eq!(v["status"]["phase"], "AwaitingApproval");
    assert_eq!(v["status"]["approvalRequested"], true, "the round goes on without chat");
    let cond = notified(&v).unwrap();
    assert_eq!(cond["reason"], "ChatDeliveryFailed", "{cond}");
    let msg = cond["message"].as_str().unwrap();
    assert!(msg.contains("after 3 attempts") && msg.contains("HTTP 500"), "{msg}");
    assert!(msg.contains("key=REDACTED&token=REDACTED"), "{msg}");
    assert_eq!(hook.seen().len(), 3, "a bounded number of tries");

    approve(&env, "unheard");
    let v = wait_until(&env, "unheard", "finished", |v| v["status"]["notified"].as_str().is_some());
    assert_eq!(v["status"]["phase"], "Done", "the query ran: {v:#}");
    assert_eq!(v["status"]["execution"]["rows"], 25);
    let cond = notified(&v).unwrap();
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("False"), Some("ChatDeliveryFailed")));
    let seen = hook.wait_for(6, T);
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[5].kind(), "finished-done");
    // --notify-preview=false: no row went to chat.
    for s in &seen {
        assert!(!s.body.to_string().contains("ALGERIA"), "a result row reached chat: {s:?}");
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hook.seen().len(), 6, "a failed notification is not retried forever");
    let log = c.log();
    assert!(log.contains("google chat notification not delivered"), "{log}");
    assert_no_secret("the controller log", &log);
    assert_no_secret("status", &v.to_string());
}

#[test]
fn a_webhook_hanging_past_the_timeout_costs_a_bounded_wait() {
    let hook = Webhook::start(|_, _| Reply { status: 200, headers: vec![], delay: Duration::from_secs(30) });
    let env = Env::new();
    let c = Controller::start(
        &env,
        &hook.url(),
        &[("SQLCTL_GCHAT_TIMEOUT", "500ms"), ("SQLCTL_GCHAT_ATTEMPTS", "2")],
        "hang",
    );
    let start = Instant::now();
    env.apply(&sql_spec("stalled", "select count(*) as n from region"));
    let v = wait_until(&env, "stalled", "approval recorded", |v| v["status"]["approvalRequested"] == true);
    let took = start.elapsed();
    let cond = notified(&v).expect("Notified=False");
    assert_eq!(cond["reason"], "ChatDeliveryFailed");
    assert!(cond["message"].as_str().unwrap().contains("timed out after 500ms"), "{cond}");
    assert!(took < Duration::from_secs(20), "2 × 500 ms + backoff, not the webhook's 30 s: {took:?}");
    eprintln!(
        "MEASURE gchat: apply → approval round recorded in {took:?} with a webhook that never answers (2 × 500 ms)"
    );
    approve(&env, "stalled");
    let v = wait_until(&env, "stalled", "finished", |v| v["status"]["notified"].as_str().is_some());
    assert_eq!(v["status"]["phase"], "Done");
    assert_eq!(hook.seen().len(), 4);
    assert_no_secret("the controller log", &c.log());
}

#[test]
fn a_controller_killed_mid_send_repeats_at_most_that_message() {
    // The first message hangs until the server stops; the rest are answered at once.
    let hook = Webhook::start(|n, _| {
        if n == 0 { Reply { status: 200, headers: vec![], delay: Duration::from_secs(120) } } else { ok() }
    });
    let env = Env::new();
    let mut first = Controller::start(&env, &hook.url(), &[("SQLCTL_GCHAT_TIMEOUT", "60s")], "first");
    env.apply(&sql_spec("crash-send", "select count(*) as n from region"));
    hook.wait_for(1, T);
    // Mid-send: the card is on the wire, its answer not yet back, nothing recorded.
    first.kill_9();
    let v = env.get("crash-send");
    assert_eq!(v["status"]["phase"], "AwaitingApproval");
    assert!(v["status"]["approvalRequested"].is_null(), "not recorded before the answer: {v:#}");

    let second = Controller::start(&env, &hook.url(), &[], "second");
    wait_until(&env, "crash-send", "approval recorded", |v| v["status"]["approvalRequested"] == true);
    approve(&env, "crash-send");
    let v = wait_until(&env, "crash-send", "finished", |v| v["status"]["notified"].as_str().is_some());
    assert_eq!(v["status"]["phase"], "Done");
    drop(second);
    // A restart after everything was sent repeats nothing.
    let third = Controller::start(&env, &hook.url(), &[], "third");
    std::thread::sleep(Duration::from_secs(5));
    let seen = hook.seen();
    let kinds: Vec<String> = seen.iter().map(Seen::kind).collect();
    assert_eq!(kinds, ["approval", "approval", "finished-done"], "{seen:#?}");
    assert_eq!(seen[0].query["requestId"], seen[1].query["requestId"], "Chat deduplicates the one repeat by requestId");
    assert!(third.log().contains("became leader"), "{}", third.log());
}

#[test]
fn config_view_shows_the_chat_settings_with_the_webhook_redacted() {
    let env = Env::new();
    let url = format!("https://chat.googleapis.com/v1/spaces/AAAAtest/messages?key={KEY}&token={TOKEN}");
    let out: Out = env
        .cmd()
        .env("SQLCTL_GCHAT_WEBHOOK", &url)
        .env("SQLCTL_CONSOLE_URL", "https://console.example.com")
        .args(["config", "view"])
        .output()
        .unwrap()
        .into();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("notify:"), "{out:?}");
    assert!(
        out.stdout.contains(
            "https://chat.googleapis.com/v1/spaces/AAAAtest/messages?key=REDACTED&token=REDACTED (set, redacted)"
        ),
        "{out:?}"
    );
    assert!(out.stdout.contains("consoleUrl: https://console.example.com"), "{out:?}");
    assert_no_secret("config view", &out.stdout);
    let json: Out =
        env.cmd().env("SQLCTL_GCHAT_WEBHOOK", &url).args(["config", "view", "-o", "json"]).output().unwrap().into();
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["notify"]["gchatTimeout"], "5s");
    assert_eq!(v["notify"]["preview"], true);
    assert_no_secret("config view -o json", &json.stdout);
    // --help names the variable but never its value.
    let help: Out = env.cmd().env("SQLCTL_GCHAT_WEBHOOK", &url).args(["controller", "--help"]).output().unwrap().into();
    assert!(help.stdout.contains("SQLCTL_GCHAT_WEBHOOK"), "{help:?}");
    assert_no_secret("--help", &help.stdout);
    // A webhook that is not https is refused at start, without repeating it.
    let mut cmd = env.cmd();
    cmd.env("SQLCTL_GCHAT_WEBHOOK", format!("http://chat.example.com/hook?key={KEY}")).arg("controller");
    let bad = output_within(cmd, T);
    assert_ne!(bad.code, 0, "{bad:?}");
    assert!(bad.stderr.contains("https://"), "{bad:?}");
    assert_no_secret("the start-up error", &bad.stderr);
}

/// `--gchat-chart-image` (with `--features png`): the result card shows the chart as an image
/// whose presigned URL, fetched as Google Chat would, is the PNG stored next to the SVG in S3.
#[cfg(all(feature = "png", feature = "aws"))]
#[test]
fn with_chart_images_on_the_result_card_shows_the_stored_png_by_a_presigned_url() {
    let Some(moto) = crate::aws_support::moto_url() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let conf = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load(),
    );
    let s3 = sqlctl::aws::s3(&conf);
    let bucket = format!("e2e-chat-image-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    rt.block_on(s3.create_bucket().bucket(&bucket).send()).expect("creating the bucket in moto");
    let results = format!("s3://{bucket}/r");

    let hook = Webhook::start(|_, _| ok());
    let env = Env::new();
    let _c = Controller::start(
        &env,
        &hook.url(),
        &[
            ("AWS_ENDPOINT_URL", moto.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("SQLCTL_RESULTS_S3", results.as_str()),
            ("SQLCTL_GCHAT_CHART_IMAGE", "10m"),
        ],
        "image",
    );
    env.apply(&sql_spec(
        "pictured",
        "select r_name, count(*) as nations from region join nation on n_regionkey = r_regionkey group by r_name",
    ));
    wait_until(&env, "pictured", "approval requested", |v| v["status"]["approvalRequested"] == true);
    approve(&env, "pictured");
    let v = wait_until(&env, "pictured", "result notified", |v| v["status"]["notified"].as_str().is_some());
    assert_eq!(v["status"]["phase"], "Done", "{v:#}");
    let seen = hook.wait_for(2, T);
    let card = seen.iter().find(|s| s.kind() == "finished-done").expect("a result card").body.to_string();
    let url = card
        .split("\"imageUrl\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no image in the result card: {card}"))
        .replace("\\u0026", "&");
    assert!(url.starts_with(&moto) && url.contains("X-Amz-Expires=600"), "a presigned URL of 10 minutes: {url}");
    assert!(card.contains("chart of pictured"), "alt text: {card}");
    // Fetched as Chat's image proxy would: the PNG stored next to the SVG.
    let png = rt.block_on(async { reqwest::get(&url).await.unwrap().bytes().await.unwrap() });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{} bytes", png.len());
    let svg = v["status"]["execution"]["chartLocation"].as_str().unwrap();
    let key = svg.trim_start_matches(&format!("s3://{bucket}/")).replace(".svg", ".png");
    let stored = rt.block_on(async {
        let o = s3.get_object().bucket(&bucket).key(&key).send().await.expect("the PNG in S3");
        o.body.collect().await.unwrap().into_bytes()
    });
    assert_eq!(png, stored, "the URL serves the stored PNG");
}
