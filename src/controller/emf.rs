//! CloudWatch Embedded Metric Format log lines (`sqlctl controller --metrics-emf`).
//!
//! On ECS/Fargate with the `awslogs` driver, stdout goes to CloudWatch Logs, which turns any JSON
//! line carrying an `_aws` member into metrics: no agent, no sidecar, no `PutMetricData` permission.
//! Every interval (`--metrics-emf-interval`, default 60 s) the controller writes one such line to
//! stdout, plus a last one when it stops, so counts from its final interval are not lost.
//!
//! ```json
//! {"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[{"Namespace":"sqlctl",
//!   "Dimensions":[["Service"]],"Metrics":[{"Name":"Heartbeat","Unit":"Count"},…]}]},
//!  "Service":"sqlctl","Identity":"ip-10-0-3-7-1-a1b2c3","Version":"0.1.0","Heartbeat":1,…}
//! ```
//!
//! # Metrics
//! Namespace `sqlctl`, one dimension set `[["Service"]]` with `Service` = `sqlctl`. `Identity`
//! (the lease identity) and `Version` are plain properties for Logs Insights, not dimensions, so
//! the metric series survive restarts and replacements. These names are an interface (Terraform
//! alarms use `Heartbeat` and `ReconcileErrors`): never rename one.
//!
//! | Name | Unit | Kind | Meaning |
//! |---|---|---|---|
//! | `Heartbeat` | Count | 1 per line | The process is alive and emitting; alarm on missing data. |
//! | `IsLeader` | None | gauge | 1 while this process holds the lease, else 0 (sum over replicas should be 1). |
//! | `QueueDepth` | Count | gauge | Keys waiting in the work queue. |
//! | `Reconciles` | Count | delta | Reconciles finished, whatever their result. |
//! | `ReconcileErrors` | Count | delta | Reconciles that failed (`result` `error` or `fenced`; not lost CAS races). |
//! | `ReconcileConflicts` | Count | delta | Reconciles that lost a compare-and-set race (retried at once; benign). |
//! | `PhaseTransitions` | Count | delta | Phase transitions written. |
//! | `ExecutionsStarted` | Count | delta | Query executions started. |
//! | `ExecutionsSucceeded` | Count | delta | Query executions that succeeded. |
//! | `ExecutionsFailed` | Count | delta | Query executions that failed (each failed attempt). |
//! | `ExecutionsCancelled` | Count | delta | Query executions cancelled (timeout, budget, delete). |
//! | `DecisionsAccepted` | Count | delta | Decisions projected into a request's status. |
//! | `DecisionsRefused` | Count | delta | Decisions refused by policy when re-checked. |
//! | `BytesScanned` | Bytes | delta | Bytes scanned by queries that succeeded (what Athena bills). |
//! | `NotificationFailures` | Count | delta | Notifications (approval requests, results) that failed to send (`sqlctl_notifications_total{result="failed"}`; Google Chat counts today). |
//! | `Requests<Phase>` | Count | gauge, leader only | Requests in each phase: `RequestsPending`, `RequestsGenerated`, `RequestsAwaitingApproval` (approval waits), `RequestsExecuting`, `RequestsDone`, `RequestsRejected`, `RequestsFailed`, `RequestsTimedOut`. |
//!
//! Deltas count what happened since the previous line of this process (the first line counts
//! from start-up), so `Sum` over any period is right whatever the interval. Every value is read
//! from the same registry `/metrics` encodes ([`Metrics::samples`]). The `Requests<Phase>`
//! gauges are the leader's cached counts (see [`super::metrics`]), so a standby neither scans
//! the store nor doubles the sums; they are left out of a line before the first count.
//!
//! # One write per line
//! Each line is serialised whole and written with a single `write_all` on the locked stdout, then
//! flushed. Logs go to stderr, so even when both streams share a pipe a line is never split by a
//! log event (lines stay well under `PIPE_BUF`, 4 KiB, so pipe writes are atomic).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::Metrics;
use super::metrics::Sample;
use crate::spec::Phase;

/// CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "sqlctl";
/// The one dimension's name and value.
pub const DIMENSION: (&str, &str) = ("Service", "sqlctl");
/// Default `--metrics-emf-interval`: CloudWatch's standard one-minute resolution.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

const RECONCILES: &str = "sqlctl_reconciles_total";
const FINISHED: &str = "sqlctl_queries_finished_total";
const DECISIONS: &str = "sqlctl_decisions_total";

/// Reads a counter's running total from the registry's samples.
type Read = fn(&Samples) -> u64;

/// One encoding of the registry, read by name and first label.
pub struct Samples(Vec<Sample>);

impl Samples {
    fn total(&self, name: &str) -> u64 {
        self.0.iter().filter(|s| s.name == name).map(|s| s.value as u64).sum()
    }
    fn get(&self, name: &str, label: &str) -> u64 {
        self.0
            .iter()
            .filter(|s| s.name == name && s.labels.first().is_some_and(|(_, v)| v == label))
            .map(|s| s.value as u64)
            .sum()
    }
}

