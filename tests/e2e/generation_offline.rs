//! The offline generator end to end, through the real binary: the shipped eval set through
//! `sqlctl eval` (CI keeps its accuracy from falling), `sqlctl generate`, a decline with its
//! reason, and a question request through the controller with refine → new SQL and digest →
//! the old digest refused → approve → Done.

use std::time::{Duration, Instant};

use crate::harness::*;

const EVAL_SET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/eval/tpch.yaml");

/// Measured 54/59 = 91.5% on the scale-0.01 test warehouse (the five misses are the questions
/// it should decline); the floor (two questions below) leaves a small margin so a harmless
/// wording change in the set does not fail CI, while a real regression does.
const MIN_ACCURACY: &str = "0.88";

#[test]
fn the_eval_set_keeps_its_accuracy() {
    let env = Env::new();
    let o = env.run(&["eval", EVAL_SET, "--min-accuracy", MIN_ACCURACY, "-o", "json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let s = &v["summary"];
    assert_eq!(s["model"], "offline/v1");
    assert!(s["total"].as_u64().unwrap() >= 30, "{s}");
    assert!(s["accuracy"].as_f64().unwrap() >= MIN_ACCURACY.parse::<f64>().unwrap(), "{s}");
    // Wrong answers are worse than declines: the offline generator should rarely give one.
    assert!(s["wrong"].as_u64().unwrap() <= 2, "{s}");
    let results = v["results"].as_array().unwrap();
    for r in results.iter().filter(|r| r["question"].as_str().unwrap().contains("percentage")) {
        assert_eq!(r["verdict"], "declined", "{r}");
    }
    // Offline generation is fast even in a debug build.
    assert!(s["generationP50Ms"].as_f64().unwrap() < 50.0, "{s}");

    // The table output ends with the summary line.
    let o = env.ok(&["eval", EVAL_SET]);
    let last = o.stdout.trim_end().lines().last().unwrap();
    assert!(last.starts_with("accuracy ") && last.contains("declined") && last.contains("p50"), "{last}");
}

#[test]
fn eval_fails_below_the_minimum_accuracy() {
    let env = Env::new();
    let file = env.home.path().join("hard.yaml");
    std::fs::write(
        &file,
        "- question: What percentage of orders are urgent?\n  gold: select 1\n- question: How many nations are there?\n  gold: select count(*) from nation\n",
    )
    .unwrap();
    let o = env.run(&["eval", file.to_str().unwrap(), "--min-accuracy", "80"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("below --min-accuracy"), "{o:?}");
    assert!(o.stdout.contains("accuracy 1/2 = 50.0%"), "{o:?}");
    assert_eq!(env.run(&["eval", file.to_str().unwrap(), "--min-accuracy", "0.5"]).code, 0);
}

/// The defog benchmark's case format (`sql`, `alt_sql`, `ordered`, `instructions`) through the
/// real binary: a match with an alternative gold counts, a limited ranking compares by its rule,
/// the per-database table and totals are printed, and `--max-wrong` puts a ceiling on wrong
/// answers.
#[test]
fn eval_reads_the_benchmark_format_and_reports_per_database_with_a_ceiling_on_wrong() {
    let env = Env::new();
    let file = env.home.path().join("cases.json");
    std::fs::write(
        &file,
        r#"[
  {"database": "tpch", "question": "How many nations are there?", "sql": "SELECT 24", "alt_sql": ["SELECT COUNT(*) FROM nation"]},
  {"database": "tpch", "question": "Which 5 customers have the highest account balance?",
   "sql": "SELECT c_name, c_acctbal FROM customer ORDER BY c_acctbal DESC LIMIT 5", "alt_sql": null, "ordered": true,
   "category": "order_by", "date_dependent": null},
  {"database": "tpch", "question": "How many customers are there?", "sql": "SELECT COUNT(*) + 1 FROM customer",
   "instructions": "Count every customer row"},
  {"database": "tpch", "question": "What percentage of orders are urgent?", "sql": "SELECT 1"}
]"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let o = env.run(&["eval", path, "-o", "json", "--instructions"]);
    assert_eq!(o.code, 0, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let s = &v["summary"];
    assert_eq!(
        (s["correct"].as_u64(), s["wrong"].as_u64(), s["declined"].as_u64()),
        (Some(2), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(s["instructions"], true);
    assert_eq!(s["byDatabase"][0]["database"], "tpch", "{s}");
    assert_eq!(s["byDatabase"][0]["wrong"], 1, "{s}");
    assert_eq!(v["results"][1]["category"], "order_by");
    assert_eq!(v["results"][2]["verdict"], "wrong", "{}", v["results"][2]);

    // The table: one line per database and a total above the summary line.
    let o = env.ok(&["eval", path]);
    let lines: Vec<&str> = o.stdout.trim_end().lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("DATABASE") && l.contains("RIGHT") && l.contains("WRONG")), "{o:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("TOTAL")
            && l.split_whitespace().collect::<Vec<_>>() == ["TOTAL", "2", "1", "1", "0", "4"]),
        "{o:?}"
    );
    assert!(lines.last().unwrap().starts_with("accuracy 2/4"), "{o:?}");

    let o = env.run(&["eval", path, "--max-wrong", "0"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("more than --max-wrong 0"), "{o:?}");
    assert_eq!(env.run(&["eval", path, "--max-wrong", "1", "--min-accuracy", "50"]).code, 0);
}

#[test]
fn generate_prints_the_proposal_without_creating_a_request() {
    let env = Env::new();
    let o = env.ok(&[
        "generate",
        "Which 5 customers have the highest account balance?",
        "--database",
        "tpch",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let sql = v["sql"].as_str().unwrap();
    assert!(sql.contains("c_acctbal") && sql.contains("LIMIT 5"), "{sql}");
    assert!(v["confidence"].as_f64().unwrap() >= 0.8, "{v}");
    assert_eq!(v["tablesUsed"], serde_json::json!(["customer"]));
    assert!(!v["explanation"].as_str().unwrap().is_empty());
    assert_eq!(v["model"], "offline/v1");

    // -o sql is the bare SQL; joins come from the keys.
    let o = env.ok(&["generate", "How many customers are in ASIA?"]);
    assert!(o.stdout.starts_with("SELECT COUNT(*)"), "{o:?}");
    assert!(o.stdout.contains("JOIN region ON nation.n_regionkey = region.r_regionkey"), "{o:?}");
    assert!(o.stdout.contains("'ASIA'"), "{o:?}");
    assert_eq!(env.count(), 0, "generate creates no request");
}

#[test]
fn generate_declines_with_a_reason_and_exit_1() {
    let env = Env::new();
    let o = env.run(&["generate", "What percentage of orders are urgent?"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("cannot answer") && o.stderr.contains("percentages"), "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    let o = env.run(&["generate", "How many unicorns live in ATLANTIS?"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("cannot answer"), "{o:?}");
}

/// Polls `get NAME` until `pred` holds.
fn wait_for(env: &Env, name: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = env.get(name);
        if pred(&v) {
            return v;
        }
        assert!(start.elapsed() < T, "{name}: {what} not reached: {v}\ncontroller log:\n{}", env.controller_log(0));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_question_is_generated_refined_and_approved_by_its_new_digest() {
    let env = Env::new();
    // The controller's default generator on the local backend is the offline one.
    env.controller(&[]);
    let yaml = "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: top-customers\nspec:\n  question: Which 5 customers have the highest account balance?\n  catalog:\n    database: tpch\n";
    assert_eq!(env.apply(yaml).code, 0);
    let v = env.wait_phase("top-customers", "AwaitingApproval", T);
    let generated = &v["status"]["generated"];
    assert_eq!(generated["model"], "offline/v1");
    let first_sql = generated["sql"].as_str().unwrap().to_string();
    assert!(first_sql.contains("LIMIT 5") && first_sql.contains("DESC"), "{first_sql}");
    let first_digest = env.digest("top-customers");

    // Refine: the feedback visibly changes the SQL and so the digest.
    env.ok(&["refine", "top-customers", "--feedback", "top 3 instead, lowest first"]);
    let v = wait_for(&env, "top-customers", "regenerated SQL awaiting approval", |v| {
        v["status"]["phase"] == "AwaitingApproval"
            && v["status"]["generated"]["sqlDigest"].as_str().is_some_and(|d| d != first_digest)
    });
    let second_sql = v["status"]["generated"]["sql"].as_str().unwrap();
    assert!(second_sql.contains("LIMIT 3") && second_sql.contains("ASC"), "{second_sql}");
    assert_ne!(second_sql, first_sql);
    let second_digest = env.digest("top-customers");

    // Approving the SQL that was refined away is refused; the new digest is accepted.
    let o = env.run(&["approve", "top-customers", "--digest", &first_digest]);
    assert_eq!(o.code, 1, "{o:?}");
    env.ok(&["approve", "top-customers", "--digest", &second_digest]);
    let v = env.wait_phase("top-customers", "Done", T);
    let rows = v["status"]["execution"]["preview"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
}

/// A follow-up question (`spec.followUp`, `ask --follow-up`) on the offline path: applied before
/// the request it follows, it waits; then it is generated as a change to the earlier query
/// (its question, the SQL that ran), linked to it in status and in `describe`.
#[test]
fn a_follow_up_changes_the_query_it_follows_and_links_to_it() {
    let env = Env::new();
    env.controller(&[]);
    let follow = "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: by-nation\nspec:\n  question: by nation instead\n  followUp:\n    of: revenue\n  catalog:\n    database: tpch\n";
    assert_eq!(env.apply(follow).code, 0);
    let v = wait_for(&env, "by-nation", "waiting for the request it follows", |v| {
        v["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["reason"] == "WaitingForFollowUp"))
    });
    assert_eq!(v["status"]["phase"], "Pending", "{v}");

    let earlier = "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: revenue\nspec:\n  question: total revenue by region\n  catalog:\n    database: tpch\n";
    assert_eq!(env.apply(earlier).code, 0);
    env.wait_phase("revenue", "AwaitingApproval", T);
    let d = env.digest("revenue");
    env.ok(&["approve", "revenue", "--digest", &d]);
    let done = env.wait_phase("revenue", "Done", T);
    let earlier_sql = done["status"]["generated"]["sql"].as_str().unwrap().to_string();
    assert!(earlier_sql.contains("r_name"), "{earlier_sql}");

    // The follow-up waited; once the earlier request has SQL it is generated from it. It may
    // read the earlier SQL while proposed (before the approval) or after it ran: both link to
    // the same uid and digest.
    let v = env.wait_phase("by-nation", "AwaitingApproval", T);
    let g = &v["status"]["generated"];
    let sql = g["sql"].as_str().unwrap();
    assert!(sql.contains("n_name") && !sql.contains("r_name"), "{sql}");
    assert_eq!(g["follows"]["name"], "revenue", "{g}");
    assert_eq!(g["follows"]["uid"], done["metadata"]["uid"], "{g}");
    assert_eq!(g["follows"]["sqlDigest"].as_str().unwrap(), d, "{g}");
    let o = env.ok(&["describe", "by-nation"]);
    assert!(o.stdout.contains("Follows up") && o.stdout.contains("revenue (uid"), "{}", o.stdout);

    // `ask --follow-up` takes the earlier request's database and records the link; the running
    // controller generates it (no terminal here, so ask only waits, and its timeout ends it).
    let o = env.run(&["ask", "--follow-up", "revenue", "only 1995", "--name", "in-1995", "--timeout", "1s"]);
    assert!(o.stderr.contains("queryrequest/in-1995 created"), "{o:?}");
    let v = wait_for(&env, "in-1995", "SQL from the follow-up", |v| v["status"]["phase"] == "AwaitingApproval");
    assert_eq!(v["spec"]["followUp"]["of"], "revenue");
    assert_eq!(v["spec"]["catalog"]["database"], "tpch");
    let sql = v["status"]["generated"]["sql"].as_str().unwrap();
    assert!(sql.contains("r_name") && sql.contains("1995"), "{sql}");
    assert_eq!(v["status"]["generated"]["follows"]["ran"], true, "{v}");

    // A follow-up of nothing is refused before anything is written; of hand-written SQL, declined
    // with the reason by the offline generator.
    let before = env.count();
    let o = env.run(&["ask", "--follow-up", "nope", "only 1995"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("queryrequest nope not found"), "{o:?}");
    assert_eq!(env.count(), before);
    assert_eq!(env.apply(&sql_spec("hand", "select n_name from nation")).code, 0);
    env.wait_phase("hand", "AwaitingApproval", T);
    let o = env.run(&["ask", "--follow-up", "hand", "only 1995", "--name", "of-hand", "--timeout", "1s"]);
    assert!(o.stderr.contains("created"), "{o:?}");
    let v = env.wait_phase("of-hand", "Failed", T);
    let text = v["status"]["conditions"].to_string();
    assert!(text.contains("hand-written SQL"), "{text}");

    // Requests that follow each other in a ring fail instead of waiting for each other forever.
    let ring = |name: &str, of: &str| {
        format!(
            "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\nspec:\n  question: only 1995\n  followUp:\n    of: {of}\n  catalog:\n    database: tpch\n"
        )
    };
    assert_eq!(
        env.apply(&format!(
            "{}---\n{}---\n{}",
            ring("ring-a", "ring-b"),
            ring("ring-b", "ring-c"),
            ring("ring-c", "ring-a")
        ))
        .code,
        0
    );
    let v = env.wait_phase("ring-a", "Failed", T);
    assert!(v["status"]["conditions"].to_string().contains("FollowUpCycle"), "{v}");
}

/// `eval --semantic-models DIR` gives each case's database its model, checked as `apply` checks
/// it: a model that does not check, or another kind of document, is refused.
#[test]
fn eval_takes_semantic_models_checked_like_apply() {
    let env = Env::new();
    let dir = env.home.path().join("models");
    std::fs::create_dir_all(&dir).unwrap();
    let model = "apiVersion: sqlctl.dev/v1alpha1\nkind: SemanticModel\nmetadata:\n  name: tpch\nspec:\n  database: tpch\n  tables:\n    - name: nation\n      synonyms: [countries]\n  metrics:\n    - {name: nations, table: nation, expression: count(*)}\n";
    std::fs::write(dir.join("tpch.yaml"), model).unwrap();
    let cases = env.home.path().join("cases.yaml");
    std::fs::write(&cases, "- question: How many nations are there?\n  gold: select count(*) from nation\n").unwrap();
    let (c, d) = (cases.to_str().unwrap(), dir.to_str().unwrap());
    let o = env.run(&["eval", c, "--semantic-models", d, "-o", "json"]);
    assert_eq!(o.code, 0, "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["summary"]["correct"], 1, "{v}");

    std::fs::write(dir.join("tpch.yaml"), model.replace("count(*)", "count(*) from nation; drop table nation"))
        .unwrap();
    let o = env.run(&["eval", c, "--semantic-models", d]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("--semantic-models") && o.stderr.contains("spec.metrics[0].expression"), "{o:?}");
    std::fs::write(dir.join("tpch.yaml"), sql_spec("not-a-model", "select 1")).unwrap();
    let o = env.run(&["eval", c, "--semantic-models", d]);
    assert!(o.code == 1 && o.stderr.contains("is not a SemanticModel"), "{o:?}");
}
