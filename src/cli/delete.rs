//! `sqlctl delete NAME`: a request that may be running is cancelled first (finalizer).
//! `sqlctl delete sm|vq NAME…` (or `TYPE/NAME`, `-l`, `--all`, `-f`) removes semantic models and
//! verified queries, which hold no finalizer.
//!
//! `--force` removes the record at once, but never leaves a query running for nobody (issue 10,
//! class 6): a request whose query is recorded as running has that query cancelled first.
//!
//! * Athena: the CLI stops the query itself (`StopQueryExecution` by its execution id), then
//!   removes the record. If the stop fails, nothing is removed and the command says why.
//! * Local engine: the query runs inside the controller process, which only it can stop. With
//!   a live controller (its lease renewed within the lease period) the request is marked for
//!   deletion, so the controller's finalizer cancels the query and removes the record, and the
//!   command waits for that. Without one, nothing is running the query (the local engine runs
//!   queries only inside a controller), so the record is removed at once. If a live
//!   controller has not finished within [`FORCE_WAIT`], the command refuses and the request
//!   stays marked for deletion (the controller completes it). As a second wall, a controller
//!   that finds a record it saw running removed or recreated cancels the old query itself.

use std::time::Duration;

use super::{Exit, Selection, get_request_at, typed_names};
use crate::config::Context;
use crate::spec::{EngineKind, ObjectKey, ObjectKind, Phase, QueryRequest};
use crate::store::{CONTROLLER_LEASE, Store};

/// How long `delete --force` waits for a live controller to cancel a local query and remove
/// the record.
pub const FORCE_WAIT: Duration = Duration::from_secs(20);

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub select: Selection,
    /// Remove at once, without waiting for the controller's finalizer: a running query is still
    /// cancelled first (directly on Athena; through a live controller for the local engine).
    #[arg(long)]
    pub force: bool,
}

/// The execution id of `r`'s query if its status records one as running.
fn running_query(r: &QueryRequest) -> Option<String> {
    let st = r.status.as_ref()?;
    let exec = st.execution.as_ref()?;
    let live = st.phase == Phase::Executing && (exec.state == "Running" || exec.state == "Starting");
    exec.id.clone().filter(|_| live)
}

/// A controller holds the lease and renewed it within the lease period (wall clock: this is a
/// hint for the CLI, never a takeover decision).
async fn controller_alive(store: &dyn Store) -> anyhow::Result<bool> {
    let Some(lease) = store.get_lease(CONTROLLER_LEASE).await? else { return Ok(false) };
    let now = chrono::Utc::now().timestamp_millis();
    Ok(!lease.holder.is_empty() && now - lease.renewed_at_ms <= lease.duration_ms as i64)
}

impl Args {
    pub async fn run(self, g: &Context) -> anyhow::Result<()> {
        let store = g.store().await?;
        let (kind, names) = typed_names(&self.select.names).map_err(Exit::usage)?;
        if names.is_empty() && !self.select.all && self.select.selector.is_none() && self.select.files.is_empty() {
            // As kubectl: deleting a whole type takes --all.
            return Err(Exit::usage(format!(
                "name the {} to delete, or select them with -l KEY=VALUE, --all or -f FILE",
                kind.plural()
            )));
        }
        let objects = self.select.objects(store.as_ref(), g).await?;
        if objects.is_empty() {
            eprintln!(
                "No {} found in namespace {}.",
                if kind == ObjectKind::QueryRequest { "requests" } else { kind.plural() },
                g.namespace
            );
        }
        let mut failed = false;
        let mut keys = Vec::new();
        for (kind, key) in objects {
            if kind == ObjectKind::QueryRequest {
                keys.push(key);
                continue;
            }
            match store.delete_object(kind, &key).await {
                Ok(()) => println!("{}/{} deleted", kind.resource(), key.name),
                Err(crate::store::StoreError::NotFound(_)) => {
                    eprintln!("sqlctl: {} {key} not found", kind.resource());
                    failed = true;
                }
                Err(e) => {
                    eprintln!("sqlctl: {}/{}: {e}", kind.resource(), key.name);
                    failed = true;
                }
            }
        }
        for key in &keys {
            let name = &key.name;
            let r = match get_request_at(store.as_ref(), key).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("sqlctl: {e}");
                    failed = true;
                    continue;
                }
            };
            if self.force
                && let Some(id) = running_query(&r)
            {
                match self.force_running(g, store.as_ref(), &r, key, &id).await {
                    Ok(msg) => println!("{msg}"),
                    Err(e) => {
                        eprintln!("sqlctl: {name}: {e}");
                        failed = true;
                    }
                }
                continue;
            }
            match store.delete(key, self.force).await {
                Ok(None) => println!("queryrequest/{name} deleted"),
                Ok(Some(_)) => println!(
                    "queryrequest/{name} marked for deletion (the controller cancels its query, then removes it)"
                ),
                Err(e) => {
                    eprintln!("sqlctl: {name}: {e}");
                    failed = true;
                }
            }
        }
        if failed { Err(Exit::silent()) } else { Ok(()) }
    }

    /// `--force` of a request whose query is running: cancel it, then remove the record.
    async fn force_running(
        &self,
        g: &Context,
        store: &dyn Store,
        r: &QueryRequest,
        key: &ObjectKey,
        id: &str,
    ) -> anyhow::Result<String> {
        let name = &r.metadata.name;
        let kind = r.spec.engine.unwrap_or(g.default_engine());
        match kind {
            EngineKind::Athena => {
                let engines = g.engines().await?;
                let engine = engines.get(&kind).ok_or_else(|| {
                    Exit::refused(format!(
                        "{name} is running query {id} on {}, which is not configured here, so it cannot be cancelled; not deleted",
                        kind.as_str()
                    ))
                })?;
                engine.cancel(id).await.map_err(|e| {
                    Exit::refused(format!("cancelling its running query {id} failed ({e}); not deleted"))
                })?;
                store.delete(key, true).await?;
                Ok(format!("queryrequest/{name} deleted (its running query {id} was cancelled)"))
            }
            EngineKind::Local => {
                if !controller_alive(store).await? {
                    // Local queries run only inside a controller: with none alive, none runs.
                    store.delete(key, true).await?;
                    return Ok(format!(
                        "queryrequest/{name} deleted (no controller is running, so its local query {id} was not running either)"
                    ));
                }
                if store.delete(key, false).await?.is_none() {
                    return Ok(format!("queryrequest/{name} deleted"));
                }
                let deadline = tokio::time::Instant::now() + FORCE_WAIT;
                loop {
                    match store.get(key).await? {
                        None => {
                            return Ok(format!(
                                "queryrequest/{name} deleted (the controller cancelled its running query {id})"
                            ));
                        }
                        Some(now) if now.uid() != r.uid() => {
                            return Ok(format!(
                                "queryrequest/{name} deleted (the controller cancelled its running query {id}; a new {name} exists already)"
                            ));
                        }
                        Some(_) if tokio::time::Instant::now() >= deadline => {
                            return Err(Exit::refused(format!(
                                "its local query {id} runs inside the controller, which alone can stop it, and the controller did not cancel it within {}s; the request stays marked for deletion and the controller removes it once the query is cancelled",
                                FORCE_WAIT.as_secs()
                            )));
                        }
                        Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }
    }
}
