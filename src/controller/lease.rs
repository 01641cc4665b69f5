//! Leader election through a lease record in the store, with a fencing epoch.
//!
//! * A standby takes over only after watching the lease unchanged (same holder, epoch and renew
//!   count) for a full lease period on its *own monotonic clock*: no trust in other clocks.
//! * The leader renews every retry period and steps down when it has not renewed within the
//!   renew deadline (shorter than the lease), again on its own monotonic clock.
//! * Every controller write carries the epoch; the store checks it in the same transaction, so a
//!   deposed leader that has not noticed yet still cannot write.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{ControllerConfig, Metrics};
use crate::store::{Fence, Lease, LeaseClaim, Store, StoreError};

/// Name of the controller's lease record.
pub const LEASE_NAME: &str = crate::store::CONTROLLER_LEASE;

/// Waits until this process holds the lease; returns its fence.
pub async fn acquire(store: &dyn Store, cfg: &ControllerConfig, metrics: &Metrics) -> anyhow::Result<Fence> {
    let mut observed: Option<(Lease, Instant)> = None;
    let mut announced = false;
    loop {
        match store.get_lease(LEASE_NAME).await {
            Ok(current) => {
                let free = current.as_ref().is_none_or(|l| l.holder.is_empty() || l.holder == cfg.identity);
                let expired = match (&current, &observed) {
                    (Some(cur), Some((seen, since))) if same(cur, seen) => since.elapsed() >= cfg.lease_duration,
                    _ => false,
                };
                if free || expired {
                    match store
                        .try_acquire_lease(
                            LeaseClaim::new(LEASE_NAME, &cfg.identity, cfg.lease_duration.as_millis() as u64),
                            current.as_ref(),
                        )
                        .await
                    {
                        Ok(Some(l)) => return Ok(Fence { holder: l.holder, epoch: l.epoch }),
                        Ok(None) => observed = None, // somebody else moved first
                        Err(e) if e.is_transient() => {}
                        Err(e) => return Err(e.into()),
                    }
                } else if let Some(cur) = current {
                    if !announced {
                        tracing::info!(leader = %cur.holder, epoch = cur.epoch, "standing by: another controller holds the lease");
                        announced = true;
                        metrics.set_ready(true);
                    }
                    match &observed {
                        Some((seen, _)) if same(&cur, seen) => {}
                        _ => observed = Some((cur, Instant::now())),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the lease failed; will retry"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

fn same(a: &Lease, b: &Lease) -> bool {
    a.holder == b.holder && a.epoch == b.epoch && a.renewals == b.renewals
}

/// Renews the lease until shutdown; signals `lost` when it was taken over or not renewed in time.
pub async fn renew_loop(
    store: Arc<dyn Store>,
    cfg: ControllerConfig,
    fence: Fence,
    lost: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.retry_period) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let attempt = tokio::time::timeout(cfg.renew_deadline, store.renew_lease(LEASE_NAME, &fence)).await;
        match attempt {
            Ok(Ok(_)) => last_ok = Instant::now(),
            Ok(Err(StoreError::Fenced { epoch })) => {
                tracing::error!(epoch, "the lease was taken over by another controller; stepping down");
                let _ = lost.send(true);
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "renewing the lease failed; will retry"),
            Err(_) => tracing::warn!("renewing the lease timed out; will retry"),
        }
        if last_ok.elapsed() >= cfg.renew_deadline {
            tracing::error!(deadline = ?cfg.renew_deadline, "could not renew the lease within the renew deadline; stepping down");
            let _ = lost.send(true);
            return;
        }
    }
}

/// Is a live controller holding the lease? (The CLI's `ask` starts one in-process only if not.)
/// Judged by watching the renew count change within `window`.
pub async fn leader_alive(store: &dyn Store, window: Duration) -> bool {
    let Ok(Some(first)) = store.get_lease(LEASE_NAME).await else { return false };
    if first.holder.is_empty() {
        return false;
    }
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match store.get_lease(LEASE_NAME).await {
            Ok(Some(l)) if l.holder.is_empty() => return false,
            Ok(Some(l)) if !same(&l, &first) => return true,
            _ => {}
        }
    }
    false
}
