//! Issue 10, classes 5–7 through the real binary: a panic wedges no request (Unicode column
//! names), results do not collide across a forced delete, and the audit trail is archived, not
//! cut (with each refused decision looked at once).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// A controller over another data directory, killed on drop.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_in(env: &Env, data: &Path, args: &[&str]) -> Out {
    env.cmd().env("SQLCTL_DATA_DIR", data).args(args).output().expect("running sqlctl").into()
}

fn apply_in(env: &Env, data: &Path, yaml: &str) -> Out {
    use std::io::Write;
    let mut child = env
        .cmd()
        .env("SQLCTL_DATA_DIR", data)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    child.wait_with_output().unwrap().into()
}

fn get_in(env: &Env, data: &Path, name: &str) -> serde_json::Value {
    let o = run_in(env, data, &["get", name, "-o", "json"]);
    if o.code != 0 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&o.stdout).unwrap()
}

fn wait_in(env: &Env, data: &Path, name: &str, phases: &[&str], log: &Path) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let v = get_in(env, data, name);
        if phases.iter().any(|p| v["status"]["phase"] == *p) {
            return v;
        }
        if start.elapsed() > T {
            let d = run_in(env, data, &["describe", name]);
            panic!("{name} never reached {phases:?}: {d:?}\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn condition<'a>(v: &'a serde_json::Value, type_: &str) -> Option<&'a serde_json::Value> {
    v["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

fn spec_in(name: &str, database: &str, body: &str) -> String {
    format!(
        "apiVersion: sqlctl.dev/v1alpha1\nkind: QueryRequest\nmetadata:\n  name: {name}\nspec:\n{body}  catalog:\n    database: {database}\n"
    )
}

#[test]
fn a_panic_wedges_no_request_unicode_column_names_by_question_and_by_sql() {
    let env = Env::new();
    // A database of our own whose column names are not ASCII: byte offsets inside `é` (as in
    // `éa`, whose last two bytes are not a character) panicked the retriever.
    let data = env.home.path().join("unicode-data");
    let db = data.join("menu");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(
        db.join("plats.csv"),
        "aé,éa,éa_id,日本語,straße,ñandú_key,amount\n\
         soupe,x,1,味噌,Hauptstraße,7,10.5\n\
         soupe,y,2,味噌,Nebenstraße,8,4.5\n\
         crêpe,z,3,抹茶,Hauptstraße,9,3.0\n",
    )
    .unwrap();
    std::fs::write(db.join("éclairs.csv"), "éa_id,goût\n1,café\n2,vanille\n").unwrap();
    let log = env.home.path().join("controller-unicode.log");
    let _c = Controller(
        env.cmd()
            .env("SQLCTL_DATA_DIR", &data)
            .args(["controller", "--retry-period", "200ms", "--renew-deadline", "1s", "--lease-duration", "2s"])
            .args(["--resync", "2s"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );

    // By question, with the offline generator: the retriever and generator see every name.
    for (name, question) in [
        ("by-ae", "What is the total amount by aé?"),
        ("by-kanji", "Total amount per 日本語"),
        ("by-street", "How many plats per straße?"),
        ("eclairs", "List the goût of éclairs"),
    ] {
        let o = apply_in(&env, &data, &spec_in(name, "menu", &format!("  question: {question}\n")));
        assert_eq!(o.code, 0, "{o:?}");
        let v = wait_in(&env, &data, name, &["AwaitingApproval", "Failed"], &log);
        if v["status"]["phase"] == "Failed" {
            // Declining is fine; a wedged or crashed step is not.
            let c = condition(&v, "Generated").expect("a Generated condition");
            assert!(matches!(c["reason"].as_str(), Some("CannotAnswer" | "GenerationFailed")), "{name}: {v}");
        }
    }
    let v = get_in(&env, &data, "by-ae");
    assert_eq!(v["status"]["phase"], "AwaitingApproval", "the offline generator answers a plain group-by: {v}");
    let sql = v["status"]["generated"]["sql"].as_str().unwrap();
    assert!(sql.contains("\"aé\"") && sql.contains("amount"), "{sql}");
    let digest = v["status"]["generated"]["sqlDigest"].as_str().unwrap().to_string();
    let o = run_in(&env, &data, &["approve", "by-ae", "--digest", &digest, "--as", "alice"]);
    assert_eq!(o.code, 0, "{o:?}");
    wait_in(&env, &data, "by-ae", &["Done"], &log);
    let csv = run_in(&env, &data, &["results", "by-ae"]).stdout;
    assert!(csv.contains("soupe,15") && csv.contains("crêpe,3"), "{csv}");

    // By spec.sql: quoted Unicode identifiers are guarded, planned, run and charted.
    let sql = "select \"日本語\", \"straße\", sum(amount) as total from plats group by \"日本語\", \"straße\" order by total desc";
    let o = apply_in(&env, &data, &spec_in("by-sql", "menu", &format!("  sql: '{}'\n", sql.replace('\'', "''"))));
    assert_eq!(o.code, 0, "{o:?}");
    let v = wait_in(&env, &data, "by-sql", &["AwaitingApproval", "Failed"], &log);
    assert_eq!(v["status"]["phase"], "AwaitingApproval", "{v}");
    let digest = v["status"]["generated"]["sqlDigest"].as_str().unwrap().to_string();
    assert_eq!(run_in(&env, &data, &["approve", "by-sql", "--digest", &digest, "--as", "alice"]).code, 0);
    wait_in(&env, &data, "by-sql", &["Done"], &log);
    let csv = run_in(&env, &data, &["results", "by-sql"]).stdout;
    assert_eq!(csv, "日本語,straße,total\n味噌,Hauptstraße,10.5\n味噌,Nebenstraße,4.5\n抹茶,Hauptstraße,3.0\n");

    // The controller kept serving: another request goes through, and nothing panicked.
    let o = apply_in(&env, &data, &spec_in("plain", "menu", "  sql: select count(*) as n from plats\n"));
    assert_eq!(o.code, 0, "{o:?}");
    let v = wait_in(&env, &data, "plain", &["AwaitingApproval"], &log);
    let digest = v["status"]["generated"]["sqlDigest"].as_str().unwrap().to_string();
    assert_eq!(run_in(&env, &data, &["approve", "plain", "--digest", &digest, "--as", "alice"]).code, 0);
    wait_in(&env, &data, "plain", &["Done"], &log);
    assert_eq!(run_in(&env, &data, &["results", "plain"]).stdout, "n\n3\n");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panicked"), "{text}");
}

/// Long enough to still be running when it is deleted (cancelled well before it ends).
const SLOW: &str =
    "select count(*) as n from lineitem l1 cross join lineitem l2 where l1.l_quantity + l2.l_quantity > 0";

#[test]
fn results_do_not_collide_across_a_delete_force_of_an_executing_request() {
    let env = Env::new();
    env.controller(&[]);
    assert_eq!(env.apply(&sql_spec("reborn", SLOW)).code, 0);
    env.wait_phase("reborn", "AwaitingApproval", T);
    env.ok(&["approve", "reborn", "--digest", &env.digest("reborn"), "--as", "alice"]);
    let start = Instant::now();
    let old = loop {
        let v = env.get("reborn");
        if v["status"]["execution"]["state"] == "Running" {
            break v;
        }
        assert!(start.elapsed() < T, "{v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();

    // Forced delete of the executing request: its query is cancelled before the record goes.
    let o = env.run(&["delete", "reborn", "--force"]);
    assert_eq!(o.code, 0, "{o:?}\n{}", env.controller_log(0));
    assert!(o.stdout.contains("cancelled its running query"), "{o:?}");
    assert_eq!(env.run(&["get", "reborn"]).code, 1, "the record is gone");
    let log = env.controller_log(0);
    assert!(log.contains("local query cancelled"), "{log}");

    // The same name again, other SQL: its result is its own file, holding its own answer.
    assert_eq!(env.apply(&sql_spec("reborn", "select count(*) as n from nation")).code, 0);
    env.wait_phase("reborn", "AwaitingApproval", T);
    env.ok(&["approve", "reborn", "--digest", &env.digest("reborn"), "--as", "alice"]);
    let v = env.wait_phase("reborn", "Done", T);
    let new_uid = v["metadata"]["uid"].as_str().unwrap();
    assert_ne!(new_uid, old_uid);
    let loc = v["status"]["execution"]["outputLocation"].as_str().unwrap();
    let expected = env.home.path().join(format!("results/default/reborn/{new_uid}/1-1.csv"));
    assert_eq!(loc, expected.display().to_string());
    assert_eq!(std::fs::read_to_string(&expected).unwrap(), "n\n25\n");
    assert_eq!(env.ok(&["results", "reborn"]).stdout, "n\n25\n");
    // The cancelled query wrote nothing, under its own uid or the new one.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!env.home.path().join(format!("results/default/reborn/{old_uid}/1-1.csv")).exists());
    assert_eq!(std::fs::read_to_string(&expected).unwrap(), "n\n25\n");
    assert_eq!(env.get("reborn")["metadata"]["uid"], new_uid);
}

#[test]
fn the_audit_trail_is_archived_not_cut_past_100_refused_decisions() {
    let env = Env::new();
    let policy = env.home.path().join("policy.yaml");
    std::fs::write(&policy, "approvers: [bob]\n").unwrap();
    env.controller(&["--policy", policy.to_str().unwrap()]);
    assert_eq!(env.apply(&sql_spec("audited", "select count(*) as n from region")).code, 0);
    env.wait_phase("audited", "AwaitingApproval", T);
    let digest = env.digest("audited");

    // 130 decisions from people the policy does not allow, written behind the CLI's back (as a
    // queue consumer might), all in one round.
    const N: usize = 130;
    let forged: Vec<(String, String)> = (0..N).map(|i| (format!("refused-{i:03}"), format!("mallory{i:03}"))).collect();
    env.forge_approvals("audited", &digest, &forged);
    // Wait until every refusal is in the trail (status or archive): the controller may see the
    // records over more than one step while they are being written.
    let refusals = |env: &Env| {
        let all = env.ok(&["describe", "audited", "--history", "all"]).stdout;
        all.lines().filter(|l| l.contains("DecisionRefused")).count()
    };
    let start = Instant::now();
    while refusals(&env) < N {
        assert!(start.elapsed() < T, "{}", env.ok(&["describe", "audited", "--history", "all"]).stdout);
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = env.get("audited");
    assert_eq!(v["status"]["phase"], "AwaitingApproval");
    let history = v["status"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 100, "the record keeps the latest 100");
    let generated: Vec<_> = history.iter().filter(|h| h["event"] == "Generated").collect();
    assert_eq!(generated.len(), 1, "the Generated entry survives: {v}");
    assert_eq!(generated[0]["sqlDigest"], digest);

    // describe says how many are archived; --history all shows the whole trail.
    let d = env.ok(&["describe", "audited"]).stdout;
    let archived = v["status"]["historyArchived"].as_u64().unwrap();
    assert!(archived > 0, "{v}");
    assert!(d.contains(&format!("{archived} earlier archived")) && d.contains("--history all"), "{d}");
    let all = env.ok(&["describe", "audited", "--history", "all"]).stdout;
    let trail: Vec<&str> = all.lines().skip_while(|l| !l.starts_with("History:")).skip(1).collect();
    assert_eq!(trail.len() as u64, 100 + archived, "{all}");
    assert_eq!(trail.iter().filter(|l| l.contains("DecisionRefused")).count(), N, "each refusal once: {all}");
    assert!(trail[0].contains("Observed"), "oldest first: {all}");
    for i in 0..N {
        assert!(all.contains(&format!("by mallory{i:03}")), "mallory{i:03} missing from the trail");
    }

    // Resyncs (every 2s here) look again, and rewrite nothing.
    let rv = v["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_millis(5000));
    let later = env.get("audited");
    assert_eq!(later["metadata"]["resourceVersion"], rv, "a refused decision is not re-processed on resync");
    assert_eq!(later["status"]["historyArchived"].as_u64().unwrap(), archived);

    // A valid decision still goes through, and the Generated entry is still there.
    env.ok(&["approve", "audited", "--digest", &digest, "--as", "bob"]);
    let v = env.wait_phase("audited", "Done", T);
    assert!(v["status"]["history"].as_array().unwrap().iter().any(|h| h["event"] == "Generated"));
}