/// Counters reported as per-interval deltas: EMF name, unit and how to read the running total.
const COUNTERS: &[(&str, &str, Read)] = &[
    ("Reconciles", "Count", |m| m.total(RECONCILES)),
    ("ReconcileErrors", "Count", |m| m.get(RECONCILES, "error") + m.get(RECONCILES, "fenced")),
    ("ReconcileConflicts", "Count", |m| m.get(RECONCILES, "conflict")),
    ("PhaseTransitions", "Count", |m| m.total("sqlctl_phase_transitions_total")),
    ("ExecutionsStarted", "Count", |m| m.total("sqlctl_queries_started_total")),
    ("ExecutionsSucceeded", "Count", |m| m.get(FINISHED, "succeeded")),
    ("ExecutionsFailed", "Count", |m| m.get(FINISHED, "failed")),
    ("ExecutionsCancelled", "Count", |m| m.get(FINISHED, "cancelled")),
    ("DecisionsAccepted", "Count", |m| m.get(DECISIONS, "accepted")),
    ("DecisionsRefused", "Count", |m| m.get(DECISIONS, "refused")),
    ("BytesScanned", "Bytes", |m| m.total("sqlctl_bytes_scanned_total")),
    ("NotificationFailures", "Count", |m| {
        m.0.iter()
            .filter(|s| s.name == "sqlctl_notifications_total" && s.label("result") == Some("failed"))
            .map(|s| s.value as u64)
            .sum()
    }),
];

/// Turns the controller's [`Metrics`] into EMF lines, remembering the counters it last reported.
pub struct Emitter {
    metrics: Arc<Metrics>,
    identity: String,
    last: [u64; COUNTERS.len()],
}

impl Emitter {
    /// `identity` (the lease identity) is written as a property, not a dimension.
    pub fn new(metrics: Arc<Metrics>, identity: impl Into<String>) -> Self {
        Emitter { metrics, identity: identity.into(), last: [0; COUNTERS.len()] }
    }

    /// The line for the interval ending `now`, with the leader's cached phase counts.
    pub fn next_line(&mut self, now: DateTime<Utc>) -> String {
        let by_phase = self.metrics.phase_counts().map(|c| c.by_phase);
        self.line(now, by_phase.as_ref())
    }

    /// The line (newline included) for the interval ending `now`; counters become deltas since
    /// the previous call. `by_phase` adds the `Requests<Phase>` gauges.
    pub fn line(&mut self, now: DateTime<Utc>, by_phase: Option<&BTreeMap<Phase, u64>>) -> String {
        let samples = Samples(self.metrics.samples());
        let mut defs: Vec<Value> = Vec::new();
        let mut root = Map::new();
        let mut put = |name: String, unit: &str, value: u64| {
            defs.push(json!({"Name": name, "Unit": unit}));
            root.insert(name, Value::from(value));
        };
        put("Heartbeat".into(), "Count", 1);
        put("IsLeader".into(), "None", self.metrics.is_leader() as u64);
        put("QueueDepth".into(), "Count", self.metrics.queue_depth());
        for (i, (name, unit, read)) in COUNTERS.iter().enumerate() {
            let now = read(&samples);
            // A counter never goes down in one process; saturate anyway rather than wrap.
            put((*name).into(), unit, now.saturating_sub(self.last[i]));
            self.last[i] = now;
        }
        if let Some(by_phase) = by_phase {
            for p in Phase::ALL {
                put(format!("Requests{}", p.as_str()), "Count", by_phase.get(&p).copied().unwrap_or(0));
            }
        }
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DIMENSION.0]],
                    "Metrics": defs,
                }],
            }),
        );
        root.insert(DIMENSION.0.into(), Value::from(DIMENSION.1));
        root.insert("Identity".into(), Value::from(self.identity.clone()));
        root.insert("Version".into(), Value::from(env!("CARGO_PKG_VERSION")));
        let mut line = serde_json::to_string(&Value::Object(root)).expect("JSON values serialize");
        line.push('\n');
        line
    }
}

/// A running emitter; [`EmfHandle::stop`] writes the last line and waits for it.
pub struct EmfHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl EmfHandle {
    /// Stops the emitter after one final line (the counts since the previous line).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Writes a line to `out` now and then every `interval`, until stopped.
pub fn spawn<W: Write + Send + 'static>(mut emitter: Emitter, interval: Duration, mut out: W) -> EmfHandle {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut write_failed = false;
        loop {
            let last = tokio::select! {
                _ = tick.tick() => false,
                _ = stopped.wait_for(|v| *v) => true,
            };
            let line = emitter.next_line(Utc::now());
            match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => write_failed = false,
                Err(e) if !write_failed => {
                    write_failed = true;
                    tracing::warn!(error = %e, "EMF: writing the metrics line to stdout failed; will keep trying");
                }
                Err(_) => {}
            }
            if last {
                return;
            }
        }
    });
    EmfHandle { stop, task }
}

