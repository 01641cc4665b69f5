//! What a Google Chat notifier counts, as a handle it is given when built (not process-wide
//! statics): whoever renders `/metrics` holds the same `Arc` and reads it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The counters of one [`GoogleChat`](super::GoogleChat), shared (`Arc`) with the metrics
/// renderer: `notify::render_metrics` shows them as `sqlctl_gchat_requests_total{status}` and
/// `sqlctl_gchat_circuit_open`.
#[derive(Debug, Default)]
pub struct ChatMetrics {
    circuit_open: AtomicBool,
    requests: Mutex<BTreeMap<String, u64>>,
}

impl ChatMetrics {
    /// Counts one webhook HTTP attempt by its status code, `timeout` or `error`.
    pub(super) fn count_request(&self, status: &str) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry(status.to_string()).or_insert(0) += 1;
    }

    /// Records whether the circuit is open (sends being skipped).
    pub(super) fn set_circuit_open(&self, open: bool) {
        self.circuit_open.store(open, Ordering::Relaxed);
    }

    /// Webhook HTTP attempts so far by status code (`200`, `429`, …), `timeout` or `error`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Is the circuit open (sends being skipped) right now?
    pub fn circuit_open(&self) -> bool {
        self.circuit_open.load(Ordering::Relaxed)
    }
}
