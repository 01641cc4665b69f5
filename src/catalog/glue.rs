//! The AWS [`Catalog`]: databases and table schemas from the AWS Glue Data Catalog.
//!
//! * `GetTables` and `GetDatabases` are paginated (`NextToken`) to the end: a database with
//!   hundreds of tables is read whole, never just its first page.
//! * Columns, partition keys and comments map onto [`Table`] / [`Column`]; Glue comments reach
//!   the prompt, which is where a data owner's "amounts are in cents" earns its keep.
//! * Results are cached per database for a TTL (default 5 minutes): the generator asks for a
//!   schema on every generation attempt, Glue bills and throttles per call, and schemas change
//!   rarely. Errors are never cached.
//! * For scan estimates, [`Catalog::layout`] reads one table's storage (`GetTable`: location,
//!   format from the input format / SerDe / `classification`, partition keys) and
//!   [`Catalog::partitions`] its partitions (`GetPartitions` with Glue's filter expression,
//!   paginated to the end). Neither is cached here: the estimator caches what it uses.
//! * Errors are classified: `EntityNotFoundException` → [`CatalogError::DatabaseNotFound`],
//!   `AccessDeniedException` → [`CatalogError::AccessDenied`] (both permanent, so the request
//!   fails with a condition that says which), throttling / 5xx / network → transient.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_glue::Client;
use aws_sdk_glue::types::{Column as GlueColumn, DatabaseInput, SerDeInfo, StorageDescriptor, TableInput};

use super::{Catalog, CatalogError, Column, DataFormat, Partition, Table, TableLayout};
use crate::aws::{self, ErrorClass, SdkError};

/// How long a database's tables are served from memory.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// A [`Catalog`] over the Glue Data Catalog of one account (or `catalog_id`).
pub struct GlueCatalog {
    client: Client,
    catalog_id: Option<String>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Vec<Table>)>>,
}

impl GlueCatalog {
    pub fn new(client: Client, catalog_id: Option<String>) -> GlueCatalog {
        GlueCatalog { client, catalog_id, ttl: DEFAULT_CACHE_TTL, cache: Mutex::new(HashMap::new()) }
    }

    /// How long schemas are cached (zero disables the cache).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn cached(&self, database: &str) -> Option<Vec<Table>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(database).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, t)| t.clone())
    }
}

fn glue_error<E>(what: &str, e: SdkError<E, aws_sdk_glue::config::http::HttpResponse>) -> CatalogError
where
    E: aws_sdk_glue::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    table_error(what, "glue:GetTables and glue:GetDatabases", e)
}

fn column(c: &GlueColumn) -> Column {
    Column {
        name: c.name().to_string(),
        data_type: c.r#type().unwrap_or("unknown").to_string(),
        comment: c.comment().filter(|s| !s.trim().is_empty()).map(str::to_string),
        sample_values: vec![],
    }
}

/// Maps one Glue table onto the catalog type.
pub fn table_from_glue(t: &aws_sdk_glue::types::Table) -> Table {
    let sd = t.storage_descriptor();
    Table {
        name: t.name().to_string(),
        columns: sd.map(|sd| sd.columns().iter().map(column).collect()).unwrap_or_default(),
        partition_keys: t.partition_keys().iter().map(column).collect(),
        comment: t.description().filter(|s| !s.trim().is_empty()).map(str::to_string),
        location: sd.and_then(|sd| sd.location()).unwrap_or_default().to_string(),
    }
}

/// The file format of a Glue table, from its input format, SerDe and `classification`
/// parameter (crawlers set the last; hand-made DDL often only the first two).
pub fn data_format(t: &aws_sdk_glue::types::Table) -> DataFormat {
    let sd = t.storage_descriptor();
    let mut hints: Vec<String> = Vec::new();
    if let Some(c) = t.parameters().and_then(|p| p.get("classification")) {
        hints.push(c.clone());
    }
    if let Some(sd) = sd {
        hints.extend(sd.input_format().map(str::to_string));
        hints.extend(sd.serde_info().and_then(|s| s.serialization_library()).map(str::to_string));
        if let Some(c) = sd.parameters().and_then(|p| p.get("classification")) {
            hints.push(c.clone());
        }
    }
    let hints = hints.join(" ").to_ascii_lowercase();
    if hints.contains("parquet") {
        DataFormat::Parquet
    } else if hints.contains("orc") {
        DataFormat::Orc
    } else if hints.contains("avro") {
        DataFormat::Avro
    } else if ["csv", "json", "textinputformat", "lazysimpleserde", "tsv", "regexserde", "grok"]
        .iter()
        .any(|h| hints.contains(h))
    {
        DataFormat::Text
    } else {
        DataFormat::Unknown
    }
}

