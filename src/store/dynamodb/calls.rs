//! The calls every room makes: error mapping, consistent reads, conditional puts (plain or in a
//! fenced transaction), transactions, the fence check, removal with a tombstone, paged queries.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, KeysAndAttributes, Put,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::codec::*;
use super::*;
use crate::aws::{self, ErrorClass, SdkError};

impl DynamoStore {
    pub(super) fn err<E>(&self, op: &str, e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let what = aws::describe(&e);
        match aws::classify(&e) {
            ErrorClass::Transient => StoreError::Unavailable(format!("DynamoDB {op}: {what}")),
            ErrorClass::NotFound => StoreError::Other(format!(
                "DynamoDB table {:?} not found ({what}): create it with `sqlctl aws bootstrap`, or point SQLCTL_TABLE at an existing one",
                self.table
            )),
            ErrorClass::AccessDenied => {
                StoreError::Other(format!("DynamoDB {op} on table {:?} denied: {what}", self.table))
            }
            ErrorClass::Other => StoreError::Other(format!("DynamoDB {op} on table {:?}: {what}", self.table)),
        }
    }

    pub(super) async fn get_item(&self, pk: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(META))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err("GetItem", e))?;
        Ok(out.item().cloned())
    }

    /// The stored request (consistent read).
    pub(super) async fn load(&self, key: &ObjectKey) -> Result<Option<QueryRequest>> {
        self.get_item(&req_pk(key)).await?.map(|item| decode_request(&item)).transpose()
    }

    /// Writes `item` with `condition`, fenced when `fence` is given. Maps a failed condition on
    /// the item to `Err(Ok(old item))` so callers can tell a conflict from everything else, and a
    /// failed lease check to `Fenced`.
    pub(super) async fn conditional_put(
        &self,
        item: HashMap<String, AttributeValue>,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        fence: Option<&Fence>,
        extra: Vec<TransactWriteItem>,
    ) -> Result<std::result::Result<(), Option<HashMap<String, AttributeValue>>>> {
        if fence.is_none() && extra.is_empty() {
            let mut req = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
            for (k, v) in values {
                req = req.expression_attribute_values(k, v);
            }
            return match req.send().await {
                Ok(_) => Ok(Ok(())),
                Err(SdkError::ServiceError(se))
                    if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) =>
                {
                    let PutItemError::ConditionalCheckFailedException(c) = se.into_err() else { unreachable!() };
                    Ok(Err(c.item().cloned()))
                }
                Err(e) => Err(self.err("PutItem", e)),
            };
        }
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (k, v) in values {
            put = put.expression_attribute_values(k, v);
        }
        let put = put.build().map_err(build_err)?;
        let mut items = Vec::new();
        if let Some(f) = fence {
            items.push(self.fence_check(f)?);
        }
        let put_index = items.len();
        items.push(TransactWriteItem::builder().put(put).build());
        items.extend(extra);
        match self.transact(items).await? {
            Ok(()) => Ok(Ok(())),
            Err(reasons) => {
                if fence.is_some() {
                    self.check_fence_reason(reasons.first())?;
                }
                match reasons.get(put_index) {
                    Some(r) if r.code() == Some("ConditionalCheckFailed") => Ok(Err(r.item().cloned())),
                    _ => Err(StoreError::Unavailable(format!(
                        "DynamoDB transaction cancelled: {}",
                        reason_codes(&reasons)
                    ))),
                }
            }
        }
    }

    /// Runs a transaction. `Ok(Err(reasons))` when it was cancelled by a condition; transaction
    /// conflicts and throttling are `Unavailable`.
    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<std::result::Result<(), Vec<CancellationReason>>> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(Ok(())),
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), TransactWriteItemsError::TransactionCanceledException(_)) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(t) = se.into_err() else { unreachable!() };
                let reasons = t.cancellation_reasons().to_vec();
                let conditional = reasons.iter().any(|r| r.code() == Some("ConditionalCheckFailed"));
                if conditional {
                    Ok(Err(reasons))
                } else {
                    Err(StoreError::Unavailable(format!("DynamoDB transaction cancelled: {}", reason_codes(&reasons))))
                }
            }
            Err(e) => Err(self.err("TransactWriteItems", e)),
        }
    }

    /// The lease `ConditionCheck` every fenced write carries.
    pub(super) fn fence_check(&self, fence: &Fence) -> Result<TransactWriteItem> {
        if fence.holder.is_empty() {
            return Err(StoreError::Fenced { epoch: fence.epoch });
        }
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(&lease_pk(CONTROLLER_LEASE)))
            .key("sk", s(META))
            .condition_expression("holder = :fh AND epoch = :fe")
            .expression_attribute_values(":fh", s(&fence.holder))
            .expression_attribute_values(":fe", n(fence.epoch))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Err(Fenced) if the lease check (the first item) failed.
    pub(super) fn check_fence_reason(&self, reason: Option<&CancellationReason>) -> Result<()> {
        match reason {
            Some(r) if r.code() == Some("ConditionalCheckFailed") => {
                let epoch = r.item().and_then(|i| num(i, "epoch")).unwrap_or(0);
                Err(StoreError::Fenced { epoch })
            }
            _ => Ok(()),
        }
    }

    /// Runs a fenced transaction of `items` (the lease check is prepended).
    pub(super) async fn fenced_transact(
        &self,
        fence: Option<&Fence>,
        mut items: Vec<TransactWriteItem>,
    ) -> Result<std::result::Result<(), Vec<CancellationReason>>> {
        let fenced = fence.is_some();
        if let Some(f) = fence {
            items.insert(0, self.fence_check(f)?);
        }
        match self.transact(items).await? {
            Ok(()) => Ok(Ok(())),
            Err(mut reasons) => {
                if fenced {
                    self.check_fence_reason(reasons.first())?;
                    reasons.remove(0);
                }
                Ok(Err(reasons))
            }
        }
    }

    /// Removes the request at `rv` and leaves a tombstone, in one (fenced) transaction.
    pub(super) async fn remove(&self, key: &ObjectKey, rv: &str, fence: Option<&Fence>) -> Result<()> {
        let del = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(&req_pk(key)))
            .key("sk", s(META))
            .condition_expression("rv = :rv")
            .expression_attribute_values(":rv", s(rv))
            .build()
            .map_err(build_err)?;
        let now = now_ms();
        let mut tomb = HashMap::new();
        tomb.insert("pk".to_string(), s(&format!("TOMB#{}/{}", key.namespace, key.name)));
        tomb.insert("sk".to_string(), s(rv));
        tomb.insert("ck".to_string(), s(&key_str(key)));
        tomb.insert("rv".to_string(), s(&format!("del#{rv}")));
        change_attrs(&mut tomb, key, now);
        tomb.insert("ttl".to_string(), n(now / 1000 + TOMBSTONE_TTL.as_secs()));
        let put = Put::builder().table_name(&self.table).set_item(Some(tomb)).build().map_err(build_err)?;
        let items =
            vec![TransactWriteItem::builder().delete(del).build(), TransactWriteItem::builder().put(put).build()];
        match self.fenced_transact(fence, items).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::Conflict { key: key.clone(), expected: rv.to_string() }),
        }
    }

    /// Every page of one Query on the table: `build` adds the index, key condition and values
    /// to a query already aimed at the table.
    pub(super) async fn query_all(
        &self,
        build: impl Fn(QueryFluentBuilder) -> QueryFluentBuilder,
        op: &str,
    ) -> Result<(Vec<HashMap<String, AttributeValue>>, ReadStats)> {
        let mut out_items = Vec::new();
        let mut stats = ReadStats::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let query = build(self.client.query().table_name(&self.table));
            let out = query.set_exclusive_start_key(start.take()).send().await.map_err(|e| self.err(op, e))?;
            stats.pages += 1;
            stats.scanned += out.scanned_count().max(out.count()) as u64;
            out_items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok((out_items, stats))
    }

    /// Entries of the `list` index (key, phase, labels), in key order.
    pub(super) async fn list_index(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<(ObjectKey, String, BTreeMap<String, String>)>> {
        let ns_prefix = namespace.map(|ns| format!("{ns}/"));
        let (items, _) = self
            .query_all(
                |q| {
                    let q = q.index_name(INDEX_LIST).expression_attribute_values(":lp", s("REQ"));
                    match &ns_prefix {
                        Some(p) => q
                            .key_condition_expression("lp = :lp AND begins_with(lk, :ns)")
                            .expression_attribute_values(":ns", s(p)),
                        None => q.key_condition_expression("lp = :lp"),
                    }
                },
                "Query(list)",
            )
            .await?;
        let mut out = Vec::new();
        for item in items {
            let Some(key) = item.get("lk").and_then(|v| v.as_s().ok()).and_then(|k| parse_key_str(k)) else { continue };
            let phase = item.get("phase").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let labels: BTreeMap<String, String> = match item.get("lbl").and_then(|v| v.as_s().ok()) {
                Some(j) => from_json(j)?,
                None => BTreeMap::new(),
            };
            out.push((key, phase, labels));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Reads many requests by key (100 per `BatchGetItem`, unprocessed keys retried).
    pub(super) async fn batch_get(&self, keys: &[ObjectKey]) -> Result<HashMap<ObjectKey, QueryRequest>> {
        let pks: Vec<String> = keys.iter().map(req_pk).collect();
        let mut found = HashMap::new();
        for item in self.batch_get_items(&pks).await? {
            let r = decode_request(&item)?;
            found.insert(r.key(), r);
        }
        Ok(found)
    }

    /// Reads the `META` items of many partition keys (100 per `BatchGetItem`, unprocessed keys
    /// retried); items that do not exist are left out.
    pub(super) async fn batch_get_items(&self, pks: &[String]) -> Result<Vec<HashMap<String, AttributeValue>>> {
        let mut found = Vec::new();
        for chunk in pks.chunks(100) {
            let mut pending: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|pk| HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(META))]))
                .collect();
            let mut tries = 0u32;
            while !pending.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(build_err)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(|e| self.err("BatchGetItem", e))?;
                if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                    found.extend(items.iter().cloned());
                }
                if let Some(u) = out.unprocessed_keys().and_then(|u| u.get(&self.table)) {
                    pending = u.keys().to_vec();
                }
                if !pending.is_empty() {
                    tries += 1;
                    if tries > 8 {
                        return Err(StoreError::Unavailable(
                            "DynamoDB BatchGetItem kept returning unprocessed keys".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20 << tries.min(6))).await;
                }
            }
        }
        Ok(found)
    }
}
