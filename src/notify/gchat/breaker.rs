//! The circuit breaker: after repeated failed messages, sends are skipped for a cool-down so a
//! dead webhook costs each reconcile nothing; then one probe decides whether it closes again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics::ChatMetrics;

#[derive(Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    probe_started: Option<Instant>,
    last_error: String,
}

/// Opens after `threshold` failed messages in a row; while open, sends are skipped; after the
/// cool-down one probe goes through (others keep skipping) and its outcome closes or re-opens it.
pub(super) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
    /// Where the open/closed state is shown (`sqlctl_gchat_circuit_open`).
    metrics: Arc<ChatMetrics>,
}

/// Whether a message may be sent now.
pub(super) enum Admit {
    Go { probe: bool },
    Skip { failures: u32, last_error: String, retry_in: Duration },
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown: Duration, metrics: Arc<ChatMetrics>) -> Breaker {
        Breaker { threshold: threshold.max(1), cooldown, state: Mutex::new(BreakerState::default()), metrics }
    }

    pub(super) fn admit(&self) -> Admit {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let Some(until) = s.open_until else { return Admit::Go { probe: false } };
        // A probe that never reported (its reconcile was cancelled) does not block forever.
        let probing = s.probe_started.is_some_and(|t| now.duration_since(t) < self.cooldown);
        if now < until || probing {
            return Admit::Skip {
                failures: s.failures,
                last_error: s.last_error.clone(),
                retry_in: until.saturating_duration_since(now),
            };
        }
        s.probe_started = Some(now);
        Admit::Go { probe: true }
    }

    #[cfg(test)]
    pub(super) fn is_open(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).open_until.is_some()
    }

    pub(super) fn success(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = BreakerState::default();
        self.metrics.set_circuit_open(false);
    }

    /// Returns true when this failure opened (or re-opened) the circuit.
    pub(super) fn failure(&self, error: &str, probe: bool) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.failures += 1;
        s.last_error = error.to_string();
        s.probe_started = None;
        if probe || s.failures >= self.threshold {
            s.open_until = Some(Instant::now() + self.cooldown);
            self.metrics.set_circuit_open(true);
            return true;
        }
        false
    }
}
