//! Athena and Glue behaviours moto cannot show, against the fake JSON-protocol server: replay
//! after a controller kill attaches to the same execution; a restarted engine repeating a start
//! gets the same execution (one start effect); FAILED transient → new attempt, FAILED otherwise →
//! Failed; timeout and budget → StopQueryExecution; Glue pages read to the end; the EXPLAIN dry
//! run fails SQL Athena cannot plan before approval and lets valid SQL through.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::aws_support::*;
use crate::fake_aws::{FakeAws, FakeGlue};
use crate::harness::*;

const T: Duration = Duration::from_secs(90);

fn sql_spec_aws(name: &str, sql: &str, limits: &str) -> String {
    spec(name, &format!("  sql: \"{sql}\"\n  catalog:\n    database: tpch\n{limits}"))
}

/// Applies, waits for the approval request and approves it over SQS.
fn apply_and_approve(w: &AwsWorld, name: &str, yaml: &str) {
    let o = w.apply(yaml);
    assert_eq!(o.code, 0, "{o:?}");
    let m = w.approval_request(name, T);
    w.decide(&m, "approve", json!({}));
}

#[test]
fn a_controller_killed_mid_query_is_replaced_and_attaches_to_the_same_execution() {
    let Some(w) = AwsWorld::new(false) else { return };
    let pid = w.controller(&[]);
    let sql = "select count(*) as n from orders where 'fake:running=6' <> ''";
    apply_and_approve(&w, "replay", &sql_spec_aws("replay", sql, ""));
    let v = w.wait_for("replay", T, |v| v["status"]["execution"]["state"] == "Running", "execution id recorded");
    let id = v["status"]["execution"]["id"].as_str().unwrap().to_string();
    signal(pid, libc::SIGKILL);
    w.wait_child(pid, T);
    w.controller(&[]);
    let v = w.wait_phase("replay", "Done", T);
    assert_eq!(v["status"]["execution"]["id"], id.as_str(), "attached by the recorded id");
    assert_eq!(v["status"]["execution"]["attempt"], 1);
    assert_eq!(w.fake.effects("fake:running=6"), 1, "one start effect");
    assert_eq!(w.fake.calls_named("athena", "StartQueryExecution"), 1);
    let hist = v["status"]["history"].as_array().unwrap();
    assert_eq!(hist.iter().filter(|h| h["event"] == "Executed").count(), 1, "{v}");
}

