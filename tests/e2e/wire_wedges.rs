//! "Nothing wedges a request" and "Policy changes only on purpose" (issue 17, holes 2, 3, 4
//! and 7), through the real binary: the embedded store, and moto for DynamoDB/SQS.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::aws_support::{AwsWorld, spec};
use crate::harness::*;

fn conditions(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["status"]["conditions"].as_array().cloned().unwrap_or_default()
}

fn quarantined(v: &serde_json::Value, record: &str) -> bool {
    conditions(v).iter().any(|c| {
        c["type"] == "DecisionQuarantined"
            && c["status"] == "True"
            && c["message"].as_str().is_some_and(|m| m.contains(record))
    })
}

/// Polls `get` until `pred` holds.
fn wait_until(env: &Env, name: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = env.get(name);
        if pred(&v) {
            return v;
        }
        assert!(start.elapsed() < T, "{name}: {what} not reached: {v}\ncontroller log:\n{}", env.controller_log(0));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stored status as JSON, and its size in bytes.
fn status_bytes(v: &serde_json::Value) -> usize {
    serde_json::to_string(&v["status"]).unwrap().len()
}

/// Writes an undecodable decision record for `uid` straight into the embedded store.
fn junk_sqlite_decision(env: &Env, id: &str, uid: &str, name: &str) {
    let db = rusqlite::Connection::open(env.home.path().join("state.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT INTO decisions (id, uid, namespace, name, seq, body) VALUES (?1, ?2, 'default', ?3, 999999, ?4)",
        rusqlite::params![id, uid, name, "{\"decision\": \"approve\", not json"],
    )
    .unwrap();
}

/// Hole 2 on the embedded store: one junk decision record neither blocks a later valid
/// decision nor the approval deadline; it is quarantined with a condition naming it.
#[test]
fn hole2_a_junk_decision_record_is_quarantined_and_the_rest_proceed() {
    let env = Env::new();
    env.controller(&[]);
    env.apply(&sql_spec("junk-ok", "select count(*) from nation"));
    env.apply(&(sql_spec("junk-late", "select count(*) from region") + "  approval:\n    timeout: 5s\n"));
    let ok = env.wait_phase("junk-ok", "AwaitingApproval", T);
    let late = env.wait_phase("junk-late", "AwaitingApproval", T);
    junk_sqlite_decision(&env, "junk-1", ok["metadata"]["uid"].as_str().unwrap(), "junk-ok");
    junk_sqlite_decision(&env, "junk-2", late["metadata"]["uid"].as_str().unwrap(), "junk-late");

    let v = wait_until(&env, "junk-ok", "quarantine condition", |v| quarantined(v, "junk-1"));
    assert_eq!(v["status"]["phase"], "AwaitingApproval");
    // A later valid decision still counts.
    let digest = env.digest("junk-ok");
    env.ok(&["approve", "junk-ok", "--digest", &digest, "--as", "alice"]);
    let v = env.wait_phase("junk-ok", "Done", T);
    assert_eq!(v["status"]["approval"]["by"], "alice");
    assert!(quarantined(&v, "junk-1"), "{v}");

    // And the deadline still holds.
    let v = env.wait_phase("junk-late", "TimedOut", T);
    assert!(quarantined(&v, "junk-2"), "{v}");
    let log = env.controller_log(0);
    assert_eq!(log.matches("decision record quarantined").count(), 2, "logged once per record:\n{log}");
}

/// Hole 2 on DynamoDB: a junk `DEC#` item (as the approver role could write) is quarantined;
/// a later valid SQS decision is applied and another request still times out.
#[test]
fn hole2_a_junk_decision_item_in_dynamodb_is_quarantined_and_the_rest_proceed() {
    let Some(w) = AwsWorld::new(false) else { return };
    w.controller(&[]);
    let body = "  sql: \"select count(*) as n from nation\"\n  catalog:\n    database: tpch\n";
    assert_eq!(w.apply(&spec("djunk-ok", body)).code, 0);
    let late =
        "  sql: \"select count(*) as n from region\"\n  catalog:\n    database: tpch\n  approval:\n    timeout: 6s\n";
    assert_eq!(w.apply(&spec("djunk-late", late)).code, 0);
    let m = w.approval_request("djunk-ok", T);
    let v = w.wait_phase("djunk-late", "AwaitingApproval", T);
    let late_uid = v["metadata"]["uid"].as_str().unwrap().to_string();
    let ddb = aws_sdk_dynamodb::Client::new(&w.sdk);
    let table = w.export("SQLCTL_TABLE");
    use aws_sdk_dynamodb::types::AttributeValue as A;
    for (uid, sk) in [(m.uid.clone(), "junk-item-1"), (late_uid, "junk-item-2")] {
        w.rt.block_on(
            ddb.put_item()
                .table_name(&table)
                .item("pk", A::S(format!("DEC#{uid}")))
                .item("sk", A::S(sk.into()))
                .item("body", A::S("{\"by\": 7}".into()))
                .item("seq", A::N("1".into()))
                .send(),
        )
        .unwrap();
    }
    w.wait_for("djunk-ok", T, |v| quarantined(v, "junk-item-1"), "quarantine condition");
    w.decide(&m, "approve", serde_json::json!({"by": "alice"}));
    let v = w.wait_phase("djunk-ok", "Done", T);
    assert_eq!(v["status"]["approval"]["decision"], "Approve");
    let v = w.wait_phase("djunk-late", "TimedOut", T);
    assert!(quarantined(&v, "junk-item-2"), "{v}");
}

/// Hole 3 over SQS: a 360 KB comment is bounded where the decision is built; the request is
/// rejected and its stored status stays small.
#[test]
fn hole3_a_360kb_sqs_comment_ends_rejected_with_a_bounded_status() {
    let Some(w) = AwsWorld::new(false) else { return };
    w.controller(&[]);
    let body = "  sql: \"select count(*) as n from supplier\"\n  catalog:\n    database: tpch\n";
    assert_eq!(w.apply(&spec("huge-comment", body)).code, 0);
    let m = w.approval_request("huge-comment", T);
    w.decide(&m, "reject", serde_json::json!({"comment": "c".repeat(360_000)}));
    let v = w.wait_phase("huge-comment", "Rejected", T);
    let comment = v["status"]["approval"]["comment"].as_str().unwrap();
    assert!(comment.ends_with("…(truncated)") && comment.chars().count() <= 1_000, "{comment}");
    assert!(status_bytes(&v) < 20_000, "status is {} bytes", status_bytes(&v));
}

/// Hole 3 on the CLI: a 120 KB `--reason` gives a bounded status (it gave 363 KB).
#[test]
fn hole3_a_120kb_cli_reason_ends_rejected_with_a_bounded_status() {
    let env = Env::new();
    env.controller(&[]);
    env.apply(&sql_spec("huge-reason", "select count(*) from part"));
    env.wait_phase("huge-reason", "AwaitingApproval", T);
    let reason = "r".repeat(120_000);
    env.ok(&["reject", "huge-reason", "--reason", &reason]);
    let v = env.wait_phase("huge-reason", "Rejected", T);
    assert!(status_bytes(&v) < 20_000, "status is {} bytes: {v}", status_bytes(&v));
    // The stored record too, not only what `get` shows.
    let db = rusqlite::Connection::open(env.home.path().join("state.db")).unwrap();
    let stored: i64 = db.query_row("SELECT max(length(body)) FROM decisions", [], |r| r.get(0)).unwrap();
    assert!(stored < 5_000, "the decision record is {stored} bytes");
}

/// Hole 4: 55,000 `"` fit the 100 KB SQL limit but not the store once JSON-escaped in the
/// spec, the last-applied annotation and the status: apply refuses with the figure and the
/// limit, and nothing is written.
#[test]
fn hole4_a_spec_that_does_not_fit_the_store_is_refused_at_apply() {
    let env = Env::new();
    let sql = format!("select '{}' as q from nation", "\"".repeat(55_000));
    let o = env.apply(&sql_spec("escaped", &sql));
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("bytes as stored") && o.stderr.contains("350000"), "{o:?}");
    assert!(o.stderr.contains("nothing was applied"), "{o:?}");
    assert_eq!(env.count(), 0);
    // All or nothing: a valid document next to it is not written either.
    let two = format!("{}---\n{}", sql_spec("fine", "select 1"), sql_spec("escaped", &sql));
    let o = env.apply(&two);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("bytes as stored"), "{o:?}");
    assert_eq!(env.count(), 0);
    // A plain query of the same length is fine.
    let sql = format!("select '{}' as q from nation", "x".repeat(55_000));
    let o = env.apply(&sql_spec("plain", &sql));
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.count(), 1);
}

