//! "What you approve is what runs", through the real binary: approvals bind to full digests
//! (class 1), lexer tricks cannot hide a table from the guard on either engine (class 3), and
//! what is shown is exactly what runs (class 4). Each test is named after its class.

use std::time::Duration;

use serde_json::json;

use crate::aws_support::{AwsWorld, spec};
use crate::console::console_url;
use crate::harness::*;

/// A spec whose SQL is a YAML double-quoted scalar (so it can carry escapes like `\r`, `\e`).
fn quoted_sql_spec(name: &str, yaml_escaped_sql: &str, extra: &str) -> String {
    format!(
        "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\nspec:\n  sql: \"{yaml_escaped_sql}\"\n  catalog:\n    database: tpch\n{extra}"
    )
}

#[test]
fn class1_digest_prefixes_are_never_accepted_as_approvals() {
    let env = Env::new();
    env.controller(&[]);
    assert_eq!(env.apply(&sql_spec("prefixed", "select n_name from nation order by n_name limit 3")).code, 0);
    env.wait_phase("prefixed", "AwaitingApproval", T);
    let digest = env.digest("prefixed");
    assert_eq!(digest.len(), 64);

    // The prefix is shown for reading...
    let wide = env.ok(&["get", "-o", "wide"]);
    assert!(wide.stdout.contains(&digest[..12]), "{wide:?}");
    // ...and never accepted as proof: 12, 32 and 63 hex characters are refused with what to pass.
    for n in [12, 32, 63] {
        let o = env.run(&["approve", "prefixed", "--digest", &digest[..n], "--as", "alice"]);
        assert_eq!(o.code, 1, "{n}: {o:?}");
        assert!(o.stderr.contains("not a full sqlDigest") && o.stderr.contains("64 hex"), "{n}: {o:?}");
    }
    // A full digest of something else is stale, not a match.
    let other = "0".repeat(64);
    let o = env.run(&["approve", "prefixed", "--digest", &other, "--as", "alice"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("does not match"), "{o:?}");
    assert_eq!(env.phase("prefixed"), "AwaitingApproval");
    assert!(env.get("prefixed")["status"]["approval"].is_null());

    // The full digest (any case) is the approval, and what is recorded is that full digest.
    let o = env.ok(&["approve", "prefixed", "--digest", &digest.to_uppercase(), "--as", "alice"]);
    assert!(o.stdout.contains(&digest), "the confirmation names the full digest: {o:?}");
    let v = env.wait_phase("prefixed", "Done", T);
    assert_eq!(v["status"]["approval"]["sqlDigest"], digest.as_str());
}

#[test]
fn class3_lexer_tricks_cannot_hide_a_table_from_the_guard() {
    let env = Env::new();
    // A `--` comment ended by a carriage return: Trino would read `customer`; refused before
    // anything is written.
    let cr =
        quoted_sql_spec("cr-comment", "select n_name from nation --\\r union all select c_phone from customer", "");
    let o = env.apply(&cr);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("U+000D (carriage return) outside a string literal"), "{o:?}");
    assert_eq!(env.count(), 0, "nothing was written");

    // A nested comment: whatever it hides is not part of the text that is approved and runs.
    let nested = sql_spec(
        "nested",
        "select n_name from nation /* /* */ union all select c_phone from customer */ order by n_name",
    ) + "    tables: [nation]\n";
    assert_eq!(env.apply(&nested).code, 0);
    env.controller(&[]);
    let v = env.wait_phase("nested", "AwaitingApproval", T);
    let g = &v["status"]["generated"];
    assert_eq!(g["sql"], "SELECT n_name FROM nation ORDER BY n_name");
    assert_eq!(g["tablesUsed"], json!(["nation"]));
    env.ok(&["approve", "nested", "--digest", g["sqlDigest"].as_str().unwrap(), "--as", "alice"]);
    env.wait_phase("nested", "Done", T);
    let csv = env.ok(&["results", "nested"]).stdout;
    assert_eq!(csv.lines().next(), Some("n_name"), "{csv}");
    assert_eq!(csv.lines().count(), 26, "{csv}");
}

