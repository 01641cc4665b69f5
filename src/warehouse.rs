//! The embedded warehouse: a directory of databases on local disk, and how DataFusion reads it.
//!
//! Layout: `<data_dir>/<database>/` is a database; in it `<table>.parquet`, `<table>.csv`
//! (with a header row) or a directory `<table>/` of Parquet files is a table. Database and
//! table names are simple lower-case identifiers (`[a-z_][a-z0-9_]*`), so a name can never
//! traverse paths or need quoting in SQL; anything else is skipped with a warning.
//!
//! This module is the one place that knows the layout. The local catalog (`catalog::local`)
//! and the local engine (`engine::datafusion`) both build on [`discover_tables`] and
//! [`open_session`], so the tables a prompt is shown, the tables the guard knows and the tables
//! the engine can read are always the same set, with the same types.
//!
//! [`init_tpch`] fills a database with the eight TPC-H tables (`sqlctl init`), generated in
//! process by tpchgen, so a new user has data to ask about without any download.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};

/// The catalog every local session uses; the database is its (only) schema.
pub const CATALOG_NAME: &str = "datafusion";

/// The eight TPC-H tables, in the order [`init_tpch`] writes them.
pub const TPCH_TABLES: [&str; 8] =
    ["customer", "orders", "lineitem", "part", "partsupp", "supplier", "nation", "region"];

/// Largest TPC-H scale factor `init_tpch` accepts (SF 100 is ~100 GB of raw data).
pub const MAX_TPCH_SCALE: f64 = 100.0;

/// Rows per Parquet row group: small enough for row-group pruning on the larger tables, large
/// enough that per-group overhead stays negligible.
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per generated Arrow batch.
const GENERATOR_BATCH_ROWS: usize = 8 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("invalid {what} name {name:?}: use a lower-case identifier ([a-z_][a-z0-9_]*)")]
    InvalidName { what: &'static str, name: String },
    #[error("database {database:?} not found: no directory {} (run `sqlctl init` or check --data-dir)", path.display())]
    DatabaseNotFound { database: String, path: PathBuf },
    #[error("data directory {} does not exist (run `sqlctl init` or check --data-dir)", .0.display())]
    DataDirNotFound(PathBuf),
    #[error("TPC-H scale factor must be > 0 and <= {MAX_TPCH_SCALE}, got {0}")]
    InvalidScale(f64),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("generating table {table}: {source}")]
    Generate {
        table: String,
        #[source]
        source: ArrowError,
    },
    #[error("setting up the query runtime: {0}")]
    Runtime(#[source] DataFusionError),
    #[error("reading table {table}: {source}")]
    Read {
        table: String,
        #[source]
        source: DataFusionError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WarehouseError + '_ {
    move |source| WarehouseError::Io { path: path.to_path_buf(), source }
}

/// `[a-z_][a-z0-9_]*`: the only database and table names the local warehouse uses.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_')) && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// How a table's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TableFormat {
    /// `<table>.parquet`
    ParquetFile,
    /// `<table>/` holding `*.parquet` files
    ParquetDir,
    /// `<table>.csv` with a header row
    Csv,
}

/// One table of a local database, as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalTable {
    pub name: String,
    pub format: TableFormat,
    /// Absolute path of the file or directory.
    pub path: PathBuf,
}

/// A data file of a table, with what identifies its version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DataFile {
    pub path: PathBuf,
    pub size: u64,
    pub modified: Option<SystemTime>,
}

