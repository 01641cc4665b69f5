//! A work queue of keys, as in client-go / kube-runtime's scheduler.
//!
//! * Deduplicated: a key is queued at most once; adding it again keeps the earliest `run_at`.
//! * Single-flight: a key being reconciled is never handed out twice; adds during processing are
//!   remembered ("dirty") and the key is queued again when the worker calls [`WorkQueue::done`].
//! * Delayed: `add_after` schedules a key for later (requeue, backoff).
//! * Per-key exponential backoff for failures, reset on success.
//! * Every entry says why it runs ([`Reason`], kube-runtime's `ReconcileReason`): the reason of
//!   the earliest due request is the one handed out, and the reconcile's span carries it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::spec::ObjectKey;

/// Backoff for failing keys: `base * 2^failures`, capped, with ±20 % jitter.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(100), max: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// Delay after the `failures`-th consecutive failure (1-based).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let raw = self.base.saturating_mul(1u32 << exp).min(self.max);
        let jitter = 0.8 + fastrand_f64() * 0.4;
        raw.mul_f64(jitter).min(self.max)
    }
}

fn fastrand_f64() -> f64 {
    // Cheap, good-enough jitter without a dependency: hash of the current instant.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    (h.finish() % 10_000) as f64 / 10_000.0
}

/// Why a key is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// In the initial list on taking the lease.
    Listed,
    /// The store's change feed reported a write by someone else.
    Changed,
    /// An engine, the decision consumer or another part of the controller woke it.
    Woken,
    /// The periodic resync.
    Resync,
    /// The last reconcile asked to look again after a delay (`Action::Requeue`).
    Requeued,
    /// The last write lost a compare-and-swap race: re-read and retry at once.
    Conflict,
    /// The last reconcile failed: retried with per-key backoff.
    Backoff,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Listed => "listed",
            Reason::Changed => "changed",
            Reason::Woken => "woken",
            Reason::Resync => "resync",
            Reason::Requeued => "requeued",
            Reason::Conflict => "conflict",
            Reason::Backoff => "backoff",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Default)]
struct Inner {
    /// Keys waiting, with the instant they become due and why.
    queued: HashMap<ObjectKey, (Instant, Reason)>,
    /// Min-heap of (due, key); entries whose due no longer matches `queued` are stale.
    heap: BinaryHeap<Reverse<(Instant, ObjectKey)>>,
    processing: HashSet<ObjectKey>,
    /// Keys added while processing: the earliest due they asked for, and why.
    dirty: HashMap<ObjectKey, (Instant, Reason)>,
    failures: HashMap<ObjectKey, u32>,
    shut_down: bool,
}

pub struct WorkQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    backoff: Backoff,
}

impl Default for WorkQueue {
    fn default() -> Self {
        Self::new(Backoff::default())
    }
}

impl WorkQueue {
    pub fn new(backoff: Backoff) -> Self {
        WorkQueue { inner: Mutex::new(Inner::default()), notify: Notify::new(), backoff }
    }

    /// The queue's state. No code panics while holding it, but a poisoned lock must not turn
    /// one failure into every later call failing: the state is consistent between statements.
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `key` now.
    pub fn add(&self, key: ObjectKey, reason: Reason) {
        self.add_after(key, Duration::ZERO, reason)
    }

    /// Queue `key` to run after `delay` (earliest request wins, with its reason).
    pub fn add_after(&self, key: ObjectKey, delay: Duration, reason: Reason) {
        self.add_at(key, Instant::now() + delay, reason)
    }

    fn add_at(&self, key: ObjectKey, due: Instant, reason: Reason) {
        let mut g = self.lock();
        if g.shut_down {
            return;
        }
        if g.processing.contains(&key) {
            let e = g.dirty.entry(key).or_insert((due, reason));
            if due < e.0 {
                *e = (due, reason);
            }
            return;
        }
        match g.queued.get(&key) {
            Some(existing) if existing.0 <= due => {}
            _ => {
                g.queued.insert(key.clone(), (due, reason));
                g.heap.push(Reverse((due, key)));
                drop(g);
                self.notify.notify_one();
            }
        }
    }

    /// Requeue after a failure with per-key exponential backoff; returns the delay used.
    pub fn add_rate_limited(&self, key: ObjectKey) -> Duration {
        let n = {
            let mut g = self.lock();
            let n = g.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let d = self.backoff.delay(n);
        self.add_after(key, d, Reason::Backoff);
        d
    }

    /// Clears the failure count of `key` (after a successful reconcile).
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().failures.remove(key);
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &ObjectKey) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Waits for the next due key and marks it as processing. None once shut down.
    pub async fn next(&self) -> Option<ObjectKey> {
        self.next_entry().await.map(|(key, _)| key)
    }