#[test]
fn class3_athena_receives_exactly_the_canonical_text_before_and_after_approval() {
    let Some(w) = AwsWorld::new(false) else { return };
    w.controller(&[]);
    // Comments, odd spacing and a `$$` string in; one canonical text out, on every call.
    let sql = "select n_name, $$ -- $$ as s /* c */ from nation /* /* */ union all select c_phone, 'x' from customer */ order by n_name";
    let yaml = spec("canon", &format!("  sql: \"{sql}\"\n  catalog:\n    database: tpch\n    tables: [nation]\n"));
    assert_eq!(w.apply(&yaml).code, 0);
    let m = w.approval_request("canon", T);
    let canonical = "SELECT n_name, ' -- ' AS s FROM nation ORDER BY n_name";
    assert_eq!(m.sql, canonical);
    assert_eq!(m.sql_digest.len(), 64);
    assert!(m.links["approve"].ends_with(&m.sql_digest), "machines pass the full digest: {:?}", m.links);
    // A prefix over SQS is refused; the full digest approves.
    let mut short = m.clone();
    short.sql_digest = m.sql_digest[..12].to_string();
    w.decide(&short, "approve", json!({}));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.get("canon")["status"]["phase"], "AwaitingApproval");
    w.decide(&m, "approve", json!({}));
    w.wait_phase("canon", "Done", T);
    let athena = w.fake.state.athena.lock().unwrap();
    let sent: Vec<&str> = athena.execs.values().map(|e| e.sql.as_str()).collect();
    assert!(!sent.is_empty());
    for s in &sent {
        assert!(*s == canonical || *s == format!("EXPLAIN {canonical}"), "Athena received {s:?}");
    }
    assert!(sent.contains(&canonical), "{sent:?}");
}

#[test]
fn class4_what_is_shown_is_what_runs() {
    let env = Env::new();
    // Control characters outside a string literal are refused with where they are.
    for (name, sql, what) in [
        ("esc", "select n_name\\e[2K from nation", "U+001B"),
        ("rlo", "select n_name from nation \\u202E-- x", "U+202E"),
        ("zwsp", "select \\\"n_\\u200Bname\\\" from nation", "U+200B"),
    ] {
        let o = env.apply(&quoted_sql_spec(name, sql, ""));
        assert_ne!(o.code, 0, "{name}: {o:?}");
        assert!(o.stderr.contains(what) && o.stderr.contains("outside a string literal"), "{name}: {o:?}");
    }
    assert_eq!(env.count(), 0);

    // Inside string literals they are data, and every view shows them escaped.
    let o = env.apply(&quoted_sql_spec(
        "shown",
        "select n_name, 'a\\e[2Kb' as x, 'c\\u202Ed' as y from nation where n_nationkey < 2",
        "",
    ));
    assert_eq!(o.code, 0, "{o:?}");
    env.controller(&["--console-addr", "127.0.0.1:0", "--console-auth-header", "x-user"]);
    let v = env.wait_phase("shown", "AwaitingApproval", T);
    let sql = v["status"]["generated"]["sql"].as_str().unwrap().to_string();
    assert_eq!(sql, "SELECT n_name, 'a\u{1b}[2Kb' AS x, 'c\u{202e}d' AS y FROM nation WHERE n_nationkey < 2");
    for args in [
        &["describe", "shown"][..],
        &["get", "shown"][..],
        &["get", "shown", "-o", "wide"][..],
        &["get", "shown", "-o", "yaml"][..],
        &["get", "shown", "-o", "json"][..],
    ] {
        let o = env.ok(args);
        assert!(!o.stdout.contains('\u{1b}') && !o.stdout.contains('\u{202e}'), "{args:?}: {o:?}");
    }
    // Machine output stays exact: the JSON decodes to the very SQL that runs.
    let j: serde_json::Value = serde_json::from_str(&env.ok(&["get", "shown", "-o", "json"]).stdout).unwrap();
    assert_eq!(j["status"]["generated"]["sql"], sql.as_str());
    let d = env.ok(&["describe", "shown"]).stdout;
    assert!(d.contains("'a\\u{001B}[2Kb'") && d.contains("'c\\u{202E}d'"), "{d}");

    // The console highlights with the guard's tokenizer: `$$ -- $$` is a string, not a comment.
    assert_eq!(env.apply(&sql_spec("dollar", "select c_name, $$ -- $$, c_phone from customer limit 1")).code, 0);
    env.wait_phase("dollar", "AwaitingApproval", T);
    let base = console_url(&env);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (dollar, shown) = rt.block_on(async {
        let http = reqwest::Client::new();
        let get = |name: &'static str| {
            let http = http.clone();
            let url = format!("{base}/requests/default/{name}");
            async move { http.get(url).header("x-user", "alice").send().await.unwrap().text().await.unwrap() }
        };
        (get("dollar").await, get("shown").await)
    });
    assert!(dollar.contains("<span class=\"str\">&#39; -- &#39;</span>, c_phone"), "{dollar}");
    assert!(!dollar.contains("class=\"com\""), "{dollar}");
    assert!(!shown.contains('\u{1b}') && !shown.contains('\u{202e}'), "{shown}");
    assert!(shown.contains("\\u{001B}") && shown.contains("\\u{202E}"), "{shown}");
}