impl LocalTable {
    /// The files holding the table's data (one, or the Parquet files of its directory).
    pub fn data_files(&self) -> Result<Vec<DataFile>, WarehouseError> {
        let describe = |path: PathBuf| -> Result<DataFile, WarehouseError> {
            let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
            Ok(DataFile { size: meta.len(), modified: meta.modified().ok(), path })
        };
        match self.format {
            TableFormat::ParquetFile | TableFormat::Csv => Ok(vec![describe(self.path.clone())?]),
            TableFormat::ParquetDir => {
                let mut files = Vec::new();
                let mut dirs = vec![self.path.clone()];
                while let Some(dir) = dirs.pop() {
                    for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                        let entry = entry.map_err(io_err(&dir))?;
                        let path = entry.path();
                        let file_name = entry.file_name();
                        let hidden = file_name.to_string_lossy().starts_with(['.', '_']);
                        let kind = entry.file_type().map_err(io_err(&path))?;
                        if hidden {
                            continue;
                        } else if kind.is_dir() {
                            dirs.push(path);
                        } else if path.extension().is_some_and(|e| e == "parquet") {
                            files.push(describe(path)?);
                        }
                    }
                }
                files.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(files)
            }
        }
    }

    /// Total bytes on disk: what a full scan reads at most.
    pub fn size_bytes(&self) -> Result<u64, WarehouseError> {
        Ok(self.data_files()?.iter().map(|f| f.size).sum())
    }
}

/// Paths already warned about, so a stray file is reported once, not on every catalog call.
static WARNED: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

fn warn_once(path: &Path, why: &str) {
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.len() < 10_000 && warned.insert(path.to_path_buf()) {
        tracing::warn!(path = %path.display(), "skipping {why}");
    }
}

/// Absolute form of `data_dir`, so DataFusion's listing tables never depend on the cwd.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The directory of `database`, checked to exist.
pub fn database_dir(data_dir: &Path, database: &str) -> Result<PathBuf, WarehouseError> {
    if !is_identifier(database) {
        return Err(WarehouseError::InvalidName { what: "database", name: database.to_string() });
    }
    let dir = absolute(data_dir).join(database);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(WarehouseError::DatabaseNotFound { database: database.to_string(), path: dir })
    }
}

/// The databases under `data_dir`, sorted.
pub fn list_databases(data_dir: &Path) -> Result<Vec<String>, WarehouseError> {
    let data_dir = absolute(data_dir);
    if !data_dir.is_dir() {
        return Err(WarehouseError::DataDirNotFound(data_dir));
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&data_dir).map_err(io_err(&data_dir))? {
        let entry = entry.map_err(io_err(&data_dir))?;
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if is_identifier(&name) {
            out.push(name);
        } else {
            warn_once(&path, "directory whose name is not a valid database name ([a-z_][a-z0-9_]*)");
        }
    }
    out.sort();
    Ok(out)
}

/// The tables of `database`, sorted by name. Hidden entries (`.x`, temp files) are ignored;
/// entries with invalid names or unknown extensions are skipped with a warning. When two
/// entries claim one name (`t.parquet` and `t.csv`), the first of Parquet file, Parquet
/// directory, CSV wins.
pub fn discover_tables(data_dir: &Path, database: &str) -> Result<Vec<LocalTable>, WarehouseError> {
    let dir = database_dir(data_dir, database)?;
    let mut found: Vec<LocalTable> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
        let entry = entry.map_err(io_err(&dir))?;
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            continue;
        }
        let (name, format) = if path.is_dir() {
            (file_name.clone(), TableFormat::ParquetDir)
        } else if let Some(stem) = file_name.strip_suffix(".parquet") {
            (stem.to_string(), TableFormat::ParquetFile)
        } else if let Some(stem) = file_name.strip_suffix(".csv") {
            (stem.to_string(), TableFormat::Csv)
        } else {
            warn_once(&path, "file that is neither <table>.parquet nor <table>.csv");
            continue;
        };
        if !is_identifier(&name) {
            warn_once(&path, "table whose name is not a valid table name ([a-z_][a-z0-9_]*)");
            continue;
        }
        let table = LocalTable { name, format, path };
        if format == TableFormat::ParquetDir && table.data_files().map(|f| f.is_empty()).unwrap_or(true) {
            warn_once(&table.path, "directory without Parquet files");
            continue;
        }
        found.push(table);
    }
    let rank = |f: TableFormat| match f {
        TableFormat::ParquetFile => 0,
        TableFormat::ParquetDir => 1,
        TableFormat::Csv => 2,
    };
    found.sort_by(|a, b| a.name.cmp(&b.name).then(rank(a.format).cmp(&rank(b.format))));
    let mut tables: Vec<LocalTable> = Vec::with_capacity(found.len());
    for t in found {
        if tables.last().is_some_and(|last| last.name == t.name) {
            warn_once(&t.path, "duplicate table (another file already defines this table name)");
        } else {
            tables.push(t);
        }
    }
    Ok(tables)
}

