//! Console page render time with many requests (release build; not run in CI):
//! `cargo bench --bench console`.
//!
//! Fills a SQLite store with BENCH_N requests (default 10000) spread over phases and four
//! namespaces, each with a realistic status (SQL, three history entries, a small preview for the
//! finished ones), starts the real console on loopback with a token session, and times complete
//! HTTP GETs (request to last body byte, over a kept-alive connection) of: the list (first page,
//! a phase filter, a deep page, a namespace filter), the list fragment live updates fetch, and a
//! detail page. Reports p50/p95/p99/max per page over BENCH_ITERS requests (default 500) after a
//! warm-up, and the time to load the index at start. Target: p95 ≤ 50 ms at 10,000 records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlctl::console::{AuthMode, ConsoleConfig, Parts, ServerKey, serve};
use sqlctl::spec::*;
use sqlctl::store::{Store, sqlite::SqliteStore};

const TOKEN: &str = "bench-console-token-0123456789";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn history(at: chrono::DateTime<chrono::Utc>, event: &str, sql: Option<&str>) -> HistoryEntry {
    HistoryEntry {
        at,
        event: event.into(),
        generation: 1,
        sql: sql.map(str::to_string),
        sql_digest: sql
            .map(|s| sql_digest(EngineKind::Local, "tpch", s, &QueryRequestSpec::default().effective_limits())),
        by: None,
        decision: None,
        decision_id: None,
        feedback: None,
        message: Some("by offline/v1 (confidence 0.90)".into()),
    }
}

async fn fill(store: &dyn Store, n: u64) {
    let phases = [
        Phase::AwaitingApproval,
        Phase::Done,
        Phase::Done,
        Phase::Done,
        Phase::Executing,
        Phase::Rejected,
        Phase::Failed,
        Phase::Pending,
    ];
    for i in 0..n {
        let mut r = QueryRequest::new(format!("request-{i:05}"), "tpch")
            .with_namespace(["default", "growth", "finance", "ops"][(i % 4) as usize])
            .with_question(format!(
                "Which {} customers have the highest account balance in segment {}?",
                i % 20 + 1,
                i % 5
            ));
        r.metadata.annotations.insert(REQUESTER_ANNOTATION.into(), format!("user{}", i % 37));
        let mut r = store.create(r).await.unwrap();
        let sql = format!(
            "SELECT c_name, c_acctbal\nFROM tpch.customer\nWHERE c_mktsegment = 'BUILDING'\nORDER BY c_acctbal DESC\nLIMIT {}",
            i % 20 + 1
        );
        let phase = phases[(i % phases.len() as u64) as usize];
        let now = chrono::Utc::now();
        let mut st = QueryRequestStatus {
            phase,
            observed_generation: 1,
            approval_round: 1,
            generated: Some(Generated {
                sql_digest: sql_digest(EngineKind::Local, "tpch", &sql, &r.spec.effective_limits()),
                sql: sql.clone(),
                explanation: "Customers ordered by account balance, highest first.".into(),
                confidence: 0.9,
                model: "offline/v1".into(),
                tables_used: vec!["customer".into()],
                ..Default::default()
            }),
            history: vec![
                history(now, "Observed", None),
                history(now, "Generated", Some(&sql)),
                history(now, "Decision", None),
            ],
            ..Default::default()
        };
        if phase == Phase::Done {
            st.execution = Some(Execution {
                token: format!("t{i}"),
                attempt: 1,
                state: "Succeeded".into(),
                rows: Some(5),
                preview: Some(Preview {
                    columns: vec!["c_name".into(), "c_acctbal".into()],
                    rows: (0..5).map(|k| vec![Some(format!("Customer#{k:09}")), Some("9999.99".into())]).collect(),
                    truncated: false,
                }),
                ..Default::default()
            });
        }
        r.status = Some(st);
        store.update_status(&r, None).await.unwrap();
    }
}

fn field(html: &str, name: &str) -> String {
    let pat = format!("name=\"{name}\" value=\"");
    let start = html.find(&pat).expect("field") + pat.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

fn main() {
    let n = env_num("BENCH_N", 10_000);
    let iters = env_num("BENCH_ITERS", 500) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
        let t = Instant::now();
        fill(store.as_ref(), n).await;
        eprintln!("filled {n} requests in {:.1} s", t.elapsed().as_secs_f64());

        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let config = ConsoleConfig {
            auth: AuthMode::Token { token: TOKEN.into(), user: "alice".into() },
            key: ServerKey::derive(TOKEN),
            poll: Duration::from_millis(250),
            relist: Duration::from_secs(60),
        };
        let t = Instant::now();
        let results = Arc::new(sqlctl::results::local::LocalResults::new(dir.path().join("results")));
        let parts = Parts { store: store.clone(), results, config };
        let (addr, _h) = serve("127.0.0.1:0".parse().unwrap(), parts, stop).await.unwrap();
        eprintln!("console started (index of {n} requests loaded) in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);

        let base = format!("http://{addr}");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let res = http.get(format!("{base}/login")).send().await.unwrap();
        let anon = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let csrf = field(&res.text().await.unwrap(), "csrf");
        let res = http
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &anon)
            .body(format!("token={TOKEN}&csrf={csrf}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "login");
        let session = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();

        println!("console render time, {n} requests, {iters} GETs each (ms):");
        println!("{:<44} {:>8} {:>7} {:>7} {:>7} {:>7}", "page", "bytes", "p50", "p95", "p99", "max");
        for path in [
            "/".to_string(),
            "/?phase=AwaitingApproval".to_string(),
            "/?phase=Done&page=20".to_string(),
            "/?namespace=growth".to_string(),
            "/fragment/list".to_string(),
            "/requests/growth/request-00001".to_string(),
        ] {
            let url = format!("{base}{path}");
            let mut size = 0;
            for _ in 0..20 {
                size = http.get(&url).header("cookie", &session).send().await.unwrap().bytes().await.unwrap().len();
            }
            let mut ms = Vec::with_capacity(iters);
            for _ in 0..iters {
                let t = Instant::now();
                let res = http.get(&url).header("cookie", &session).send().await.unwrap();
                assert_eq!(res.status(), 200, "{path}");
                let body = res.bytes().await.unwrap();
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                assert!(!body.is_empty());
            }
            ms.sort_by(f64::total_cmp);
            println!(
                "{path:<44} {size:>8} {:>7.2} {:>7.2} {:>7.2} {:>7.2}",
                percentile(&ms, 0.50),
                percentile(&ms, 0.95),
                percentile(&ms, 0.99),
                ms[ms.len() - 1]
            );
        }
    });
}
