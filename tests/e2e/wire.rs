//! "Approvals hold on the wire" (the AWS path), through the real binary against moto and the
//! loopback Athena stand-in in fake_aws.rs.

use std::process::Stdio;

use crate::aws_support::{AwsWorld, spec};
use crate::harness::T;

/// `AWS_ENDPOINT_URL_ATHENA` wins over the global endpoint override, as the AWS SDKs document:
/// with everything else pointed at moto, every Athena call reaches the stand-in.
#[test]
fn per_service_endpoint_variables_win_over_the_global_override() {
    let Some(w) = AwsWorld::new(true) else { return };
    let log = w.env.home.path().join("aws-controller-0.log");
    let mut child = w
        .cmd_at(&w.moto)
        .env("AWS_ENDPOINT_URL_ATHENA", &w.fake.url)
        .arg("controller")
        .args(["--generator", "offline", "--resync", "2s"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let yaml = spec("routed", "  sql: \"select count(*) as n from nation\"\n  catalog:\n    database: tpch\n");
    assert_eq!(w.apply(&yaml).code, 0);
    let v = w.wait_phase("routed", "AwaitingApproval", T);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(v["status"]["generated"]["sql"], "SELECT count(*) AS n FROM nation");
    let by_service = w.fake.calls_by_service();
    assert!(by_service.get("athena").copied().unwrap_or(0) >= 1, "the EXPLAIN went to the stand-in: {by_service:?}");
    assert_eq!(by_service.get("dynamodb").copied().unwrap_or(0), 0, "the rest went to moto: {by_service:?}");
}

/// A message whose refusal reason echoes hostile text (a `decision` of 40,000 control
/// characters, ~200 KB once quoted) is dead-lettered with a bounded reason, and the valid decision
/// in the same batch is recorded: one message never stalls the intake.
#[test]
fn sqs_intake_never_stalls_on_a_message_it_cannot_dead_letter() {
    let Some(w) = AwsWorld::new(false) else { return };
    let pid = w.controller(&[]);
    let yaml = spec("intake", "  sql: \"select count(*) as n from region\"\n  catalog:\n    database: tpch\n");
    assert_eq!(w.apply(&yaml).code, 0);
    let m = w.approval_request("intake", T);
    // Both messages wait in the queue for the next controller: one batch.
    crate::harness::signal(pid, libc::SIGKILL);
    w.wait_child(pid, T);
    let hostile = serde_json::json!({
        "name": m.name, "uid": m.uid, "generation": m.generation, "round": m.round,
        "sqlDigest": m.sql_digest, "decision": "\u{1}".repeat(40_000),
    });
    w.send(&w.export("SQLCTL_RESPONSE_QUEUE_URL"), hostile);
    w.decide(&m, "approve", serde_json::json!({}));
    w.controller(&[]);
    let v = w.wait_phase("intake", "Done", T);
    assert_eq!(v["status"]["approval"]["decision"], "Approve");
    let start = std::time::Instant::now();
    let log = loop {
        let log = w.controller_log(1);
        if log.contains("moved to the dead-letter queue") {
            break log;
        }
        assert!(start.elapsed() < T, "the hostile message was not dead-lettered:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(!log.contains("left for redelivery"), "{log}");
}
