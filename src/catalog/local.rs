//! The local catalog: databases and tables of the embedded warehouse directory.
//!
//! Databases are sub-directories of `data_dir`; tables are `<db>/<table>.parquet`,
//! `<db>/<table>.csv` (with a header row) or a directory `<db>/<table>/` of Parquet files (see
//! [`crate::warehouse`], which both this catalog and the local engine build on, so the schema a
//! prompt shows is the schema the engine plans against).
//!
//! Column types come from DataFusion's own schema inference (Parquet footers, CSV sampling)
//! and are rendered as SQL-ish names (`BIGINT`, `DECIMAL(15,2)`, `DATE`, `VARCHAR`). Inference
//! reads files, so schemas are cached per table path and a fingerprint of its files (size and
//! mtime of each): repeated calls only `stat` the files.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, TimeUnit};

use super::{Catalog, CatalogError, Column, Table};
use crate::warehouse::{self, LocalTable, WarehouseError};

/// A [`Catalog`] over a local directory of Parquet and CSV files.
pub struct LocalCatalog {
    data_dir: PathBuf,
    /// Columns per table path, with the fingerprint of the files they were inferred from.
    cache: Mutex<HashMap<PathBuf, (u64, Vec<Column>)>>,
    /// Which sample values to read for prompts (see [`SampleOptions`]).
    samples: SampleOptions,
}

impl LocalCatalog {
    /// A catalog over `data_dir` (created by `sqlctl init`). Nothing is read until asked.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LocalCatalog { data_dir: data_dir.into(), cache: Mutex::new(HashMap::new()), samples: SampleOptions::default() }
    }

    /// Whether to read sample values of low-cardinality text columns (`--no-sample-values`
    /// turns them off: they go into prompts and may be personal data). On by default.
    #[must_use]
    pub fn with_sample_values(mut self, enabled: bool) -> Self {
        self.samples.enabled = enabled;
        self
    }

    /// Replaces the deny-list: columns whose lower-cased name contains any of `patterns` never
    /// have sample values read.
    #[must_use]
    pub fn with_sample_deny_list(mut self, patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.samples.deny = patterns.into_iter().map(|p| p.into().to_ascii_lowercase()).collect();
        self
    }

    /// Cached columns of `table` when its files have not changed since.
    fn cached(&self, table: &LocalTable, fingerprint: u64) -> Option<Vec<Column>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&table.path).filter(|(f, _)| *f == fingerprint).map(|(_, cols)| cols.clone())
    }

    fn remember(&self, table: &LocalTable, fingerprint: u64, columns: &[Column]) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(table.path.clone(), (fingerprint, columns.to_vec()));
    }
}

/// Identifies the version of a table's files: any rewrite, addition or removal changes it.
fn fingerprint(table: &LocalTable) -> Result<u64, WarehouseError> {
    let mut h = DefaultHasher::new();
    table.format.hash(&mut h);
    table.data_files()?.hash(&mut h);
    Ok(h.finish())
}

fn catalog_error(e: WarehouseError) -> CatalogError {
    match e {
        // The variant prints `database {name:?} not found`; the payload carries the hint.
        WarehouseError::DatabaseNotFound { database, path } => CatalogError::DatabaseNotFound(format!(
            "{database}: no directory {}; run `sqlctl init` or check --data-dir",
            path.display()
        )),
        WarehouseError::InvalidName { name, .. } => {
            CatalogError::DatabaseNotFound(format!("{name}: not a valid database name ([a-z_][a-z0-9_]*)"))
        }
        // A file that vanished or is being replaced: worth a retry.
        e @ WarehouseError::Io { .. } => CatalogError::Transient(e.to_string()),
        other => CatalogError::Other(other.to_string()),
    }
}

