//! The default build (no `aws` feature, what the README's first command compiles): the embedded
//! first run works end to end through the binary, and every AWS choice refuses with exit 2 and
//! says how to get a build that has it. scripts/test runs these on the default build after the
//! full suite has run with `--features aws`.

use std::process::Stdio;

use crate::harness::*;

/// The README's first command, as a new user meets it: no warehouse yet (`ask` writes the
/// sample), the offline generator, a decision from "another terminal", the result printed.
#[test]
fn the_first_run_asks_and_answers_on_the_embedded_default() {
    let env = Env::new();
    let o = env.ok(&["version", "--client"]);
    assert!(o.stdout.contains("features: default"), "the default build has no optional feature: {o:?}");
    let child = env
        .cmd()
        .env_remove("SQLCTL_DATA_DIR")
        .args(["ask", "Which 5 customers have the highest account balance?", "--name", "first", "--timeout", "120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let v = env.wait_phase("first", "AwaitingApproval", std::time::Duration::from_secs(180));
    let sql = v["status"]["generated"]["sql"].as_str().unwrap_or_default().to_string();
    assert!(sql.contains("c_acctbal") && sql.contains("LIMIT 5"), "{sql}");
    let digest = env.digest("first");
    env.ok(&["approve", "first", "--digest", &digest]);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("No local warehouse yet"), "the first run writes the sample: {stderr}");
    assert!(stdout.contains("c_acctbal") && stdout.matches("Customer#").count() == 5, "{stdout}");
    assert!(stderr.contains("5 rows"), "{stderr}");
    // The full result streams back from the result store.
    let csv = env.ok(&["results", "first"]).stdout;
    // (The offline generator shows an entity's key next to its name: c_name, c_custkey, c_acctbal.)
    let header = csv.lines().next().unwrap_or_default();
    assert!(header.starts_with("c_name,") && header.ends_with(",c_acctbal") && csv.lines().count() == 6, "{csv}");
}

/// Every way of asking for AWS is a usage/configuration error (exit 2) naming the fix, before
/// anything is written or any network is touched.
#[test]
fn aws_choices_refuse_with_exit_2_and_name_the_feature() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--backend", "aws", "get"], "--backend aws"),
        (&["--backend", "aws", "controller"], "--backend aws"),
        (&["--results", "s3://bucket/prefix", "controller"], "--results s3://bucket/prefix"),
        (&["controller", "--generator", "bedrock", "--model", "m"], "--generator bedrock"),
        (
            &["--gchat-webhook-secret-arn", "arn:aws:secretsmanager:us-east-1:1:secret:x", "controller"],
            "Secrets Manager",
        ),
        (&["aws", "bootstrap", "--prefix", "p"], "sqlctl aws bootstrap"),
        (&["aws", "whoami"], "sqlctl aws whoami"),
    ];
    for (args, names) in cases {
        let o = env.run(args);
        assert_eq!(o.code, 2, "{args:?}: {o:?}");
        assert!(o.stderr.contains(names), "{args:?} names what needs AWS: {o:?}");
        assert!(
            o.stderr.contains("built without")
                && o.stderr.contains("--features aws")
                && o.stderr.contains("release binary"),
            "{args:?} says how to get AWS support: {o:?}"
        );
    }
    // Nothing was written: the embedded store never opened.
    assert_eq!(env.count(), 0);
    // The configuration view still works, and says so.
    let o = env.ok(&["--backend", "aws", "config", "view", "-o", "json"]);
    let j: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(j["aws"]["support"].as_str().unwrap_or_default().contains("--features aws"), "{j}");
}
