//! The cost estimate before approval: a request whose estimate exceeds its
//! `limits.maxBytesScanned` waits with `BudgetExceeded=True` and runs only with an approval that
//! says so (`approve --allow-over-budget`), from an approver the policy allows.

use crate::harness::*;

#[test]
fn an_over_budget_request_runs_only_with_an_approval_that_accepts_the_estimate() {
    let env = Env::new();
    let policy = env.home.path().join("policy.yaml");
    std::fs::write(&policy, "overBudgetApprovers: [bob]\n").unwrap();
    env.controller(&["--policy", &policy.to_string_lossy()]);
    let spec = sql_spec("wide", "select l_orderkey, l_comment from lineitem where l_quantity > 10")
        + "  limits:\n    maxBytesScanned: 64KiB\n";
    env.apply(&spec);
    let v = env.wait_phase("wide", "AwaitingApproval", T);
    let estimate = &v["status"]["estimate"];
    let bytes = estimate["bytes"].as_u64().unwrap();
    assert!(bytes > 64 * 1024, "{estimate}");
    assert_eq!(estimate["costUsd"], 0.0, "the local engine charges nothing per byte");
    assert!(estimate["method"].as_str().unwrap().contains("Parquet footers"), "{estimate}");
    let conditions = v["status"]["conditions"].as_array().unwrap();
    let budget = conditions.iter().find(|c| c["type"] == "BudgetExceeded").expect("BudgetExceeded condition");
    assert_eq!(budget["status"], "True", "{budget}");
    assert!(budget["message"].as_str().unwrap().contains("sqlctl approve wide --allow-over-budget"), "{budget}");
    let o = env.ok(&["describe", "wide"]);
    assert!(o.stdout.contains("Estimate") && o.stdout.contains("BudgetExceeded"), "{}", o.stdout);

    // A plain approve is refused, with what to do.
    let digest = env.digest("wide");
    let o = env.run(&["approve", "wide", "--digest", &digest, "--as", "alice"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("--allow-over-budget"), "{o:?}");
    // Over budget only from an approver the policy allows to.
    let o = env.run(&["approve", "wide", "--digest", &digest, "--as", "alice", "--allow-over-budget"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("overBudgetApprovers"), "{o:?}");
    assert_eq!(env.phase("wide"), "AwaitingApproval");

    env.ok(&["approve", "wide", "--digest", &digest, "--as", "bob", "--allow-over-budget"]);
    let v = env.wait_phase("wide", "Done", T);
    assert_eq!(v["status"]["approval"]["allowOverBudget"], true);
    // The estimate forecast what the engine then read.
    let scanned = v["status"]["execution"]["bytesScanned"].as_u64().unwrap();
    assert_eq!(scanned, bytes, "estimate {bytes}, scanned {scanned}");
}

#[test]
fn within_budget_a_plain_approve_is_enough() {
    let env = Env::new();
    env.controller(&[]);
    env.apply(
        &(sql_spec("narrow", "select count(*) from nation where n_regionkey = 1")
            + "  limits:\n    maxBytesScanned: 1MiB\n"),
    );
    let v = env.wait_phase("narrow", "AwaitingApproval", T);
    let budget = v["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "BudgetExceeded").cloned();
    assert_eq!(budget.unwrap()["status"], "False");
    let digest = env.digest("narrow");
    env.ok(&["approve", "narrow", "--digest", &digest]);
    env.wait_phase("narrow", "Done", T);
}

#[test]
fn eval_measures_each_estimate_against_the_bytes_the_engine_reads() {
    let env = Env::new();
    let cases = env.home.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "- question: revenue by ship mode\n  gold: select l_shipmode, sum(l_extendedprice) from lineitem group by l_shipmode\n\
         - question: how many nations\n  gold: select count(*) from nation\n\
         - question: broken\n  gold: select nope from nation\n",
    )
    .unwrap();
    let o = env.ok(&["eval", &cases.to_string_lossy(), "--estimates", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert!(results[0]["estimateBytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(results[0]["estimateBytes"], results[0]["scannedBytes"], "{v}");
    assert!(results[2]["failure"].as_str().unwrap().contains("nope"), "{v}");
    assert_eq!((v["summary"]["cases"].as_u64(), v["summary"]["measured"].as_u64()), (Some(3), Some(2)));
    assert_eq!(v["summary"]["medianError"], 0.0);
    // A threshold turns it into a check.
    let o = env.run(&["eval", &cases.to_string_lossy(), "--estimates", "--max-estimate-error", "300"]);
    assert_eq!(o.code, 2, "a threshold above 100% is a usage error: {o:?}");
}
