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

/// Hole 6: on `--backend aws` people never write decision records. `sqlctl approve` checks the
/// decision, sends it over SQS and waits for the controller, which takes the decider from the
/// message's SenderId and writes the record itself. With no controller up, the CLI times out
/// with what to check, no decision record exists, and the message waits in the queue; the next
/// controller records it, as the sender AWS named.
#[test]
fn cli_decisions_on_aws_go_over_sqs_and_only_the_controller_writes_records() {
    use crate::aws_support::MOTO_SENDER;
    let Some(w) = AwsWorld::new(false) else { return };
    // moto's one IAM user id, mapped to its ARN: who AWS says sends (and who the CLI is).
    let senders = format!("{MOTO_SENDER}=arn:aws:iam::123456789012:user/moto");
    let controller = |log: &str| {
        w.cmd_at(&w.fake.url)
            .env("SQLCTL_SQS_SENDERS", &senders)
            .arg("controller")
            .args(["--generator", "offline", "--resync", "2s", "--retry-period", "200ms"])
            .args(["--renew-deadline", "1s", "--lease-duration", "2s"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(w.env.home.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut first = controller("first.log");
    assert_eq!(
        w.apply(&spec("viasqs", "  sql: select count(*) as n from region\n  catalog:\n    database: tpch\n")).code,
        0
    );
    let v = w.wait_phase("viasqs", "AwaitingApproval", T);
    let digest = v["status"]["generated"]["sqlDigest"].as_str().unwrap().to_string();
    let uid = v["metadata"]["uid"].as_str().unwrap().to_string();
    let _ = first.kill();
    let _ = first.wait();

    // No controller: the decision is sent, not written.
    let o = w.run(&["approve", "viasqs", "--digest", &digest, "--wait", "2s"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("over SQS"), "{o:?}");
    assert!(o.stderr.contains("has not recorded it") && o.stderr.contains("controller running"), "{o:?}");
    let table = w.export("SQLCTL_TABLE");
    let dynamo = aws_sdk_dynamodb::Client::new(&w.sdk);
    let decisions = w.rt.block_on(async {
        let out = dynamo.scan().table_name(&table).send().await.unwrap();
        out.items()
            .iter()
            .filter(|i| i.get("pk").and_then(|p| p.as_s().ok()).is_some_and(|p| p.starts_with("DEC#")))
            .filter(|i| i.contains_key("body"))
            .count()
    });
    assert_eq!(decisions, 0, "the CLI wrote no decision record on --backend aws");
    // A refused decision is refused by the CLI at once, with the controller's reasons.
    let o = w.run(&["approve", "viasqs", "--digest", &"0".repeat(64), "--wait", "2s"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("refused") && !o.stderr.contains("over SQS"), "nothing sent: {o:?}");

    // The next controller takes the queued message and records it as its sender.
    let mut second = controller("second.log");
    let v = w.wait_phase("viasqs", "Done", T);
    assert_eq!(v["status"]["approval"]["by"], "arn:aws:iam::123456789012:user/moto");
    let history = v["status"]["history"].as_array().unwrap();
    assert!(history.iter().any(|h| h["event"] == "Decision" && h["sqlDigest"] == digest.as_str()), "{history:?}");
    let sources = w.rt.block_on(async {
        let out = dynamo.scan().table_name(&table).send().await.unwrap();
        out.items()
            .iter()
            .filter(|i| i.get("pk").and_then(|p| p.as_s().ok()).is_some_and(|p| p == &format!("DEC#{uid}")))
            .filter_map(|i| i.get("body").and_then(|b| b.as_s().ok()).cloned())
            .collect::<Vec<_>>()
    });
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert!(sources[0].contains("\"source\":\"sqs\""), "written by the controller's SQS intake: {sources:?}");

    // With a controller up, approve waits for the record and says so (a reject of a new request).
    assert_eq!(
        w.apply(&spec("viasqs2", "  sql: select count(*) as n from nation\n  catalog:\n    database: tpch\n")).code,
        0
    );
    let v = w.wait_phase("viasqs2", "AwaitingApproval", T);
    let d2 = v["status"]["generated"]["sqlDigest"].as_str().unwrap().to_string();
    let o = w.run(&["reject", "viasqs2", "--digest", &d2, "--reason", "not now"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("rejection by") && o.stdout.contains("recorded"), "{o:?}");
    assert_eq!(w.wait_phase("viasqs2", "Rejected", T)["status"]["phase"], "Rejected");
    let _ = second.kill();
    let _ = second.wait();
}
