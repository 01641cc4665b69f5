//! `sqlctl aws bootstrap`: the table, its three indexes and TTL.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};

use super::*;
use crate::aws::{self, ErrorClass};

impl DynamoStore {
    /// Creates the table with its indexes and TTL if it does not exist, and waits until it is
    /// active. Returns false when it existed already. Billing is on demand: no capacity to plan.
    pub async fn create_table(client: &Client, table: &str) -> anyhow::Result<bool> {
        match client.describe_table().table_name(table).send().await {
            Ok(_) => return Ok(false),
            Err(e) if aws::classify(&e) == ErrorClass::NotFound => {}
            Err(e) => anyhow::bail!("DynamoDB DescribeTable {table}: {}", aws::describe(&e)),
        }
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(t).build()
        };
        let key = |name: &str, t: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(t).build();
        let gsi =
            |name: &str, hash: &str, range: &str, projection: Projection| -> anyhow::Result<GlobalSecondaryIndex> {
                Ok(GlobalSecondaryIndex::builder()
                    .index_name(name)
                    .key_schema(key(hash, KeyType::Hash)?)
                    .key_schema(key(range, KeyType::Range)?)
                    .projection(projection)
                    .build()?)
            };
        let keys_only = Projection::builder().projection_type(ProjectionType::KeysOnly).build();
        let include = |attrs: &[&str]| {
            let mut p = Projection::builder().projection_type(ProjectionType::Include);
            for a in attrs {
                p = p.non_key_attributes(*a);
            }
            p.build()
        };
        let created = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
            .attribute_definitions(attr("act", ScalarAttributeType::S)?)
            .attribute_definitions(attr("ak", ScalarAttributeType::S)?)
            .attribute_definitions(attr("lp", ScalarAttributeType::S)?)
            .attribute_definitions(attr("lk", ScalarAttributeType::S)?)
            .attribute_definitions(attr("cp", ScalarAttributeType::S)?)
            .attribute_definitions(attr("mt", ScalarAttributeType::N)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(gsi(INDEX_ACTIVE, "act", "ak", keys_only)?)
            .global_secondary_indexes(gsi(INDEX_LIST, "lp", "lk", include(&["phase", "lbl"]))?)
            .global_secondary_indexes(gsi(INDEX_CHANGES, "cp", "mt", include(&["rv", "ck"]))?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => return Ok(false),
            Err(e) => anyhow::bail!("DynamoDB CreateTable {table}: {}", aws::describe(&e)),
        }
        for _ in 0..120 {
            let d = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("DynamoDB DescribeTable {table}: {}", aws::describe(&e)))?;
            if d.table().and_then(|t| t.table_status()).map(|s| s.as_str() == "ACTIVE").unwrap_or(false) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(TimeToLiveSpecification::builder().attribute_name("ttl").enabled(true).build()?)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("DynamoDB UpdateTimeToLive {table}: {}", aws::describe(&e)))?;
        Ok(true)
    }
}