#[async_trait]
impl Catalog for LocalCatalog {
    async fn list_databases(&self) -> Result<Vec<String>, CatalogError> {
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || warehouse::list_databases(&data_dir))
            .await
            .map_err(|e| CatalogError::Other(format!("listing databases: {e}")))?
            .map_err(catalog_error)
    }

    async fn tables(&self, database: &str) -> Result<Vec<Table>, CatalogError> {
        let (data_dir, db) = (self.data_dir.clone(), database.to_string());
        let found = tokio::task::spawn_blocking(move || -> Result<_, WarehouseError> {
            let tables = warehouse::discover_tables(&data_dir, &db)?;
            tables.into_iter().map(|t| fingerprint(&t).map(|f| (t, f))).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| CatalogError::Other(format!("listing tables: {e}")))?
        .map_err(catalog_error)?;

        // Infer schemas only for tables not cached at their current fingerprint, in one session.
        let mut session = None;
        let mut out = Vec::with_capacity(found.len());
        for (table, fp) in found {
            let columns = match self.cached(&table, fp) {
                Some(columns) => columns,
                None => {
                    let ctx = session.get_or_insert_with(|| warehouse::session_context(database));
                    warehouse::register_table(ctx, &table).await.map_err(catalog_error)?;
                    let provider = ctx
                        .table_provider(table.name.as_str())
                        .await
                        .map_err(|e| CatalogError::Other(format!("reading schema of {}: {e}", table.name)))?;
                    let mut columns: Vec<Column> = provider
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| Column {
                            name: f.name().clone(),
                            data_type: sql_type(f.data_type()),
                            ..Column::default()
                        })
                        .collect();
                    if self.samples.enabled {
                        fill_samples(ctx, &table.name, &mut columns, &self.samples).await;
                    }
                    self.remember(&table, fp, &columns);
                    columns
                }
            };
            out.push(Table {
                name: table.name,
                columns,
                location: table.path.display().to_string(),
                ..Table::default()
            });
        }
        Ok(out)
    }
}

/// Sample values: a few distinct values of low-cardinality text columns, so that a prompt (and
/// the offline generator) can map "in the BUILDING segment" or "in ASIA" to a column and a
/// literal. Read once per table version (cached with the schema) from the first rows only.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    pub enabled: bool,
    /// Lower-case substrings of column names that are never sampled (personal or secret data).
    pub deny: Vec<String>,
}

/// Column-name fragments never sampled by default: contact details, identifiers, secrets.
/// Not `name`: `n_name`/`r_name`-style category names are the most useful samples there are,
/// and personal names are high-cardinality, so the distinct-value cap skips them anyway.
pub const DEFAULT_SAMPLE_DENY_LIST: &[&str] = &[
    "email",
    "e_mail",
    "phone",
    "mobile",
    "fax",
    "ssn",
    "social_security",
    "address",
    "addr",
    "passw",
    "secret",
    "token",
    "iban",
    "card",
    "birth",
    "dob",
    "salary",
    "surname",
    "first_name",
    "last_name",
    "firstname",
    "lastname",
    "ip_address",
    "passport",
    "license",
    "licence",
    "tax_id",
];

/// Rows read per table to find sample values.
pub const SAMPLE_ROWS: usize = 10_000;
/// A column with more distinct values than this in those rows is not a category: no samples.
pub const MAX_DISTINCT_FOR_SAMPLES: usize = 50;
/// A column with at most this many distinct values is listed in full (an enumeration the model
/// and the offline generator can filter on reliably); others get the most frequent few.
pub const MAX_COMPLETE_SAMPLES: usize = 25;
/// Sample values kept for columns with more distinct values than [`MAX_COMPLETE_SAMPLES`].
pub const MAX_PARTIAL_SAMPLES: usize = 8;
/// Values longer than this are prose, not categories: the column gets no samples.
const MAX_SAMPLE_LEN: usize = 64;

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions { enabled: true, deny: DEFAULT_SAMPLE_DENY_LIST.iter().map(|s| s.to_string()).collect() }
    }
}

