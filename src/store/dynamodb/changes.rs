//! The change index read as a feed: see "Why a time-bucketed change index" in the module docs.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::codec::*;
use super::*;

#[derive(Default)]
pub(super) struct WatchState {
    /// `(key, version marker)` → `mt` of changes already reported.
    reported: HashMap<(ObjectKey, String), u64>,
    /// When the index was last queried, and the cursor that query returned.
    last_poll: Option<(Instant, u64)>,
}

impl DynamoStore {
    pub(super) async fn poll_changes(&self, cursor: u64) -> Result<(u64, Vec<Change>)> {
        {
            let w = self.watch.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, c)) = w.last_poll
                && at.elapsed() < MIN_POLL
                && c == cursor
            {
                return Ok((cursor, Vec::new()));
            }
        }
        let now = now_ms();
        let from = cursor.saturating_sub(LAG_MS).max(now.saturating_sub(MAX_BEHIND_MS));
        let mut found: Vec<(u64, ObjectKey, String)> = Vec::new();
        for minute in from / 60_000..=now / 60_000 {
            for shard in 0..CHANGE_SHARDS {
                let cp = format!("C#{minute}#{shard}");
                let (items, _) = self
                    .query_all(
                        |q| {
                            q.index_name(INDEX_CHANGES)
                                .key_condition_expression("cp = :cp AND mt > :from")
                                .expression_attribute_values(":cp", s(&cp))
                                .expression_attribute_values(":from", n(from))
                        },
                        "Query(changes)",
                    )
                    .await?;
                for item in items {
                    let (Some(mt), Some(key), Some(rv)) =
                        (num(&item, "mt"), text(&item, "ck").and_then(parse_key_str), text(&item, "rv"))
                    else {
                        continue;
                    };
                    found.push((mt, key, rv.to_string()));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        let mut w = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        let mut changes = Vec::new();
        let mut seen_now = HashSet::new();
        for (mt, key, rv) in found {
            let marker = (key.clone(), rv.clone());
            if w.reported.contains_key(&marker) || !seen_now.insert(marker.clone()) {
                continue;
            }
            w.reported.insert(marker, mt);
            let resource_version = (!rv.starts_with("dec#") && !rv.starts_with("del#")).then_some(rv);
            changes.push(Change { key, resource_version });
        }
        // Forget what the next poll's window can no longer see.
        let horizon = now.saturating_sub(2 * LAG_MS);
        w.reported.retain(|_, mt| *mt >= horizon);
        w.last_poll = Some((Instant::now(), now));
        Ok((now, changes))
    }
}
