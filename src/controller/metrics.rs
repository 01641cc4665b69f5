//! Prometheus metrics and the health server (`/healthz`, `/readyz`, `/metrics`).
//!
//! Counters are plain atomics keyed by a small fixed set of labels; records by phase are read
//! from the store at scrape time (a cheap grouped count), so they are never stale.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use crate::notify::gchat::ChatMetrics;
use crate::spec::Phase;
use crate::store::Store;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    queue_depth: AtomicU64,
    leader: AtomicBool,
    ready: AtomicBool,
    reconcile_seconds_sum_us: AtomicU64,
    reconcile_count: AtomicU64,
    reconcile_panics: AtomicU64,
    /// The Google Chat notifier's counters, rendered with these once registered.
    chat: OnceLock<Arc<ChatMetrics>>,
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, BTreeMap<(&'static str, String), u64>> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn inc(&self, name: &'static str, label: &str) {
        *self.counters().entry((name, label.to_string())).or_insert(0) += 1;
    }
    /// Renders `chat` (the Google Chat notifier's counters) with these; the first registration
    /// counts. Without one, `/metrics` shows no chat requests and a closed circuit.
    pub fn register_chat(&self, chat: Arc<ChatMetrics>) {
        let _ = self.chat.set(chat);
    }
    /// A reconcile panicked (a bug, contained: the step failed and is retried with backoff).
    pub fn reconcile_panic(&self) {
        self.reconcile_panics.fetch_add(1, Ordering::Relaxed);
    }
    /// Reconciles that panicked since start.
    pub fn reconcile_panics(&self) -> u64 {
        self.reconcile_panics.load(Ordering::Relaxed)
    }
    pub fn reconcile(&self, result: &str) {
        self.inc("sqlctl_reconciles_total{result=", result);
    }
    pub fn error(&self, kind: &str) {
        self.inc("sqlctl_errors_total{kind=", kind);
    }
    pub fn transition(&self, phase: Phase) {
        self.inc("sqlctl_phase_transitions_total{phase=", phase.as_str());
    }
    pub fn query_started(&self) {
        self.inc("sqlctl_queries_started_total{engine=", "any");
    }
    pub fn query_finished(&self, result: &str) {
        self.inc("sqlctl_queries_finished_total{result=", result);
    }
    /// Bytes scanned by a query that succeeded (what Athena bills for).
    pub fn bytes_scanned(&self, engine: &str, bytes: u64) {
        *self
            .counters
            .lock()
            .unwrap()
            .entry(("sqlctl_bytes_scanned_total{engine=", engine.to_string()))
            .or_insert(0) += bytes;
    }
    /// A decision record that did not decode was skipped (quarantined), counted once per record.
    pub fn decision_quarantined(&self) {
        self.inc("sqlctl_decisions_quarantined_total{reason=", "undecodable");
    }
    pub fn decision(&self, result: &str) {
        self.inc("sqlctl_decisions_total{result=", result);
    }
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.store(n as u64, Ordering::Relaxed);
    }
    pub fn set_leader(&self, v: bool) {
        self.leader.store(v, Ordering::Relaxed);
    }
    pub fn set_ready(&self, v: bool) {
        self.ready.store(v, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// True while this process holds the lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
    /// Keys waiting in the work queue, as last observed.
    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.load(Ordering::Relaxed)
    }
    /// A counter summed over all its labels, e.g. `total("sqlctl_reconciles_total")`.
    pub fn total(&self, name: &str) -> u64 {
        self.counters()
            .iter()
            .filter(|((n, _), _)| n.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
            .map(|(_, v)| *v)
            .sum()
    }
    pub fn observe_reconcile(&self, d: Duration) {
        self.reconcile_seconds_sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.reconcile_count.fetch_add(1, Ordering::Relaxed);
    }

    /// A counter's value (tests and the bench read it).
    pub fn get(&self, name: &str, label: &str) -> u64 {
        self.counters().iter().find(|((n, l), _)| n.starts_with(name) && l == label).map(|(_, v)| *v).unwrap_or(0)
    }

    /// Prometheus text exposition format.
    pub fn render(&self, by_phase: &BTreeMap<Phase, u64>) -> String {
        let mut out = String::new();
        let help: &[(&str, &str)] = &[
            ("sqlctl_reconciles_total", "Reconciles by result."),
            ("sqlctl_errors_total", "Reconcile errors by kind."),
            ("sqlctl_phase_transitions_total", "Phase transitions written, by new phase."),
            ("sqlctl_queries_started_total", "Query executions started."),
            ("sqlctl_queries_finished_total", "Query executions finished, by result."),
            ("sqlctl_decisions_total", "Decisions projected (accepted) or refused."),
            ("sqlctl_decisions_quarantined_total", "Decision records skipped because they do not decode."),
            ("sqlctl_bytes_scanned_total", "Bytes scanned by succeeded queries, by engine."),
        ];
        let counters = self.counters();
        for (metric, text) in help {
            let _ = writeln!(out, "# HELP {metric} {text}\n# TYPE {metric} counter");
            for ((name, label), v) in counters.iter() {
                if name.starts_with(metric) && name[metric.len()..].starts_with('{') {
                    let _ = writeln!(out, "{name}\"{}\"}} {v}", label.replace('"', "'"));
                }
            }
        }
        drop(counters);
        let _ = writeln!(
            out,
            "# HELP sqlctl_reconcile_panics_total Reconciles that panicked (contained: the step failed and was retried with backoff).\n# TYPE sqlctl_reconcile_panics_total counter\nsqlctl_reconcile_panics_total {}",
            self.reconcile_panics.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sqlctl_queue_depth Keys waiting in the work queue.\n# TYPE sqlctl_queue_depth gauge\nsqlctl_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sqlctl_leader 1 while this process holds the lease.\n# TYPE sqlctl_leader gauge\nsqlctl_leader {}",
            self.leader.load(Ordering::Relaxed) as u8
        );
        let _ = writeln!(out, "# HELP sqlctl_requests Requests by phase.\n# TYPE sqlctl_requests gauge");
        for p in Phase::ALL {
            let _ = writeln!(out, "sqlctl_requests{{phase=\"{p}\"}} {}", by_phase.get(&p).copied().unwrap_or(0));
        }
        let _ = writeln!(
            out,
            "# HELP sqlctl_reconcile_duration_seconds Time spent reconciling.\n# TYPE sqlctl_reconcile_duration_seconds summary\nsqlctl_reconcile_duration_seconds_sum {}\nsqlctl_reconcile_duration_seconds_count {}",
            self.reconcile_seconds_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            self.reconcile_count.load(Ordering::Relaxed)
        );
        crate::notify::render_metrics(&mut out, self.chat.get().map(Arc::as_ref));
        out
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    probe: Arc<ReadyProbe>,
}

/// How long one store check answers `/readyz`: probes every few seconds from several
/// orchestrators cost one store read per period, not one each.
pub const READY_CACHE: std::time::Duration = std::time::Duration::from_secs(2);

/// `/readyz` beyond the controller's own flag: the store answers now, and a leader's lease
/// still names it. Checked at most once per [`READY_CACHE`].
pub struct ReadyProbe {
    /// This controller's lease identity.
    identity: String,
    last: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

impl ReadyProbe {
    pub fn new(identity: impl Into<String>) -> Self {
        ReadyProbe { identity: identity.into(), last: tokio::sync::Mutex::new(None) }
    }

    async fn check(&self, metrics: &Metrics, store: &dyn Store) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref()
            && at.elapsed() < READY_CACHE
        {
            return r.clone();
        }
        let r = async {
            store.health().await.map_err(|e| format!("the store does not answer: {e}"))?;
            if metrics.is_leader() {
                let lease = store
                    .get_lease(crate::store::CONTROLLER_LEASE)
                    .await
                    .map_err(|e| format!("the lease cannot be read: {e}"))?;
                let holder = lease.map(|l| l.holder).unwrap_or_default();
                if holder != self.identity {
                    return Err(format!("leading, but the lease names {holder:?}"));
                }
            }
            Ok(())
        }
        .await;
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }
}

/// Serves `/healthz` and `/livez` (the process alone), `/readyz` (leader and synced, or a
/// healthy standby; and the store answers, and a leader still holds the lease) and `/metrics`
/// until `shutdown`. Binds before returning so callers know the port.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    probe: Arc<ReadyProbe>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(ServerState { metrics, store, probe });
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|v| *v).await;
            })
            .await;
    });
    Ok((local, handle))
}

async fn readyz(State(s): State<ServerState>) -> impl IntoResponse {
    if !s.metrics.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string());
    }
    match s.probe.check(&s.metrics, s.store.as_ref()).await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

async fn metrics_handler(State(s): State<ServerState>) -> impl IntoResponse {
    let by_phase = s.store.count_by_phase().await.unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render(&by_phase))
}
