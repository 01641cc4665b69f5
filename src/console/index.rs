//! The console's in-memory view of every request: one small summary row per request, kept
//! current by following [`Store::changes_since`] (a full re-list now and then catches anything
//! a change feed missed). The list page renders from it, so its cost does not grow with the
//! size of the records (history, previews) and does not touch the store; the detail page and
//! every decision read the store itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch};

use crate::spec::{ObjectKey, Phase, QueryRequest};
use crate::store::{LabelSelector, Store, StoreError};

/// The summary of one request the list page shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub key: ObjectKey,
    pub phase: Phase,
    /// The question, or the first line of hand-written SQL (bounded).
    pub summary: String,
    pub sql: bool,
    pub requester: String,
    pub created: Option<DateTime<Utc>>,
    pub generation: u64,
    pub round: u32,
}

impl Row {
    pub fn of(r: &QueryRequest) -> Row {
        let st = r.status.as_ref();
        let (summary, sql) = match (&r.spec.question, &r.spec.sql) {
            (Some(q), _) => (super::html::one_line(q, 160), false),
            (None, Some(s)) => (super::html::one_line(s, 160), true),
            (None, None) => (String::new(), false),
        };
        Row {
            key: r.key(),
            phase: r.phase(),
            summary,
            sql,
            requester: r.requester().unwrap_or("").to_string(),
            created: r.metadata.creation_timestamp,
            generation: r.generation(),
            round: st.map(|s| s.approval_round).unwrap_or(0),
        }
    }
}

/// Summary rows by key, and the broadcast of keys that changed (`*` = everything may have).
pub struct Index {
    rows: RwLock<BTreeMap<ObjectKey, Arc<Row>>>,
    pub changes: broadcast::Sender<Arc<str>>,
}

/// Everything may have changed (a re-list, or a subscriber that fell behind).
pub const ALL: &str = "*";

impl Index {
    /// Lists every request once. Returns the index and the change cursor taken *before* the
    /// list, so that nothing written during it is missed.
    pub async fn load(store: &dyn Store) -> Result<(Index, u64), StoreError> {
        let cursor = store.change_cursor().await?;
        let index = Index { rows: RwLock::new(BTreeMap::new()), changes: broadcast::channel(1024).0 };
        index.replace_all(store.list(None, &LabelSelector::new()).await?);
        Ok((index, cursor))
    }

    fn replace_all(&self, all: Vec<QueryRequest>) {
        let rows = all.iter().map(|r| (r.key(), Arc::new(Row::of(r)))).collect();
        *self.rows.write().unwrap_or_else(|p| p.into_inner()) = rows;
    }

    /// A snapshot of the rows (cheap: reference-counted).
    pub fn snapshot(&self) -> Vec<Arc<Row>> {
        self.rows.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn upsert(&self, r: &QueryRequest) {
        self.rows.write().unwrap_or_else(|p| p.into_inner()).insert(r.key(), Arc::new(Row::of(r)));
    }

    pub fn remove(&self, key: &ObjectKey) {
        self.rows.write().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    fn announce(&self, key: &str) {
        // No subscriber is not an error.
        let _ = self.changes.send(Arc::from(key));
    }

    /// Follows the store's changes every `poll` until `shutdown`: re-reads each changed request
    /// into the index and announces its key. A read that fails is retried on the next tick. Every
    /// `relist` the whole index is read again, the safety net under the change feed.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        mut cursor: u64,
        poll: Duration,
        relist: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut pending: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut last_list = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
            if last_list.elapsed() >= relist {
                match store.list(None, &LabelSelector::new()).await {
                    Ok(all) => {
                        self.replace_all(all);
                        last_list = Instant::now();
                        self.announce(ALL);
                    }
                    Err(e) => tracing::warn!(error = %e, "console: re-listing requests failed; retrying"),
                }
            }
            match store.changes_since(cursor).await {
                Ok((next, changes)) => {
                    cursor = next;
                    pending.extend(changes.into_iter().map(|c| c.key));
                }
                Err(e) => tracing::warn!(error = %e, "console: reading store changes failed; retrying"),
            }
            for key in std::mem::take(&mut pending) {
                match store.get(&key).await {
                    Ok(Some(r)) => self.upsert(&r),
                    Ok(None) => self.remove(&key),
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "console: reading a changed request failed; retrying");
                        pending.insert(key);
                        continue;
                    }
                }
                self.announce(&key.to_string());
            }
        }
    }
}
