//! `--backend aws` end to end: question → SQL → approval message → decision message → Athena →
//! Done, with DynamoDB, SQS, S3 and Glue in moto and Athena in the fake (running the SQL on the
//! test warehouse), through the real binary.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::aws_support::*;
use crate::harness::*;

const T: Duration = Duration::from_secs(90);

#[test]
fn question_to_done_over_sqs_decisions_and_athena() {
    let Some(w) = AwsWorld::new(true) else { return };
    w.controller(&[]);
    let o = w.apply(&spec("nations", "  question: How many nations are there?\n  catalog:\n    database: tpch\n"));
    assert_eq!(o.code, 0, "{o:?}");

    // The controller generated SQL and sent one approval request to the request queue.
    let v = w.wait_phase("nations", "AwaitingApproval", T);
    let m = w.approval_request("nations", T);
    assert_eq!(m.uid, v["metadata"]["uid"].as_str().unwrap());
    assert_eq!(m.sql_digest, v["status"]["generated"]["sqlDigest"].as_str().unwrap());
    assert_eq!(m.sql, v["status"]["generated"]["sql"].as_str().unwrap());
    assert_eq!((m.generation, m.round), (1, 1));
    // On --backend aws the requester is who AWS says applied it (moto's one IAM user, by its
    // STS ARN), not $USER.
    assert_eq!(m.requester.as_deref(), Some("arn:aws:sts::123456789012:user/moto"));

    // A decision message (sent as moto's one IAM user, mapped to alice) approves it.
    w.decide(&m, "approve", json!({"comment": "lgtm"}));
    let v = w.wait_phase("nations", "Done", T);
    assert_eq!(v["status"]["approval"]["by"], "alice");
    let exec = &v["status"]["execution"];
    let loc = exec["outputLocation"].as_str().unwrap();
    let uid = v["metadata"]["uid"].as_str().unwrap();
    assert!(loc.starts_with(&format!("{}/default/nations/{uid}/1-1/", w.export("SQLCTL_RESULTS_S3"))), "{loc}");
    assert!(exec["costUsd"].as_f64().unwrap() > 0.0);

    // `sqlctl results` streams the CSV from S3; it equals the SQL run independently.
    let csv = w.ok(&["results", "nations", "-o", "json"]).stdout;
    let got: serde_json::Value = serde_json::from_str(&csv).unwrap();
    let (cols, rows) = w.rt.block_on(sqlctl::engine::datafusion::run_sql_collect(warehouse(), "tpch", &m.sql)).unwrap();
    assert_eq!(got.as_array().unwrap().len(), rows.len());
    assert_eq!(got[0][&cols[0]].as_str(), rows[0][0].as_deref());
    assert_eq!(exec["rows"], rows.len());

    // describe shows where the result lives.
    assert!(w.ok(&["describe", "nations"]).stdout.contains(loc));

    let calls = w.fake.calls_by_service();
    eprintln!(
        "AWS calls for one question through approval (controller, incl. background polling): {calls:?}\n{:#?}",
        w.fake.calls()
    );
    assert_eq!(w.fake.effects(&m.sql), 1, "one Athena execution");
}

#[test]
fn refine_reject_and_malformed_decisions_over_sqs() {
    let Some(w) = AwsWorld::new(true) else { return };
    w.controller(&[]);
    w.apply(&spec("cust", "  question: How many customers are there?\n  catalog:\n    database: tpch\n"));
    w.wait_phase("cust", "AwaitingApproval", T);
    let first = w.approval_request("cust", T);

    // refine → regenerated, a second round and a second approval request.
    w.decide(&first, "refine", json!({"feedback": "by nation instead"}));
    let v = w.wait_for(
        "cust",
        T,
        |v| v["status"]["phase"] == "AwaitingApproval" && v["status"]["approvalRound"] == 2,
        "round 2",
    );
    let second = w.approval_request("cust", T);
    assert_eq!(second.round, 2);
    assert_eq!(second.sql_digest, v["status"]["generated"]["sqlDigest"].as_str().unwrap());

    // A decision on the first round's SQL is refused into the DLQ (unless the SQL is unchanged).
    let response_dlq = w.export("SQLCTL_RESPONSE_QUEUE_URL") + "-dlq";
    w.decide(&first, "approve", json!({}));
    // Malformed JSON and an impostor go to the DLQ too.
    w.send(&w.export("SQLCTL_RESPONSE_QUEUE_URL"), json!({"name": "cust", "decision": "approve"}));
    w.decide(&second, "approve", json!({"by": "mallory"}));
    // reject from alice ends it.
    w.decide(&second, "reject", json!({"comment": "not needed"}));
    let v = w.wait_phase("cust", "Rejected", T);
    assert_eq!(v["status"]["approval"]["by"], "alice");
    let dead = w.drain(&response_dlq, Duration::from_secs(5));
    let reasons: Vec<String> = dead.iter().map(|(_, r)| r.clone().unwrap_or_default()).collect();
    assert_eq!(dead.len(), 3, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("malformed")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("round") || r.contains("digest")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("mallory")), "{reasons:?}");
    assert!(w.controller_log(0).contains("moved to the dead-letter queue"));
}

