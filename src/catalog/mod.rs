//! The `Catalog`: which databases and tables exist, and their schemas. AWS Glue in production,
//! a directory of Parquet/CSV files locally.

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
}
