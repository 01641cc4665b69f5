//! The main flows through the real binary.

use crate::harness::*;

const TOP_NATIONS: &str = "select n_name, count(*) as customers, sum(c_acctbal) as balance \
from customer join nation on c_nationkey = n_nationkey group by n_name order by balance desc, n_name limit 7";

#[test]
fn apply_approve_done_with_results_equal_to_an_independent_run() {
    let env = Env::new();
    let o = env.apply(&sql_spec("top-nations", TOP_NATIONS));
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("queryrequest/top-nations created"), "{o:?}");
    env.controller(&[]);
    env.wait_phase("top-nations", "AwaitingApproval", T);

    // get -o wide shows a digest prefix for reading (approvals name the full digest).
    let digest = env.digest("top-nations");
    let wide = env.ok(&["get", "-o", "wide"]);
    assert!(wide.stdout.contains(&digest[..12]), "{wide:?}");
    // describe shows the SQL and the full digest.
    let d = env.ok(&["describe", "top-nations"]);
    assert!(d.stdout.contains(&digest) && d.stdout.contains("GROUP BY n_name"), "{d:?}");

    // Without a terminal, approve requires --digest.
    let o = env.run(&["approve", "top-nations"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("--digest"), "{o:?}");

    // A prefix is refused as an approval; the full digest is the approval.
    let o = env.run(&["approve", "top-nations", "--digest", &digest[..12], "--as", "alice"]);
    assert_eq!(o.code, 1, "{o:?}");
    env.ok(&["approve", "top-nations", "--digest", &digest, "--as", "alice"]);
    let v = env.wait_phase("top-nations", "Done", T);
    let exec = &v["status"]["execution"];
    assert_eq!(exec["rows"], 7);
    assert_eq!(v["status"]["approval"]["by"], "alice");
    assert_eq!(v["status"]["approval"]["sqlDigest"], digest.as_str());

    // The full result equals the same SQL run independently.
    let csv = env.ok(&["results", "top-nations"]).stdout;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (cols, rows) =
        rt.block_on(sqlctl::engine::datafusion::run_sql_collect(warehouse(), "tpch", TOP_NATIONS)).unwrap();
    let mut expected = cols.join(",") + "\n";
    for r in &rows {
        expected.push_str(&r.iter().map(|c| c.clone().unwrap_or_default()).collect::<Vec<_>>().join(","));
        expected.push('\n');
    }
    assert_eq!(csv, expected);
    // The preview is the same rows.
    let preview = &exec["preview"]["rows"];
    assert_eq!(preview.as_array().unwrap().len(), 7);
    assert_eq!(preview[0][0].as_str(), rows[0][0].as_deref());

    // results in json and table form
    let j: serde_json::Value = serde_json::from_str(&env.ok(&["results", "top-nations", "-o", "json"]).stdout).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 7);
    assert!(env.ok(&["results", "top-nations", "-o", "table"]).stdout.starts_with("n_name"));

    // wait on a terminal phase returns at once; waiting for another terminal phase fails (1).
    env.ok(&["wait", "top-nations", "--for", "phase=Done", "--timeout", "5s"]);
    let o = env.run(&["wait", "top-nations", "--for", "phase=Rejected", "--timeout", "5s"]);
    assert_eq!(o.code, 1, "{o:?}");

    // Re-applying the same file is `unchanged` and writes nothing.
    let before = env.get("top-nations")["metadata"]["resourceVersion"].clone();
    let o = env.apply(&sql_spec("top-nations", TOP_NATIONS));
    assert!(o.stdout.contains("unchanged"), "{o:?}");
    assert_eq!(env.get("top-nations")["metadata"]["resourceVersion"], before);
    // History: exactly one execution recorded.
    let hist = v["status"]["history"].as_array().unwrap();
    assert_eq!(hist.iter().filter(|h| h["event"] == "Executed").count(), 1);
}