#[test]
fn failures_retry_or_fail_and_timeout_and_budget_stop_the_query() {
    let Some(w) = AwsWorld::new(false) else { return };
    w.controller(&[]);
    apply_and_approve(
        &w,
        "flaky",
        &sql_spec_aws("flaky", "select count(*) as n from nation where 'fake:fail-transient=1' <> ''", ""),
    );
    apply_and_approve(
        &w,
        "broken",
        &sql_spec_aws("broken", "select count(*) as n from region where 'fake:fail-user' <> ''", ""),
    );
    apply_and_approve(
        &w,
        "slow",
        &sql_spec_aws(
            "slow",
            "select count(*) as n from supplier where 'fake:forever' <> ''",
            "  limits:\n    timeout: 1s\n",
        ),
    );
    apply_and_approve(
        &w,
        "costly",
        &sql_spec_aws(
            "costly",
            "select count(*) as n from part where 'fake:forever fake:scan=50000000' <> ''",
            "  limits:\n    maxBytesScanned: 10MB\n",
        ),
    );

    let v = w.wait_phase("flaky", "Done", T);
    assert_eq!(v["status"]["execution"]["attempt"], 2, "a transient FAILED is retried as a new attempt: {v}");
    assert_eq!(w.fake.effects("fail-transient"), 2, "two attempts, two tokens, two executions");
    let hist = v["status"]["history"].as_array().unwrap();
    assert!(hist.iter().any(|h| h["event"] == "AttemptFailed"), "{v}");

    let v = w.wait_phase("broken", "Failed", T);
    let ready = v["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!(ready["reason"], "QueryFailed");
    assert!(ready["message"].as_str().unwrap().contains("SYNTAX_ERROR"), "{ready}");
    assert_eq!(w.fake.effects("fail-user"), 1, "a user error is not retried");

    let v = w.wait_phase("costly", "Failed", T);
    assert!(v["status"]["conditions"].to_string().contains("BudgetExceeded"), "{v}");
    let v = w.wait_phase("slow", "Failed", T);
    assert!(v["status"]["conditions"].to_string().contains("QueryTimeout"), "{v}");
    assert_eq!(w.fake.stops(), 2, "StopQueryExecution for the timeout and the budget");
    let stopped = w.fake.state.athena.lock().unwrap().stopped.clone();
    let execs = w.fake.state.athena.lock().unwrap().execs.clone();
    for id in stopped {
        assert_eq!(execs[&id].state, "CANCELLED");
    }
}

#[test]
fn explain_fails_unplannable_sql_before_approval_and_lets_valid_sql_through() {
    let Some(w) = AwsWorld::new(false) else { return };
    w.controller(&[]);
    assert_eq!(w.apply(&sql_spec_aws("badcol", "select no_such_column from nation", "")).code, 0);
    assert_eq!(w.apply(&sql_spec_aws("goodcol", "select n_name from nation order by n_name", "")).code, 0);

    let v = w.wait_phase("badcol", "Failed", T);
    let conds = v["status"]["conditions"].as_array().unwrap();
    let failed = conds.iter().find(|c| c["reason"] == "PlanFailed").unwrap_or_else(|| panic!("{v}"));
    let msg = failed["message"].as_str().unwrap();
    assert!(msg.starts_with("Athena: ") && msg.contains("no_such_column"), "Athena's planning error: {msg}");
    assert!(v["status"]["approvalRound"].as_u64().unwrap_or(0) == 0, "never asked for approval: {v}");
    assert!(!conds.iter().any(|c| c["type"] == "Approved"), "{v}");

    let v = w.wait_phase("goodcol", "AwaitingApproval", T);
    assert_eq!(v["status"]["generated"]["sql"], "SELECT n_name FROM nation ORDER BY n_name");
    w.approval_request("goodcol", T);

    // Both were planned with EXPLAIN (fresh tokens); neither ran.
    assert!(w.fake.calls_named("athena", "StartQueryExecution(EXPLAIN)") >= 2, "{:?}", w.fake.calls());
    assert_eq!(w.fake.calls_named("athena", "StartQueryExecution"), 0);
    assert_eq!(w.fake.effects("from nation"), 0, "no real execution before approval");
    let execs = w.fake.state.athena.lock().unwrap().execs.clone();
    assert!(execs.values().all(|e| e.sql.starts_with("EXPLAIN ") && !e.token.is_empty()), "{execs:?}");
}

#[test]
fn a_restarted_engine_repeating_a_start_gets_the_same_execution() {
    let Some(moto) = moto_url() else { return };
    let fake = FakeAws::start(Some(moto), warehouse().to_path_buf(), None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&fake.url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await;
        use sqlctl::engine::athena::{AthenaEngine, AthenaOptions};
        use sqlctl::engine::{Engine, ExecState, QueryJob};
        let engine = || AthenaEngine::new(sqlctl::aws::athena(&conf), sqlctl::aws::s3(&conf), AthenaOptions::default());
        let job = QueryJob {
            key: sqlctl::spec::ObjectKey::new("default", "q"),
            token: "0123456789abcdef0123456789abcdef".into(),
            database: "tpch".into(),
            sql: "select n_name from nation order by n_name /* fake:running=1 */".into(),
            limits: sqlctl::spec::EffectiveLimits {
                max_rows: 10,
                max_bytes_scanned: None,
                timeout_ms: 60_000,
                max_result_bytes: 1 << 30,
            },
            result: sqlctl::results::ResultKey {
                namespace: "default".into(),
                name: "q".into(),
                uid: "u".into(),
                generation: 1,
                attempt: 1,
            },
        };
        // Where the fake writes results when no output location is given.
        let _ = sqlctl::aws::s3(&conf).create_bucket().bucket("fake-athena-results").send().await;
        let waker: sqlctl::engine::Waker = Arc::new(|_| {});
        let first = engine().start(&job, waker.clone()).await.unwrap();
        // The controller crashed before recording the id; a new process starts again.
        let second = engine().start(&job, waker).await.unwrap();
        assert_eq!(first, second);
        assert!(first.ends_with("?maxRows=10"), "{first}");
        assert_eq!(fake.effects("fake:running=1"), 1);
        assert_eq!(fake.calls_named("athena", "StartQueryExecution"), 2);
        let e = engine();
        assert!(matches!(e.poll(&first).await.unwrap(), ExecState::Running { .. }));
        let ExecState::Succeeded(out) = e.poll(&first).await.unwrap() else { panic!("not done") };
        // 25 nations, a 10-row preview paged from GetQueryResults, the count read from S3.
        assert_eq!(out.preview.rows.len(), 10);
        assert!(out.preview.truncated);
        assert_eq!(out.preview.columns, ["n_name"]);
        assert_eq!(out.preview.rows[0][0].as_deref(), Some("ALGERIA"));
        assert_eq!(out.rows, 25);
        assert!(matches!(e.poll("no-such-id").await.unwrap(), ExecState::Unknown));
        // Athena's throttling is a back-off, never a failure.
        let throttled = QueryJob { token: "f".repeat(32), sql: "select 1 /* fake:throttle */".into(), ..job.clone() };
        let err = e.start(&throttled, Arc::new(|_| {})).await.unwrap_err();
        assert!(
            matches!(&err, sqlctl::engine::EngineError::Transient(m) if m.contains("TooManyRequestsException")),
            "{err:?}"
        );
        assert_eq!(e.running(), 0, "a refused start holds no slot");
    });
}