/// Throughput and calls per request on moto: N hand-written requests approved over SQS as soon
/// as their approval request arrives.
#[test]
fn many_requests_through_approval_measure_throughput_and_calls() {
    let Some(w) = AwsWorld::new(true) else { return };
    // SQLCTL_TEST_AWS_REQUESTS raises N for a measurement run.
    let n: usize = std::env::var("SQLCTL_TEST_AWS_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let big = n > 50;
    let pid = w.controller_with(&[], &["--workers", "16"]);
    let limit = Duration::from_secs(if big { 900 } else { 180 });
    let alive = |w: &AwsWorld| {
        if let Some(code) = w.exited(pid) {
            panic!("the controller exited ({code}):\n{}", w.controller_log(0));
        }
    };
    // Idle cost first: what the controller calls with nothing to do (lease, change index, SQS).
    std::thread::sleep(Duration::from_secs(3));
    w.fake.reset_calls();
    let idle_start = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let idle = w.fake.calls();
    let idle_secs = idle_start.elapsed().as_secs_f64();
    w.fake.reset_calls();

    let start = Instant::now();
    let mut yaml = String::new();
    for i in 0..n {
        yaml.push_str(&spec(
            &format!("r{i:02}"),
            &format!(
                "  sql: select count(*) as n from nation where n_regionkey = {}\n  catalog:\n    database: tpch\n",
                i % 5
            ),
        ));
        yaml.push_str("---\n");
    }
    assert_eq!(w.apply(&yaml).code, 0);
    let mut approved = std::collections::HashSet::new();
    while approved.len() < n {
        for (body, _) in w.drain(&w.export("SQLCTL_REQUEST_QUEUE_URL"), Duration::from_secs(2)) {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["type"] == "ApprovalRequest" && approved.insert(v["name"].as_str().unwrap().to_string()) {
                let m: sqlctl::approval::sqs::ApprovalRequestMessage = serde_json::from_value(v).unwrap();
                w.decide(&m, "approve", json!({}));
            }
        }
        alive(&w);
        assert!(start.elapsed() < limit, "approved {} of {n}", approved.len());
    }
    let done = |w: &AwsWorld| {
        let o = w.ok(&["get", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"]["phase"] == "Done" && r["status"]["notified"].is_string())
            .count()
    };
    while done(&w) < n {
        alive(&w);
        assert!(start.elapsed() < limit, "{} of {n} done", done(&w));
        std::thread::sleep(Duration::from_millis(200));
    }
    let secs = start.elapsed().as_secs_f64();
    let busy = w.fake.calls();
    let mut per_request = std::collections::BTreeMap::new();
    for ((svc, op), calls) in &busy {
        let background = idle.get(&(svc.clone(), op.clone())).copied().unwrap_or(0) as f64 / idle_secs * secs;
        *per_request.entry(svc.clone()).or_insert(0.0) += (*calls as f64 - background).max(0.0) / n as f64;
    }
    eprintln!(
        "MEASURE aws throughput: {n} requests through SQS approval and Athena in {secs:.1}s = {:.2} req/s (includes the test's own approval round trips)",
        n as f64 / secs
    );
    eprintln!("MEASURE aws calls per request by service (background polling subtracted): {per_request:.1?}");
    eprintln!(
        "MEASURE aws idle calls per second: {:.1?}",
        idle.iter().map(|(k, c)| (k.clone(), *c as f64 / idle_secs)).collect::<Vec<_>>()
    );
    eprintln!("MEASURE aws calls during the run: {busy:#?}");
}

#[test]
fn aws_whoami_and_config_view_redact_secrets() {
    let Some(w) = AwsWorld::new(false) else { return };
    let o = w.ok(&["aws", "whoami"]);
    assert!(o.stdout.contains("approver: moto"), "{o:?}");
    let o = w.ok(&["config", "view"]);
    assert!(o.stdout.contains(&format!("table: {}", w.prefix)), "{o:?}");
    assert!(o.stdout.contains("backend: aws"), "{o:?}");
    assert!(!o.stdout.contains("testing"), "no credential is printed: {o:?}");
    assert!(o.stdout.contains("(set, redacted)"), "{o:?}");
    let j: serde_json::Value = serde_json::from_str(&w.ok(&["config", "view", "-o", "json"]).stdout).unwrap();
    assert_eq!(j["aws"]["responseQueueUrl"], w.export("SQLCTL_RESPONSE_QUEUE_URL").as_str());
    assert_eq!(j["aws"]["region"], "us-east-1");
}
