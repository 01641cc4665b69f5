//! Issue 14: the SemanticModel and VerifiedQuery kinds through the real binary: apply, get,
//! describe, diff and delete like QueryRequest; bad input refused with nothing stored;
//! `verify` of a request that ran; drift making a verified query Stale; auto-approval by policy
//! of an exact template instantiation only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;

const MODEL: &str = "\
apiVersion: sqlctl.dev/v1alpha1
kind: SemanticModel
metadata:
  name: tpch
  labels: {team: growth}
spec:
  database: tpch
  tables:
    - name: customer
      synonyms: [clients]
      columns:
        - {name: c_mktsegment, synonyms: [segment], sampleValues: [BUILDING, MACHINERY]}
    - name: orders
  relationships:
    - {name: orders-customer, leftTable: orders, rightTable: customer, columns: [{left: o_custkey, right: c_custkey}]}
  metrics:
    - {name: revenue, table: orders, expression: sum(o_totalprice), synonyms: [sales]}
  filters:
    - {name: urgent, table: orders, expression: \"o_orderpriority = '1-URGENT'\"}
  timeDimensions:
    - {name: order_date, table: orders, column: o_orderdate}
  instructions: Revenue means the sum of order totals.
";

const SEGMENT_SQL: &str =
    "select c_name, c_acctbal from customer where c_mktsegment = :segment order by c_acctbal desc, c_name limit :n";

fn verified(name: &str, sql: &str) -> String {
    format!(
        "apiVersion: sqlctl.dev/v1alpha1
kind: VerifiedQuery
metadata:
  name: {name}
spec:
  question: Which customers of a segment have the highest balance?
  paraphrases: [Top customers of a segment by balance]
  database: tpch
  sql: \"{sql}\"
  parameters:
    - {{name: segment, type: string, column: customer.c_mktsegment, example: BUILDING}}
    - {{name: n, type: number, example: '5'}}
"
    )
}

fn json(o: &Out) -> serde_json::Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

/// How many objects of `kind` are stored.
fn count(env: &Env, kind: &str) -> usize {
    json(&env.ok(&["get", kind, "-o", "json", "-A"]))["items"].as_array().unwrap().len()
}

#[test]
fn both_kinds_apply_get_describe_diff_and_delete_like_requests() {
    let env = Env::new();
    let both = format!("{MODEL}---\n{}", verified("top-segment", SEGMENT_SQL));
    let o = env.apply(&both);
    assert!(o.stdout.contains("semanticmodel/tpch created\n"), "{o:?}");
    assert!(o.stdout.contains("verifiedquery/top-segment created\n"), "{o:?}");
    // A re-apply of the unchanged file writes nothing.
    let o = env.apply(&both);
    assert!(
        o.stdout.contains("semanticmodel/tpch unchanged") && o.stdout.contains("verifiedquery/top-segment unchanged"),
        "{o:?}"
    );
    let o = env.run(&["diff", "-f", "-"]);
    assert_eq!(o.code, 2, "diff needs input: {o:?}");

    // get: every name form, every output format.
    for args in [
        &["get", "sm", "tpch"][..],
        &["get", "semanticmodels", "tpch"],
        &["get", "semanticmodel/tpch"],
        &["get", "SemanticModel", "tpch"],
    ] {
        let mut a = args.to_vec();
        a.extend(["-o", "name"]);
        assert_eq!(env.ok(&a).stdout, "semanticmodel/tpch\n", "{args:?}");
    }
    let table = env.ok(&["get", "sm"]);
    assert!(
        table
            .stdout
            .starts_with("NAME  DATABASE  TABLES  METRICS  FILTERS  STALE  AGE\ntpch  tpch      2       1        1"),
        "{table:?}"
    );
    let v = json(&env.ok(&["get", "vq", "top-segment", "-o", "json"]));
    assert_eq!(v["kind"], "VerifiedQuery");
    assert_eq!(v["metadata"]["generation"], 1);
    // The applier is the verifier, recorded by sqlctl.
    assert_eq!(v["spec"]["verifiedBy"], "tester");
    assert!(v["spec"]["verifiedAt"].is_string());
    let o = env.ok(&["get", "sm", "-l", "team=growth", "-o", "jsonpath={.items[0].spec.metrics[0].expression}"]);
    assert_eq!(o.stdout, "sum(o_totalprice)");
    assert_eq!(env.ok(&["get", "sm", "-l", "team=other"]).stderr, "No semanticmodels found in namespace default.\n");
    let o = env.ok(&["get", "vq", "-o", "custom-columns=NAME:.metadata.name,Q:.spec.question"]);
    assert!(o.stdout.contains("top-segment  Which customers"), "{o:?}");
    let yaml = env.ok(&["get", "vq/top-segment", "-o", "yaml"]).stdout;
    assert!(yaml.contains("kind: VerifiedQuery") && yaml.contains("c_mktsegment = :segment"), "{yaml}");
    // The request commands still default to requests and say so.
    assert_eq!(env.ok(&["get"]).stderr, "No requests found in namespace default.\n");
    let o = env.run(&["get", "tpch"]);
    assert_eq!(o.code, 1, "a bare name is a request: {o:?}");

    let d = env.ok(&["describe", "sm", "tpch"]).stdout;
    for want in [
        "Kind:               SemanticModel",
        "revenue = sum(o_totalprice) (sales)",
        "orders-customer: orders.o_custkey = customer.c_custkey",
        "c_mktsegment (segment) e.g. BUILDING, MACHINERY",
        "Revenue means",
    ] {
        assert!(d.contains(want), "{want}: {d}");
    }
    let d = env.ok(&["describe", "vq/top-segment"]).stdout;
    assert!(
        d.contains("Verified by:        tester")
            && d.contains(":segment string (column customer.c_mktsegment) e.g. BUILDING"),
        "{d}"
    );

    // A changed file: diff shows it (exit 1) without writing; apply configures it and the
    // generation moves; a label-only change keeps the generation.
    let changed = both.replace("sum(o_totalprice)", "sum(o_totalprice) / 1000");
    let o = env.run_stdin(&["diff", "-f", "-"], changed.as_bytes());
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains("semanticmodel/tpch configured\n")
            && o.stdout.contains("+    expression: sum(o_totalprice) / 1000"),
        "{o:?}"
    );
    assert!(o.stdout.contains("verifiedquery/top-segment unchanged"), "{o:?}");
    assert_eq!(json(&env.ok(&["get", "sm", "tpch", "-o", "json"]))["metadata"]["generation"], 1, "diff wrote nothing");
    let o = env.apply(&changed);
    assert!(o.stdout.contains("semanticmodel/tpch configured"), "{o:?}");
    assert_eq!(json(&env.ok(&["get", "sm", "tpch", "-o", "json"]))["metadata"]["generation"], 2);
    env.apply(&changed.replace("team: growth", "team: finance"));
    let v = json(&env.ok(&["get", "sm", "tpch", "-o", "json"]));
    assert_eq!(
        (v["metadata"]["generation"].as_u64(), v["metadata"]["labels"]["team"].as_str()),
        (Some(2), Some("finance"))
    );

    // delete: a type alone needs --all (as kubectl); names, TYPE/NAME, -f.
    let o = env.run(&["delete", "vq"]);
    assert_eq!(o.code, 2, "{o:?}");
    assert_eq!(count(&env, "vq"), 1);
    let o = env.run(&["delete", "sm", "nope"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("semanticmodel default/nope not found"), "{o:?}");
    assert_eq!(env.ok(&["delete", "vq/top-segment"]).stdout, "verifiedquery/top-segment deleted\n");
    let f = env.home.path().join("model.yaml");
    std::fs::write(&f, MODEL).unwrap();
    assert_eq!(env.ok(&["delete", "-f", f.to_str().unwrap()]).stdout, "semanticmodel/tpch deleted\n");
    assert_eq!((count(&env, "sm"), count(&env, "vq")), (0, 0));
}

#[test]
fn bad_input_is_refused_with_nothing_stored() {
    let env = Env::new();
    let request = sql_spec("fine-request", "select 1");
    let good_vq = verified("v", SEGMENT_SQL);
    let cases: Vec<(String, &str)> = vec![
        // Strict parsing, located.
        (
            MODEL.replace("  instructions:", "  bogus: 1\n  instructions:"),
            "spec.bogus (line 32, column 3): unknown field `bogus`",
        ),
        (
            MODEL.replace("kind: SemanticModel", "kind: SemanticModels"),
            "document 2: kind (line 12, column 7): unknown kind \"SemanticModels\"",
        ),
        // The guard reads every expression and template.
        (
            MODEL.replace("sum(o_totalprice)", "sum(o_totalprice) FROM orders; DROP TABLE orders"),
            "spec.metrics[0].expression",
        ),
        (MODEL.replace("sum(o_totalprice)", "(select max(o_totalprice) from orders)"), "must not contain a subquery"),
        (good_vq.replace(":segment order", ":segmnt order"), "placeholder :segmnt is not declared"),
        (good_vq.replace("example: '5'", "example: five"), "spec.parameters[1].example"),
        (good_vq.replace("select c_name", "delete from customer where c_name = :segment and 1 = :n --"), "spec.sql"),
        (good_vq.replace("from customer", "from other.customer"), "refused"),
        // Only the applier may be named as verifier.
        (
            good_vq.replace("  database: tpch\n", "  database: tpch\n  verifiedBy: mallory\n"),
            "spec.verifiedBy names mallory, but you are tester",
        ),
    ];
    for (bad, want) in cases {
        // One bad document stops the others in the same apply, requests included.
        let text = format!("{request}---\n{bad}---\n{MODEL}");
        let o = env.run_stdin(&["apply", "-f", "-"], text.as_bytes());
        assert_eq!(o.code, 1, "{want}: {o:?}");
        assert!(o.stderr.contains(want) && o.stderr.contains("nothing was applied"), "{want}: {o:?}");
        assert_eq!((env.count(), count(&env, "sm"), count(&env, "vq")), (0, 0, 0), "{want}: stored something");
    }
    // Who may verify follows the approval policy of the database.
    let policy = env.home.path().join("policy.yaml");
    std::fs::write(&policy, "databases:\n  tpch:\n    approvers: [alice]\n").unwrap();
    let pid = env.controller(&["--policy", policy.to_str().unwrap()]);
    let start = Instant::now();
    loop {
        let o = env.run_stdin(&["apply", "-f", "-"], good_vq.as_bytes());
        if o.code == 1 {
            assert!(
                o.stderr.contains("only those who may approve on database \"tpch\" may verify queries there (alice)"),
                "{o:?}"
            );
            break;
        }
        // The controller had not stored its policy yet: undo and look again.
        env.ok(&["delete", "vq", "v"]);
        assert!(start.elapsed() < T, "the policy was never stored");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(&env, "vq"), 0);
    let o = env
        .cmd()
        .args(["apply", "-f", "-", "--as", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = write_and_wait(o, good_vq.as_bytes());
    assert!(out.stdout.contains("verifiedquery/v created"), "{out:?}");
    assert_eq!(json(&env.ok(&["get", "vq", "v", "-o", "json"]))["spec"]["verifiedBy"], "alice");
    let _ = pid;
}

fn write_and_wait(mut child: std::process::Child, input: &[u8]) -> Out {
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap().into()
}

/// Polls `get KIND NAME -o json` until `pred` holds.
fn wait_object(
    env: &Env,
    kind: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_object_in(env, None, kind, name, what, pred)
}

fn wait_object_in(
    env: &Env,
    data: Option<&Path>,
    kind: &str,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let mut c = env.cmd();
        if let Some(d) = data {
            c.env("SQLCTL_DATA_DIR", d);
        }
        let o: Out = c.args(["get", kind, name, "-o", "json"]).output().unwrap().into();
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap_or_default();
        if pred(&v) {
            return v;
        }
        assert!(start.elapsed() < T, "{kind}/{name} never {what}: {v:#}\n{}", env.controller_log(0));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stale(v: &serde_json::Value) -> Option<&str> {
    v["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Stale")?["status"].as_str()
}

#[test]
fn verify_turns_a_request_that_ran_into_a_verified_query() {
    let env = Env::new();
    let sql = "select c_name, c_acctbal from customer where c_mktsegment = 'BUILDING' and c_acctbal > 100 order by c_acctbal desc limit 5";
    env.apply(&sql_spec("rich-builders", sql));
    // Not done yet: refused, and hand-written SQL needs --question.
    let o = env.run(&["verify", "rich-builders"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not Done"), "{o:?}");
    env.controller(&["--plan-interval", "300ms"]);
    env.wait_phase("rich-builders", "AwaitingApproval", T);
    let digest = env.digest("rich-builders");
    env.ok(&["approve", "rich-builders", "--digest", &digest, "--as", "alice"]);
    let req = env.wait_phase("rich-builders", "Done", T);
    let o = env.run(&["verify", "rich-builders"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("--question"), "{o:?}");

    let q = "Which 5 BUILDING customers with a balance over 100 have the highest balance?";
    let o = env.ok(&["verify", "rich-builders", "--question", q, "--name", "rich-segment"]);
    assert!(
        o.stdout.starts_with(
            "verifiedquery/rich-segment created from queryrequest/rich-builders (verified by alice; parameters: "
        ),
        "{o:?}"
    );
    let v = json(&env.ok(&["get", "vq", "rich-segment", "-o", "json"]));
    let s = &v["spec"];
    assert_eq!(s["question"], q);
    assert_eq!(s["verifiedBy"], "alice", "the approver of the run is the verifier");
    assert_eq!(s["provenance"]["name"], "rich-builders");
    assert_eq!(s["provenance"]["uid"], req["metadata"]["uid"]);
    assert_eq!(s["provenance"]["generation"], 1);
    assert_eq!(s["provenance"]["sqlDigest"], digest.as_str());
    let params: Vec<(String, String, String)> = s["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["type"].as_str().unwrap().into(),
                p["example"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            ("limit".into(), "number".into(), "5".into()),
            ("c_mktsegment".into(), "string".into(), "BUILDING".into()),
            ("c_acctbal".into(), "number".into(), "100".into()),
        ]
    );
    assert_eq!(s["parameters"][1]["column"], "customer.c_mktsegment", "the catalog names the column's table");
    assert!(s["sql"].as_str().unwrap().contains("c_mktsegment = :c_mktsegment AND c_acctbal > :c_acctbal"), "{s}");
    // The controller plans it: fresh, with the digest of its canonical template.
    let v = wait_object(&env, "vq", "rich-segment", "planned", |v| stale(v) == Some("False"));
    assert_eq!(v["status"]["templateDigest"].as_str().map(str::len), Some(64));
    // The same name again is refused; --dry-run writes nothing.
    let o = env.run(&["verify", "rich-builders", "--question", q, "--name", "rich-segment"]);
    assert!(o.code == 1 && o.stderr.contains("already exists"), "{o:?}");
    let o = env.ok(&["verify", "rich-builders", "--question", q, "--name", "other", "--dry-run", "-o", "yaml"]);
    assert!(o.stdout.contains("kind: VerifiedQuery"), "{o:?}");
    assert_eq!(count(&env, "vq"), 1);
}

/// A private copy of the test warehouse, so a test can change a table's shape.
fn private_warehouse(env: &Env) -> PathBuf {
    let data = env.home.path().join("data");
    std::fs::create_dir_all(data.join("tpch")).unwrap();
    for entry in std::fs::read_dir(warehouse().join("tpch")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, data.join("tpch").join(p.file_name().unwrap())).unwrap();
    }
    data
}

#[test]
fn drift_in_the_catalog_makes_a_verified_query_stale_and_fixing_it_clears_that() {
    let env = Env::new();
    let data = private_warehouse(&env);
    let run = |args: &[&str]| -> Out { env.cmd().env("SQLCTL_DATA_DIR", &data).args(args).output().unwrap().into() };
    let o: Out = {
        let child = env
            .cmd()
            .env("SQLCTL_DATA_DIR", &data)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        write_and_wait(child, format!("{MODEL}---\n{}", verified("top-segment", SEGMENT_SQL)).as_bytes())
    };
    assert_eq!(o.code, 0, "{o:?}");
    let log = env.home.path().join("controller.log");
    let mut ctl = env
        .cmd()
        .env("SQLCTL_DATA_DIR", &data)
        .args([
            "controller",
            "--plan-interval",
            "200ms",
            "--retry-period",
            "200ms",
            "--lease-duration",
            "2s",
            "--renew-deadline",
            "1s",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let v = wait_object_in(&env, Some(&data), "vq", "top-segment", "planned", |v| stale(v) == Some("False"));
    let shape = v["status"]["tableShapes"]["customer"].clone();
    assert!(shape.is_string(), "{v:#}");
    wait_object_in(&env, Some(&data), "sm", "tpch", "planned", |v| stale(v) == Some("False"));

    // customer loses c_mktsegment: the template (and the model's column) no longer plan.
    let customer = data.join("tpch/customer.parquet");
    let saved = env.home.path().join("customer.parquet.saved");
    std::fs::rename(&customer, &saved).unwrap();
    std::fs::write(data.join("tpch/customer.csv"), "c_custkey,c_name,c_acctbal\n1,Customer#1,10.5\n").unwrap();
    let v = wait_object_in(&env, Some(&data), "vq", "top-segment", "Stale", |v| stale(v) == Some("True"));
    let cond = v["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Stale").unwrap().clone();
    assert_eq!(cond["reason"], "PlanFailed");
    assert!(cond["message"].as_str().unwrap().contains("c_mktsegment"), "{cond}");
    assert_ne!(v["status"]["tableShapes"]["customer"], shape);
    let m = wait_object_in(&env, Some(&data), "sm", "tpch", "Stale", |v| stale(v) == Some("True"));
    assert!(m["status"]["conditions"].to_string().contains("c_mktsegment"), "{m:#}");
    let o = run(&["get", "vq"]);
    assert!(o.stdout.contains("True"), "{o:?}");

    // The table comes back: planned again, fresh.
    std::fs::remove_file(data.join("tpch/customer.csv")).unwrap();
    std::fs::rename(&saved, &customer).unwrap();
    let v = wait_object_in(&env, Some(&data), "vq", "top-segment", "fresh again", |v| stale(v) == Some("False"));
    assert_eq!(v["status"]["tableShapes"]["customer"], shape);
    let _ = ctl.kill();
    let _ = ctl.wait();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(log.contains("no longer plans: Stale"), "{log}");
}

#[test]
fn policy_auto_approves_only_an_exact_instantiation_of_a_verified_query() {
    let env = Env::new();
    let policy = env.home.path().join("policy.yaml");
    std::fs::write(&policy, "autoApproveVerified: true\ndatabases:\n  tpch:\n    approvers: [alice, bob]\n").unwrap();
    env.controller(&["--policy", policy.to_str().unwrap(), "--plan-interval", "200ms"]);
    // alice verifies the template (applying it as herself).
    let mut c = env.cmd();
    c.args(["apply", "-f", "-", "--as", "alice"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    loop {
        let o = write_and_wait(c.spawn().unwrap(), verified("top-segment", SEGMENT_SQL).as_bytes());
        if o.code == 0 {
            break;
        }
        assert!(start.elapsed() < T, "{o:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_object(&env, "vq", "top-segment", "planned", |v| stale(v) == Some("False"));

    // Other bound values, written differently: still exactly the template with its parameters.
    let exact = "SELECT c_name, c_acctbal FROM customer WHERE c_mktsegment = 'MACHINERY' ORDER BY c_acctbal DESC, c_name LIMIT 3";
    env.apply(&sql_spec("exact", exact));
    let v = env.wait_phase("exact", "Done", T);
    let a = &v["status"]["approval"];
    assert_eq!(a["by"], "policy:verifiedquery/default/top-segment");
    let comment = a["comment"].as_str().unwrap();
    assert!(
        comment.contains("verified by alice")
            && comment.contains(":segment = 'MACHINERY'")
            && comment.contains(":n = 3"),
        "{comment}"
    );
    assert_eq!(a["sqlDigest"], v["status"]["generated"]["sqlDigest"], "bound to the digest like any other");
    assert_eq!(v["status"]["execution"]["rows"], 3);

    // One token different (ASC for DESC): a human must decide.
    let one_off = exact.replace("DESC", "ASC");
    env.apply(&sql_spec("one-off", &one_off));
    env.wait_phase("one-off", "AwaitingApproval", T);
    std::thread::sleep(Duration::from_millis(800));
    let v = env.get("one-off");
    assert_eq!(v["status"]["phase"], "AwaitingApproval", "{v:#}");
    assert!(v["status"]["approval"].is_null());
    // A literal of another type where a number goes: no match either.
    env.apply(&sql_spec("wrong-type", &exact.replace("LIMIT 3", "LIMIT 3 + 0")));
    env.wait_phase("wrong-type", "AwaitingApproval", T);

    // A new version of the template (bob applies it, so he is its verifier now): requests of
    // the old shape no longer match it.
    let o = env.run_stdin(
        &["apply", "-f", "-", "--as", "bob"],
        verified("top-segment", &SEGMENT_SQL.replace("desc, c_name", "desc")).as_bytes(),
    );
    assert!(o.stdout.contains("verifiedquery/top-segment configured"), "{o:?}");
    let v = json(&env.ok(&["get", "vq", "top-segment", "-o", "json"]));
    assert_eq!(v["spec"]["verifiedBy"], "bob", "new content is verified by whoever applies it");
    env.apply(&sql_spec("old-shape", &exact.replace("'MACHINERY'", "'BUILDING'")));
    env.wait_phase("old-shape", "AwaitingApproval", T);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(env.phase("old-shape"), "AwaitingApproval");
}

#[test]
fn the_shipped_examples_apply_and_plan_against_the_sample_warehouse() {
    let env = Env::new();
    let dir = env!("CARGO_MANIFEST_DIR");
    let o = env.ok(&["apply", "-f", &format!("{dir}/examples/semantic/"), "-f", &format!("{dir}/examples/verified/")]);
    assert!(
        o.stdout.contains("semanticmodel/tpch created")
            && o.stdout.contains("verifiedquery/top-segment-customers created"),
        "{o:?}"
    );
    env.controller(&["--plan-interval", "200ms"]);
    wait_object(&env, "sm", "tpch", "planned fresh", |v| stale(v) == Some("False"));
    wait_object(&env, "vq", "top-segment-customers", "planned fresh", |v| stale(v) == Some("False"));
}
