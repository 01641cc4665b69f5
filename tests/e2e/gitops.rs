//! GitOps and operations: `diff` before `apply`, idempotent directory applies, the container
//! `healthcheck`, and CloudWatch EMF metric lines from the controller.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A copy of the repository's `specs/` directory that a test may edit.
fn specs_copy(env: &Env) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs");
    let dst = env.home.path().join("specs");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

/// The `(namespace, name)` of every request the directory defines (read with the library's
/// own loader).
fn spec_names(dir: &Path) -> Vec<(String, String)> {
    let docs = sqlctl::spec::load::load_paths(&[dir.display().to_string()]).expect("specs/ loads");
    let mut names: Vec<(String, String)> = docs
        .into_iter()
        .map(|d| (d.document.metadata().namespace().to_string(), d.document.metadata().name.clone()))
        .collect();
    names.sort();
    names
}

/// A request's stored resourceVersion.
fn version(env: &Env, ns: &str, name: &str) -> serde_json::Value {
    let o = env.ok(&["get", "-n", ns, name, "-o", "json"]);
    serde_json::from_str::<serde_json::Value>(&o.stdout).unwrap()["metadata"]["resourceVersion"].clone()
}

#[test]
fn diff_shows_creations_then_nothing_then_the_edited_field() {
    let env = Env::new();
    let dir = specs_copy(&env);
    let d = dir.to_str().unwrap();
    let names = spec_names(&dir);
    assert!(names.len() >= 3, "{names:?}");

    // A fresh store: everything would be created; exit 1; nothing written.
    let o = env.run(&["diff", "-f", d]);
    assert_eq!(o.code, 1, "{o:?}");
    for (ns, n) in &names {
        assert!(o.stdout.contains(&format!("queryrequest/{n} created\n")), "{o:?}");
        assert!(o.stdout.contains(&format!("+++ desired/queryrequest/{ns}/{n}\n")), "{o:?}");
    }
    assert!(o.stdout.contains("--- /dev/null\n"), "{o:?}");
    assert!(o.stdout.contains("+  question: Which 10 customers have the highest account balance?\n"), "{o:?}");
    assert!(!o.stdout.contains("last-applied"), "bookkeeping annotations are not shown: {o:?}");
    assert_eq!(env.count(), 0, "diff must not write");

    // After apply: nothing would change; exit 0.
    env.ok(&["apply", "-f", d]);
    let o = env.run(&["diff", "-f", d]);
    assert_eq!(o.code, 0, "{o:?}");
    for (_, n) in &names {
        assert!(o.stdout.contains(&format!("queryrequest/{n} unchanged\n")), "{o:?}");
    }
    assert!(!o.stdout.contains("@@"), "{o:?}");

    // Edit one file: only that object is configured, and the diff shows the field.
    let file = dir.join("top-customers.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("maxRows: 10\n"));
    std::fs::write(&file, text.replace("maxRows: 10\n", "maxRows: 25\n")).unwrap();
    let rv = env.get("top-customers")["metadata"]["resourceVersion"].clone();
    let o = env.run(&["diff", "-f", d]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("queryrequest/top-customers configured\n"), "{o:?}");
    assert!(o.stdout.contains("--- live/queryrequest/default/top-customers\n"), "{o:?}");
    let minus: Vec<&str> = o.stdout.lines().filter(|l| l.starts_with('-') && !l.starts_with("---")).collect();
    let plus: Vec<&str> = o.stdout.lines().filter(|l| l.starts_with('+') && !l.starts_with("+++")).collect();
    assert!(minus.len() == 1 && minus[0].trim_start_matches('-').trim() == "maxRows: 10", "{o:?}");
    assert!(plus.len() == 1 && plus[0].trim_start_matches('+').trim() == "maxRows: 25", "{o:?}");
    assert!(o.stdout.contains("queryrequest/revenue-by-region unchanged\n"), "{o:?}");
    assert_eq!(env.get("top-customers")["metadata"]["resourceVersion"], rv, "diff must not write");
    assert_eq!(env.get("top-customers")["spec"]["limits"]["maxRows"], 10);

    // The same as data, for CI bots.
    let o = env.run(&["diff", "-f", d, "-o", "json"]);
    assert_eq!(o.code, 1, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["changed"], true);
    let item = v["items"].as_array().unwrap().iter().find(|i| i["name"] == "top-customers").unwrap().clone();
    assert_eq!(item["action"], "configured");
    assert_eq!(item["live"]["spec"]["limits"]["maxRows"], 10);
    assert_eq!(item["desired"]["spec"]["limits"]["maxRows"], 25);
    assert!(item["diff"].as_str().unwrap().contains("maxRows: 25"), "{item}");

    // Dropping a field from the file removes it (three-way merge): diff shows the removal.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("  labels:\n    team: growth\n", "")).unwrap();
    let o = env.run(&["diff", "-f", file.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.lines().any(|l| l.starts_with('-') && l.contains("team: growth")), "{o:?}");

    // Apply the edits: configured, then nothing left to diff.
    let o = env.ok(&["apply", "-f", d]);
    assert!(o.stdout.contains("queryrequest/top-customers configured"), "{o:?}");
    let o = env.run(&["diff", "-f", d]);
    assert_eq!(o.code, 0, "{o:?}");
    let v = env.get("top-customers");
    assert_eq!(v["spec"]["limits"]["maxRows"], 25);
    assert!(v["metadata"]["labels"].get("team").is_none(), "{v}");
}

#[test]
fn diff_refuses_invalid_input_with_exit_2_and_the_same_errors_as_apply() {
    let env = Env::new();
    let bad = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs/bad.yaml");
    let bad = bad.to_str().unwrap();
    let d = env.run(&["diff", "-f", bad]);
    assert_eq!(d.code, 2, "{d:?}");
    assert!(d.stderr.contains("metadata.name") && d.stderr.contains("maxRows"), "{d:?}");
    assert!(d.stderr.contains("nothing was compared"), "{d:?}");
    let a = env.run(&["apply", "-f", bad]);
    assert_eq!(a.code, 1, "{a:?}");
    // Every problem line apply reports, diff reports too.
    let problems = |s: &str| -> Vec<String> { s.lines().filter(|l| l.contains(bad)).map(String::from).collect() };
    assert!(!problems(&a.stderr).is_empty(), "{a:?}");
    assert_eq!(problems(&d.stderr).len(), problems(&a.stderr).len(), "{d:?}\n{a:?}");
    for p in problems(&a.stderr) {
        let p = p.trim_start_matches("sqlctl: ");
        assert!(d.stderr.contains(p), "diff lacks {p:?}: {d:?}");
    }

    // SQL that can never run: refused as apply refuses it.
    let o = env.run_stdin(&["diff", "-f", "-"], sql_spec("dropper", "drop table nation").as_bytes());
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("spec.sql"), "{o:?}");
    // No -f at all, and a missing file: usage.
    assert_eq!(env.run(&["diff"]).code, 2);
    let o = env.run(&["diff", "-f", "/nonexistent/specs"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("/nonexistent/specs"), "{o:?}");
    assert_eq!(env.count(), 0, "nothing may be written");
}

#[test]
fn applying_a_directory_twice_is_idempotent_and_dry_run_writes_nothing() {
    let env = Env::new();
    let dir = specs_copy(&env);
    let d = dir.to_str().unwrap();
    let names = spec_names(&dir);

    let o = env.ok(&["apply", "-f", d, "--dry-run"]);
    for (_, n) in &names {
        assert!(o.stdout.contains(&format!("queryrequest/{n} created (dry run)")), "{o:?}");
    }
    assert_eq!(env.count(), 0, "a dry run writes nothing");

    let o = env.ok(&["apply", "-f", d]);
    for (_, n) in &names {
        assert!(o.stdout.contains(&format!("queryrequest/{n} created")), "{o:?}");
    }
    let versions: Vec<serde_json::Value> = names.iter().map(|(ns, n)| version(&env, ns, n)).collect();
    for _ in 0..2 {
        let o = env.ok(&["apply", "-f", d]);
        assert_eq!(o.stdout.lines().count(), names.len(), "{o:?}");
        assert!(o.stdout.lines().all(|l| l.ends_with(" unchanged")), "{o:?}");
        let o = env.ok(&["apply", "-f", d, "--dry-run"]);
        assert!(o.stdout.lines().all(|l| l.ends_with(" unchanged (dry run)")), "{o:?}");
    }
    let after: Vec<serde_json::Value> = names.iter().map(|(ns, n)| version(&env, ns, n)).collect();
    assert_eq!(versions, after, "an unchanged apply writes nothing");
    assert_eq!(env.count(), names.len());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn healthcheck_is_healthy_against_a_running_controller_and_not_against_nothing() {
    let env = Env::new();
    let port = free_port();
    env.controller(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let start = Instant::now();
    let o = loop {
        let o = env.run(&["healthcheck", "--url", &url]);
        if o.code == 0 || start.elapsed() > T {
            break o;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(o.code, 0, "{o:?}\n{}", env.controller_log(0));
    assert!(o.stdout.starts_with(&format!("healthy: GET {url} returned 200")), "{o:?}");

    // In a container the controller's SQLCTL_METRICS_ADDR is all it needs (0.0.0.0 → loopback).
    let o = env.cmd().arg("healthcheck").env("SQLCTL_METRICS_ADDR", format!("0.0.0.0:{port}")).output().unwrap();
    assert!(o.status.success(), "{o:?}");

    // Nothing listening: exit 1, one line saying why.
    let dead = free_port();
    let o = env.run(&["healthcheck", "--metrics-addr", &format!("127.0.0.1:{dead}"), "--timeout", "2s"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    assert!(o.stderr.contains("unhealthy") && o.stderr.contains("connection refused"), "{o:?}");
    // A URL that is not plain HTTP is a usage error.
    assert_eq!(env.run(&["healthcheck", "--url", "https://example.com/healthz"]).code, 2);
}

/// Kills the process when the test ends, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_controller_writes_parseable_emf_lines_with_a_heartbeat() {
    let env = Env::new();
    let mut child = Killed(
        env.cmd()
            .args(["controller", "--retry-period", "200ms", "--renew-deadline", "1s", "--lease-duration", "2s"])
            .args(["--metrics-emf", "--metrics-emf-interval", "200ms", "--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Logs go to stderr; drain it so the controller never blocks on a full pipe.
    let stderr = child.0.stderr.take().unwrap();
    let logs = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());

    env.apply(&sql_spec("metered", "select count(*) from nation"));
    let mut lines: Vec<serde_json::Value> = Vec::new();
    let start = Instant::now();
    // Wait for a leader's line that saw the request reach AwaitingApproval.
    while !lines.iter().any(|v| v["IsLeader"] == 1 && v["RequestsAwaitingApproval"] == 1) {
        assert!(start.elapsed() < T, "no EMF line saw the request: {lines:?}");
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        lines.push(v);
    }
    for v in &lines {
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "sqlctl", "{v}");
        assert_eq!(d["Dimensions"], serde_json::json!([["Service"]]), "{v}");
        assert_eq!(v["Heartbeat"], 1, "{v}");
        assert!(v["_aws"]["Timestamp"].is_i64(), "{v}");
        for m in d["Metrics"].as_array().unwrap() {
            assert!(v[m["Name"].as_str().unwrap()].is_u64(), "{m} has no value in {v}");
        }
    }
    let sum = |name: &str| lines.iter().map(|v| v[name].as_u64().unwrap_or(0)).sum::<u64>();
    assert!(sum("Reconciles") >= 1, "{lines:?}");
    assert!(sum("PhaseTransitions") >= 1, "{lines:?}");
    assert_eq!(sum("ReconcileErrors"), 0, "{lines:?}");

    // SIGTERM: a clean drain, and a last line on the way out.
    let signalled = chrono::Utc::now().timestamp_millis();
    signal(child.0.id(), libc::SIGTERM);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = rx.iter().collect();
    let last: serde_json::Value = serde_json::from_str(rest.last().expect("no line after SIGTERM")).unwrap();
    assert_eq!(last["Heartbeat"], 1);
    assert!(last["_aws"]["Timestamp"].as_i64().unwrap() >= signalled, "no last line on shutdown: {rest:?}");
    let logs = logs.join().unwrap();
    assert!(logs.contains("writing CloudWatch EMF metrics"), "{logs}");
    assert!(!logs.contains("\"_aws\""), "EMF lines go to stdout only: {logs}");
}