#[test]
fn reject_ends_the_request_without_running_it() {
    let env = Env::new();
    env.controller(&[]);
    env.apply(&sql_spec("to-reject", "select count(*) from orders"));
    env.wait_phase("to-reject", "AwaitingApproval", T);
    let digest = env.digest("to-reject");
    env.ok(&["reject", "to-reject", "--reason", "not needed", "--digest", &digest]);
    let v = env.wait_phase("to-reject", "Rejected", T);
    assert!(v["status"]["execution"].is_null());
    let o = env.run(&["results", "to-reject"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("Rejected"), "{o:?}");
    // A decision on a finished request is refused at once.
    let o = env.run(&["approve", "to-reject", "--digest", &digest]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not AwaitingApproval"), "{o:?}");
}

#[test]
fn refine_of_hand_written_sql_is_refused_with_what_to_do_instead() {
    let env = Env::new();
    env.controller(&[]);
    env.apply(&sql_spec("hand", "select 1 as one from region limit 1"));
    env.wait_phase("hand", "AwaitingApproval", T);
    let o = env.run(&["refine", "hand", "--feedback", "use 2023"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("edit spec.sql") && o.stderr.contains("apply"), "{o:?}");
    assert_eq!(env.phase("hand"), "AwaitingApproval");
}

#[test]
fn editing_the_spec_starts_a_new_generation_and_the_old_digest_is_refused() {
    let env = Env::new();
    env.controller(&[]);
    env.apply(&sql_spec("edited", "select count(*) from nation"));
    env.wait_phase("edited", "AwaitingApproval", T);
    let old = env.digest("edited");
    let o = env.apply(&sql_spec("edited", "select count(*) from region"));
    assert!(o.stdout.contains("configured"), "{o:?}");
    assert_eq!(env.get("edited")["metadata"]["generation"], 2);
    // Wait for the new SQL to await approval.
    let start = std::time::Instant::now();
    while env.get("edited")["status"]["observedGeneration"] != 2 || env.phase("edited") != "AwaitingApproval" {
        assert!(start.elapsed() < T);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = env.run(&["approve", "edited", "--digest", &old]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("does not match"), "{o:?}");
    let new = env.digest("edited");
    assert_ne!(old, new);
    env.ok(&["approve", "edited", "--digest", &new]);
    let v = env.wait_phase("edited", "Done", T);
    assert_eq!(v["status"]["execution"]["preview"]["rows"][0][0], "5");
}

#[test]
fn approval_times_out() {
    let env = Env::new();
    env.controller(&[]);
    let spec = sql_spec("slowpoke", "select count(*) from nation") + "  approval:\n    timeout: 2s\n";
    assert_eq!(env.apply(&spec).code, 0);
    let v = env.wait_phase("slowpoke", "TimedOut", T);
    let conds = v["status"]["conditions"].as_array().unwrap();
    assert!(conds.iter().any(|c| c["reason"] == "ApprovalTimeout"), "{v}");
    let o = env.run(&["approve", "slowpoke", "--digest", v["status"]["generated"]["sqlDigest"].as_str().unwrap()]);
    assert_eq!(o.code, 1);
}

#[test]
fn ask_with_sql_runs_end_to_end_with_an_in_process_controller() {
    let env = Env::new();
    // No terminal: ask prints how to decide and waits; approve from "another terminal".
    let child = env
        .cmd()
        .args(["ask", "--sql", "select r_name from region order by r_name", "--name", "asked", "--timeout", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_phase("asked", "AwaitingApproval", T);
    let digest = env.digest("asked");
    env.ok(&["approve", "asked", "--digest", &digest]);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("AFRICA") && stdout.contains("MIDDLE EAST"), "{stdout}");
    assert!(stderr.contains("5 rows"), "{stderr}");
}

#[test]
fn question_requests_wait_for_a_generator() {
    let env = Env::new();
    env.controller(&["--generator", "none"]);
    let yaml = "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: q1\nspec:\n  question: how many nations are there?\n  catalog:\n    database: tpch\n";
    assert_eq!(env.apply(yaml).code, 0);
    let start = std::time::Instant::now();
    loop {
        let v = env.get("q1");
        let conds = v["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if conds.iter().any(|c| c["type"] == "Generated" && c["reason"] == "NoGenerator") {
            assert_eq!(v["status"]["phase"], "Pending");
            break;
        }
        assert!(start.elapsed() < T, "{v}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn controller_serves_health_readiness_and_metrics() {
    let env = Env::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.controller(&["--metrics-addr", &format!("127.0.0.1:{port}"), "--log-format", "json"]);
    env.apply(&sql_spec("metered", "select count(*) from nation"));
    env.wait_phase("metered", "AwaitingApproval", T);
    let get = |path: &str| -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").starts_with("HTTP/1.1 200"));
    // Requests by phase come from the leader's background count (at most one store count per
    // few seconds while records change), never from a store read per scrape.
    let deadline = std::time::Instant::now() + T;
    let m = loop {
        let m = get("/metrics");
        if m.contains("sqlctl_requests{phase=\"AwaitingApproval\"} 1") || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(m.contains("sqlctl_requests{phase=\"AwaitingApproval\"} 1"), "{m}");
    assert!(m.contains("sqlctl_reconciles_total{result=\"success\"}"), "{m}");
    assert!(m.contains("sqlctl_leader 1"), "{m}");
    assert!(
        m.contains("Content-Type: text/plain; version=0.0.4") || m.contains("content-type: text/plain; version=0.0.4"),
        "{m}"
    );
    // Typed families: histograms with buckets, the build, the process.
    for needle in [
        "# TYPE sqlctl_reconcile_duration_seconds histogram",
        "sqlctl_reconcile_duration_seconds_bucket{le=\"+Inf\"}",
        "# TYPE sqlctl_approve_to_executing_seconds histogram",
        "# TYPE sqlctl_approval_wait_seconds histogram",
        "sqlctl_build_info{version=\"",
        "process_resident_memory_bytes ",
        "sqlctl_store_errors_total{operation=\"count_by_phase\"} 0",
    ] {
        assert!(m.contains(needle), "{needle} missing from:\n{m}");
    }
    // JSON logs carry name, uid, generation and phase on transitions.
    let log = env.controller_log(0);
    let line = log.lines().find(|l| l.contains("phase transition") && l.contains("AwaitingApproval")).expect(&log);
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["name"], "metered");
    assert!(v["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert_eq!(v["generation"], 1);
}

#[test]
fn text_logs_redirected_to_a_file_carry_no_colour_codes() {
    // The harness's controllers log to a file, in the default text format, without NO_COLOR.
    let env = Env::new();
    env.controller(&[]);
    env.apply(&sql_spec("plain", "select count(*) from nation"));
    env.wait_phase("plain", "AwaitingApproval", T);
    let log = env.controller_log(0);
    assert!(log.lines().any(|l| l.contains("INFO")), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a redirected log:\n{log}");
    // A command's warnings on a redirected stderr are plain too.
    let o = env.run(&["get", "no-such-request"]);
    assert!(!o.stderr.contains('\u{1b}'), "{o:?}");
}

#[test]
fn type_slash_name_is_taken_wherever_a_name_is_so_get_o_name_pipes_into_delete() {
    let env = Env::new();
    for name in ["piped-a", "piped-b"] {
        assert_eq!(env.apply(&sql_spec(name, "select count(*) from nation")).code, 0);
    }
    // Every form names the same request.
    for form in ["piped-a", "qr/piped-a", "queryrequest/piped-a", "queryrequests/piped-a"] {
        let o = env.ok(&["get", form, "-o", "name"]);
        assert_eq!(o.stdout.trim(), "queryrequest/piped-a", "{form}: {o:?}");
        assert!(env.ok(&["describe", form]).stdout.contains("piped-a"), "{form}");
    }
    // A type sqlctl does not have is a usage error that says what is taken; nothing is touched.
    let o = env.run(&["delete", "pod/piped-a"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("queryrequest/NAME"), "{o:?}");
    assert_eq!(env.count(), 2);
    // Another kind (issue 14) names another object: no request of that name is touched.
    let o = env.run(&["delete", "semanticmodel/piped-a"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("semanticmodel default/piped-a not found"), "{o:?}");
    assert_eq!(env.count(), 2);
    // kubectl's pipeline: what `get -o name` prints, `delete` takes back.
    let o = env.sh("\"$SQLCTL\" get -o name | xargs \"$SQLCTL\" delete");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("queryrequest/piped-a deleted") && o.stdout.contains("queryrequest/piped-b deleted"),
        "{o:?}"
    );
    assert_eq!(env.count(), 0);
}

#[test]
fn completion_scripts_generate_and_bash_completes_subcommands_and_flags() {
    let env = Env::new();
    let bash = env.ok(&["completion", "bash"]).stdout;
    assert!(bash.contains("complete -F _sqlctl"), "{bash}");
    // Sourced into a real bash, the script completes a subcommand and a flag.
    let o = env.sh("f=$(mktemp) && \"$SQLCTL\" completion bash > \"$f\" && bash -c '. \"$0\"; \
         COMP_WORDS=(sqlctl app); COMP_CWORD=1; _sqlctl sqlctl app sqlctl; echo \"${COMPREPLY[*]}\"; \
         COMP_WORDS=(sqlctl get --out); COMP_CWORD=2; _sqlctl sqlctl --out get; echo \"${COMPREPLY[*]}\"' \"$f\"; \
         rc=$?; rm -f \"$f\"; exit $rc");
    assert_eq!(o.code, 0, "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    // `get`'s flags starting --out: -o's long form and the watch's event flag.
    assert_eq!(lines, ["apply approve", "--output --output-watch-events"], "{o:?}");
    assert!(env.ok(&["completion", "zsh"]).stdout.starts_with("#compdef sqlctl"));
    assert!(env.ok(&["completion", "fish"]).stdout.contains("complete -c sqlctl"));
    let o = env.run(&["completion", "tcsh"]);
    assert_eq!(o.code, 2, "{o:?}");
}

#[test]
fn get_prints_jsonpath_custom_columns_sorted_and_without_headers() {
    let env = Env::new();
    for (name, team) in [("zeta", "data"), ("alpha", "ops"), ("mid", "ops")] {
        let spec = sql_spec(name, "select count(*) from nation")
            .replace("metadata:\n", &format!("metadata:\n  labels:\n    team: {team}\n"));
        assert_eq!(env.apply(&spec).code, 0, "{spec}");
    }
    let o = env.ok(&["get", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(o.stdout, "alpha mid zeta");
    let o = env.ok(&["get", "qr/mid", "-o", "jsonpath={.metadata.labels.team}"]);
    assert_eq!(o.stdout, "ops");
    let o = env.ok(&[
        "get",
        "-o",
        r#"jsonpath={range .items[?(@.metadata.labels.team=="ops")]}{.metadata.name}{"\n"}{end}"#,
    ]);
    assert_eq!(o.stdout, "alpha\nmid\n");
    let o = env.ok(&[
        "get",
        "-o",
        "custom-columns=NAME:.metadata.name,TEAM:.metadata.labels.team",
        "--sort-by",
        ".metadata.labels.team",
    ]);
    let lines: Vec<Vec<&str>> = o.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines, [vec!["NAME", "TEAM"], vec!["zeta", "data"], vec!["alpha", "ops"], vec!["mid", "ops"]], "{o:?}");
    let o = env.ok(&["get", "--no-headers", "--sort-by", "{.metadata.name}"]);
    let names: Vec<&str> = o.stdout.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"], "{o:?}");
    // A bad template or column spec is a usage error that says what is wrong.
    let o = env.run(&["get", "-o", "jsonpath={.items["]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("no `}`"), "{o:?}");
    let o = env.run(&["get", "-o", "custom-columns=NAME"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("HEADER:PATH"), "{o:?}");
}

#[test]
fn wait_takes_several_names_conditions_and_delete() {
    let env = Env::new();
    env.controller(&[]);
    for name in ["w-one", "w-two"] {
        assert_eq!(env.apply(&sql_spec(name, "select count(*) from region")).code, 0);
    }
    let o = env.ok(&["wait", "w-one", "qr/w-two", "--for", "phase=AwaitingApproval", "--timeout", "60s"]);
    assert_eq!(o.stdout.lines().count(), 2, "{o:?}");
    // Conditions: the status defaults to True; another status can be named; case does not matter.
    env.ok(&["wait", "w-one", "--for", "condition=approved=unknown", "--timeout", "5s"]);
    env.ok(&["wait", "w-one", "--for", "condition=Ready=False", "--timeout", "5s"]);
    let o = env.run(&["wait", "w-one", "--for", "condition=Approved", "--timeout", "1s"]);
    assert_eq!(o.code, 1, "not approved yet: {o:?}");
    assert!(o.stderr.contains("timed out"), "{o:?}");
    // Delete: waits until the record is gone; a request nobody deletes times out saying so.
    env.ok(&["delete", "w-one"]);
    let o = env.ok(&["wait", "w-one", "--for", "delete", "--timeout", "30s"]);
    assert!(o.stdout.contains("queryrequest/w-one deleted"), "{o:?}");
    let o = env.run(&["wait", "w-two", "--for", "delete", "--timeout", "1s"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not being deleted"), "{o:?}");
    assert_eq!(env.run(&["wait", "w-two", "--for", "condition="]).code, 2);
}

#[test]
fn delete_and_describe_select_by_label_all_or_file() {
    let env = Env::new();
    let labelled = |name: &str, team: &str| {
        sql_spec(name, "select count(*) from nation")
            .replace("metadata:\n", &format!("metadata:\n  labels:\n    team: {team}\n"))
    };
    for (name, team) in [("s-ops-1", "ops"), ("s-ops-2", "ops"), ("s-data", "data"), ("s-file", "files")] {
        assert_eq!(env.apply(&labelled(name, team)).code, 0);
    }
    // describe -l shows each match, and only those.
    let o = env.ok(&["describe", "-l", "team=ops"]);
    assert_eq!(o.stdout.matches("Name:").count(), 2, "{o:?}");
    assert!(o.stdout.contains("s-ops-1") && o.stdout.contains("s-ops-2") && !o.stdout.contains("s-data"), "{o:?}");
    assert_eq!(env.ok(&["describe", "--all"]).stdout.matches("Name:").count(), 4);
    // Names and a selector together are a usage error; so is selecting nothing.
    assert_eq!(env.run(&["delete", "s-data", "-l", "team=ops"]).code, 2);
    let o = env.run(&["delete"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("-l KEY=VALUE, --all or -f"), "{o:?}");
    // delete -l removes the matches only.
    let o = env.ok(&["delete", "-l", "team=ops"]);
    assert_eq!(o.stdout.matches("deleted").count(), 2, "{o:?}");
    assert_eq!(env.count(), 2);
    // delete -f removes what the file names.
    let file = env.home.path().join("s-file.yaml");
    std::fs::write(&file, labelled("s-file", "files")).unwrap();
    let o = env.ok(&["delete", "-f", file.to_str().unwrap()]);
    assert!(o.stdout.contains("queryrequest/s-file deleted"), "{o:?}");
    assert_eq!(env.count(), 1);
    // --all removes the rest; a selector matching nothing says so and succeeds.
    env.ok(&["delete", "--all"]);
    assert_eq!(env.count(), 0);
    let o = env.ok(&["delete", "-l", "team=nobody"]);
    assert!(o.stderr.contains("No requests found"), "{o:?}");
}

#[test]
fn explain_reads_a_field_from_the_schema() {
    let env = Env::new();
    let o = env.ok(&["explain", "queryrequest.spec.limits"]);
    assert!(o.stdout.contains("FIELD:      limits <Limits>") && o.stdout.contains("maxRows <integer>"), "{o:?}");
    let o = env.run(&["explain", "qr.spec.limitz"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("does not exist") && o.stderr.contains("limits"), "{o:?}");
}

#[test]
fn readyz_rechecks_the_store_and_livez_answers_for_the_process() {
    let env = Env::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.controller(&["--metrics-addr", &format!("127.0.0.1:{port}")]);
    let get = |path: &str| -> String {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let until = |path: &str, want: &str| -> String {
        let start = std::time::Instant::now();
        loop {
            let r = get(path);
            if r.starts_with(want) {
                return r;
            }
            assert!(start.elapsed() < T, "{path} never answered {want}: {r}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    until("/readyz", "HTTP/1.1 200");
    assert!(get("/livez").starts_with("HTTP/1.1 200"));
    // The store file goes away (as a lost volume would): not ready, saying why; the process
    // itself is still live.
    let db = env.home.path().join("state.db");
    let aside = env.home.path().join("state.db.aside");
    std::fs::rename(&db, &aside).unwrap();
    let r = until("/readyz", "HTTP/1.1 503");
    assert!(r.contains("the store does not answer"), "{r}");
    assert!(get("/livez").starts_with("HTTP/1.1 200"));
    assert!(get("/healthz").starts_with("HTTP/1.1 200"));
    // Back: ready again.
    std::fs::rename(&aside, &db).unwrap();
    until("/readyz", "HTTP/1.1 200");
}
