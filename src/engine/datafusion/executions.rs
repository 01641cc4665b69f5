//! The in-memory registry of executions, keyed by idempotency token, with its eviction, and the
//! runtime queries run on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::physical_plan::ExecutionPlan;

use crate::engine::ExecState;

/// How long a finished execution stays in memory after it was first polled as finished.
const EVICT_AFTER_POLLED: Duration = Duration::from_secs(5 * 60);

/// Most finished executions kept at all; beyond it the oldest are evicted even if never polled
/// (their requests then see `Unknown` and start again, which only re-reads).
const MAX_FINISHED: usize = 10_000;

/// How often the map is swept for evictable entries.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A Tokio runtime that can be dropped anywhere (also inside another runtime).
pub(super) struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    pub(super) fn new(threads: usize) -> Self {
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sqlctl-query")
            .enable_all()
            .build();
        match built {
            Ok(rt) => QueryRuntime(Some(rt)),
            Err(e) => {
                tracing::warn!(error = %e, "could not start the query runtime; running queries on the caller's runtime");
                QueryRuntime(None)
            }
        }
    }

    pub(super) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match &self.0 {
            Some(rt) => rt.spawn(task),
            None => tokio::spawn(task),
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Default)]
pub(super) struct Executions {
    pub(super) by_id: HashMap<String, Execution>,
    pub(super) last_sweep: Option<Instant>,
}

pub(super) struct Execution {
    pub(super) state: ExecState,
    pub(super) abort: Option<tokio::task::AbortHandle>,
    /// The physical plan once built, so `poll` can report bytes scanned so far.
    pub(super) plan: Option<Arc<dyn ExecutionPlan>>,
    pub(super) finished_at: Option<Instant>,
    /// When `poll` first returned the final state; eviction counts from here.
    pub(super) reported_at: Option<Instant>,
}

impl Executions {
    /// Records the final state, unless the execution was cancelled (or forgotten) meanwhile.
    pub(super) fn finish(&mut self, id: &str, state: ExecState) -> bool {
        match self.by_id.get_mut(id) {
            Some(e) if matches!(e.state, ExecState::Running { .. }) => {
                e.state = state;
                e.abort = None;
                e.plan = None;
                e.finished_at = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Drops finished executions that were reported a while ago, and the oldest finished ones
    /// beyond [`MAX_FINISHED`]. Running executions are never dropped.
    pub(super) fn sweep(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|t| now.duration_since(t) < SWEEP_EVERY) && self.by_id.len() <= MAX_FINISHED {
            return;
        }
        self.last_sweep = Some(now);
        self.by_id.retain(|_, e| e.reported_at.is_none_or(|t| now.duration_since(t) < EVICT_AFTER_POLLED));
        let mut finished: Vec<(Instant, String)> =
            self.by_id.iter().filter_map(|(id, e)| e.finished_at.map(|t| (t, id.clone()))).collect();
        if finished.len() > MAX_FINISHED {
            finished.sort();
            for (_, id) in finished.iter().take(finished.len() - MAX_FINISHED) {
                self.by_id.remove(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_executions_are_evicted_after_being_reported() {
        let now = Instant::now();
        let mut ex = Executions::default();
        let entry = |state: ExecState, finished: bool, reported: bool| Execution {
            state,
            abort: None,
            plan: None,
            finished_at: finished.then_some(now),
            reported_at: reported.then_some(now),
        };
        ex.by_id.insert("running".into(), entry(ExecState::Running { bytes_scanned: None }, false, false));
        ex.by_id.insert("reported".into(), entry(ExecState::Cancelled { reason: "x".into() }, true, true));
        ex.by_id.insert("unreported".into(), entry(ExecState::Cancelled { reason: "x".into() }, true, false));
        ex.sweep(now + Duration::from_secs(60));
        assert_eq!(ex.by_id.len(), 3);
        ex.sweep(now + EVICT_AFTER_POLLED + SWEEP_EVERY);
        let mut left: Vec<&str> = ex.by_id.keys().map(String::as_str).collect();
        left.sort();
        assert_eq!(left, ["running", "unreported"]);

        // Bounded even if nobody polls: at most MAX_FINISHED finished entries stay.
        for i in 0..MAX_FINISHED + 50 {
            ex.by_id.insert(format!("f{i}"), entry(ExecState::Cancelled { reason: "x".into() }, true, false));
        }
        ex.sweep(now + EVICT_AFTER_POLLED + SWEEP_EVERY * 3);
        assert_eq!(ex.by_id.len(), MAX_FINISHED + 1);
        assert!(ex.by_id.contains_key("running"));
    }
}
