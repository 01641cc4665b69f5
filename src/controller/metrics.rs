//! Prometheus metrics and the health server (`/healthz`, `/livez`, `/readyz`, `/metrics`).
//!
//! Every metric lives in one [`prometheus_client`] registry (the Prometheus project's Rust
//! client): typed counters and gauges, histograms with fixed buckets, label values escaped by the
//! client. `/metrics` encodes it in the Prometheus text format 0.0.4; the CloudWatch EMF lines
//! ([`super::emf`]) read the same registry through [`Metrics::samples`], so the two never
//! disagree.
//!
//! # Requests by phase
//! `sqlctl_requests{phase}` comes from the leader's cache, never from a store read per scrape:
//! the leader counts once when it takes the lease, then again at most once per
//! [`PHASE_COUNT_INTERVAL`] while records change (and at least every [`PHASE_COUNT_MAX_AGE`]),
//! in the background ([`count_phases`]). A standby reports no phase gauges (it would double the
//! sums and scan the store for nothing). A failed count is counted in
//! `sqlctl_store_errors_total{operation="count_by_phase"}` and leaves the last good counts, whose
//! age `sqlctl_requests_counted_timestamp_seconds` gives: an outage never shows as zeros.
//!
//! # Histograms
//! | Name | Labels | What |
//! |---|---|---|
//! | `sqlctl_reconcile_duration_seconds` | | one reconcile step, store reads and writes included |
//! | `sqlctl_generation_duration_seconds` | `model` | one generator call (LLM round trip or offline) |
//! | `sqlctl_approval_wait_seconds` | | approval round opened → the accepted decision's time |
//! | `sqlctl_approve_to_executing_seconds` | | accepted decision's time → the query started |
//! | `sqlctl_query_duration_seconds` | `engine`, `result` | query start → succeeded / failed |

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::notify::gchat::ChatMetrics;
use crate::spec::{ObjectKey, Phase};
use crate::store::Store;
use crate::version::Build;

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Buckets (seconds) of the controller's own steps: a reconcile, approve → executing.
pub const STEP_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets (seconds) of a generator call: milliseconds offline, seconds to minutes for an LLM.
pub const GENERATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Buckets (seconds) of a human's approval wait: a second to a day.
pub const APPROVAL_BUCKETS: &[f64] =
    &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0];
/// Buckets (seconds) of a query's run time.
pub const QUERY_BUCKETS: &[f64] =
    &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Least time between two background counts of requests by phase while records change.
pub const PHASE_COUNT_INTERVAL: Duration = Duration::from_secs(5);
/// Most time between two counts when nothing was seen to change (records created or deleted
/// by clients are seen by the watch; this bounds what it could miss).
pub const PHASE_COUNT_MAX_AGE: Duration = Duration::from_secs(60);

fn step_histogram() -> Histogram {
    Histogram::new(STEP_BUCKETS.iter().copied())
}
fn generation_histogram() -> Histogram {
    Histogram::new(GENERATION_BUCKETS.iter().copied())
}
fn query_histogram() -> Histogram {
    Histogram::new(QUERY_BUCKETS.iter().copied())
}

/// Requests by phase as last counted from the store, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseCounts {
    pub by_phase: BTreeMap<Phase, u64>,
    pub at: SystemTime,
}

/// What the registry reads at encode time: leadership, the phase cache, the chat notifier's
/// handle, the build and the process.
#[derive(Default)]
struct Live {
    leader: AtomicBool,
    /// Something changed since the last count (a transition written, a change seen).
    phases_dirty: AtomicBool,
    phases: Mutex<Option<PhaseCounts>>,
    /// Requests waiting for a decision, and since when, as this leader last reconciled them.
    awaiting: Mutex<HashMap<ObjectKey, SystemTime>>,
    chat: OnceLock<Arc<ChatMetrics>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("leader", &self.leader).finish_non_exhaustive()
    }
}