/// Hole 7: `ask` with no controller up starts one in-process; it uses the stored policy
/// (fourEyes: true) and never writes it, so the requester cannot approve their own request.
#[test]
fn hole7_ask_keeps_the_stored_policy_and_four_eyes_holds() {
    let env = Env::new();
    let p = env.home.path().join("policy.yaml");
    std::fs::write(&p, "fourEyes: true\napprovers: [alice, tester]\n").unwrap();
    let pid = env.controller(&["--policy", p.to_str().unwrap()]);
    let stored = || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use sqlctl::store::Store;
            let s = sqlctl::store::sqlite::SqliteStore::open(env.home.path().join("state.db")).unwrap();
            s.get_policy().await.unwrap()
        })
    };
    let start = Instant::now();
    while stored().is_none_or(|p| !p.four_eyes) {
        assert!(start.elapsed() < T, "policy never stored: {}", env.controller_log(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = stored().unwrap();
    assert!(env.controller_log(0).contains("audit: approval policy written from --policy"));
    signal(pid, libc::SIGTERM);
    assert_eq!(env.wait_child(pid, T), Some(0));

    let log = std::fs::File::create(env.home.path().join("ask.log")).unwrap();
    let mut ask = env
        .cmd()
        .args(["ask", "--sql", "select count(*) from nation", "--name", "mine", "--timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    env.wait_phase("mine", "AwaitingApproval", T);
    assert_eq!(stored().as_ref(), Some(&before), "ask's controller left the stored policy alone");
    let digest = env.digest("mine");
    let o = env.run(&["approve", "mine", "--digest", &digest]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("four-eyes"), "{o:?}");
    // A record written behind the CLI's back is refused by the in-process controller too.
    env.forge_approvals("mine", &digest, &[("self-approval".into(), "tester".into())]);
    let v = wait_until(&env, "mine", "self-approval refused", |v| {
        conditions(v).iter().any(|c| c["type"] == "DecisionRefused")
    });
    assert_eq!(v["status"]["phase"], "AwaitingApproval");
    let _ = ask.kill();
    let _ = ask.wait();
    assert_eq!(stored().as_ref(), Some(&before), "the stored policy is unchanged afterwards");
}