#[test]
fn glue_tables_are_read_page_by_page_and_errors_say_what_is_wrong() {
    let Some(moto) = moto_url() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tables = rt
        .block_on(async {
            use sqlctl::catalog::Catalog;
            sqlctl::catalog::local::LocalCatalog::new(warehouse()).tables("tpch").await
        })
        .unwrap();
    let n = tables.len();
    let fake = FakeAws::start(
        Some(moto),
        warehouse().to_path_buf(),
        Some(FakeGlue { database: "tpch".into(), tables, page: 3 }),
    );
    rt.block_on(async {
        use sqlctl::catalog::{Catalog, CatalogError};
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&fake.url)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await;
        let cat = sqlctl::catalog::glue::GlueCatalog::new(sqlctl::aws::glue(&conf), None);
        let got = cat.tables("tpch").await.unwrap();
        assert_eq!(got.len(), n, "all pages read");
        assert_eq!(fake.calls_named("glue", "GetTables"), n.div_ceil(3) as u64);
        let lineitem = got.iter().find(|t| t.name == "lineitem").unwrap();
        assert!(
            lineitem.columns.iter().any(|c| c.name == "l_extendedprice" && c.data_type.starts_with("decimal")),
            "{lineitem:?}"
        );
        // Cached: no second round of calls.
        cat.tables("tpch").await.unwrap();
        assert_eq!(fake.calls_named("glue", "GetTables"), n.div_ceil(3) as u64);
        assert!(matches!(cat.tables("nope").await, Err(CatalogError::DatabaseNotFound(_))));
        let denied = cat.tables("forbidden").await.unwrap_err();
        assert!(matches!(denied, CatalogError::AccessDenied(_)), "{denied:?}");
        assert!(denied.to_string().contains("glue:GetTables"), "{denied}");
    });
}