impl Live {
    fn phases(&self) -> std::sync::MutexGuard<'_, Option<PhaseCounts>> {
        self.phases.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn awaiting(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, SystemTime>> {
        self.awaiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Debug)]
struct LiveCollector(Arc<Live>);

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let live = &self.0;
        // Phase gauges: the leader's cache only.
        if live.leader.load(Ordering::Relaxed)
            && let Some(counts) = live.phases().clone()
        {
            let mut m = encoder.encode_descriptor(
                "sqlctl_requests",
                "Requests by phase, as last counted by the leader",
                None,
                MetricType::Gauge,
            )?;
            for p in Phase::ALL {
                let labels = [("phase", p.as_str())];
                ConstGauge::new(counts.by_phase.get(&p).copied().unwrap_or(0) as i64)
                    .encode(m.encode_family(&labels)?)?;
            }
            let at = counts.at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            let m = encoder.encode_descriptor(
                "sqlctl_requests_counted_timestamp_seconds",
                "When the leader last counted requests by phase (Unix time)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(at).encode(m)?;
        }
        if live.leader.load(Ordering::Relaxed) {
            let oldest = live.awaiting().values().min().copied();
            let age = oldest.and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default();
            let m = encoder.encode_descriptor(
                "sqlctl_approval_backlog_oldest_seconds",
                "How long the oldest request waiting for a decision has waited (0: none waits)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(age.as_secs_f64()).encode(m)?;
        }
        let sqs = crate::approval::sqs::consumer_totals();
        let mut m = encoder.encode_descriptor(
            "sqlctl_sqs_decision_messages",
            "Decision messages from the SQS response queue, by outcome (dead_lettered: refused or malformed, moved to the DLQ)",
            None,
            MetricType::Counter,
        )?;
        for (outcome, v) in [
            ("received", sqs.received),
            ("recorded", sqs.recorded),
            ("dead_lettered", sqs.dead_lettered),
            ("retried", sqs.retried),
        ] {
            let labels = [("outcome", outcome)];
            prometheus_client::metrics::counter::ConstCounter::new(v as u64).encode(m.encode_family(&labels)?)?;
        }
        let b = Build::this();
        let mut m = encoder.encode_descriptor(
            "sqlctl_build_info",
            "The running build: version, commit, cargo profile, target and features (always 1)",
            None,
            MetricType::Gauge,
        )?;
        let features = b.features_label();
        let labels = [
            ("version", b.version.as_str()),
            ("commit", b.commit.as_str()),
            ("profile", b.profile.as_str()),
            ("target", b.target.as_str()),
            ("features", features.as_str()),
        ];
        ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        crate::notify::NotifyMetrics::snapshot(live.chat.get().map(Arc::as_ref)).encode_into(&mut encoder)?;
        process::encode(&mut encoder)
    }
}

/// The controller's metrics: the registry and typed handles to every series it updates.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    transitions: Family<Labels, Counter>,
    queries_started: Family<Labels, Counter>,
    queries_finished: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    decisions_quarantined: Family<Labels, Counter>,
    bytes_scanned: Family<Labels, Counter>,
    store_errors: Family<Labels, Counter>,
    reconcile_panics: Counter,
    queue_depth: Gauge,
    leader: Gauge,
    ready: AtomicBool,
    reconcile_duration: Histogram,
    generation: HistogramFamily,
    approval_wait: Histogram,
    approve_to_executing: Histogram,
    query_duration: HistogramFamily,
    live: Arc<Live>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// One series' value as encoded: what EMF and tests read.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name as exposed (`sqlctl_reconciles_total`, `…_bucket`, `…_sum`).
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the series has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let live = Arc::new(Live::default());
        let family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let reconciles = family(&mut registry, "sqlctl_reconciles", "Reconciles by result");
        let errors = family(&mut registry, "sqlctl_errors", "Reconcile errors by kind");
        let transitions = family(&mut registry, "sqlctl_phase_transitions", "Phase transitions written, by new phase");
        let queries_started = family(&mut registry, "sqlctl_queries_started", "Query executions started, by engine");
        let queries_finished = family(&mut registry, "sqlctl_queries_finished", "Query executions finished, by result");
        let decisions = family(&mut registry, "sqlctl_decisions", "Decisions projected (accepted) or refused");
        let decisions_quarantined = family(
            &mut registry,
            "sqlctl_decisions_quarantined",
            "Decision records skipped because they do not decode",
        );
        let bytes_scanned =
            family(&mut registry, "sqlctl_bytes_scanned", "Bytes scanned by succeeded queries, by engine");
        let store_errors = family(
            &mut registry,
            "sqlctl_store_errors",
            "Store calls of the controller's background loops that failed, by operation",
        );
        let reconcile_panics = Counter::default();
        registry.register(
            "sqlctl_reconcile_panics",
            "Reconciles that panicked (contained: the step failed and was retried with backoff)",
            reconcile_panics.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("sqlctl_queue_depth", "Keys waiting in the work queue", queue_depth.clone());
        let leader = Gauge::default();
        registry.register("sqlctl_leader", "1 while this process holds the lease", leader.clone());
        let reconcile_duration = step_histogram();
        registry.register(
            "sqlctl_reconcile_duration_seconds",
            "Time spent in one reconcile step",
            reconcile_duration.clone(),
        );
        let generation = HistogramFamily::new_with_constructor(generation_histogram as fn() -> Histogram);
        registry.register(
            "sqlctl_generation_duration_seconds",
            "Time of one SQL generator call, by model",
            generation.clone(),
        );
        let approval_wait = Histogram::new(APPROVAL_BUCKETS.iter().copied());
        registry.register(
            "sqlctl_approval_wait_seconds",
            "From an approval round opening to the accepted decision",
            approval_wait.clone(),
        );
        let approve_to_executing = step_histogram();
        registry.register(
            "sqlctl_approve_to_executing_seconds",
            "From an approval to its query starting",
            approve_to_executing.clone(),
        );
        let query_duration = HistogramFamily::new_with_constructor(query_histogram as fn() -> Histogram);
        registry.register(
            "sqlctl_query_duration_seconds",
            "Query run time, by engine and result",
            query_duration.clone(),
        );
        registry.register_collector(Box::new(LiveCollector(live.clone())));
        // The outcomes dashboards and alerts divide by exist from the start, at zero.
        let known: [(&Family<Labels, Counter>, &'static str, &[&str]); 4] = [
            (&reconciles, "result", &["success", "conflict", "fenced", "error"]),
            (&queries_finished, "result", &["succeeded", "failed", "cancelled"]),
            (&decisions, "result", &["accepted", "refused"]),
            (&store_errors, "operation", &["count_by_phase", "changes_since", "list_active"]),
        ];
        for (family, key, values) in known {
            for v in values {
                let _ = family.get_or_create(&vec![(key, v.to_string())]);
            }
        }
        Metrics {
            registry,
            reconciles,
            errors,
            transitions,
            queries_started,
            queries_finished,
            decisions,
            decisions_quarantined,
            bytes_scanned,
            store_errors,
            reconcile_panics,
            queue_depth,
            leader,
            ready: AtomicBool::new(false),
            reconcile_duration,
            generation,
            approval_wait,
            approve_to_executing,
            query_duration,
            live,
        }
    }

    fn inc(family: &Family<Labels, Counter>, key: &'static str, value: &str) {
        family.get_or_create(&vec![(key, value.to_string())]).inc();
    }

    /// Renders `chat` (the Google Chat notifier's counters) with these; the first registration
    /// counts. Without one, `/metrics` shows no chat requests and a closed circuit.
    pub fn register_chat(&self, chat: Arc<ChatMetrics>) {
        let _ = self.live.chat.set(chat);
    }
    /// A reconcile panicked (a bug, contained: the step failed and is retried with backoff).
    pub fn reconcile_panic(&self) {
        self.reconcile_panics.inc();
    }
    /// Reconciles that panicked since start.
    pub fn reconcile_panics(&self) -> u64 {
        self.reconcile_panics.get()
    }
    pub fn reconcile(&self, result: &str) {
        Self::inc(&self.reconciles, "result", result);
    }
    pub fn error(&self, kind: &str) {
        Self::inc(&self.errors, "kind", kind);
    }
    /// A phase transition was written; the phase counts are due for a refresh.
    pub fn transition(&self, phase: Phase) {
        Self::inc(&self.transitions, "phase", phase.as_str());
        self.phases_changed();
    }
    /// A query was started on `engine`.
    pub fn query_started(&self, engine: &str) {
        Self::inc(&self.queries_started, "engine", engine);
    }
    pub fn query_finished(&self, result: &str) {
        Self::inc(&self.queries_finished, "result", result);
    }
    /// Bytes scanned by a query that succeeded (what Athena bills for).
    pub fn bytes_scanned(&self, engine: &str, bytes: u64) {
        self.bytes_scanned.get_or_create(&vec![("engine", engine.to_string())]).inc_by(bytes);
    }
    /// A decision record that did not decode was skipped (quarantined), counted once per record.
    pub fn decision_quarantined(&self) {
        Self::inc(&self.decisions_quarantined, "reason", "undecodable");
    }
    pub fn decision(&self, result: &str) {
        Self::inc(&self.decisions, "result", result);
    }
    /// A store call of a background loop failed (`count_by_phase`, `changes_since`,
    /// `list_active`): counted on its own, never shown as zeros elsewhere.
    pub fn store_error(&self, operation: &str) {
        Self::inc(&self.store_errors, "operation", operation);
    }
    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.set(n as i64);
    }
    /// Leadership changed: the phase cache starts empty (a standby reports no phase gauges; a
    /// new leader reports them once it has counted).
    pub fn set_leader(&self, v: bool) {
        self.leader.set(v as i64);
        self.live.leader.store(v, Ordering::Relaxed);
        *self.live.phases() = None;
        self.live.awaiting().clear();
        self.phases_changed();
    }