/// Locks stdout per write, so a line goes out in one `write_all` (see the module docs).
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        std::io::stdout().lock().write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    fn parse(line: &str) -> Value {
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'), "one line: {line:?}");
        serde_json::from_str(line).unwrap()
    }

    /// Every declared metric has a numeric value at the root, and the dimension is present.
    fn check_shape(v: &Value) -> Vec<String> {
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "sqlctl");
        assert_eq!(directive["Dimensions"], json!([["Service"]]));
        assert_eq!(v["Service"], "sqlctl");
        assert!(v["_aws"]["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let name = m["Name"].as_str().unwrap().to_string();
                assert!(v[&name].is_u64(), "{name} has no value in {v}");
                assert!(["Count", "None", "Bytes"].contains(&m["Unit"].as_str().unwrap()));
                name
            })
            .collect()
    }

    #[test]
    fn counters_are_reported_as_deltas_per_line() {
        let m = Arc::new(Metrics::default());
        let mut e = Emitter::new(m.clone(), "host-1-abc");
        for _ in 0..3 {
            m.reconcile("success");
        }
        m.reconcile("error");
        m.reconcile("conflict");
        m.query_started("datafusion");
        m.query_finished("succeeded");
        m.set_queue_depth(7);
        m.set_leader(true);
        let v = parse(&e.line(Utc::now(), None));
        let names = check_shape(&v);
        assert_eq!(v["Heartbeat"], 1);
        assert_eq!(v["IsLeader"], 1);
        assert_eq!(v["QueueDepth"], 7);
        assert_eq!(v["Reconciles"], 5);
        assert_eq!(v["ReconcileErrors"], 1);
        assert_eq!(v["ReconcileConflicts"], 1);
        assert_eq!(v["ExecutionsStarted"], 1);
        assert_eq!(v["ExecutionsSucceeded"], 1);
        assert_eq!(v["ExecutionsFailed"], 0);
        assert_eq!(v["Identity"], "host-1-abc");
        assert!(v["NotificationFailures"].is_u64(), "{v}"); // a process-wide counter: shape only
        assert!(!names.iter().any(|n| n.starts_with("Requests")), "{names:?}");

        m.reconcile("success");
        m.reconcile("fenced");
        m.set_leader(false);
        let v = parse(&e.line(Utc::now(), None));
        assert_eq!(v["Reconciles"], 2);
        assert_eq!(v["ReconcileErrors"], 1);
        assert_eq!(v["ReconcileConflicts"], 0);
        assert_eq!(v["ExecutionsStarted"], 0);
        assert_eq!(v["IsLeader"], 0);
        assert_eq!(v["Heartbeat"], 1);

        let v = parse(&e.line(Utc::now(), None));
        assert_eq!(v["Reconciles"], 0);
        assert_eq!(v["ReconcileErrors"], 0);
    }

    #[test]
    fn the_leader_adds_requests_by_phase() {
        let mut e = Emitter::new(Arc::new(Metrics::default()), "id");
        let by_phase = BTreeMap::from([(Phase::AwaitingApproval, 2), (Phase::Done, 5)]);
        let v = parse(&e.line(Utc::now(), Some(&by_phase)));
        let names = check_shape(&v);
        assert_eq!(v["RequestsAwaitingApproval"], 2);
        assert_eq!(v["RequestsDone"], 5);
        assert_eq!(v["RequestsPending"], 0);
        assert_eq!(names.iter().filter(|n| n.starts_with("Requests")).count(), Phase::ALL.len());
        // The names Terraform alarms on, and no name twice.
        for stable in ["Heartbeat", "ReconcileErrors", "IsLeader"] {
            assert!(names.iter().any(|n| n == stable), "{stable} missing");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(e.line(Utc::now(), Some(&by_phase)).len() < 4096, "a line must stay under PIPE_BUF");
    }

    /// Collects what the emitter writes.
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_loop_writes_a_line_per_interval_and_a_last_one_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
        let m = Arc::new(Metrics::default());
        m.set_leader(true);
        // The leader's background count fills the phase cache the lines read.
        let (_stop, stopped) = watch::channel(false);
        let counter = tokio::spawn(super::super::metrics::count_phases(m.clone(), store.clone(), stopped));
        while m.phase_counts().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let buf = Buf::default();
        let h = spawn(Emitter::new(m.clone(), "id"), Duration::from_millis(100), buf.clone());
        tokio::time::sleep(Duration::from_millis(250)).await;
        m.reconcile("error");
        h.stop().await;
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // At 0, 100 and 200 ms, then the last one on stop.
        assert!(lines.len() >= 4, "{text}");
        for v in &lines {
            check_shape(v);
            assert_eq!(v["Heartbeat"], 1);
            assert_eq!(v["RequestsPending"], 0);
        }
        assert_eq!(lines.last().unwrap()["ReconcileErrors"], 1, "{text}");
        assert_eq!(lines.iter().map(|v| v["ReconcileErrors"].as_u64().unwrap()).sum::<u64>(), 1);
        counter.abort();
    }
}
