//! Issue 10, classes 2 and 10 through the real binary: SQL nobody approved is never evaluated in
//! the controller (planning runs in a limited child process), and what an approved query writes
//! is bounded by `limits.maxRows` and `limits.maxResultBytes`.

use std::time::{Duration, Instant};

use crate::harness::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET /healthz` on loopback with a short timeout: `Some(status line)` when it answered.
fn healthz(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines().next().map(str::to_string)
}

/// Specs whose planning would, in process, abort the controller (an allocation of 100 GB), hold
/// a core for ~30 s (quadratic levenshtein) or grow it by gigabytes (a 2 GiB lpad).
const HOSTILE: [(&str, &str); 3] = [
    ("bomb-alloc", "select length(repeat(arrow_cast('x', 'LargeUtf8'), 100000000000)) as n"),
    ("bomb-cpu", "select levenshtein(repeat('a', 150000), repeat('b', 150001)) as d"),
    ("bomb-lpad", "select lpad('x', 2147483647, 'y') as p"),
];

#[test]
fn unapproved_sql_is_never_evaluated_hostile_specs_fail_on_a_budget_and_the_controller_stays_up() {
    let env = Env::new();
    let port = free_port();
    let pid = env.controller(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let start = Instant::now();
    while healthz(port).is_none() {
        assert!(start.elapsed() < T, "controller never served /healthz:\n{}", env.controller_log(0));
        std::thread::sleep(Duration::from_millis(50));
    }
    for (name, sql) in HOSTILE {
        let o = env.apply(&sql_spec(name, sql));
        assert_eq!(o.code, 0, "{o:?}");
    }
    // While they are planned the controller keeps answering, and none of them gets anywhere
    // near approval with its expression evaluated.
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    loop {
        let asked = Instant::now();
        let line = healthz(port);
        slowest = slowest.max(asked.elapsed());
        assert!(
            line.as_deref().is_some_and(|l| l.starts_with("HTTP/1.1 200")),
            "/healthz did not answer while hostile specs were planned: {line:?}\n{}",
            env.controller_log(0)
        );
        let phases: Vec<String> = HOSTILE.iter().map(|(n, _)| env.phase(n)).collect();
        if phases.iter().all(|p| p == "Failed" || p == "AwaitingApproval") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{phases:?}\n{}", env.controller_log(0));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(slowest < Duration::from_secs(3), "/healthz took {slowest:?}");
    for (name, _) in HOSTILE {
        let v = env.get(name);
        let status = v["status"].to_string();
        assert_eq!(v["status"]["phase"], "Failed", "{name}: {status}");
        assert!(
            status.contains("exceeded its memory/CPU budget") && status.contains("before approval"),
            "{name} fails on the planning budget: {status}"
        );
        assert!(v["status"]["execution"].is_null(), "{name} never ran: {status}");
    }
    // The controller is the same process, still up.
    assert_eq!(env.wait_child(pid, Duration::from_millis(100)), None, "{}", env.controller_log(0));
    let log = env.controller_log(0);
    assert!(!log.contains("memory allocation of"), "the allocation failure stayed in the child:\n{log}");

    // A normal request after them goes through promptly, with its estimate.
    let asked = Instant::now();
    env.apply(&sql_spec("normal", "select n_name from nation where n_nationkey < 5"));
    let v = env.wait_phase("normal", "AwaitingApproval", T);
    assert!(asked.elapsed() < Duration::from_secs(30), "took {:?}", asked.elapsed());
    assert!(v["status"]["estimate"]["method"].as_str().is_some_and(|m| m.starts_with("local:")), "{v}");
    assert!(healthz(port).is_some_and(|l| l.starts_with("HTTP/1.1 200")));

    // The planner's subcommand is not part of the CLI anyone sees.
    let help = env.ok(&["--help"]).stdout;
    assert!(!help.contains(sqlctl::engine::preflight::SUBCOMMAND), "{help}");
}

#[test]
fn unapproved_sql_is_never_evaluated_a_restart_plans_pending_hostile_specs_again_without_dying() {
    let env = Env::new();
    // Applied before any controller runs: the first thing a (re)started controller does is plan it.
    env.apply(&sql_spec(HOSTILE[0].0, HOSTILE[0].1));
    let pid = env.controller(&[]);
    let v = env.wait_phase(HOSTILE[0].0, "Failed", T);
    assert!(v["status"].to_string().contains("budget"), "{v}");
    assert_eq!(env.wait_child(pid, Duration::from_millis(100)), None, "{}", env.controller_log(0));
}

#[test]
fn unbounded_output_max_rows_stops_the_result_file() {
    let env = Env::new();
    env.controller(&[]);
    env.apply(&(sql_spec("five", "select * from lineitem") + "  limits:\n    maxRows: 5\n"));
    env.wait_phase("five", "AwaitingApproval", T);
    let digest = env.digest("five");
    env.ok(&["approve", "five", "--digest", &digest]);
    let v = env.wait_phase("five", "Done", T);
    assert_eq!(v["status"]["execution"]["rows"], 5, "{v}");
    let preview = &v["status"]["execution"]["preview"];
    assert_eq!(preview["rows"].as_array().unwrap().len(), 5);
    assert_eq!(preview["truncated"], true, "the result had more rows than it kept");
    let conditions = v["status"]["conditions"].as_array().unwrap();
    let executed = conditions.iter().find(|c| c["type"] == "Executed").unwrap();
    assert!(executed["message"].as_str().unwrap().contains("stopped at limits.maxRows (5 rows)"), "{executed}");
    let out = env.ok(&["results", "five"]).stdout;
    assert_eq!(out.lines().count(), 6, "a header and exactly 5 data rows: {out}");
    // The file on disk is that small too.
    let location = v["status"]["execution"]["outputLocation"].as_str().unwrap();
    let size = std::fs::metadata(location).unwrap().len();
    assert!(size < 4096, "{size} bytes");
}

#[test]
fn unbounded_output_max_result_bytes_stops_the_writer() {
    let env = Env::new();
    env.controller(&[]);
    let spec =
        sql_spec("wide", "select * from lineitem") + "  limits:\n    maxRows: 100000\n    maxResultBytes: 16KiB\n";
    env.apply(&spec);
    env.wait_phase("wide", "AwaitingApproval", T);
    let digest = env.digest("wide");
    env.ok(&["approve", "wide", "--digest", &digest]);
    let v = env.wait_phase("wide", "Failed", T);
    let status = v["status"].to_string();
    assert!(status.contains("limits.maxResultBytes (16.0 KiB)"), "{status}");
    assert_eq!(v["status"]["execution"]["state"], "Failed", "{status}");
    // Nothing partial is left under the results directory.
    let mut stack = vec![env.home.path().join("results")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                panic!("left behind: {}", p.display());
            }
        }
    }
    // The same query within the limit runs (and the digest covers the limit: a new one).
    let spec = sql_spec("narrow", "select * from lineitem") + "  limits:\n    maxRows: 10\n    maxResultBytes: 16KiB\n";
    env.apply(&spec);
    env.wait_phase("narrow", "AwaitingApproval", T);
    assert_ne!(env.digest("narrow"), digest);
    let d = env.digest("narrow");
    env.ok(&["approve", "narrow", "--digest", &d]);
    assert_eq!(env.wait_phase("narrow", "Done", T)["status"]["execution"]["rows"], 10);
}