impl SampleOptions {
    /// Whether `column` may be sampled under the deny-list.
    pub fn allows(&self, column: &str) -> bool {
        let lower = column.to_ascii_lowercase();
        !self.deny.iter().any(|d| lower.contains(d.as_str()))
    }
}

/// Fills `sample_values` of the text columns of `table` (registered in `ctx`) that have few
/// distinct values in the first [`SAMPLE_ROWS`] rows. Best effort: samples are an aid, so a
/// read error leaves the columns without them.
async fn fill_samples(
    ctx: &datafusion::prelude::SessionContext,
    table: &str,
    columns: &mut [Column],
    opts: &SampleOptions,
) {
    use datafusion::arrow::array::{Array, AsArray};
    let wanted: Vec<usize> =
        (0..columns.len()).filter(|&i| columns[i].data_type == "VARCHAR" && opts.allows(&columns[i].name)).collect();
    if wanted.is_empty() {
        return;
    }
    let names: Vec<&str> = wanted.iter().map(|&i| columns[i].name.as_str()).collect();
    let batches = match ctx.table(table).await {
        Ok(df) => match df.select_columns(&names).and_then(|df| df.limit(0, Some(SAMPLE_ROWS))) {
            Ok(df) => df.collect().await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(table, error = %e, "sample values not read");
            return;
        }
    };
    let mut counts: Vec<Option<HashMap<String, usize>>> = vec![Some(HashMap::new()); wanted.len()];
    for batch in &batches {
        for (k, array) in batch.columns().iter().enumerate() {
            let Some(map) = counts[k].as_mut() else { continue };
            let Ok(strings) = datafusion::arrow::compute::cast(array, &DataType::Utf8) else {
                counts[k] = None;
                continue;
            };
            let strings = strings.as_string::<i32>();
            let mut keep = true;
            for i in 0..strings.len() {
                if strings.is_null(i) {
                    continue;
                }
                let v = strings.value(i);
                if v.len() > MAX_SAMPLE_LEN {
                    keep = false;
                    break;
                }
                match map.get_mut(v) {
                    Some(n) => *n += 1,
                    None => {
                        map.insert(v.to_string(), 1);
                    }
                }
                if map.len() > MAX_DISTINCT_FOR_SAMPLES {
                    keep = false;
                    break;
                }
            }
            if !keep {
                counts[k] = None;
            }
        }
    }
    for (&i, map) in wanted.iter().zip(counts) {
        let Some(map) = map.filter(|m| !m.is_empty()) else { continue };
        let mut values: Vec<(String, usize)> = map.into_iter().collect();
        if values.len() <= MAX_COMPLETE_SAMPLES {
            values.sort_by(|a, b| a.0.cmp(&b.0));
        } else {
            values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            values.truncate(MAX_PARTIAL_SAMPLES);
        }
        columns[i].sample_values = values.into_iter().map(|v| v.0).collect();
    }
}