    /// [`WorkQueue::next`], with why the key runs.
    pub async fn next_entry(&self) -> Option<(ObjectKey, Reason)> {
        loop {
            let wait_until = {
                let mut g = self.lock();
                if g.shut_down {
                    return None;
                }
                let now = Instant::now();
                let mut next_due = None;
                while let Some(Reverse((due, key))) = g.heap.peek().cloned() {
                    let Some(&(queued_due, reason)) = g.queued.get(&key).filter(|e| e.0 == due) else {
                        g.heap.pop(); // stale entry
                        continue;
                    };
                    if queued_due <= now {
                        g.heap.pop();
                        g.queued.remove(&key);
                        g.processing.insert(key.clone());
                        return Some((key, reason));
                    }
                    next_due = Some(due);
                    break;
                }
                next_due
            };
            match wait_until {
                Some(due) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = self.notify.notified() => {}
                    }
                }
                None => self.notify.notified().await,
            }
        }
    }

    /// Marks `key` as no longer processing; re-queues it if it was added meanwhile.
    pub fn done(&self, key: &ObjectKey) {
        let again = {
            let mut g = self.lock();
            g.processing.remove(key);
            g.dirty.remove(key)
        };
        if let Some((due, reason)) = again {
            self.add_at(key.clone(), due.max(Instant::now()), reason);
        }
    }

    /// Keys waiting (due or not), for the queue-depth metric.
    pub fn len(&self) -> usize {
        self.lock().queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys; `next` returns None from now on.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.notify.notify_waiters();
        self.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> ObjectKey {
        ObjectKey::new("default", n)
    }

    #[tokio::test(start_paused = true)]
    async fn adding_a_key_twice_queues_it_once() {
        let q = WorkQueue::default();
        q.add(k("a"), Reason::Changed);
        q.add(k("a"), Reason::Changed);
        assert_eq!(q.len(), 1);
        assert_eq!(q.next().await, Some(k("a")));
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn each_entry_says_why_it_runs_and_the_earliest_request_s_reason_wins() {
        let q = WorkQueue::default();
        q.add_after(k("a"), Duration::from_secs(30), Reason::Requeued);
        q.add(k("a"), Reason::Changed);
        q.add_after(k("a"), Duration::from_secs(5), Reason::Backoff);
        assert_eq!(q.next_entry().await, Some((k("a"), Reason::Changed)));
        // Asked for while processing: remembered with its reason and handed out after `done`.
        q.add_after(k("a"), Duration::from_secs(2), Reason::Woken);
        q.add_after(k("a"), Duration::from_secs(9), Reason::Resync);
        q.done(&k("a"));
        let t0 = Instant::now();
        assert_eq!(q.next_entry().await, Some((k("a"), Reason::Woken)));
        assert!(t0.elapsed() >= Duration::from_secs(2));
        q.done(&k("a"));
        assert!(q.add_rate_limited(k("b")) > Duration::ZERO);
        assert_eq!(q.next_entry().await, Some((k("b"), Reason::Backoff)));
        assert_eq!(Reason::Conflict.to_string(), "conflict");
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_due_wins() {
        let q = WorkQueue::default();
        q.add_after(k("a"), Duration::from_secs(60), Reason::Requeued);
        q.add_after(k("a"), Duration::from_secs(1), Reason::Requeued);
        q.add_after(k("a"), Duration::from_secs(30), Reason::Requeued);
        let t0 = Instant::now();
        assert_eq!(q.next().await, Some(k("a")));
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_keys_come_out_in_due_order() {
        let q = WorkQueue::default();
        q.add_after(k("late"), Duration::from_secs(5), Reason::Requeued);
        q.add_after(k("early"), Duration::from_secs(2), Reason::Requeued);
        q.add(k("now"), Reason::Changed);
        assert_eq!(q.next().await, Some(k("now")));
        assert_eq!(q.next().await, Some(k("early")));
        assert_eq!(q.next().await, Some(k("late")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_in_flight_is_not_handed_out_twice_but_comes_back_after_done() {
        let q = WorkQueue::default();
        q.add(k("a"), Reason::Changed);
        assert_eq!(q.next().await, Some(k("a")));
        q.add(k("a"), Reason::Changed); // changed while processing
        assert!(q.is_empty(), "dirty keys wait for done()");
        let waiter = tokio::time::timeout(Duration::from_millis(10), q.next()).await;
        assert!(waiter.is_err(), "must not be handed out while in flight");
        q.done(&k("a"));
        assert_eq!(q.next().await, Some(k("a")));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_reset_on_forget() {
        let q = WorkQueue::new(Backoff { base: Duration::from_millis(100), max: Duration::from_secs(10) });
        let d1 = q.add_rate_limited(k("a"));
        q.next().await;
        q.done(&k("a"));
        let d2 = q.add_rate_limited(k("a"));
        q.next().await;
        q.done(&k("a"));
        let d3 = q.add_rate_limited(k("a"));
        assert!(d1 >= Duration::from_millis(80) && d1 <= Duration::from_millis(120), "{d1:?}");
        assert!(d2 >= Duration::from_millis(160) && d2 <= Duration::from_millis(240), "{d2:?}");
        assert!(d3 >= Duration::from_millis(320) && d3 <= Duration::from_millis(480), "{d3:?}");
        assert_eq!(q.failures(&k("a")), 3);
        q.forget(&k("a"));
        assert_eq!(q.failures(&k("a")), 0);
    }

    #[test]
    fn backoff_is_capped() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(60) };
        assert!(b.delay(100) <= Duration::from_secs(60));
        assert!(b.delay(100) >= Duration::from_secs(48));
    }

    #[tokio::test(start_paused = true)]
    async fn shut_down_wakes_waiters() {
        let q = std::sync::Arc::new(WorkQueue::default());
        let q2 = q.clone();
        let h = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(h.await.unwrap(), None);
    }
}
