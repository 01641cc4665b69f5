//! Crashes and competition: kill -9 mid-query, two controllers, a deposed leader.

use std::time::Duration;

use crate::harness::*;

/// A query that takes a few seconds on the scale-0.01 warehouse in a debug build.
const SLOW: &str = "select count(*) as n from lineitem a join lineitem b on a.l_suppkey = b.l_suppkey where a.l_quantity > b.l_quantity";

#[test]
fn kill_9_during_executing_then_restart_completes_and_records_once() {
    let env = Env::new();
    let pid = env.controller(&[]);
    env.apply(&sql_spec("crashy", SLOW));
    env.wait_phase("crashy", "AwaitingApproval", T);
    let digest = env.digest("crashy");
    env.ok(&["approve", "crashy", "--digest", &digest]);
    let v = env.wait_phase("crashy", "Executing", T);
    assert!(v["status"]["execution"]["token"].as_str().is_some(), "intent is written before the start: {v}");
    signal(pid, libc::SIGKILL);
    env.wait_child(pid, T);
    assert_eq!(env.phase("crashy"), "Executing", "killed mid-query");
    env.controller(&[]);
    let v = env.wait_phase("crashy", "Done", Duration::from_secs(180));
    let hist = v["status"]["history"].as_array().unwrap();
    assert_eq!(hist.iter().filter(|h| h["event"] == "Executed").count(), 1, "{v}");
    assert_eq!(v["status"]["execution"]["attempt"], 1);
    let out = env.ok(&["results", "crashy"]).stdout;
    assert_eq!(out.lines().count(), 2, "header + one row: {out}");
    // The result directory holds exactly one finished result file for this request.
    let uid = v["metadata"]["uid"].as_str().unwrap();
    let dir = env.home.path().join(format!("results/default/crashy/{uid}"));
    let files: Vec<_> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.iter().filter(|f| f.ends_with(".csv")).count(), 1, "{files:?}");
}

#[test]
fn two_controllers_run_each_query_once() {
    let env = Env::new();
    env.controller(&["--identity", "one"]);
    env.controller(&["--identity", "two"]);
    let mut yaml = String::new();
    for i in 0..12 {
        yaml.push_str(&sql_spec(&format!("pair-{i}"), &format!("select count(*) + {i} as n from nation")));
        yaml.push_str("---\n");
    }
    let o = env.apply(&yaml);
    assert_eq!(o.code, 0, "{o:?}");
    for i in 0..12 {
        let name = format!("pair-{i}");
        env.wait_phase(&name, "AwaitingApproval", T);
        let d = env.digest(&name);
        env.ok(&["approve", &name, "--digest", &d]);
    }
    for i in 0..12 {
        let v = env.wait_phase(&format!("pair-{i}"), "Done", T);
        let hist = v["status"]["history"].as_array().unwrap();
        assert_eq!(hist.iter().filter(|h| h["event"] == "Executed").count(), 1);
        assert_eq!(v["status"]["execution"]["preview"]["rows"][0][0], (25 + i).to_string());
    }
    let logs = env.controller_log(0) + &env.controller_log(1);
    assert_eq!(logs.matches("became leader").count(), 1, "exactly one leader: {logs}");
}

#[test]
fn a_paused_leader_is_deposed_and_its_writes_are_refused() {
    let env = Env::new();
    let first = env.controller(&["--identity", "first"]);
    std::thread::sleep(Duration::from_millis(800));
    env.controller(&["--identity", "second"]);
    env.apply(&sql_spec("fenced", "select count(*) from nation"));
    env.wait_phase("fenced", "AwaitingApproval", T);
    assert!(env.controller_log(0).contains("became leader"));
    // Freeze the leader (a long GC pause, a stalled VM): the standby takes over after a lease.
    signal(first, libc::SIGSTOP);
    let start = std::time::Instant::now();
    while !env.controller_log(1).contains("became leader") {
        assert!(start.elapsed() < T, "standby never took over:\n{}", env.controller_log(1));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Work goes on under the new leader.
    let d = env.digest("fenced");
    env.ok(&["approve", "fenced", "--digest", &d]);
    env.wait_phase("fenced", "Done", T);
    // The old leader wakes up: its renew is fenced, it steps down and exits non-zero.
    signal(first, libc::SIGCONT);
    let code = env.wait_child(first, T).expect("the deposed leader must exit");
    assert_ne!(code, 0);
    let log = env.controller_log(0);
    assert!(log.contains("stepping down") || log.contains("lost the leader lease"), "{log}");
}

#[test]
fn sigterm_drains_releases_the_lease_and_a_standby_takes_over_at_once() {
    let env = Env::new();
    let first = env.controller(&["--identity", "first", "--lease-duration", "30s", "--renew-deadline", "20s"]);
    let start = std::time::Instant::now();
    while !env.controller_log(0).contains("became leader") {
        assert!(start.elapsed() < T);
        std::thread::sleep(Duration::from_millis(50));
    }
    env.controller(&["--identity", "second", "--lease-duration", "30s", "--renew-deadline", "20s"]);
    std::thread::sleep(Duration::from_millis(500));
    signal(first, libc::SIGTERM);
    assert_eq!(env.wait_child(first, Duration::from_secs(20)), Some(0), "{}", env.controller_log(0));
    assert!(env.controller_log(0).contains("released the leader lease"), "{}", env.controller_log(0));
    // Well before the 30 s lease would expire, the standby leads.
    let t = std::time::Instant::now();
    while !env.controller_log(1).contains("became leader") {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", env.controller_log(1));
        std::thread::sleep(Duration::from_millis(50));
    }
    env.apply(&sql_spec("after-handover", "select count(*) from region"));
    env.wait_phase("after-handover", "AwaitingApproval", T);
}
