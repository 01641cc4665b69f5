//! Rendering results: the CSV file (header, RFC 4180 fields), the bounded preview, and
//! [`run_sql_collect`], which renders cells the same way for tests.

use std::fmt::Write as _;
use std::path::Path;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::session::{RunError, datafusion_message, read_only, warehouse_error};
use crate::engine::EngineError;
use crate::spec::{Preview, ResultColumn};
use crate::warehouse;

/// Most cell text kept in a preview (the preview must fit a 400 KB DynamoDB item).
pub const PREVIEW_MAX_BYTES: usize = 256 * 1024;

/// Collects at most `max_rows` rows and [`PREVIEW_MAX_BYTES`] of cell text.
pub(super) struct PreviewBuilder {
    preview: Preview,
    max_rows: usize,
    bytes: usize,
}

impl PreviewBuilder {
    pub(super) fn new(schema: &Schema, max_rows: u64) -> Self {
        PreviewBuilder {
            preview: Preview {
                columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
                rows: Vec::new(),
                truncated: false,
            },
            max_rows: usize::try_from(max_rows).unwrap_or(usize::MAX),
            bytes: 0,
        }
    }

    fn full(&self) -> bool {
        self.preview.truncated
    }

    /// Offers one row; once a row does not fit, the preview is marked truncated and closed.
    fn offer(&mut self, row: Vec<Option<String>>) {
        if self.preview.truncated {
            return;
        }
        let size: usize = row.iter().map(|c| c.as_ref().map_or(0, String::len)).sum();
        if self.preview.rows.len() >= self.max_rows || self.bytes + size > PREVIEW_MAX_BYTES {
            self.preview.truncated = true;
            return;
        }
        self.bytes += size;
        self.preview.rows.push(row);
    }

    pub(super) fn finish(self) -> Preview {
        self.preview
    }
}

/// Appends `batch` as CSV rows to `out` and offers its rows to the preview. Stops as soon as
/// `out` holds more than `max_len` bytes and returns `Some(rows that fitted)`; `None` when the
/// whole batch was rendered.
pub(super) fn render_batch(
    batch: &RecordBatch,
    out: &mut String,
    preview: &mut PreviewBuilder,
    max_len: usize,
) -> Result<Option<usize>, RunError> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RunError(format!("formatting results: {e}")))?;
    // Logical nulls: a `NullArray` (`SELECT NULL`) or a dictionary has no null buffer of its own.
    let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
    let mut cell = String::new();
    for row in 0..batch.num_rows() {
        let want_preview = !preview.full();
        let mut preview_row = Vec::with_capacity(if want_preview { formatters.len() } else { 0 });
        for (i, (nulls, formatter)) in nulls.iter().zip(&formatters).enumerate() {
            if i > 0 {
                out.push(',');
            }
            if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                if want_preview {
                    preview_row.push(None);
                }
                continue;
            }
            cell.clear();
            write!(cell, "{}", formatter.value(row)).map_err(|e| RunError(format!("formatting results: {e}")))?;
            if out.len() + cell.len() > max_len {
                return Ok(Some(row));
            }
            push_csv_field(out, &cell);
            if want_preview {
                preview_row.push(Some(cell.clone()));
            }
        }
        out.push('\n');
        if out.len() > max_len {
            return Ok(Some(row));
        }
        if want_preview {
            preview.offer(preview_row);
        }
    }
    Ok(None)
}

/// The result's columns with their Arrow types in SQL spelling (what `status.execution.columns`
/// records; roles come later, from the approved SQL).
pub(super) fn result_columns(schema: &Schema) -> Vec<ResultColumn> {
    schema
        .fields()
        .iter()
        .map(|f| ResultColumn { name: f.name().clone(), type_: sql_type(f.data_type()), role: None })
        .collect()
}

/// An Arrow type in the SQL spelling Athena uses for the same values, so one vocabulary serves
/// both engines (`Decimal128(15, 2)` → `decimal(15,2)`, `Utf8View` → `varchar`).
pub fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Int8 | DataType::UInt8 => "tinyint".into(),
        DataType::Int16 | DataType::UInt16 => "smallint".into(),
        DataType::Int32 | DataType::UInt32 => "integer".into(),
        DataType::Int64 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => {
            format!("decimal({p},{s})")
        }
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "varchar".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Dictionary(_, v) => sql_type(v),
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// The header row of the CSV result.
pub(super) fn csv_header(schema: &Schema) -> String {
    let mut out = String::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(&mut out, f.name());
    }
    out.push('\n');
    out
}

/// RFC 4180 field: quoted when it holds a separator, quote or line break, and when empty (so
/// an empty string differs from NULL, which is written as nothing at all).
fn push_csv_field(out: &mut String, value: &str) {
    if value.is_empty() || value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Runs `sql` read-only against `database` of `data_dir` with the engine's session setup and
/// returns the column names and every row rendered as the preview renders cells (NULL →
/// `None`). For tests that compare the engine with an independent run.
pub async fn run_sql_collect(
    data_dir: &Path,
    database: &str,
    sql: &str,
) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), EngineError> {
    let (ctx, _) = warehouse::open_session(data_dir, database).await.map_err(warehouse_error)?;
    let df =
        ctx.sql_with_options(sql, read_only()).await.map_err(|e| EngineError::Permanent(datafusion_message(&e)))?;
    let columns = df.schema().fields().iter().map(|f| f.name().clone()).collect();
    let batches = df.collect().await.map_err(|e| EngineError::Permanent(datafusion_message(&e)))?;
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in &batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Permanent(format!("formatting results: {e}")))?;
        let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
        for row in 0..batch.num_rows() {
            rows.push(
                nulls
                    .iter()
                    .zip(&formatters)
                    .map(|(n, f)| (!n.as_ref().is_some_and(|n| n.is_null(row))).then(|| f.value(row).to_string()))
                    .collect(),
            );
        }
    }
    Ok((columns, rows))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{engine, job, run, succeeded};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn csv_fields_are_quoted_when_needed() {
        let (engine, results) = engine();
        let sql = "select 'a,b' as \"x,y\", 'say \"hi\"' as q, 'line\nbreak' as l";
        succeeded(run(&engine, &job("quote", sql)).await);
        let csv = std::fs::read_to_string(results.path().join("default/quote/u/1-0.csv")).unwrap();
        assert_eq!(csv, "\"x,y\",q,l\n\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\"\n");
    }
}
