//! Safety classes 8, 9 and the closed pipe, through the real binary:
//!
//! * identities compare normalised (trim, NFKC, case folding, default-ignorables removed) on
//!   every channel: the CLI's local user, the controller's re-check of a stored record, an SQS
//!   relay's `by`;
//! * configuration errors are not SQL errors: a missing Athena workgroup leaves a request Pending
//!   with a condition naming the setting (backing off, nothing for the model), and `aws
//!   bootstrap` checks what `GetWorkGroup` returned instead of trusting its success;
//! * `sqlctl … | head` exits quietly.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::aws_support::*;
use crate::harness::*;

const AWS_T: Duration = Duration::from_secs(90);

fn history_has(v: &serde_json::Value, event: &str, by: &str) -> bool {
    v["status"]["history"].as_array().is_some_and(|h| h.iter().any(|e| e["event"] == event && e["by"] == by))
}

// ---------------------------------------------------------------------------------------------
// Class 8: identities

/// Spellings of `rita` that are all her.
const RITA: [&str; 7] = ["Rita", "RITA", " rita ", "rita\u{200b}", "ri\u{00ad}ta", "\u{202e}rita\u{202c}", "ｒｉｔａ"];

#[test]
fn identities_compare_normalised_for_four_eyes_and_allow_lists() {
    let env = Env::new();
    let policy = env.home.path().join("policy.yaml");
    // The policy spells people its own way; the spec narrows with yet another spelling.
    std::fs::write(
        &policy,
        "approvers: [Alice, BOB, rita]\ndatabases:\n  tpch:\n    approvers: [alice, bob, Rita]\nfourEyes: true\n",
    )
    .unwrap();
    env.controller(&["--policy", policy.to_str().unwrap()]);
    let spec = sql_spec("who", "select count(*) from nation") + "  approval:\n    approvers: [RITA, Bob]\n";
    let o = env.run_stdin(&["apply", "-f", "-", "--as", "rita"], spec.as_bytes());
    assert_eq!(o.code, 0, "{o:?}");
    env.wait_phase("who", "AwaitingApproval", T);
    let digest = env.digest("who");

    // Four-eyes holds against every spelling of the requester.
    for by in RITA {
        let o = env.run(&["approve", "who", "--digest", &digest, "--as", by]);
        assert_eq!(o.code, 1, "{by:?} approved rita's own request: {o:?}");
        assert!(o.stderr.contains("four-eyes"), "{by:?}: {o:?}");
    }
    // alice is in the policy, not in the spec's narrower list, however she is spelled.
    for by in ["alice", "ALICE", "ａｌｉｃｅ"] {
        let o = env.run(&["approve", "who", "--digest", &digest, "--as", by]);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stderr.contains("may not decide"), "{by:?}: {o:?}");
    }
    // An invisible decider names nobody.
    let o = env.run(&["reject", "who", "--digest", &digest, "--as", "\u{200b}"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(env.phase("who"), "AwaitingApproval");

    // A record written behind the CLI's back in a confusable spelling is re-checked by the
    // controller under the same rule and refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use sqlctl::store::Store;
        let store = sqlctl::store::sqlite::SqliteStore::open(env.home.path().join("state.db")).unwrap();
        let req = store.get(&sqlctl::spec::ObjectKey::new("default", "who")).await.unwrap().unwrap();
        let input = sqlctl::approval::DecisionInput {
            decision: sqlctl::spec::DecisionKind::Approve,
            by: "Ｒｉｔａ\u{2060}".into(),
            digest: Some(digest.clone()),
            feedback: None,
            comment: None,
            source: "test".into(),
            allow_over_budget: false,
        };
        let d = sqlctl::approval::bind(&req, &input).unwrap();
        store.create_decision(&d).await.unwrap();
    });
    let start = Instant::now();
    loop {
        let v = env.get("who");
        if history_has(&v, "DecisionRefused", "Ｒｉｔａ\u{2060}") {
            assert_eq!(v["status"]["phase"], "AwaitingApproval", "{v}");
            let refused = v["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DecisionRefused");
            assert!(refused.is_some_and(|c| c["message"].as_str().unwrap_or("").contains("four-eyes")), "{v}");
            break;
        }
        assert!(start.elapsed() < T, "the controller did not refuse the confusable self-approval: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // bob, spelled fullwidth, is bob: allowed by the policy's `bob` and the spec's `Bob`. What is
    // recorded is what the channel reported.
    env.ok(&["approve", "who", "--digest", &digest, "--as", "ＢＯＢ"]);
    let v = env.wait_phase("who", "Done", T);
    assert_eq!(v["status"]["approval"]["by"], "ＢＯＢ");
}

#[test]
fn identities_compare_normalised_for_sqs_relay_deciders() {
    // A trusted relay (a chat bot) names who decided; the requester on --backend aws is moto's
    // one IAM user, `arn:aws:sts::123456789012:user/moto`: without an identities map, `moto`. Every spelling of moto is moto: four-eyes refuses them all.
    let Some(w) = AwsWorld::new(false) else { return };
    let kids = Children::default();
    let mut c = w.cmd_at(&w.fake.url);
    c.env("SQLCTL_SQS_TRUSTED_RELAYS", MOTO_SENDER).arg("controller").args(FAST_LEASE).args([
        "--generator",
        "offline",
        "--four-eyes",
    ]);
    kids.spawn(c, w.env.home.path().join("relay-controller.log"));
    let log = || std::fs::read_to_string(w.env.home.path().join("relay-controller.log")).unwrap_or_default();
    let o = w.apply(&spec("relayed", "  sql: select count(*) as n from nation\n  catalog:\n    database: tpch\n"));
    assert_eq!(o.code, 0, "{o:?}");
    let m = w.approval_request("relayed", AWS_T);
    assert_eq!(m.requester.as_deref(), Some("arn:aws:sts::123456789012:user/moto"));

    let spellings = ["Moto", "moto\u{200b}", "ｍｏｔｏ", " MOTO ", "mo\u{fe0f}to"];
    for by in spellings {
        w.decide(&m, "approve", json!({ "by": by }));
    }
    let dlq = w.export("SQLCTL_RESPONSE_QUEUE_URL") + "-dlq";
    let start = Instant::now();
    let mut refused = Vec::new();
    while refused.len() < spellings.len() {
        refused.extend(w.drain(&dlq, Duration::from_secs(2)));
        assert!(
            start.elapsed() < AWS_T,
            "only {} of {} dead-lettered: {refused:?}\n{}",
            refused.len(),
            spellings.len(),
            log()
        );
    }
    for (body, reason) in &refused {
        let reason = reason.clone().unwrap_or_default();
        assert!(reason.contains("four-eyes"), "{body}: {reason}");
    }
    assert_eq!(w.get("relayed")["status"]["phase"], "AwaitingApproval");

    // Someone else approves, and it runs.
    w.decide(&m, "approve", json!({ "by": "alice" }));
    let v = w.wait_for("relayed", AWS_T, |v| v["status"]["phase"] == "Done", "Done");
    assert_eq!(v["status"]["approval"]["by"], "alice");
}

// ---------------------------------------------------------------------------------------------
// Class 9: configuration errors

fn generated_condition(v: &serde_json::Value) -> Option<serde_json::Value> {
    v["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Generated").cloned()
}

#[test]
fn configuration_errors_are_not_sql_errors_a_missing_workgroup_waits_with_a_condition() {
    // Athena straight from moto (which refuses a start in a workgroup that does not exist), Glue
    // from moto too (the test warehouse registered by bootstrap).
    let Some(w) = AwsWorld::new(true) else { return };
    let kids = Children::default();
    let controller = |workgroup: &str, log: &str| {
        let mut c = w.cmd_at(&w.moto);
        c.arg("controller").args(FAST_LEASE).args(["--generator", "offline", "--athena-workgroup", workgroup]);
        kids.spawn(c, w.env.home.path().join(log))
    };
    let first = controller("no-such-workgroup", "wg-missing.log");
    let log = || std::fs::read_to_string(w.env.home.path().join("wg-missing.log")).unwrap_or_default();
    let hand = spec("wg-sql", "  sql: select n_name from nation\n  catalog:\n    database: tpch\n");
    let asked = spec("wg-question", "  question: How many nations are there?\n  catalog:\n    database: tpch\n");
    assert_eq!(w.apply(&hand).code, 0);
    assert_eq!(w.apply(&asked).code, 0);

    for name in ["wg-sql", "wg-question"] {
        let v = w.wait_for(
            name,
            AWS_T,
            |v| generated_condition(v).is_some_and(|c| c["reason"] == "EngineUnavailable"),
            "Generated=EngineUnavailable",
        );
        let c = generated_condition(&v).unwrap();
        assert_eq!(c["status"], "Unknown", "{v}");
        let msg = c["message"].as_str().unwrap();
        assert!(
            msg.contains("--athena-workgroup")
                && msg.contains("SQLCTL_ATHENA_WORKGROUP")
                && msg.contains("no-such-workgroup"),
            "the condition names the setting to fix: {msg}"
        );
        assert!(msg.contains("WorkGroup"), "and says what Athena said: {msg}");
    }
    // It waits, backing off: still Pending a while later, never PlanFailed or Failed, the status
    // not rewritten on every retry, and nothing went to the model as an error.
    let before: Vec<serde_json::Value> = ["wg-sql", "wg-question"].iter().map(|n| w.get(n)).collect();
    std::thread::sleep(Duration::from_secs(4));
    for (name, was) in ["wg-sql", "wg-question"].iter().zip(&before) {
        let v = w.get(name);
        assert_eq!(v["status"]["phase"], "Pending", "{v}");
        assert_eq!(v["metadata"]["resourceVersion"], was["metadata"]["resourceVersion"], "no write per retry: {v}");
        let text = v["status"].to_string();
        assert!(!text.contains("PlanFailed") && !text.contains("GenerationFailed"), "{v}");
        let attempts = v["status"]["generated"]["attempts"].as_array().cloned().unwrap_or_default();
        assert!(attempts.iter().all(|a| a["error"].is_null()), "no planning error reached the generator: {v}");
        assert!(v["status"]["generated"]["sql"].is_null(), "{v}");
    }
    assert!(!log().contains("planning: Athena"), "{}", log());

    // Fix the setting (the workgroup bootstrap created) and both go on to approval.
    kids.stop(first);
    controller(&w.export("SQLCTL_ATHENA_WORKGROUP"), "wg-fixed.log");
    for name in ["wg-sql", "wg-question"] {
        let v = w.wait_for(name, AWS_T, |v| v["status"]["phase"] == "AwaitingApproval", "AwaitingApproval");
        assert_eq!(generated_condition(&v).unwrap()["status"], "True", "{v}");
    }
}

/// A loopback stand-in in front of moto whose `GetWorkGroup` answers success with no workgroup
/// (as moto does for one that does not exist), whatever was created.
/// Dropping it stops the server.
struct NoWorkGroups {
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl NoWorkGroups {
    fn start(upstream: String) -> NoWorkGroups {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, Uri};
        use axum::response::{IntoResponse, Response};

        async fn handle(
            axum::extract::State(up): axum::extract::State<String>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> Response {
            if headers.get("x-amz-target").and_then(|v| v.to_str().ok()) == Some("AmazonAthena.GetWorkGroup") {
                return ([("content-type", "application/x-amz-json-1.1")], "{}").into_response();
            }
            let url = format!("{up}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
            let mut req = reqwest::Client::new().request(method, url).body(body);
            for (k, v) in &headers {
                if !matches!(k.as_str(), "host" | "content-length" | "transfer-encoding" | "connection") {
                    req = req.header(k, v);
                }
            }
            match req.send().await {
                Ok(resp) => {
                    let mut out = Response::builder().status(resp.status().as_u16());
                    for (k, v) in resp.headers() {
                        if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection") {
                            out = out.header(k, v);
                        }
                    }
                    out.body(axum::body::Body::from(resp.bytes().await.unwrap_or_default())).unwrap()
                }
                Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(handle).with_state(upstream);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv().unwrap();
        NoWorkGroups { url: format!("http://{addr}"), _stop: stop_tx }
    }
}

#[test]
fn configuration_errors_are_not_sql_errors_bootstrap_checks_the_workgroup_it_gets() {
    let Some(w) = AwsWorld::new(false) else { return };
    // Against moto: moto answers GetWorkGroup for a missing workgroup with success and no
    // WorkGroup, and bootstrap creates it instead of taking that for "exists".
    let prefix = format!("{}-b", w.prefix);
    let o = w.run(&["aws", "bootstrap", "--prefix", &prefix]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains(&format!("athena workgroup {prefix}: created (enforced settings")), "{o:?}");
    let wg = w.rt.block_on(async {
        aws_sdk_athena::Client::new(&w.sdk).get_work_group().work_group(&prefix).send().await.unwrap()
    });
    let wg = wg.work_group().unwrap_or_else(|| panic!("bootstrap left no workgroup {prefix}: {o:?}"));
    assert_eq!(wg.name(), prefix);
    assert_eq!(wg.configuration().and_then(|c| c.enforce_work_group_configuration()), Some(true));
    let o = w.run(&["aws", "bootstrap", "--prefix", &prefix]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains(&format!("athena workgroup {prefix}: exists (enforced settings")), "{o:?}");

    // Against a stand-in whose GetWorkGroup never names the workgroup (even after a create):
    // bootstrap says it is missing and what to do, and prints no export lines to use it.
    let proxy = NoWorkGroups::start(w.moto.clone());
    let prefix = format!("{}-c", w.prefix);
    let o: Out = w.cmd_at(&proxy.url).args(["aws", "bootstrap", "--prefix", &prefix]).output().unwrap().into();
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains(&format!("Athena workgroup {prefix} does not exist")), "{o:?}");
    assert!(o.stderr.contains("--athena-workgroup") && o.stderr.contains("create-work-group"), "{o:?}");
    assert!(!o.stdout.contains("SQLCTL_ATHENA_WORKGROUP"), "{o:?}");
}

// ---------------------------------------------------------------------------------------------
// The closed pipe

/// Runs `sqlctl ARGS` with stdout a pipe that is closed after `read` bytes (0: before the
/// command writes anything); returns the exit code and stderr.
fn with_closed_pipe(env: &Env, args: &[&str], read: usize) -> (Option<i32>, String) {
    let mut child = env.cmd().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    if read > 0 {
        let mut buf = vec![0u8; read];
        stdout.read_exact(&mut buf).unwrap();
    }
    drop(stdout);
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "killed by a signal: {status:?}");
    (status.code(), stderr)
}

#[test]
fn a_closed_pipe_exits_quietly() {
    let env = Env::new();
    env.controller(&[]);
    let spec = sql_spec("big", "select * from lineitem") + "  limits:\n    maxRows: 20000\n";
    assert_eq!(env.apply(&spec).code, 0);
    env.wait_phase("big", "AwaitingApproval", T);
    let digest = env.digest("big");
    env.ok(&["approve", "big", "--digest", &digest]);
    env.wait_phase("big", "Done", T);

    // `| head`: the reader takes a little and goes; the result is far larger than a pipe holds.
    for args in [&["results", "big"][..], &["results", "big", "-o", "json"], &["results", "big", "-o", "table"]] {
        let (code, stderr) = with_closed_pipe(&env, args, 100);
        assert_eq!(code, Some(0), "sqlctl {args:?}: {stderr}");
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("os error 32") && !stderr.contains("panicked"),
            "sqlctl {args:?}: {stderr}"
        );
    }
    // Commands that print with println!, and a reader gone before anything was written.
    for args in [&["schema"][..], &["get", "-o", "yaml"], &["describe", "big"], &["results", "big"]] {
        let (code, stderr) = with_closed_pipe(&env, args, 0);
        assert_eq!(code, Some(0), "sqlctl {args:?}: {stderr}");
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("os error 32") && !stderr.contains("panicked"),
            "sqlctl {args:?}: {stderr}"
        );
    }
    // An error that is not a closed pipe is still reported.
    let o = env.run(&["results", "nope"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not found"), "{o:?}");
}
