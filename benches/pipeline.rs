//! End-to-end benchmark (release build; not run in CI): `cargo bench --bench pipeline`.
//!
//! Applies N `spec.sql` requests (a trivial query over `nation`) to the embedded store, approves
//! them through decision records at a steady rate as they reach AwaitingApproval, and drives them
//! to Done with one `sqlctl controller` process. Reports requests/s end to end, p50/p99
//! approve→Executing latency (decision time → execution start recorded by the controller), the
//! controller's peak RSS, and the floors: the same query alone in DataFusion and bare SQLite CAS.
//!
//! Environment: BENCH_N (default 10000), BENCH_RATE approvals/s (default 1000), BENCH_WORKERS
//! (controller --workers, default 8).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlctl::approval::{DecisionInput, submit};
use sqlctl::spec::*;
use sqlctl::store::{LabelSelector, Store, sqlite::SqliteStore};

const SQL: &str = "select n_name from nation where n_nationkey = 7";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn request(i: u64) -> QueryRequest {
    QueryRequest::new(format!("bench-{i:05}"), "tpch").with_sql(SQL)
}

fn main() {
    let n = env_num("BENCH_N", 10_000);
    let rate = env_num("BENCH_RATE", 1000);
    let workers = env_num("BENCH_WORKERS", 8);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    sqlctl::warehouse::init_tpch(&data, "tpch", 0.01, &mut |_, _| {}).unwrap();

    println!("== floors");
    rt.block_on(floor_datafusion(&data));
    rt.block_on(floor_sqlite(home.path()));
    startup_time(home.path(), &data);

    println!("== pipeline: {n} requests, approvals at {rate}/s, controller --workers {workers}");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(home.path().join("state.db")).unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlctl"))
        .args(["controller", "--workers", &workers.to_string(), "--resync", "10s"])
        .env("SQLCTL_HOME", home.path())
        .env("SQLCTL_DATA_DIR", &data)
        .env("SQLCTL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    rt.block_on(async {
        // Wait for the controller to lead.
        while store.get_lease(sqlctl::store::CONTROLLER_LEASE).await.unwrap().is_none_or(|l| l.holder.is_empty()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t0 = Instant::now();
        for i in 0..n {
            store.create(request(i)).await.unwrap();
        }
        let applied = t0.elapsed();
        println!("apply: {n} creates in {:.2}s ({:.0}/s)", applied.as_secs_f64(), n as f64 / applied.as_secs_f64());

        // Approver: watch changes, approve each request once it awaits approval, at a steady rate.
        let mut cursor = 0;
        let mut approved: HashSet<String> = HashSet::new();
        let mut done = 0u64;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut next_slot = Instant::now();
        let mut pending: Vec<ObjectKey> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        while done < n && Instant::now() < deadline {
            let (c, changes) = store.changes_since(cursor).await.unwrap();
            cursor = c;
            let mut seen = HashSet::new();
            for ch in changes {
                if seen.insert(ch.key.clone()) {
                    pending.push(ch.key);
                }
            }
            let mut still = Vec::new();
            for key in pending.drain(..) {
                if approved.contains(&key.name) {
                    continue;
                }
                let Some(r) = store.get(&key).await.unwrap() else { continue };
                if r.phase() == Phase::AwaitingApproval {
                    let now = Instant::now();
                    if now < next_slot {
                        tokio::time::sleep(next_slot - now).await;
                    }
                    next_slot = next_slot.max(Instant::now() - interval * 10) + interval;
                    let digest = r.status.as_ref().unwrap().generated.as_ref().unwrap().sql_digest.clone();
                    let input = DecisionInput {
                        decision: DecisionKind::Approve,
                        by: "bench".into(),
                        digest: Some(digest),
                        feedback: None,
                        comment: None,
                        source: "bench".into(),
                        allow_over_budget: false,
                    };
                    submit(store.as_ref(), &r, &input).await.unwrap();
                    approved.insert(key.name.clone());
                } else if !r.phase().is_terminal() {
                    still.push(key);
                }
            }
            pending = still;
            if approved.len() as u64 == n {
                done = store.count_by_phase().await.unwrap().get(&Phase::Done).copied().unwrap_or(0);
                if done < n {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let total = t0.elapsed();
        let rss = peak_rss_kib(pid).unwrap_or(0);
        // Latencies from the records: decision time → execution start.
        let items = store.list(None, &LabelSelector::new()).await.unwrap();
        let mut lat: Vec<f64> = items
            .iter()
            .filter_map(|r| {
                let st = r.status.as_ref()?;
                let at = st.approval.as_ref()?.at;
                let started = st.execution.as_ref()?.started_at?;
                Some((started - at).num_microseconds()? as f64 / 1000.0)
            })
            .collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let by_phase: HashMap<String, usize> = items.iter().fold(HashMap::new(), |mut m, r| {
            *m.entry(r.phase().to_string()).or_default() += 1;
            m
        });
        println!("phases: {by_phase:?}");
        println!(
            "end to end: {done} Done in {:.2}s = {:.0} requests/s (create → approve → Done)",
            total.as_secs_f64(),
            done as f64 / total.as_secs_f64()
        );
        println!(
            "approve→Executing latency: p50 {:.1} ms, p99 {:.1} ms (n={})",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.len()
        );
        println!("controller peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    });
    let _ = child.kill();
    let _ = child.wait();
}

async fn floor_datafusion(data: &Path) {
    let n = 3000;
    let t = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let data = data.to_path_buf();
        handles.push(tokio::spawn(async move {
            for _ in 0..n / 2 {
                sqlctl::engine::datafusion::run_sql_collect(&data, "tpch", SQL).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    println!("DataFusion alone (same query, 2 tasks): {:.0} queries/s", n as f64 / t.elapsed().as_secs_f64());
}

async fn floor_sqlite(dir: &Path) {
    let store = SqliteStore::open(dir.join("floor.db")).unwrap();
    let mut r = store.create(request(0)).await.unwrap();
    let n = 5000;
    let t = Instant::now();
    for i in 0..n {
        r.status = Some(QueryRequestStatus { observed_generation: i, ..Default::default() });
        r = store.update_status(&r, None).await.unwrap();
    }
    println!("bare SQLite CAS status updates (one writer): {:.0}/s", n as f64 / t.elapsed().as_secs_f64());
}

fn startup_time(home: &Path, data: &Path) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqlctl"))
        .args(["controller", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .env("SQLCTL_HOME", home.join("startup"))
        .env("SQLCTL_DATA_DIR", data)
        .env("SQLCTL_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = None;
    while t.elapsed() < Duration::from_secs(10) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            ready = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let rss = peak_rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "controller start → serving /healthz: {:.1} ms (RSS at that point {:.1} MiB)",
        ready.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(f64::NAN),
        rss.unwrap_or(0) as f64 / 1024.0
    );
}
