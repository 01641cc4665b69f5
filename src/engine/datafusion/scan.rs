//! Parquet scan estimation: what the file scans of a plan would read, from footers and file
//! sizes, with min/max row-group pruning by the [`safe_for_pruning`] part of the pushed filter;
//! what a run read ([`scanned_bytes`]); and [`measure_scan`], which sets the two side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::physical_plan::ParquetFileMetrics;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccessPlanFilter};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::{collect_columns, conjunction_opt, split_conjunction};
use datafusion::physical_optimizer::pruning::{PruningPredicate, build_pruning_predicate};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use futures::StreamExt;

use super::session::{datafusion_message, read_only, warehouse_error};
use crate::engine::EngineError;
use crate::warehouse;

/// All file scans in a physical plan.
fn file_scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<dyn ExecutionPlan>> {
    let mut out = Vec::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if node.downcast_ref::<DataSourceExec>().is_some() {
            out.push(Arc::clone(&node));
        }
        stack.extend(node.children().into_iter().cloned());
    }
    out
}

/// Sum of the `bytes_scanned` metric of the plan's Parquet scans; `None` when no scan
/// reports it (no Parquet table read, or nothing executed yet).
pub(super) fn scanned_bytes(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let mut total = None;
    for scan in file_scans(plan) {
        if let Some(v) = scan.metrics().and_then(|m| m.sum_by_name("bytes_scanned")) {
            *total.get_or_insert(0) += v.as_usize() as u64;
        }
    }
    total
}

/// What the file scans of a plan would read, from file metadata alone: the local engine's
/// scan estimate (see [`super::LocalEngine::estimate_scan`]).
///
/// It measures what DataFusion's `bytes_scanned` metric counts for a Parquet scan: the
/// compressed bytes of the column chunks it fetches. Those are the chunks of the columns the
/// scan projects or filters on, in the row groups that survive min/max pruning with the filter
/// the plan pushed into the scan; a CSV file is read whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanEstimate {
    pub bytes: u64,
    /// Parquet files whose footers were read.
    pub parquet_files: usize,
    /// Row groups in those files, and how many of them survive min/max pruning.
    pub row_groups: usize,
    pub row_groups_kept: usize,
    /// Parquet scans that carried a filter usable against row-group statistics.
    pub pruning_scans: usize,
    /// CSV files (counted whole).
    pub csv_files: usize,
    /// Parquet files whose footer could not be read (counted whole).
    pub unreadable: usize,
}

impl ScanEstimate {
    /// How the estimate was made, for `status.estimate.method`.
    pub fn method(&self) -> String {
        let plural = |n: usize, one: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") };
        let mut parts = Vec::new();
        if self.parquet_files > 0 {
            let groups = if self.pruning_scans > 0 {
                format!(
                    "{} of {} kept by min/max statistics of the filter",
                    self.row_groups_kept,
                    plural(self.row_groups, "row group")
                )
            } else {
                format!("{}, no filter to prune with", plural(self.row_groups, "row group"))
            };
            parts.push(format!(
                "Parquet footers: compressed column chunks read of {} ({groups})",
                plural(self.parquet_files, "file")
            ));
        }
        if self.csv_files > 0 {
            parts.push(format!("{} counted whole", plural(self.csv_files, "CSV file")));
        }
        if self.unreadable > 0 {
            parts.push(format!("{} with an unreadable footer counted whole", plural(self.unreadable, "Parquet file")));
        }
        if parts.is_empty() {
            return "local: the plan reads no table files (answered from metadata or constants)".into();
        }
        format!("local: {}", parts.join("; "))
    }
}

