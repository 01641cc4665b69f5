//! The `Catalog`: which databases and tables exist, and their schemas. AWS Glue in production,
//! a directory of Parquet/CSV files locally.

#[cfg(feature = "aws")]
pub mod glue;
pub mod local;
pub mod retrieve;

use async_trait::async_trait;

/// A column as the prompt and the guard see it.
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize)]
pub struct Column {
    pub name: String,
    pub data_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sample_values: Vec<String>,
}

/// A table with its columns.
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partition_keys: Vec<Column>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Where the data lives (file path or S3 URI).
    pub location: String,
}

/// How a table's files are stored: what a scan estimate needs besides the schema.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TableLayout {
    pub name: String,
    /// Where the data lives (S3 URI or path); partitions may live elsewhere.
    pub location: String,
    pub format: DataFormat,
    /// Columns stored in the files (partition keys excluded).
    pub columns: Vec<Column>,
    /// Partition keys, in order; their values are in the partition, not in the files.
    pub partition_keys: Vec<Column>,
}

/// The file format of a table, as far as a scan estimate cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DataFormat {
    Parquet,
    Orc,
    /// Delimited text (CSV, TSV, Hive text) or JSON lines: read whole.
    Text,
    Avro,
    /// Not recognised from the input format, SerDe or classification.
    #[default]
    Unknown,
}

impl DataFormat {
    /// Columnar formats let an engine read only the columns a query needs.
    pub fn is_columnar(self) -> bool {
        matches!(self, DataFormat::Parquet | DataFormat::Orc)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Parquet => "parquet",
            DataFormat::Orc => "orc",
            DataFormat::Text => "text",
            DataFormat::Avro => "avro",
            DataFormat::Unknown => "unknown format",
        }
    }
}

/// One partition of a table: its values (in partition-key order) and where its files are.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Partition {
    pub values: Vec<String>,
    pub location: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The message names the database and says what to do (implementations write it whole).
    #[error("database not found: {0}")]
    DatabaseNotFound(String),
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("catalog temporarily unavailable: {0}")]
    Transient(String),
    #[error("catalog error: {0}")]
    Other(String),
}

impl CatalogError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::Transient(_))
    }
}

#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    async fn list_databases(&self) -> Result<Vec<String>, CatalogError>;
    /// All tables of `database`, sorted by name.
    async fn tables(&self, database: &str) -> Result<Vec<Table>, CatalogError>;
    /// Storage layout of one table, for scan estimates (`Ok(None)` when the table does not
    /// exist). Default: this catalog knows no layouts.
    async fn layout(&self, _database: &str, _table: &str) -> Result<Option<TableLayout>, CatalogError> {
        Err(CatalogError::Other("this catalog does not describe table storage".into()))
    }
    /// Partitions of `table` whose values satisfy `expression` (Glue's partition-filter
    /// syntax, e.g. `dt >= '2024-01-01' AND region IN ('eu', 'us')`); every partition when
    /// `None`. Default: this catalog knows no partitions.
    async fn partitions(
        &self,
        _database: &str,
        _table: &str,
        _expression: Option<&str>,
    ) -> Result<Vec<Partition>, CatalogError> {
        Err(CatalogError::Other("this catalog does not list partitions".into()))
    }
}
