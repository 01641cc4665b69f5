//! Who may decide, and on what: allow-lists, four-eyes, stale and recreated requests.

use std::time::Duration;

use crate::harness::*;

fn policy(env: &Env) -> String {
    let p = env.home.path().join("policy.yaml");
    std::fs::write(
        &p,
        "approvers: [alice, bob, rita]\ndatabases:\n  tpch:\n    approvers: [alice, bob, rita]\nfourEyes: true\n",
    )
    .unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn allow_list_and_four_eyes_are_enforced_by_the_cli_and_the_controller() {
    let env = Env::new();
    let p = policy(&env);
    env.controller(&["--policy", &p]);
    // rita requests; the spec narrows approvers to rita and bob.
    let spec = sql_spec("guarded", "select count(*) from supplier") + "  approval:\n    approvers: [rita, bob]\n";
    let o = env.run_stdin(&["apply", "-f", "-", "--as", "rita"], spec.as_bytes());
    assert_eq!(o.code, 0, "{o:?}");
    env.wait_phase("guarded", "AwaitingApproval", T);
    let digest = env.digest("guarded");

    // Four-eyes: the requester may not approve.
    let o = env.run(&["approve", "guarded", "--digest", &digest, "--as", "rita"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("four-eyes"), "{o:?}");
    // alice is in the policy but not in the spec's narrower list.
    let o = env.run(&["approve", "guarded", "--digest", &digest, "--as", "alice"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("may not decide"), "{o:?}");
    // mallory is nowhere.
    let o = env.run(&["approve", "guarded", "--digest", &digest, "--as", "mallory"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(env.phase("guarded"), "AwaitingApproval");

    // A decision written behind the CLI's back (as a queue consumer might) is re-checked by
    // the controller and refused with a condition.
    env.forge_approvals("guarded", &digest, &[("forged-1".into(), "mallory".into())]);
    let start = std::time::Instant::now();
    loop {
        let v = env.get("guarded");
        let refused = v["status"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["event"] == "DecisionRefused" && h["by"] == "mallory");
        if refused {
            assert_eq!(v["status"]["phase"], "AwaitingApproval");
            assert!(v["status"]["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "DecisionRefused"));
            break;
        }
        assert!(start.elapsed() < T, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // bob may.
    env.ok(&["approve", "guarded", "--digest", &digest, "--as", "bob"]);
    let v = env.wait_phase("guarded", "Done", T);
    assert_eq!(v["status"]["approval"]["by"], "bob");
}

#[test]
fn a_decision_for_a_deleted_and_recreated_request_is_never_applied() {
    let env = Env::new();
    let pid = env.controller(&[]);
    env.apply(&sql_spec("phoenix", "select count(*) from part"));
    let v = env.wait_phase("phoenix", "AwaitingApproval", T);
    let old_uid = v["metadata"]["uid"].as_str().unwrap().to_string();
    let digest = env.digest("phoenix");
    // Stop the controller, approve the old request, delete it and create it again (same SQL,
    // so the same digest): the old approval names the old uid and must not run the new one.
    signal(pid, libc::SIGKILL);
    env.wait_child(pid, T);
    env.ok(&["approve", "phoenix", "--digest", &digest]);
    env.ok(&["delete", "phoenix", "--force"]);
    env.apply(&sql_spec("phoenix", "select count(*) from part"));
    env.controller(&[]);
    let v = env.wait_phase("phoenix", "AwaitingApproval", T);
    assert_ne!(v["metadata"]["uid"].as_str().unwrap(), old_uid);
    assert_eq!(env.digest("phoenix"), digest, "same SQL, same digest: only the uid tells them apart");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(env.phase("phoenix"), "AwaitingApproval", "the old approval must not apply");
}

#[test]
fn a_second_decision_by_the_same_person_is_refused_and_the_first_stands() {
    let env = Env::new();
    env.controller(&[]);
    env.apply(&sql_spec("twice", "select count(*) from region"));
    env.wait_phase("twice", "AwaitingApproval", T);
    let digest = env.digest("twice");
    // Same decision twice: idempotent (a double click, a redelivered message).
    env.ok(&["approve", "twice", "--digest", &digest]);
    let again = env.run(&["approve", "twice", "--digest", &digest]);
    // Either still awaiting (idempotent success) or already executing (wrong phase): never two runs.
    assert!(again.code == 0 || again.stderr.contains("not AwaitingApproval"), "{again:?}");
    let v = env.wait_phase("twice", "Done", T);
    let decisions = v["status"]["history"].as_array().unwrap().iter().filter(|h| h["event"] == "Decision").count();
    assert_eq!(decisions, 1);
}