/// See [`ScanEstimate`]. Blocking: reads Parquet footers.
pub(super) fn estimate_scans(plan: &Arc<dyn ExecutionPlan>) -> ScanEstimate {
    let mut est = ScanEstimate::default();
    for scan in file_scans(plan) {
        let Some(exec) = scan.downcast_ref::<DataSourceExec>() else { continue };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else { continue };
        let source = &config.file_source;
        let parquet = source.file_type() == "parquet";
        let columns = scan_columns(config, &scan);
        let file_schema = Arc::clone(source.table_schema().file_schema());
        // The filter DataFusion pushed into the scan (`WHERE` conjuncts, and dynamic join/TopK
        // filters, which are still `true` before execution): the same pruning predicate the
        // Parquet opener builds from it, evaluated here against each footer's statistics.
        // Only conjuncts that are cheap to evaluate on statistics are used (the rest are
        // dropped, which can only make the estimate larger).
        let pruning = if parquet {
            source
                .filter()
                .and_then(|f| safe_for_pruning(&f))
                .and_then(|f| build_pruning_predicate(f, &file_schema, &Count::new()))
        } else {
            None
        };
        if pruning.is_some() {
            est.pruning_scans += 1;
        }
        // A file split into byte ranges across partitions appears once per range: count it once.
        let mut seen = std::collections::HashSet::new();
        for file in config.file_groups.iter().flat_map(|g| g.iter()) {
            if !seen.insert(file.object_meta.location.clone()) {
                continue;
            }
            let whole = file.object_meta.size;
            if !parquet {
                est.csv_files += 1;
                est.bytes += whole;
                continue;
            }
            let path = PathBuf::from(format!("/{}", file.object_meta.location));
            match parquet_file_estimate(&path, &columns, &file_schema, pruning.as_deref()) {
                Some(f) => {
                    est.parquet_files += 1;
                    est.row_groups += f.row_groups;
                    est.row_groups_kept += f.kept;
                    est.bytes += f.bytes;
                }
                None => {
                    est.unreadable += 1;
                    est.bytes += whole;
                }
            }
        }
    }
    est
}

/// Deepest expression [`safe_for_pruning`] looks into; anything deeper is dropped.
const MAX_SAFE_DEPTH: usize = 64;

/// The conjuncts of a scan filter that are safe to evaluate on min/max statistics: column
/// references, literals, comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL`, `IN` lists of literals,
/// casts, and `LIKE` with a literal pattern, each made of safe parts. Function calls, arithmetic,
/// `CASE` and anything else are dropped, so a user's expression is never evaluated by the
/// estimate (the pruning only gets weaker: the estimate can only grow). `None` when nothing is
/// left.
pub fn safe_for_pruning(filter: &Arc<dyn PhysicalExpr>) -> Option<Arc<dyn PhysicalExpr>> {
    conjunction_opt(split_conjunction(filter).into_iter().filter(|c| is_safe(c, 0)).cloned())
}

fn is_safe(e: &Arc<dyn PhysicalExpr>, depth: usize) -> bool {
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{
        BinaryExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal, NotExpr, TryCastExpr,
    };
    if depth > MAX_SAFE_DEPTH {
        return false;
    }
    let safe = |c: &Arc<dyn PhysicalExpr>| is_safe(c, depth + 1);
    if e.is::<Column>() || e.is::<Literal>() {
        return true;
    }
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        let op_ok = matches!(
            b.op(),
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::And
                | Operator::Or
                | Operator::IsDistinctFrom
                | Operator::IsNotDistinctFrom
        );
        return op_ok && safe(b.left()) && safe(b.right());
    }
    if let Some(n) = e.downcast_ref::<NotExpr>() {
        return safe(n.arg());
    }
    if let Some(n) = e.downcast_ref::<IsNullExpr>() {
        return safe(n.arg());
    }
    if let Some(n) = e.downcast_ref::<IsNotNullExpr>() {
        return safe(n.arg());
    }
    if let Some(i) = e.downcast_ref::<InListExpr>() {
        return safe(i.expr()) && i.list().iter().all(|v| v.is::<Literal>());
    }
    if let Some(c) = e.downcast_ref::<CastExpr>() {
        return safe(c.expr());
    }
    if let Some(c) = e.downcast_ref::<TryCastExpr>() {
        return safe(c.expr());
    }
    if let Some(l) = e.downcast_ref::<LikeExpr>() {
        return safe(l.expr()) && l.pattern().is::<Literal>();
    }
    false
}