/// A fresh DataFusion session over exactly the tables of one database.
///
/// The database is the default schema of the default catalog, so `orders` and `tpch.orders`
/// both resolve, and nothing else does: no other schema, no `information_schema`, and no URL
/// or file tables (`SELECT * FROM '/etc/passwd'` finds no table). Callers that run SQL must
/// still use `sql_with_options` with DDL, DML and statements disallowed (the engine does).
pub async fn open_session(
    data_dir: &Path,
    database: &str,
) -> Result<(SessionContext, Vec<LocalTable>), WarehouseError> {
    let tables = discover_tables(data_dir, database)?;
    let ctx = session_context(database);
    for table in &tables {
        register_table(&ctx, table).await?;
    }
    Ok((ctx, tables))
}

/// Like [`open_session`], but the session executes under a memory pool of `memory_limit`
/// bytes (the local engine's `--max-query-memory`): the operators that buffer (sorts, hash
/// aggregates and joins, repartitions) reserve from it, spill to disk where they can, and fail
/// with DataFusion's `ResourcesExhausted` instead of growing the process past it. Buffers an
/// operator does not account for (one huge scalar value) are outside any pool.
pub async fn open_session_limited(
    data_dir: &Path,
    database: &str,
    memory_limit: u64,
) -> Result<(SessionContext, Vec<LocalTable>), WarehouseError> {
    let tables = discover_tables(data_dir, database)?;
    let limit = usize::try_from(memory_limit).unwrap_or(usize::MAX);
    let runtime =
        RuntimeEnvBuilder::new().with_memory_limit(limit, 1.0).build_arc().map_err(WarehouseError::Runtime)?;
    let ctx = SessionContext::new_with_config_rt(session_config(database), runtime);
    for table in &tables {
        register_table(&ctx, table).await?;
    }
    Ok((ctx, tables))
}

fn session_config(database: &str) -> SessionConfig {
    SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, database)
        .with_create_default_catalog_and_schema(true)
        .with_information_schema(false)
}

/// An empty session whose default schema is `database`.
pub fn session_context(database: &str) -> SessionContext {
    SessionContext::new_with_config(session_config(database))
}

/// Registers one table in the session's default schema (schema inference happens here).
pub async fn register_table(ctx: &SessionContext, table: &LocalTable) -> Result<(), WarehouseError> {
    let read_err = |source| WarehouseError::Read { table: table.name.clone(), source };
    let path = table.path.to_string_lossy().into_owned();
    match table.format {
        TableFormat::ParquetFile => {
            ctx.register_parquet(table.name.as_str(), &path, ParquetReadOptions::default()).await.map_err(read_err)
        }
        TableFormat::ParquetDir => {
            let dir = if path.ends_with('/') { path } else { format!("{path}/") };
            ctx.register_parquet(table.name.as_str(), &dir, ParquetReadOptions::default()).await.map_err(read_err)
        }
        TableFormat::Csv => {
            ctx.register_csv(table.name.as_str(), &path, CsvReadOptions::new().has_header(true)).await.map_err(read_err)
        }
    }
}