    /// `key` waits for a decision since `since`, or (None) does not.
    pub fn awaiting_approval(&self, key: &ObjectKey, since: Option<chrono::DateTime<chrono::Utc>>) {
        let mut map = self.live.awaiting();
        match since {
            Some(t) => {
                map.insert(key.clone(), SystemTime::from(t));
            }
            None => {
                map.remove(key);
            }
        }
    }
    pub fn set_ready(&self, v: bool) {
        self.ready.store(v, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// True while this process holds the lease.
    pub fn is_leader(&self) -> bool {
        self.live.leader.load(Ordering::Relaxed)
    }
    /// Keys waiting in the work queue, as last observed.
    pub fn queue_depth(&self) -> u64 {
        self.queue_depth.get().max(0) as u64
    }
    /// Records changed: the next background count may run.
    pub fn phases_changed(&self) {
        self.live.phases_dirty.store(true, Ordering::Relaxed);
    }
    /// Stores a fresh count of requests by phase (the leader's cache).
    pub fn set_phase_counts(&self, by_phase: BTreeMap<Phase, u64>) {
        *self.live.phases() = Some(PhaseCounts { by_phase, at: SystemTime::now() });
    }
    /// The leader's last count of requests by phase; None on a standby or before the first count.
    pub fn phase_counts(&self) -> Option<PhaseCounts> {
        if !self.is_leader() {
            return None;
        }
        self.live.phases().clone()
    }

    pub fn observe_reconcile(&self, d: Duration) {
        self.reconcile_duration.observe(d.as_secs_f64());
    }
    /// One generator call by `model` took `d`.
    pub fn observe_generation(&self, model: &str, d: Duration) {
        self.generation.get_or_create(&vec![("model", model.to_string())]).observe(d.as_secs_f64());
    }
    /// A decision was accepted `d` after its approval round opened.
    pub fn observe_approval_wait(&self, d: Duration) {
        self.approval_wait.observe(d.as_secs_f64());
    }
    /// A query started `d` after the approval it runs under.
    pub fn observe_approve_to_executing(&self, d: Duration) {
        self.approve_to_executing.observe(d.as_secs_f64());
    }
    /// A query on `engine` ended with `result` (succeeded | failed) after running `d`.
    pub fn observe_query(&self, engine: &str, result: &str, d: Duration) {
        self.query_duration
            .get_or_create(&vec![("engine", engine.to_string()), ("result", result.to_string())])
            .observe(d.as_secs_f64());
    }

    /// Every series as encoded now (`/metrics` without the text): one registry behind both
    /// `/metrics` and EMF.
    pub fn samples(&self) -> Vec<Sample> {
        self.render().lines().filter(|l| !l.starts_with('#')).filter_map(parse_sample).collect()
    }

    /// A counter summed over all its labels, e.g. `total("sqlctl_reconciles_total")`.
    pub fn total(&self, name: &str) -> u64 {
        self.samples().iter().filter(|s| s.name == name).map(|s| s.value as u64).sum()
    }

    /// A series' value by name and the value of its (first) label (tests and EMF read it).
    pub fn get(&self, name: &str, label: &str) -> u64 {
        self.samples()
            .iter()
            .filter(|s| s.name == name && s.labels.first().is_some_and(|(_, v)| v == label))
            .map(|s| s.value as u64)
            .sum()
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("encoding into a String cannot fail");
        out
    }
}

/// Parses one sample line of the text format: `name{k="v",…} value`, escapes undone.
fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some(Sample { name: series.to_string(), labels: Vec::new(), value });
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some(o) => v.push(o),
                    None => {}
                },
                '"' => break,
                c => v.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_string(), v));
        match chars.peek() {
            Some(',') => {
                chars.next();
            }
            _ => break,
        }
    }
    Some(Sample { name: name.to_string(), labels, value })
}