/// Top-level columns a file scan reads: those it projects plus those its pushed-down filter
/// needs (with `pushdown_filters` those are read without being projected).
fn scan_columns(config: &FileScanConfig, scan: &Arc<dyn ExecutionPlan>) -> std::collections::HashSet<String> {
    let table = config.file_source.table_schema().table_schema();
    let mut columns: std::collections::HashSet<String> = match config.file_source.projection() {
        Some(p) => {
            p.column_indices().into_iter().filter_map(|i| table.fields().get(i)).map(|f| f.name().clone()).collect()
        }
        None => scan.schema().fields().iter().map(|f| f.name().clone()).collect(),
    };
    if let Some(filter) = config.file_source.filter() {
        columns.extend(collect_columns(&filter).into_iter().map(|c| c.name().to_string()));
    }
    columns
}

/// One Parquet file's share of a scan estimate.
struct FileEstimate {
    bytes: u64,
    row_groups: usize,
    kept: usize,
}

/// Compressed bytes of the column chunks of `columns` (top-level names) in the row groups of
/// `path` that `pruning` keeps (all of them without a predicate). None when the footer cannot
/// be read.
fn parquet_file_estimate(
    path: &Path,
    columns: &std::collections::HashSet<String>,
    file_schema: &Schema,
    pruning: Option<&PruningPredicate>,
) -> Option<FileEstimate> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).ok()?).ok()?;
    let meta = reader.metadata();
    let groups = meta.row_groups();
    let mut plan = RowGroupAccessPlanFilter::new(ParquetAccessPlan::new_all(groups.len()));
    if let Some(predicate) = pruning {
        let metrics = ParquetFileMetrics::new(0, &path.to_string_lossy(), &ExecutionPlanMetricsSet::new());
        plan.prune_by_statistics(file_schema, meta.file_metadata().schema_descr(), groups, predicate, &metrics);
    }
    let mut bytes = 0i64;
    let mut kept = 0;
    for i in plan.row_group_indexes() {
        kept += 1;
        for chunk in groups[i].columns() {
            let top = chunk.column_path().parts().first()?;
            if columns.contains(top) {
                bytes += chunk.compressed_size();
            }
        }
    }
    Some(FileEstimate { bytes: u64::try_from(bytes).ok()?, row_groups: groups.len(), kept })
}

/// A scan estimate next to what executing the very same plan read: how `sqlctl eval
/// --estimates` measures the estimate's error.
#[derive(Clone, Debug)]
pub struct ScanMeasurement {
    pub estimate: ScanEstimate,
    /// DataFusion's `bytes_scanned` after the run (the same quantity the estimate forecasts).
    pub scanned: u64,
    /// What DataFusion skipped at run time that footers cannot foresee (row groups pruned by
    /// dynamic join/TopK filters or a limit, pages pruned by the page index), from its metrics.
    pub runtime_pruning: Vec<String>,
}