/// Writes the eight TPC-H tables at `scale` as `<data_dir>/<database>/<table>.parquet`.
///
/// Each table is written to a temp file in the same directory and renamed into place, so an
/// interrupted run never leaves a half-written table under its final name; re-running replaces
/// the tables. `on_progress(table, rows_written_so_far)` is called after every batch. Returns
/// `(table, rows)` per table. Blocking (CPU and disk): call it from `spawn_blocking` in async
/// code.
pub fn init_tpch(
    data_dir: &Path,
    database: &str,
    scale: f64,
    on_progress: &mut dyn FnMut(&str, u64),
) -> Result<Vec<(String, u64)>, WarehouseError> {
    use tpchgen::generators::{
        CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator, PartSuppGenerator,
        RegionGenerator, SupplierGenerator,
    };
    use tpchgen_arrow::{
        CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow, SupplierArrow,
    };

    if !(scale > 0.0 && scale <= MAX_TPCH_SCALE) {
        return Err(WarehouseError::InvalidScale(scale));
    }
    if !is_identifier(database) {
        return Err(WarehouseError::InvalidName { what: "database", name: database.to_string() });
    }
    let dir = absolute(data_dir).join(database);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;

    let mut written = Vec::with_capacity(TPCH_TABLES.len());
    for table in TPCH_TABLES {
        let batch = GENERATOR_BATCH_ROWS;
        let (schema, batches): (SchemaRef, Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>) = match table {
            "customer" => (
                CustomerArrow::schema_ref(),
                Box::new(CustomerArrow::new(CustomerGenerator::new(scale, 1, 1)).with_batch_size(batch)),
            ),
            "orders" => (
                OrderArrow::schema_ref(),
                Box::new(OrderArrow::new(OrderGenerator::new(scale, 1, 1)).with_batch_size(batch)),
            ),
            "lineitem" => (
                LineItemArrow::schema_ref(),
                Box::new(LineItemArrow::new(LineItemGenerator::new(scale, 1, 1)).with_batch_size(batch)),
            ),
            "part" => (
                PartArrow::schema_ref(),
                Box::new(PartArrow::new(PartGenerator::new(scale, 1, 1)).with_batch_size(batch)),
            ),
            "partsupp" => (
                PartSuppArrow::schema_ref(),
                Box::new(PartSuppArrow::new(PartSuppGenerator::new(scale, 1, 1)).with_batch_size(batch)),
            ),
            "supplier" => (
                SupplierArrow::schema_ref(),
                Box::new(SupplierArrow::new(SupplierGenerator::new(scale, 1, 1)).with_batch_size(batch)),
            ),
            "nation" => (
                NationArrow::schema_ref(),
                Box::new(NationArrow::new(NationGenerator::new(scale, 1, 1)).with_batch_size(batch)),
            ),
            "region" => (
                RegionArrow::schema_ref(),
                Box::new(RegionArrow::new(RegionGenerator::new(scale, 1, 1)).with_batch_size(batch)),
            ),
            other => unreachable!("unknown TPC-H table {other}"),
        };
        let rows =
            write_parquet_atomically(&dir.join(format!("{table}.parquet")), table, schema, batches, on_progress)?;
        tracing::info!(table, rows, "wrote TPC-H table");
        written.push((table.to_string(), rows));
    }
    Ok(written)
}

