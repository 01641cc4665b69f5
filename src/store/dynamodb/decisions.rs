//! Decision records (numbered by a per-uid counter item in the same transaction), the history
//! archive and the policy item.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use chrono::Utc;

use super::codec::*;
use super::*;

impl DynamoStore {
    /// Creates a decision record and numbers it: the uid's counter item (`sk` [`DECISION_SEQ`])
    /// and the record are written in one transaction, the counter conditioned on the value just
    /// read, so seqs of a uid are 1, 2, 3, … in commit order and a record with a higher seq is
    /// never visible before a lower one (the controller keeps a high-water mark of them).
    pub(super) async fn create_decision_record(&self, decision: &Decision) -> Result<DecisionOutcome> {
        let pk = decision_pk(&decision.uid);
        for _ in 0..DECISION_SEQ_ATTEMPTS {
            let counter = self
                .client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s(DECISION_SEQ))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| self.err("GetItem", e))?;
            let prev = counter.item().and_then(|i| num(i, "n"));
            let seq = prev.unwrap_or(0) + 1;
            let now = now_ms();
            let keep = self.retention.max(DECISION_MIN_RETENTION);
            let key = ObjectKey::new(&decision.namespace, &decision.name);
            let mut item = HashMap::new();
            item.insert("pk".to_string(), s(&pk));
            item.insert("sk".to_string(), s(&decision.id));
            item.insert("body".to_string(), s(&to_json(decision)?));
            // Creation order: nanoseconds, then the id as a tie-break (records written before
            // `seq` existed are ordered by it).
            let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(0).max(0);
            item.insert("ord".to_string(), s(&format!("{nanos:020}#{}", decision.id)));
            item.insert("seq".to_string(), n(seq));
            item.insert("rv".to_string(), s(&format!("dec#{}", decision.id)));
            change_attrs(&mut item, &key, now);
            item.insert("ttl".to_string(), n(now / 1000 + keep.as_secs()));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(build_err)?;
            let mut ctr = HashMap::new();
            ctr.insert("pk".to_string(), s(&pk));
            ctr.insert("sk".to_string(), s(DECISION_SEQ));
            ctr.insert("n".to_string(), n(seq));
            ctr.insert("ttl".to_string(), n(now / 1000 + keep.as_secs()));
            let mut ctr_put = Put::builder().table_name(&self.table).set_item(Some(ctr));
            ctr_put = match prev {
                None => ctr_put.condition_expression("attribute_not_exists(pk)"),
                Some(p) => ctr_put.condition_expression("n = :prev").expression_attribute_values(":prev", n(p)),
            };
            let items = vec![
                TransactWriteItem::builder().put(put).build(),
                TransactWriteItem::builder().put(ctr_put.build().map_err(build_err)?).build(),
            ];
            let reasons = match self.transact(items).await? {
                Ok(()) => return Ok(DecisionOutcome::Created(decision.clone())),
                Err(reasons) => reasons,
            };
            let failed = |i: usize| reasons.get(i).is_some_and(|r| r.code() == Some("ConditionalCheckFailed"));
            if failed(0) {
                let old = reasons.first().and_then(|r| r.item().cloned());
                return self.existing_decision(decision, old).await;
            }
            if !failed(1) {
                return Err(StoreError::Unavailable(format!(
                    "DynamoDB transaction cancelled: {}",
                    reason_codes(&reasons)
                )));
            }
            // Another record of this uid took the seq first: read the counter again.
        }
        Err(StoreError::Unavailable(format!(
            "decision records of {} are being written concurrently; retry",
            decision.uid
        )))
    }

    /// The record that made a create of `decision` fail its "absent" condition.
    async fn existing_decision(
        &self,
        decision: &Decision,
        old: Option<HashMap<String, AttributeValue>>,
    ) -> Result<DecisionOutcome> {
        {
            {
                let old = match old {
                    Some(o) => o,
                    None => self
                        .client
                        .get_item()
                        .table_name(&self.table)
                        .key("pk", s(&decision_pk(&decision.uid)))
                        .key("sk", s(&decision.id))
                        .consistent_read(true)
                        .send()
                        .await
                        .map_err(|e| self.err("GetItem", e))?
                        .item()
                        .cloned()
                        .ok_or_else(|| {
                            StoreError::Unavailable("decision vanished after a failed create; retry".into())
                        })?,
                };
                let body =
                    text(&old, "body").ok_or_else(|| StoreError::Other("corrupt decision record: no body".into()))?;
                Ok(DecisionOutcome::Exists(from_json(body)?))
            }
        }
    }

    /// Every decision record of `uid` with its seq (0 for records from before seqs), in
    /// creation order: unnumbered ones first (by their write time), then by seq.
    pub(super) async fn list_decisions_strict(&self, uid: &str) -> Result<Vec<DecisionRecord>> {
        let (records, undecodable) = self.scan_decisions(uid).await?;
        match undecodable.first() {
            Some(u) => Err(StoreError::Other(format!("corrupt decision record {}: {}", u.id, u.why))),
            None => Ok(records),
        }
    }

    /// [`Self::list_decisions_strict`] that skips (and reports) the items that do not decode.
    pub(super) async fn scan_decisions(&self, uid: &str) -> Result<(Vec<DecisionRecord>, Vec<Undecodable>)> {
        let pk = decision_pk(uid);
        let (items, _) = self
            .query_all(
                |q| {
                    q.key_condition_expression("pk = :pk")
                        .expression_attribute_values(":pk", s(&pk))
                        .consistent_read(true)
                },
                "Query(decisions)",
            )
            .await?;
        let mut out: Vec<(u64, String, Decision)> = Vec::new();
        let mut undecodable = Vec::new();
        for item in items.iter().filter(|i| text(i, "sk") != Some(DECISION_SEQ)) {
            let decoded = text(item, "body")
                .ok_or_else(|| "no body attribute".to_string())
                .and_then(|b| serde_json::from_str::<Decision>(b).map_err(|e| e.to_string()));
            match decoded {
                Ok(d) => {
                    let seq = num(item, "seq").unwrap_or(0);
                    out.push((seq, text(item, "ord").unwrap_or_default().to_string(), d));
                }
                Err(why) => {
                    let id = text(item, "sk").unwrap_or("(no sort key)").to_string();
                    undecodable.push(Undecodable { id, why });
                }
            }
        }
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok((out.into_iter().map(|(seq, _, decision)| DecisionRecord { seq, decision }).collect(), undecodable))
    }

    /// Writes archived history entries: one item per entry in the request's partition, `sk`
    /// `HIST#<uid>#<index>` (so a recreated request of the same name never sees them), in
    /// fenced transactions of at most [`ARCHIVE_BATCH`] entries. A retried step writes the same
    /// index again: the same entry, one item.
    pub(super) async fn archive_entries(&self, batch: ArchiveBatch<'_>, fence: Option<&Fence>) -> Result<()> {
        let ArchiveBatch { key, uid, first_index, entries } = batch;
        let now = now_ms();
        let keep = self.retention.max(DECISION_MIN_RETENTION);
        for (chunk_no, chunk) in entries.chunks(ARCHIVE_BATCH).enumerate() {
            let mut items = Vec::new();
            for (i, entry) in chunk.iter().enumerate() {
                let index = first_index + (chunk_no * ARCHIVE_BATCH + i) as u64;
                let mut item = HashMap::new();
                item.insert("pk".to_string(), s(&req_pk(key)));
                item.insert("sk".to_string(), s(&archive_sk(uid, index)));
                item.insert("idx".to_string(), n(index));
                item.insert("body".to_string(), s(&to_json(entry)?));
                item.insert("ttl".to_string(), n(now / 1000 + keep.as_secs()));
                let put = Put::builder().table_name(&self.table).set_item(Some(item)).build().map_err(build_err)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
            if let Err(reasons) = self.fenced_transact(fence, items).await? {
                return Err(StoreError::Unavailable(format!(
                    "DynamoDB transaction cancelled: {}",
                    reason_codes(&reasons)
                )));
            }
        }
        Ok(())
    }

    pub(super) async fn read_archive(&self, key: &ObjectKey, uid: &str) -> Result<Vec<ArchivedEntry>> {
        let pk = req_pk(key);
        let prefix = format!("HIST#{uid}#");
        let (items, _) = self
            .query_all(
                |q| {
                    q.key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                        .expression_attribute_values(":pk", s(&pk))
                        .expression_attribute_values(":p", s(&prefix))
                        .consistent_read(true)
                },
                "Query(history archive)",
            )
            .await?;
        let mut out = Vec::new();
        for item in &items {
            let body = text(item, "body").ok_or_else(|| StoreError::Other("corrupt archive entry: no body".into()))?;
            out.push(ArchivedEntry { index: num(item, "idx").unwrap_or(0), entry: from_json(body)? });
        }
        out.sort_by_key(|e| e.index);
        Ok(out)
    }

    pub(super) async fn read_policy(&self) -> Result<Option<Policy>> {
        match self.get_item("POLICY").await? {
            Some(item) => Ok(Some(from_json(text(&item, "body").unwrap_or("{}"))?)),
            None => Ok(None),
        }
    }

    pub(super) async fn write_policy(&self, policy: &Policy, fence: Option<&Fence>) -> Result<()> {
        let mut item = HashMap::new();
        item.insert("pk".to_string(), s("POLICY"));
        item.insert("sk".to_string(), s(META));
        item.insert("body".to_string(), s(&to_json(policy)?));
        let put = Put::builder().table_name(&self.table).set_item(Some(item.clone())).build().map_err(build_err)?;
        match fence {
            None => {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .send()
                    .await
                    .map_err(|e| self.err("PutItem", e))?;
                Ok(())
            }
            Some(_) => match self.fenced_transact(fence, vec![TransactWriteItem::builder().put(put).build()]).await? {
                Ok(()) => Ok(()),
                Err(reasons) => {
                    Err(StoreError::Unavailable(format!("DynamoDB transaction cancelled: {}", reason_codes(&reasons))))
                }
            },
        }
    }
}