/// Plans `sql`, estimates the plan (as [`crate::engine::Engine::estimate`] does), runs it to the end and reads
/// its scan metrics. The result rows are discarded.
pub async fn measure_scan(data_dir: &Path, database: &str, sql: &str) -> Result<ScanMeasurement, EngineError> {
    let permanent = |e: DataFusionError| EngineError::Permanent(datafusion_message(&e));
    let (ctx, _) = warehouse::open_session(data_dir, database).await.map_err(warehouse_error)?;
    let df = ctx.sql_with_options(sql, read_only()).await.map_err(permanent)?;
    let plan = df.create_physical_plan().await.map_err(permanent)?;
    let p = Arc::clone(&plan);
    let estimate = tokio::task::spawn_blocking(move || estimate_scans(&p))
        .await
        .map_err(|e| EngineError::Transient(format!("estimating scan size: {e}")))?;
    let mut stream = execute_stream(Arc::clone(&plan), ctx.task_ctx()).map_err(permanent)?;
    while let Some(batch) = stream.next().await {
        batch.map_err(permanent)?;
    }
    drop(stream);
    let scanned = scanned_bytes(&plan).unwrap_or(0);
    let (mut dynamic, mut limit, mut pages, mut page_rows, mut ranges) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for scan in file_scans(&plan) {
        let Some(metrics) = scan.metrics() else { continue };
        for m in metrics.iter() {
            use datafusion::physical_plan::metrics::MetricValue;
            match m.value() {
                MetricValue::Count { name, count } if name == "row_groups_pruned_dynamic_filter" => {
                    dynamic += count.value()
                }
                MetricValue::PruningMetrics { name, pruning_metrics } => match name.as_ref() {
                    "limit_pruned_row_groups" => limit += pruning_metrics.pruned(),
                    "page_index_pages_pruned" => pages += pruning_metrics.pruned(),
                    "page_index_rows_pruned" => page_rows += pruning_metrics.pruned(),
                    "files_ranges_pruned_statistics" => ranges += pruning_metrics.pruned(),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let mut runtime_pruning = Vec::new();
    if dynamic > 0 {
        runtime_pruning.push(format!("{dynamic} row groups skipped by dynamic (join/TopK) filters"));
    }
    if limit > 0 {
        runtime_pruning.push(format!("{limit} row groups skipped by the limit"));
    }
    if pages > 0 {
        runtime_pruning.push(format!("{pages} pages ({page_rows} rows) skipped by the page index"));
    }
    if ranges > 0 {
        runtime_pruning.push(format!("{ranges} file ranges skipped at run time"));
    }
    Ok(ScanMeasurement { estimate, scanned, runtime_pruning })
}

#[cfg(test)]
mod tests {
    use super::super::LocalEngine;
    use super::super::testing::{job, lake, run, succeeded};
    use super::*;
    use crate::engine::{Engine, QueryJob};

    #[test]
    fn only_safe_conjuncts_are_evaluated_on_statistics() {
        use datafusion::arrow::datatypes::{DataType, Field};
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{
            BinaryExpr, CaseExpr, CastExpr, InListExpr, IsNullExpr, LikeExpr, NotExpr, col, lit,
        };
        let schema =
            Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("kind", DataType::Utf8, true)]);
        let id = col("id", &schema).unwrap();
        let kind = col("kind", &schema).unwrap();
        let bin = |l: Arc<dyn PhysicalExpr>, op, r: Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(l, op, r))
        };
        let safe: Vec<Arc<dyn PhysicalExpr>> = vec![
            bin(Arc::clone(&id), Operator::Lt, lit(1500i64)),
            bin(
                bin(Arc::clone(&id), Operator::GtEq, lit(1i64)),
                Operator::Or,
                Arc::new(NotExpr::new(Arc::new(IsNullExpr::new(Arc::clone(&kind))))),
            ),
            Arc::new(InListExpr::try_new(Arc::clone(&id), vec![lit(1i64), lit(2i64)], false, &schema).unwrap()),
            Arc::new(LikeExpr::new(false, false, Arc::clone(&kind), lit("k%"))),
            bin(Arc::new(CastExpr::new(Arc::clone(&id), DataType::Utf8, None)), Operator::Eq, lit("7")),
        ];
        let unsafe_: Vec<Arc<dyn PhysicalExpr>> = vec![
            // Arithmetic, a non-literal pattern or list item, CASE: never evaluated.
            bin(bin(Arc::clone(&id), Operator::Plus, lit(1i64)), Operator::Lt, lit(5i64)),
            Arc::new(LikeExpr::new(false, false, Arc::clone(&kind), Arc::clone(&kind))),
            Arc::new(InListExpr::try_new(Arc::clone(&id), vec![lit(1i64), Arc::clone(&id)], false, &schema).unwrap()),
            Arc::new(
                CaseExpr::try_new(
                    None,
                    vec![(bin(Arc::clone(&id), Operator::Eq, lit(1i64)), lit(true))],
                    Some(lit(false)),
                )
                .unwrap(),
            ),
        ];
        for e in &safe {
            assert_eq!(safe_for_pruning(e).as_ref(), Some(e), "{e}");
        }
        for e in &unsafe_ {
            assert_eq!(safe_for_pruning(e), None, "{e}");
        }
        // A conjunction keeps its safe conjuncts only.
        let all = conjunction_opt(safe.iter().chain(&unsafe_).cloned()).unwrap();
        let kept = safe_for_pruning(&all).unwrap();
        assert_eq!(split_conjunction(&kept).len(), safe.len(), "{kept}");
        // Too deep to look at: dropped.
        let mut deep = bin(Arc::clone(&id), Operator::Eq, lit(0i64));
        for i in 1..200i64 {
            deep = bin(deep, Operator::Or, bin(Arc::clone(&id), Operator::Eq, lit(i)));
        }
        assert_eq!(safe_for_pruning(&deep), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_selective_filter_on_a_sorted_column_prunes_row_groups_from_the_estimate() {
        let results = tempfile::tempdir().unwrap();
        let engine = LocalEngine::new(lake(), results.path());
        let all = engine.estimate_scan("lake", "select payload from events").await.unwrap();
        assert_eq!((all.row_groups, all.row_groups_kept, all.pruning_scans), (10, 10, 0));
        let narrow = engine.estimate_scan("lake", "select payload from events where id < 1500").await.unwrap();
        assert_eq!((narrow.row_groups, narrow.row_groups_kept, narrow.pruning_scans), (10, 2, 1));
        assert!(narrow.bytes < all.bytes / 3, "{narrow:?} vs {all:?}");
        // A filter on an unsorted column keeps every row group (min/max cannot exclude any).
        let kinds = engine.estimate_scan("lake", "select payload from events where kind = 'k3'").await.unwrap();
        assert_eq!(kinds.row_groups_kept, 10);
        // Nothing matches: nothing is read.
        let none = engine.estimate_scan("lake", "select payload from events where id > 99999").await.unwrap();
        assert_eq!((none.row_groups_kept, none.bytes), (0, 0));
        let method = narrow.method();
        assert!(method.contains("2 of 10 row groups kept by min/max statistics"), "{method}");

        // The estimate measures what the engine reads: DataFusion's bytes_scanned of the run.
        for sql in [
            "select payload from events",
            "select sum(id) from events where id < 1500",
            "select kind, payload from events where id between 2000 and 4999",
        ] {
            let est = engine.estimate("lake", sql).await.unwrap();
            let mut j = QueryJob { database: "lake".into(), ..job(&format!("m{}", sql.len()), sql) };
            // The whole result: a run stops reading at limits.maxRows.
            j.limits.max_rows = crate::spec::MAX_MAX_ROWS;
            let actual = succeeded(run(&engine, &j).await).bytes_scanned.unwrap();
            let error = (est.bytes as f64 - actual as f64).abs() / actual as f64;
            assert!(error < 0.25, "{sql}: estimate {} vs {actual} scanned", est.bytes);
            assert_eq!(est.cost_usd, 0.0, "local queries are not charged per byte");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn csv_tables_are_estimated_at_their_file_size() {
        let results = tempfile::tempdir().unwrap();
        let engine = LocalEngine::new(lake(), results.path());
        let size = std::fs::metadata(lake().join("lake/notes.csv")).unwrap().len();
        let est = engine.estimate_scan("lake", "select note from notes where id = 1").await.unwrap();
        assert_eq!((est.bytes, est.csv_files, est.parquet_files), (size, 1, 0));
        assert!(est.method().contains("1 CSV file counted whole"), "{}", est.method());
        let constant = engine.estimate("lake", "select 1 + 1").await.unwrap();
        assert_eq!(constant.bytes, 0);
        assert!(constant.method.contains("reads no table files"), "{}", constant.method);
        assert!(matches!(engine.estimate("lake", "select nope from notes").await, Err(EngineError::Permanent(_))));
    }
}