/// Counts requests by phase into `metrics` while this process leads: at once, then at most once
/// per [`PHASE_COUNT_INTERVAL`] while records change and at least every [`PHASE_COUNT_MAX_AGE`],
/// until `shutdown`. A failed count is counted (`sqlctl_store_errors_total`) and retried at the
/// next interval; the last good counts stay.
pub async fn count_phases(metrics: Arc<Metrics>, store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    let mut last: Option<std::time::Instant> = None;
    loop {
        let due = last.is_none_or(|t| t.elapsed() >= PHASE_COUNT_MAX_AGE)
            || metrics.live.phases_dirty.swap(false, Ordering::Relaxed);
        if due && metrics.is_leader() {
            match store.count_by_phase().await {
                Ok(by_phase) => {
                    metrics.set_phase_counts(by_phase);
                    last = Some(std::time::Instant::now());
                }
                Err(e) => {
                    metrics.store_error("count_by_phase");
                    metrics.phases_changed();
                    tracing::warn!(error = %e, "counting requests by phase failed; /metrics keeps the last counts");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PHASE_COUNT_INTERVAL) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
    }
}

/// Process metrics in the Prometheus client convention (`process_*`): CPU, memory, file
/// descriptors, threads and start time, read from `/proc/self` on Linux (CPU alone elsewhere).
mod process {
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
        ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
    }

    #[cfg(target_os = "linux")]
    pub(super) fn encode(e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // SAFETY: sysconf and getrlimit only read process-wide settings.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name (which may hold spaces and parentheses).
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            let cpu = ConstCounter::new((utime + stime) / ticks);
            cpu.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?)?;
        }
        if let Some(rss) = field(24) {
            gauge(e, "process_resident_memory_bytes", "Resident memory size in bytes", rss * page)?;
        }
        if let Some(vsize) = field(23) {
            gauge(e, "process_virtual_memory_bytes", "Virtual memory size in bytes", vsize)?;
        }
        if let Some(threads) = field(20) {
            gauge(e, "process_threads", "Number of OS threads in the process", threads)?;
        }
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok()));
        if let (Some(boot), Some(start)) = (boot, field(22)) {
            gauge(
                e,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                boot + start / ticks,
            )?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            gauge(e, "process_open_fds", "Number of open file descriptors", dir.count() as f64)?;
        }
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `limit` is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            gauge(e, "process_max_fds", "Maximum number of open file descriptors", limit.rlim_cur as f64)?;
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn encode(e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // SAFETY: `usage` is a valid, writable rusage.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            let cpu = ConstCounter::new(secs(usage.ru_utime) + secs(usage.ru_stime));
            cpu.encode(e.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?)?;
        }
        let _ = gauge;
        Ok(())
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
    (
        [(axum::http::header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)],
        s.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::failure::FailureStore;
    use crate::store::sqlite::SqliteStore;

    fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.split(['{', ' ']).next() == Some(name)).collect()
    }

    #[test]
    fn a_scrape_has_typed_families_histogram_buckets_build_and_process_metrics() {
        let m = Metrics::new();
        m.reconcile("success");
        m.query_started("datafusion");
        m.observe_reconcile(Duration::from_millis(3));
        m.observe_generation("offline", Duration::from_millis(40));
        m.observe_approval_wait(Duration::from_secs(90));
        m.observe_approve_to_executing(Duration::from_millis(20));
        m.observe_query("datafusion", "succeeded", Duration::from_millis(700));
        let text = m.render();
        for (name, kind) in [
            ("sqlctl_reconciles_total", "counter"),
            ("sqlctl_queries_started_total", "counter"),
            ("sqlctl_store_errors_total", "counter"),
            ("sqlctl_queue_depth", "gauge"),
            ("sqlctl_leader", "gauge"),
            ("sqlctl_build_info", "gauge"),
            ("sqlctl_reconcile_duration_seconds", "histogram"),
            ("sqlctl_generation_duration_seconds", "histogram"),
            ("sqlctl_approval_wait_seconds", "histogram"),
            ("sqlctl_approve_to_executing_seconds", "histogram"),
            ("sqlctl_query_duration_seconds", "histogram"),
            ("sqlctl_notifications_total", "counter"),
            ("process_cpu_seconds_total", "counter"),
        ] {
            assert!(text.contains(&format!("\n# TYPE {name} {kind}\n")), "{name} {kind} missing:\n{text}");
        }
        // The engine is a real label now, not a constant.
        assert!(text.contains("sqlctl_queries_started_total{engine=\"datafusion\"} 1\n"), "{text}");
        // Buckets as declared, cumulative, with +Inf, _sum and _count.
        let buckets = lines_of(&text, "sqlctl_reconcile_duration_seconds_bucket");
        assert_eq!(buckets.len(), STEP_BUCKETS.len() + 1, "{buckets:?}");
        assert!(text.contains("sqlctl_reconcile_duration_seconds_bucket{le=\"0.0025\"} 0\n"), "{text}");
        assert!(text.contains("sqlctl_reconcile_duration_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("sqlctl_reconcile_duration_seconds_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("sqlctl_reconcile_duration_seconds_count 1\n"), "{text}");
        assert!(text.contains("sqlctl_approval_wait_seconds_bucket{le=\"60\"} 0\n"), "{text}");
        assert!(text.contains("sqlctl_approval_wait_seconds_bucket{le=\"120\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "sqlctl_query_duration_seconds_bucket{engine=\"datafusion\",result=\"succeeded\",le=\"1\"} 1\n"
            ) || text.contains(
                "sqlctl_query_duration_seconds_bucket{result=\"succeeded\",engine=\"datafusion\",le=\"1\"} 1\n"
            ),
            "{text}"
        );
        assert_eq!(lines_of(&text, "sqlctl_generation_duration_seconds_bucket").len(), GENERATION_BUCKETS.len() + 1);
        let b = Build::this();
        assert!(text.contains(&format!("commit=\"{}\"", b.commit)), "{text}");
        assert!(text.contains(&format!("profile=\"{}\"", b.profile)), "{text}");
        if cfg!(target_os = "linux") {
            for name in ["process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"] {
                let v = m.samples().into_iter().find(|s| s.name == name).unwrap_or_else(|| panic!("{name}: {text}"));
                assert!(v.value > 0.0, "{name} = {}", v.value);
            }
        }
        // No help line ends in two periods (the client adds one).
        assert!(!text.contains(".."), "{text}");
    }

    #[test]
    fn label_values_are_escaped_and_read_back_unchanged() {
        let m = Metrics::new();
        let hostile = "bed\\rock:\"model\"\nv2";
        m.observe_generation(hostile, Duration::from_millis(1));
        let text = m.render();
        assert!(text.contains("model=\"bed\\\\rock:\\\"model\\\"\\nv2\""), "{text}");
        // Every sample line stays one line, and the parser undoes the escapes.
        let s = m.samples().into_iter().find(|s| s.name == "sqlctl_generation_duration_seconds_count").unwrap();
        assert_eq!(s.label("model"), Some(hostile));
        assert_eq!(s.value, 1.0);
    }

    #[test]
    fn phase_gauges_come_from_the_leaders_cache_only() {
        let m = Metrics::new();
        m.set_phase_counts(BTreeMap::from([(Phase::Done, 3)]));
        // A standby reports none (and drops what it had when it lost the lease).
        assert!(!m.render().contains("sqlctl_requests{"), "{}", m.render());
        m.set_leader(true);
        assert!(!m.render().contains("sqlctl_requests{"), "losing or taking the lease clears the cache");
        m.set_phase_counts(BTreeMap::from([(Phase::Done, 3)]));
        let text = m.render();
        assert!(text.contains("sqlctl_requests{phase=\"Done\"} 3\n"), "{text}");
        assert!(text.contains("sqlctl_requests{phase=\"Pending\"} 0\n"), "{text}");
        assert!(text.contains("sqlctl_requests_counted_timestamp_seconds "), "{text}");
        m.set_leader(false);
        assert!(!m.render().contains("sqlctl_requests{"));
        assert_eq!(m.phase_counts(), None);
    }

    #[test]
    fn the_approval_backlog_age_is_the_oldest_wait_on_the_leader() {
        let m = Metrics::new();
        let age = |m: &Metrics| {
            m.samples().into_iter().find(|s| s.name == "sqlctl_approval_backlog_oldest_seconds").map(|s| s.value)
        };
        assert_eq!(age(&m), None, "a standby reports no backlog");
        m.set_leader(true);
        assert_eq!(age(&m), Some(0.0), "nothing waits");
        let (a, b) = (ObjectKey::new("default", "a"), ObjectKey::new("default", "b"));
        let now = chrono::Utc::now();
        m.awaiting_approval(&a, Some(now - chrono::Duration::seconds(600)));
        m.awaiting_approval(&b, Some(now - chrono::Duration::seconds(30)));
        let oldest = age(&m).unwrap();
        assert!((600.0..610.0).contains(&oldest), "{oldest}");
        // Decided (or deleted): the next oldest counts.
        m.awaiting_approval(&a, None);
        let oldest = age(&m).unwrap();
        assert!((30.0..40.0).contains(&oldest), "{oldest}");
        assert!(m.render().contains("sqlctl_sqs_decision_messages_total{outcome=\"dead_lettered\"} "));
    }

    #[tokio::test]
    async fn a_failed_count_is_a_store_error_not_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let inner = SqliteStore::open(dir.path().join("state.db")).unwrap();
        let store = Arc::new(FailureStore::new(Arc::new(inner)));
        let m = Arc::new(Metrics::new());
        m.set_leader(true);
        store.fail_nth("count_by_phase", 1, || crate::store::StoreError::Unavailable("throttled".into()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(count_phases(m.clone(), store.clone(), stopped));
        while m.get("sqlctl_store_errors_total", "count_by_phase") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let text = m.render();
        assert!(text.contains("sqlctl_store_errors_total{operation=\"count_by_phase\"} 1\n"), "{text}");
        assert!(!text.contains("sqlctl_requests{"), "no phase gauges rather than zeros: {text}");
        // The failure marked the counts due again: the next interval counts (paused time).
        tokio::time::pause();
        tokio::time::advance(PHASE_COUNT_INTERVAL + Duration::from_millis(1)).await;
        tokio::time::resume();
        while m.phase_counts().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(m.render().contains("sqlctl_requests{phase=\"Pending\"} 0\n"));
        let _ = stop.send(true);
        task.await.unwrap();
    }

    /// docs/grafana-dashboard.json and docs/prometheus-alerts.yaml query only series a
    /// controller exports: a renamed metric breaks this test, not a dashboard in production.
    #[test]
    fn the_dashboard_and_alerts_name_only_metrics_that_exist() {
        let m = Metrics::new();
        m.set_leader(true);
        m.set_phase_counts(BTreeMap::new());
        m.reconcile("success");
        m.error("store");
        m.query_started("datafusion");
        m.bytes_scanned("datafusion", 1);
        m.decision_quarantined();
        m.observe_generation("offline", Duration::from_millis(1));
        m.observe_query("datafusion", "succeeded", Duration::from_millis(1));
        crate::notify::count("gchat", "approval", "sent");
        let exported: std::collections::BTreeSet<String> = m.samples().into_iter().map(|s| s.name).collect();
        let dashboard = include_str!("../../docs/grafana-dashboard.json");
        let alerts = include_str!("../../docs/prometheus-alerts.yaml");
        serde_json::from_str::<serde_json::Value>(dashboard).expect("the dashboard is JSON");
        let mut named = std::collections::BTreeSet::new();
        for text in [dashboard, alerts] {
            let bytes = text.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                let rest = &text[i..];
                let at_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
                if at_word && (rest.starts_with("sqlctl_") || rest.starts_with("process_")) {
                    let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    i += name.len();
                    named.insert(name);
                } else {
                    i += 1;
                }
            }
        }
        // Names that are not series: the DLQ reason attribute.
        named.remove("sqlctl_dlq_reason");
        assert!(named.len() >= 15, "{named:?}");
        let missing: Vec<&String> = named.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(missing.is_empty(), "named in docs/ but not exported: {missing:?}\nexported: {exported:?}");
    }

    #[test]
    fn samples_parse_names_labels_and_values() {
        let s = parse_sample("a_total{x=\"1\",y=\"q\\\"z\"} 2.5").unwrap();
        assert_eq!(s.name, "a_total");
        assert_eq!(s.labels, vec![("x".into(), "1".into()), ("y".into(), "q\"z".into())]);
        assert_eq!(s.value, 2.5);
        assert_eq!(parse_sample("b 7").unwrap(), Sample { name: "b".into(), labels: vec![], value: 7.0 });
        assert_eq!(parse_sample("c_bucket{le=\"+Inf\"} 1").unwrap().label("le"), Some("+Inf"));
        assert_eq!(parse_sample("junk"), None);
    }
}
