//! The leader lease item: conditional takeover, one-call renewal, release. Every fenced write
//! elsewhere carries a `ConditionCheck` on this item (see `calls`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::Utc;

use super::codec::*;
use super::*;
use crate::aws::SdkError;

impl DynamoStore {
    pub(super) async fn read_lease(&self, name: &str) -> Result<Option<Lease>> {
        Ok(self.get_item(&lease_pk(name)).await?.map(|i| decode_lease(&i)))
    }

    /// Writes `lease` conditioned on `condition`; false when the condition failed.
    async fn put_lease(
        &self,
        name: &str,
        lease: &Lease,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<std::result::Result<(), Option<Lease>>> {
        let mut item = HashMap::new();
        item.insert("pk".to_string(), s(&lease_pk(name)));
        item.insert("sk".to_string(), s(META));
        item.insert("holder".to_string(), s(&lease.holder));
        item.insert("epoch".to_string(), n(lease.epoch));
        item.insert("renewals".to_string(), n(lease.renewals));
        item.insert("duration_ms".to_string(), n(lease.duration_ms));
        item.insert("renewed_at_ms".to_string(), AttributeValue::N(lease.renewed_at_ms.to_string()));
        if !lease.build.is_empty() {
            item.insert("build".to_string(), s(&lease.build));
        }
        match self.conditional_put(item, condition, values, None, vec![]).await? {
            Ok(()) => Ok(Ok(())),
            Err(old) => Ok(Err(old.map(|i| decode_lease(&i)))),
        }
    }

    /// The lease if `fence` still holds it; Fenced otherwise.
    pub(super) async fn held_lease(&self, name: &str, fence: &Fence) -> Result<Lease> {
        match self.read_lease(name).await? {
            Some(l) if !l.holder.is_empty() && l.holder == fence.holder && l.epoch == fence.epoch => Ok(l),
            Some(l) => Err(StoreError::Fenced { epoch: l.epoch }),
            None => Err(StoreError::Fenced { epoch: 0 }),
        }
    }

    /// Writes `lease` if it is still exactly `current` (holder, epoch, renewals).
    async fn replace_lease(
        &self,
        name: &str,
        current: &Lease,
        lease: &Lease,
    ) -> Result<std::result::Result<(), Option<Lease>>> {
        self.put_lease(
            name,
            lease,
            "holder = :ch AND epoch = :ce AND renewals = :cr",
            vec![(":ch", s(&current.holder)), (":ce", n(current.epoch)), (":cr", n(current.renewals))],
        )
        .await
    }

    pub(super) async fn acquire_lease(&self, claim: LeaseClaim<'_>, observed: Option<&Lease>) -> Result<Option<Lease>> {
        claim.check()?;
        let name = claim.name;
        let current = self.read_lease(name).await?;
        let Some(epoch) = LeaseClaim::next_epoch(current.as_ref(), observed) else {
            return Ok(None);
        };
        let lease = claim.lease(epoch, Utc::now().timestamp_millis());
        // The write succeeds only if nobody moved the lease since we read it.
        let written = match &current {
            None => self.put_lease(name, &lease, "attribute_not_exists(pk)", vec![]).await?,
            Some(c) => self.replace_lease(name, c, &lease).await?,
        };
        Ok(written.ok().map(|()| lease))
    }

    pub(super) async fn renew(&self, name: &str, fence: &Fence) -> Result<Lease> {
        // One conditional UpdateItem: renewals happen every retry period for as long as the
        // controller runs, so they should cost one call, not a read and a write.
        if fence.holder.is_empty() {
            return Err(StoreError::Fenced { epoch: fence.epoch });
        }
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&lease_pk(name)))
            .key("sk", s(META))
            .update_expression("SET renewals = renewals + :one, renewed_at_ms = :now")
            .condition_expression("holder = :h AND epoch = :e")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", AttributeValue::N(Utc::now().timestamp_millis().to_string()))
            .expression_attribute_values(":h", s(&fence.holder))
            .expression_attribute_values(":e", n(fence.epoch))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(o) => Ok(decode_lease(o.attributes().unwrap_or(&HashMap::new()))),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                let aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) =
                    se.into_err()
                else {
                    unreachable!()
                };
                Err(StoreError::Fenced { epoch: c.item().and_then(|i| num(i, "epoch")).unwrap_or(0) })
            }
            Err(e) => Err(self.err("UpdateItem", e)),
        }
    }

    pub(super) async fn release(&self, name: &str, fence: &Fence) -> Result<()> {
        let current = self.held_lease(name, fence).await?;
        let mut lease = current.clone();
        lease.holder.clear();
        lease.renewed_at_ms = Utc::now().timestamp_millis();
        match self.replace_lease(name, &current, &lease).await? {
            Ok(()) => Ok(()),
            Err(now) => Err(StoreError::Fenced { epoch: now.map(|l| l.epoch).unwrap_or(0) }),
        }
    }
}