/// Maps a Glue error of a table-level call (`GetTable`, `GetPartitions`) onto the catalog error,
/// naming the permission the controller's role needs.
fn table_error<E>(
    what: &str,
    permission: &str,
    e: SdkError<E, aws_sdk_glue::config::http::HttpResponse>,
) -> CatalogError
where
    E: aws_sdk_glue::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let msg = aws::describe(&e);
    match aws::classify(&e) {
        ErrorClass::Transient => CatalogError::Transient(format!("Glue {what}: {msg}")),
        ErrorClass::AccessDenied => CatalogError::AccessDenied(format!(
            "Glue {what}: {msg}; the controller's role needs {permission} on this catalog"
        )),
        ErrorClass::NotFound => CatalogError::DatabaseNotFound(format!("{what}: not in the Glue Data Catalog ({msg})")),
        ErrorClass::Other => CatalogError::Other(format!("Glue {what}: {msg}")),
    }
}

#[async_trait]
impl Catalog for GlueCatalog {
    async fn list_databases(&self) -> Result<Vec<String>, CatalogError> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_databases()
                .set_catalog_id(self.catalog_id.clone())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| glue_error("GetDatabases", e))?;
            names.extend(out.database_list().iter().map(|d| d.name().to_string()));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        names.sort();
        Ok(names)
    }

    async fn tables(&self, database: &str) -> Result<Vec<Table>, CatalogError> {
        if let Some(t) = self.cached(database) {
            return Ok(t);
        }
        let mut tables = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_tables()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(database)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| match glue_error(&format!("database {database:?}"), e) {
                    CatalogError::DatabaseNotFound(m) => CatalogError::DatabaseNotFound(format!(
                        "{m}; check spec.catalog.database, SQLCTL_GLUE_CATALOG_ID and the region, or register it with `sqlctl aws bootstrap --register-local {database}`"
                    )),
                    other => other,
                })?;
            tables.extend(out.table_list().iter().map(table_from_glue));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        if !self.ttl.is_zero() {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(database.to_string(), (Instant::now(), tables.clone()));
        }
        Ok(tables)
    }

    async fn layout(&self, database: &str, table: &str) -> Result<Option<TableLayout>, CatalogError> {
        let out = self
            .client
            .get_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(database)
            .name(table)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if aws::classify(&e) == ErrorClass::NotFound => return Ok(None),
            Err(e) => return Err(table_error(&format!("GetTable {database}.{table}"), "glue:GetTable", e)),
        };
        let Some(t) = out.table() else { return Ok(None) };
        let base = table_from_glue(t);
        Ok(Some(TableLayout {
            name: base.name,
            location: base.location,
            format: data_format(t),
            columns: base.columns,
            partition_keys: base.partition_keys,
        }))
    }

    async fn partitions(
        &self,
        database: &str,
        table: &str,
        expression: Option<&str>,
    ) -> Result<Vec<Partition>, CatalogError> {
        let mut partitions = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_partitions()
                .set_catalog_id(self.catalog_id.clone())
                .database_name(database)
                .table_name(table)
                .set_expression(expression.map(str::to_string))
                .exclude_column_schema(true)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| table_error(&format!("GetPartitions {database}.{table}"), "glue:GetPartitions", e))?;
            partitions.extend(out.partitions().iter().map(|p| Partition {
                values: p.values().to_vec(),
                location: p.storage_descriptor().and_then(|sd| sd.location()).unwrap_or_default().to_string(),
            }));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(partitions)
    }
}

/// Glue/Athena (Hive DDL) type for a type name the local catalog renders.
pub fn hive_type(local: &str) -> String {
    let t = local.trim().to_ascii_lowercase();
    match t.as_str() {
        "varchar" | "text" | "utf8" | "string" | "largeutf8" | "char" => "string".into(),
        "integer" | "int" | "int32" => "int".into(),
        "bigint" | "int64" | "long" => "bigint".into(),
        "smallint" | "int16" => "smallint".into(),
        "tinyint" | "int8" => "tinyint".into(),
        "real" | "float" | "float32" => "float".into(),
        "double" | "float64" => "double".into(),
        "bool" | "boolean" => "boolean".into(),
        _ if t.starts_with("decimal") => t.replace(' ', ""),
        _ if t.starts_with("timestamp") => "timestamp".into(),
        _ if t.starts_with("varchar") || t.starts_with("char") => "string".into(),
        _ => t,
    }
}

