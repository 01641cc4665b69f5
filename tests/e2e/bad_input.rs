//! Every class of bad input: exit 1, a message that names the problem, nothing written.

use crate::harness::*;

const GOOD: &str = "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: good\nspec:\n  sql: select 1 from region\n  catalog:\n    database: tpch\n";

fn refused(env: &Env, input: &[u8], needle: &str) {
    let o = env.run_stdin(&["apply", "-f", "-"], input);
    assert_eq!(
        o.code,
        1,
        "input {:?} should be refused: {o:?}",
        String::from_utf8_lossy(&input[..input.len().min(200)])
    );
    assert!(o.stderr.contains(needle), "message should mention {needle:?}: {o:?}");
    assert_eq!(env.count(), 0, "nothing may be written");
}

#[test]
fn malformed_specs_are_refused_and_nothing_is_written() {
    let env = Env::new();
    refused(&env, GOOD.replace("sqlctl.dev/v1alpha1", "sqlctl.dev/v2").as_bytes(), "apiVersion");
    refused(&env, GOOD.replace("kind: QueryRequest", "kind: Pod").as_bytes(), "kind");
    refused(&env, GOOD.replace("name: good", "name: Not_A_Name").as_bytes(), "metadata.name");
    refused(&env, GOOD.replace("name: good", &format!("name: {}", "a".repeat(64))).as_bytes(), "metadata.name");
    refused(&env, GOOD.replace("  catalog:", "  colour: blue\n  catalog:").as_bytes(), "colour");
    refused(
        &env,
        GOOD.replace("  sql: select 1 from region\n", "  question: hi\n  sql: select 1\n").as_bytes(),
        "question",
    );
    refused(&env, GOOD.replace("  sql: select 1 from region\n", "").as_bytes(), "spec");
    let long_q = format!("  question: \"{}\"\n", "x".repeat(4001));
    refused(&env, GOOD.replace("  sql: select 1 from region\n", &long_q).as_bytes(), "question");
    refused(&env, (GOOD.to_string() + "  limits:\n    timeout: 10 minutes\n").as_bytes(), "timeout");
    refused(&env, (GOOD.to_string() + "  limits:\n    maxRows: -5\n").as_bytes(), "maxRows");
    refused(&env, (GOOD.to_string() + "  limits:\n    maxRows: 1000000000000\n").as_bytes(), "maxRows");
    refused(&env, (GOOD.to_string() + "  limits:\n    maxBytesScanned: 5XB\n").as_bytes(), "maxBytesScanned");
    // One bad document in a multi-document file: nothing from it is stored.
    let multi = format!("{GOOD}---\n{}", GOOD.replace("name: good", "name: BAD"));
    refused(&env, multi.as_bytes(), "document 2");
}

#[test]
fn hostile_yaml_is_refused_quickly() {
    let env = Env::new();
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
    for input in [
        bomb.as_bytes().to_vec(),
        "[".repeat(100_000).into_bytes(),
        vec![0xffu8, 0xfe, 0x00, 0x01, 0x9c, 0x80, 0x00, 0x00],
        vec![b'a'; 5 * 1024 * 1024],
    ] {
        let start = std::time::Instant::now();
        let o = env.run_stdin(&["apply", "-f", "-"], &input);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(!o.stderr.is_empty());
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }
    assert_eq!(env.count(), 0);
}

#[test]
fn sql_that_must_not_run_is_refused_before_anything_is_written() {
    let env = Env::new();
    for (sql, needle) in [
        ("drop table orders", "DROP"),
        ("delete from orders", "DELETE"),
        ("insert into orders select * from orders", "INSERT"),
        ("select 1; select 2", "statement"),
        ("copy orders to '/tmp/x.csv'", "COPY"),
        ("set datafusion.execution.batch_size = 1", "SET"),
        ("create external table t stored as csv location '/etc/passwd'", "CREATE"),
    ] {
        let o = env.apply(&sql_spec("bad-sql", sql));
        assert_eq!(o.code, 1, "{sql}: {o:?}");
        assert!(o.stderr.to_lowercase().contains(&needle.to_lowercase()), "{sql}: {o:?}");
    }
    assert_eq!(env.count(), 0);
    let o = env.run(&["ask", "--sql", "drop table orders", "--no-controller"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(env.count(), 0);
}

#[test]
fn unknown_tables_fail_in_the_controller_and_can_never_run() {
    let env = Env::new();
    env.controller(&[]);
    assert_eq!(env.apply(&sql_spec("nosuch", "select * from secrets")).code, 0);
    let v = env.wait_phase("nosuch", "Failed", T);
    let conds = v["status"]["conditions"].as_array().unwrap();
    assert!(
        conds.iter().any(|c| c["reason"] == "GuardRejected" && c["message"].as_str().unwrap().contains("secrets")),
        "{v}"
    );
    let o = env.run(&["approve", "nosuch", "--digest", "000000000000"]);
    assert_eq!(o.code, 1);
    // The allow-list narrows the database's tables: checked at apply, nothing written.
    let spec = sql_spec("narrow", "select count(*) from orders") + "    tables: [customer]\n";
    let o = env.apply(&spec);
    assert_eq!(o.code, 1, "{spec}\n{o:?}");
    assert!(o.stderr.contains("allowed tables"), "{o:?}");
    assert!(env.run(&["get", "narrow"]).code == 1);
}

#[test]
fn usage_errors_exit_2_and_unknown_names_exit_1() {
    let env = Env::new();
    assert_eq!(env.run(&["get", "-o", "xml"]).code, 2);
    assert_eq!(env.run(&["frobnicate"]).code, 2);
    assert_eq!(env.run(&["wait", "x", "--for", "colour=red"]).code, 2);
    let o = env.run(&["describe", "missing"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("not found"), "{o:?}");
    let o = env.run(&["apply", "-f", "/nonexistent/file.yaml"]);
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("/nonexistent/file.yaml"), "{o:?}");
}
