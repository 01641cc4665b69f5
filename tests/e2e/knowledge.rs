//! Issue 14 item 3 through the real binary on the offline path: a request that ran is verified,
//! and a later question worded like it with other values is answered from that verified query
//! (not by the generator), labelled `Verified (by …)`; a question that differs in any other word
//! is not.

use std::time::{Duration, Instant};

use crate::harness::*;

fn question(name: &str, q: &str) -> String {
    format!(
        "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\nspec:\n  question: {q}\n  catalog:\n    database: tpch\n"
    )
}

fn get(env: &Env, args: &[&str]) -> serde_json::Value {
    let o = env.ok(args);
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

#[test]
fn a_question_worded_like_a_verified_one_is_answered_from_it_and_labelled() {
    let env = Env::new();
    env.controller(&["--plan-interval", "300ms"]);
    env.apply(&question("top-builders", "Which 5 customers in the BUILDING segment have the highest account balance?"));
    env.wait_phase("top-builders", "AwaitingApproval", T);
    let d = env.digest("top-builders");
    env.ok(&["approve", "top-builders", "--digest", &d, "--as", "alice"]);
    let ran = env.wait_phase("top-builders", "Done", T);
    assert_eq!(ran["status"]["generated"]["source"]["kind"], "generator", "{ran}");

    env.ok(&["verify", "top-builders", "--name", "top-segment"]);
    let start = Instant::now();
    loop {
        let v = get(&env, &["get", "vq", "top-segment", "-o", "json"]);
        let fresh = v["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Stale" && c["status"] == "False"));
        if fresh {
            break;
        }
        assert!(start.elapsed() < T, "never planned: {v}\n{}", env.controller_log(0));
        std::thread::sleep(Duration::from_millis(100));
    }

    // Other values in the verified question's slots: its template, bound; no generator.
    env.apply(&question(
        "top-machinery",
        "Which 3 customers in the MACHINERY segment have the highest account balance?",
    ));
    let v = env.wait_phase("top-machinery", "AwaitingApproval", T);
    let g = &v["status"]["generated"];
    assert_eq!(g["model"], "verified/top-segment", "{g}");
    let src = &g["source"];
    assert_eq!(
        (&src["kind"], &src["verifiedQuery"], &src["verifiedBy"]),
        (&"verifiedQuery".into(), &"top-segment".into(), &"alice".into()),
        "{src}"
    );
    let sql = g["sql"].as_str().unwrap();
    assert!(sql.contains("c_mktsegment = 'MACHINERY'") && sql.ends_with("LIMIT 3"), "{sql}");
    assert_eq!(src["parameters"]["limit"], "3", "{src}");
    let o = env.ok(&["describe", "top-machinery"]);
    assert!(o.stdout.contains("Verified (by alice): verified query top-segment"), "{}", o.stdout);
    // It runs like any other request once approved.
    let d = env.digest("top-machinery");
    env.ok(&["approve", "top-machinery", "--digest", &d]);
    let done = env.wait_phase("top-machinery", "Done", T);
    assert_eq!(done["status"]["execution"]["preview"]["rows"].as_array().unwrap().len(), 3, "{done}");

    // One other word: not the verified question, so the generator answers (or declines).
    env.apply(&question(
        "top-suppliers",
        "Which 3 suppliers in the MACHINERY segment have the highest account balance?",
    ));
    let start = Instant::now();
    let v = loop {
        let v = env.get("top-suppliers");
        let p = v["status"]["phase"].as_str().unwrap_or("");
        if p == "AwaitingApproval" || p == "Failed" {
            break v;
        }
        assert!(start.elapsed() < T, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(v["status"]["generated"]["source"]["kind"], "verifiedQuery", "{v}");
}