/// Creates (or replaces) `database` and its `tables` in Glue as external Parquet tables under
/// `location_prefix/<table>/` — what `sqlctl aws bootstrap --register-local` does for a local
/// warehouse copied to S3. Returns the number of tables written.
pub async fn register_tables(
    client: &Client,
    catalog_id: Option<&str>,
    database: &str,
    tables: &[Table],
    location_prefix: &str,
) -> anyhow::Result<usize> {
    let db = DatabaseInput::builder()
        .name(database)
        .description("registered by sqlctl aws bootstrap --register-local")
        .build()?;
    match client.create_database().set_catalog_id(catalog_id.map(str::to_string)).database_input(db).send().await {
        Ok(_) => {}
        Err(e) if aws_sdk_glue::error::ProvideErrorMetadata::code(&e) == Some("AlreadyExistsException") => {}
        Err(e) => anyhow::bail!("Glue CreateDatabase {database}: {}", aws::describe(&e)),
    }
    for t in tables {
        let mut sd = StorageDescriptor::builder()
            .location(format!("{}/{}/", location_prefix.trim_end_matches('/'), t.name))
            .input_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
            .output_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
            .serde_info(
                SerDeInfo::builder()
                    .serialization_library("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
                    .build(),
            );
        for c in &t.columns {
            let mut col = GlueColumn::builder().name(&c.name).r#type(hive_type(&c.data_type));
            if let Some(comment) = &c.comment {
                col = col.comment(comment);
            }
            sd = sd.columns(col.build()?);
        }
        let mut input = TableInput::builder()
            .name(&t.name)
            .table_type("EXTERNAL_TABLE")
            .storage_descriptor(sd.build())
            .parameters("classification", "parquet");
        if let Some(c) = &t.comment {
            input = input.description(c);
        }
        let input = input.build()?;
        let created = client
            .create_table()
            .set_catalog_id(catalog_id.map(str::to_string))
            .database_name(database)
            .table_input(input.clone())
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if aws_sdk_glue::error::ProvideErrorMetadata::code(&e) == Some("AlreadyExistsException") => {
                client
                    .update_table()
                    .set_catalog_id(catalog_id.map(str::to_string))
                    .database_name(database)
                    .table_input(input)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("Glue UpdateTable {database}.{}: {}", t.name, aws::describe(&e)))?;
            }
            Err(e) => anyhow::bail!("Glue CreateTable {database}.{}: {}", t.name, aws::describe(&e)),
        }
    }
    Ok(tables.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::testing::{config_for, moto_url, unique};

    #[test]
    fn local_type_names_map_to_hive_types() {
        assert_eq!(hive_type("VARCHAR"), "string");
        assert_eq!(hive_type("BIGINT"), "bigint");
        assert_eq!(hive_type("DECIMAL(15, 2)"), "decimal(15,2)");
        assert_eq!(hive_type("DATE"), "date");
        assert_eq!(hive_type("TIMESTAMP(us)"), "timestamp");
        assert_eq!(hive_type("INT"), "int");
    }

    #[tokio::test]
    async fn registered_tables_read_back_with_columns_partitions_and_comments() {
        let Some(url) = moto_url() else { return };
        let conf = config_for(&url).await;
        let client = aws::glue(&conf);
        let db = unique("db").replace('-', "_");
        let tables = vec![
            Table {
                name: "orders".into(),
                columns: vec![
                    Column {
                        name: "o_orderkey".into(),
                        data_type: "BIGINT".into(),
                        comment: Some("primary key".into()),
                        sample_values: vec![],
                    },
                    Column {
                        name: "o_totalprice".into(),
                        data_type: "DECIMAL(15,2)".into(),
                        comment: Some("in dollars".into()),
                        sample_values: vec![],
                    },
                ],
                partition_keys: vec![],
                comment: Some("one row per order".into()),
                location: String::new(),
            },
            Table {
                name: "nation".into(),
                columns: vec![Column { name: "n_name".into(), data_type: "VARCHAR".into(), ..Default::default() }],
                ..Default::default()
            },
        ];
        assert_eq!(register_tables(&client, None, &db, &tables, "s3://bucket/warehouse/tpch").await.unwrap(), 2);
        // Registering again replaces, not fails.
        register_tables(&client, None, &db, &tables, "s3://bucket/warehouse/tpch").await.unwrap();

        let cat = GlueCatalog::new(client.clone(), None);
        assert!(cat.list_databases().await.unwrap().contains(&db));
        let got = cat.tables(&db).await.unwrap();
        assert_eq!(got.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["nation", "orders"]);
        let orders = &got[1];
        assert_eq!(orders.comment.as_deref(), Some("one row per order"));
        assert_eq!(orders.location, "s3://bucket/warehouse/tpch/orders/");
        assert_eq!(orders.columns[1].data_type, "decimal(15,2)");
        assert_eq!(orders.columns[1].comment.as_deref(), Some("in dollars"));

        let e = cat.tables("no_such_db").await.unwrap_err();
        assert!(matches!(e, CatalogError::DatabaseNotFound(_)), "{e:?}");
        assert!(e.to_string().contains("--register-local"), "{e}");
        assert!(!e.is_transient());
    }
}