/// Writes `batches` to a temp file next to `path`, syncs it and renames it to `path`.
fn write_parquet_atomically(
    path: &Path,
    table: &str,
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    on_progress: &mut dyn FnMut(&str, u64),
) -> Result<u64, WarehouseError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(format!("sqlctl {} (tpchgen)", env!("CARGO_PKG_VERSION")))
            .build();
        let parquet_err = |source| WarehouseError::Parquet { path: path.to_path_buf(), source };
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props)).map_err(parquet_err)?;
        let mut rows = 0u64;
        for batch in batches {
            let batch = batch.map_err(|source| WarehouseError::Generate { table: table.to_string(), source })?;
            writer.write(&batch).map_err(parquet_err)?;
            rows += batch.num_rows() as u64;
            on_progress(table, rows);
        }
        let file = writer.into_inner().map_err(parquet_err)?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io_err(path))?;
        Ok(rows)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    #[test]
    fn identifiers_are_simple_lower_case_names() {
        for ok in ["tpch", "orders", "_x", "t1", "a_b_2"] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in ["", "1t", "Orders", "a-b", "a.b", "..", "a b", "ö", "a/b"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn scale_must_be_positive_and_at_most_100() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [0.0, -1.0, 100.5, f64::NAN, f64::INFINITY] {
            let err = init_tpch(dir.path(), "tpch", bad, &mut |_, _| {}).unwrap_err();
            assert!(matches!(err, WarehouseError::InvalidScale(_)), "{bad}: {err}");
        }
        assert!(matches!(
            init_tpch(dir.path(), "../x", 0.001, &mut |_, _| {}),
            Err(WarehouseError::InvalidName { .. })
        ));
    }

    #[tokio::test]
    async fn tpch_tables_are_written_with_decimal_and_date_types_and_query() {
        let dir = tempfile::tempdir().unwrap();
        let mut progress = Vec::new();
        let written = init_tpch(dir.path(), "tpch", 0.001, &mut |t, n| progress.push((t.to_string(), n))).unwrap();
        let names: Vec<&str> = written.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, TPCH_TABLES);
        let rows: std::collections::HashMap<_, _> = written.iter().cloned().collect();
        assert_eq!(rows["nation"], 25);
        assert_eq!(rows["region"], 5);
        assert_eq!(rows["customer"], 150);
        assert_eq!(rows["orders"], 1500);
        assert!(rows["lineitem"] > 5000);
        assert!(progress.iter().any(|(t, n)| t == "lineitem" && *n == rows["lineitem"]));
        // No temp files are left behind; every table is a Parquet file.
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("tpch"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut want: Vec<String> = TPCH_TABLES.iter().map(|t| format!("{t}.parquet")).collect();
        want.sort();
        assert_eq!(files, want);

        let (ctx, tables) = open_session(dir.path(), "tpch").await.unwrap();
        assert_eq!(tables.len(), 8);
        let lineitem = ctx.table_provider("lineitem").await.unwrap().schema();
        assert_eq!(lineitem.field_with_name("l_extendedprice").unwrap().data_type(), &DataType::Decimal128(15, 2));
        assert_eq!(lineitem.field_with_name("l_shipdate").unwrap().data_type(), &DataType::Date32);
        let batches = ctx
            .sql("select sum(l_extendedprice) as s, count(*) as n from tpch.lineitem where l_shipdate < date '1995-01-01'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let batch = &batches[0];
        assert!(matches!(batch.column(0).data_type(), DataType::Decimal128(_, 2)));
        let n = batch.column(1).as_any().downcast_ref::<datafusion::arrow::array::Int64Array>().unwrap().value(0);
        assert!(n > 0 && (n as u64) < rows["lineitem"]);
    }

    #[test]
    fn discovery_skips_bad_names_and_prefers_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir_all(db.join("events")).unwrap();
        std::fs::create_dir_all(db.join("empty_dir")).unwrap();
        std::fs::write(db.join("events").join("part-0.parquet"), b"x").unwrap();
        std::fs::write(db.join("a.csv"), "x\n1\n").unwrap();
        std::fs::write(db.join("a.parquet"), b"x").unwrap();
        std::fs::write(db.join("Bad-Name.csv"), "x\n1\n").unwrap();
        std::fs::write(db.join("notes.txt"), "hi").unwrap();
        std::fs::write(db.join(".a.parquet.123.tmp"), "partial").unwrap();
        let tables = discover_tables(dir.path(), "db").unwrap();
        let got: Vec<(&str, TableFormat)> = tables.iter().map(|t| (t.name.as_str(), t.format)).collect();
        assert_eq!(got, vec![("a", TableFormat::ParquetFile), ("events", TableFormat::ParquetDir)]);
        assert_eq!(tables[1].size_bytes().unwrap(), 1);
        assert!(matches!(discover_tables(dir.path(), "nope"), Err(WarehouseError::DatabaseNotFound { .. })));
        assert!(matches!(discover_tables(dir.path(), "../db"), Err(WarehouseError::InvalidName { .. })));
        assert_eq!(list_databases(dir.path()).unwrap(), vec!["db"]);
        assert!(matches!(list_databases(&dir.path().join("missing")), Err(WarehouseError::DataDirNotFound(_))));
    }
}