/// A SQL-ish name for an Arrow type, as a prompt (and a person) reads it.
pub fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Null => "NULL".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 | DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            "VARBINARY".into()
        }
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(unit, tz) => {
            let precision = match unit {
                TimeUnit::Second => "(0)",
                TimeUnit::Millisecond => "(3)",
                TimeUnit::Microsecond => "",
                TimeUnit::Nanosecond => "(9)",
            };
            if tz.is_some() { format!("TIMESTAMP{precision} WITH TIME ZONE") } else { format!("TIMESTAMP{precision}") }
        }
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::Duration(_) => "INTERVAL".into(),
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::LargeListView(f) => {
            format!("ARRAY<{}>", sql_type(f.data_type()))
        }
        DataType::FixedSizeList(f, _) => format!("ARRAY<{}>", sql_type(f.data_type())),
        DataType::Struct(fields) => format!(
            "STRUCT<{}>",
            fields.iter().map(|f| format!("{} {}", f.name(), sql_type(f.data_type()))).collect::<Vec<_>>().join(", ")
        ),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!("MAP<{}, {}>", sql_type(kv[0].data_type()), sql_type(kv[1].data_type()))
            }
            _ => "MAP".into(),
        },
        DataType::Dictionary(_, value) => sql_type(value),
        DataType::RunEndEncoded(_, values) => sql_type(values.data_type()),
        other => other.to_string().to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::datatypes::Field;

    fn warehouse() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        warehouse::init_tpch(dir.path(), "tpch", 0.001, &mut |_, _| {}).unwrap();
        dir
    }

    #[tokio::test]
    async fn lists_databases_and_tpch_tables_with_sql_types() {
        let dir = warehouse();
        std::fs::create_dir_all(dir.path().join("Not-A-Db")).unwrap();
        let catalog = LocalCatalog::new(dir.path());
        assert_eq!(catalog.list_databases().await.unwrap(), vec!["tpch"]);

        let tables = catalog.tables("tpch").await.unwrap();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"]);
        let orders = tables.iter().find(|t| t.name == "orders").unwrap();
        let col = |n: &str| orders.columns.iter().find(|c| c.name == n).unwrap().data_type.clone();
        assert_eq!(col("o_orderkey"), "BIGINT");
        assert_eq!(col("o_totalprice"), "DECIMAL(15,2)");
        assert_eq!(col("o_orderdate"), "DATE");
        assert_eq!(col("o_orderstatus"), "VARCHAR");
        assert_eq!(col("o_shippriority"), "INT");
        assert_eq!(orders.columns.len(), 9);
        assert!(orders.location.ends_with("orders.parquet"));
    }

    #[tokio::test]
    async fn csv_tables_and_parquet_directories_are_tables_too() {
        let dir = warehouse();
        let db = dir.path().join("tpch");
        std::fs::write(db.join("events.csv"), "id,name,amount,day\n1,a,1.5,2024-01-02\n2,b,2.25,2024-01-03\n").unwrap();
        std::fs::create_dir_all(db.join("regions_split")).unwrap();
        std::fs::copy(db.join("region.parquet"), db.join("regions_split").join("part-0.parquet")).unwrap();
        std::fs::copy(db.join("region.parquet"), db.join("regions_split").join("part-1.parquet")).unwrap();
        std::fs::write(db.join("BadName.csv"), "a\n1\n").unwrap();

        let catalog = LocalCatalog::new(dir.path());
        let tables = catalog.tables("tpch").await.unwrap();
        assert!(!tables.iter().any(|t| t.name.eq_ignore_ascii_case("badname")));
        let events = tables.iter().find(|t| t.name == "events").unwrap();
        let types: Vec<(&str, &str)> = events.columns.iter().map(|c| (c.name.as_str(), c.data_type.as_str())).collect();
        assert_eq!(types, [("id", "BIGINT"), ("name", "VARCHAR"), ("amount", "DOUBLE"), ("day", "DATE")]);
        let split = tables.iter().find(|t| t.name == "regions_split").unwrap();
        assert_eq!(
            split.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["r_regionkey", "r_name", "r_comment"]
        );
    }

    #[tokio::test]
    async fn schemas_are_cached_until_the_file_changes() {
        let dir = warehouse();
        let db = dir.path().join("tpch");
        std::fs::write(db.join("t.csv"), "a\n1\n").unwrap();
        let catalog = LocalCatalog::new(dir.path());
        let first = catalog.tables("tpch").await.unwrap();
        assert_eq!(catalog.cache.lock().unwrap().len(), 9);
        let t = |tables: &[Table]| tables.iter().find(|t| t.name == "t").unwrap().columns.clone();
        assert_eq!(t(&first)[0].name, "a");

        // Same files: served from the cache (poison the cached entry to prove it is used).
        let key = db.join("t.csv");
        catalog.cache.lock().unwrap().get_mut(&std::path::absolute(&key).unwrap()).unwrap().1[0].comment =
            Some("cached".into());
        assert_eq!(t(&catalog.tables("tpch").await.unwrap())[0].comment.as_deref(), Some("cached"));

        // Rewritten file (different size): inferred again.
        std::fs::write(db.join("t.csv"), "b,c\n1,x\n").unwrap();
        let cols = t(&catalog.tables("tpch").await.unwrap());
        assert_eq!(cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(cols[0].comment, None);
    }

    #[tokio::test]
    async fn a_missing_database_says_how_to_fix_it() {
        let dir = warehouse();
        let catalog = LocalCatalog::new(dir.path());
        let err = catalog.tables("sales").await.unwrap_err();
        assert!(matches!(err, CatalogError::DatabaseNotFound(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("sqlctl init") && msg.contains("--data-dir"), "{msg}");
        assert!(matches!(catalog.tables("../tpch").await, Err(CatalogError::DatabaseNotFound(_))));
        let missing = LocalCatalog::new(dir.path().join("nope"));
        assert!(missing.list_databases().await.unwrap_err().to_string().contains("sqlctl init"));
    }

    #[test]
    fn arrow_types_render_as_sql_types() {
        use datafusion::arrow::datatypes::Fields;
        assert_eq!(sql_type(&DataType::Decimal128(15, 2)), "DECIMAL(15,2)");
        assert_eq!(sql_type(&DataType::Utf8View), "VARCHAR");
        assert_eq!(sql_type(&DataType::Timestamp(TimeUnit::Microsecond, None)), "TIMESTAMP");
        assert_eq!(
            sql_type(&DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))),
            "TIMESTAMP(9) WITH TIME ZONE"
        );
        assert_eq!(sql_type(&DataType::List(Arc::new(Field::new("item", DataType::Int32, true)))), "ARRAY<INT>");
        let s = DataType::Struct(Fields::from(vec![Field::new("a", DataType::Boolean, true)]));
        assert_eq!(sql_type(&s), "STRUCT<a BOOLEAN>");
        assert_eq!(sql_type(&DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))), "VARCHAR");
    }

    #[tokio::test]
    async fn low_cardinality_text_columns_carry_sample_values() {
        let dir = warehouse();
        let catalog = LocalCatalog::new(dir.path());
        let tables = catalog.tables("tpch").await.unwrap();
        let col = |t: &str, c: &str| -> Vec<String> {
            tables
                .iter()
                .find(|x| x.name == t)
                .unwrap()
                .columns
                .iter()
                .find(|x| x.name == c)
                .unwrap()
                .sample_values
                .clone()
        };
        assert_eq!(col("region", "r_name"), ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]);
        assert_eq!(col("customer", "c_mktsegment"), ["AUTOMOBILE", "BUILDING", "FURNITURE", "HOUSEHOLD", "MACHINERY"]);
        assert_eq!(col("nation", "n_name").len(), 25, "25 nations are listed in full");
        assert!(col("lineitem", "l_shipmode").contains(&"REG AIR".to_string()));
        // Not categories, or denied: no samples.
        assert!(col("customer", "c_name").is_empty(), "high cardinality");
        assert!(col("customer", "c_comment").is_empty());
        assert!(col("customer", "c_phone").is_empty() && col("customer", "c_address").is_empty(), "deny-list");
        assert!(col("orders", "o_orderdate").is_empty(), "text columns only");

        let off = LocalCatalog::new(dir.path()).with_sample_values(false);
        let tables = off.tables("tpch").await.unwrap();
        assert!(tables.iter().all(|t| t.columns.iter().all(|c| c.sample_values.is_empty())));
        let denied = LocalCatalog::new(dir.path()).with_sample_deny_list(["segment"]);
        let tables = denied.tables("tpch").await.unwrap();
        let seg = tables
            .iter()
            .find(|t| t.name == "customer")
            .unwrap()
            .columns
            .iter()
            .find(|c| c.name == "c_mktsegment")
            .unwrap();
        assert!(seg.sample_values.is_empty());
        assert!(!tables.iter().find(|t| t.name == "region").unwrap().columns[1].sample_values.is_empty());
    }
}
