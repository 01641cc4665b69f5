//! One execution of an approved query: plan it under the memory pool, check the scan budget,
//! stream the result to CSV within its limits, commit it, record the final state and wake the
//! controller.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::error::DataFusionError;
use datafusion::physical_plan::execute_stream;
use futures::StreamExt;
use tokio::sync::Semaphore;

use super::csv::{PreviewBuilder, csv_header, render_batch, result_columns};
use super::executions::Executions;
use super::scan::{estimate_scans, scanned_bytes};
use super::session::{RunError, datafusion_message, read_only};
use crate::engine::{ExecState, QueryJob, QueryOutcome, Waker};
use crate::results::{Artifact, PendingResult, ResultStore};
use crate::spec::ObjectKey;
use crate::spec::quantity::{format_duration, human_bytes};
use crate::warehouse;

/// Everything one execution task needs, cloned out of the engine.
pub(super) struct Run {
    pub(super) id: String,
    pub(super) job: QueryJob,
    pub(super) data_dir: PathBuf,
    pub(super) results: Arc<dyn ResultStore>,
    pub(super) executions: Arc<Mutex<Executions>>,
    pub(super) max_query_memory: u64,
}

impl Run {
    /// A DataFusion error of this run; running out of the memory pool says which setting it was.
    fn error(&self, e: DataFusionError) -> RunError {
        if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
            return RunError(format!(
                "query needed more memory than one query may use ({}, --max-query-memory / SQLCTL_MAX_QUERY_MEMORY): {}",
                human_bytes(self.max_query_memory),
                datafusion_message(&e)
            ));
        }
        RunError::from(e)
    }

    /// Plans, checks the budget, streams the result to CSV and builds the outcome; the result is
    /// written but not yet committed (the outcome's location is set by the commit).
    async fn execute(&self, started: Instant) -> Result<(QueryOutcome, PendingResult), RunError> {
        let (ctx, _) = warehouse::open_session_limited(&self.data_dir, &self.job.database, self.max_query_memory)
            .await
            .map_err(|e| RunError(e.to_string()))?;
        let max_rows = self.job.limits.max_rows;
        let max_bytes = self.job.limits.max_result_bytes;
        let df = ctx.sql_with_options(&self.job.sql, read_only()).await.map_err(|e| self.error(e))?;
        // The approved limits.maxRows, applied on top of the approved statement (the SQL text is
        // untouched): one row more than kept, so the writer knows whether the result was cut.
        let fetch = usize::try_from(max_rows.saturating_add(1)).unwrap_or(usize::MAX);
        let df = df.limit(0, Some(fetch)).map_err(|e| self.error(e))?;
        let plan = df.create_physical_plan().await.map_err(|e| self.error(e))?;
        if let Some(e) = self.executions.lock().unwrap_or_else(|e| e.into_inner()).by_id.get_mut(&self.id) {
            e.plan = Some(Arc::clone(&plan));
        }

        // `limits.max_bytes_scanned` of a job is the ceiling the controller grants this run: the
        // request's `limits.maxBytesScanned`, or more when an approver accepted an estimate over
        // it (`approve --allow-over-budget`). A second wall behind the controller's check at
        // approval: the data may have grown since the request was estimated.
        let budget = self.job.limits.max_bytes_scanned;
        if let Some(budget) = budget {
            let p = Arc::clone(&plan);
            let estimate = tokio::task::spawn_blocking(move || estimate_scans(&p))
                .await
                .map_err(|e| RunError(format!("estimating scan size: {e}")))?;
            if estimate.bytes > budget {
                return Err(RunError(format!(
                    "query would scan about {} of table data, over the {} this run may scan (limits.maxBytesScanned, or what an over-budget approval accepted)",
                    human_bytes(estimate.bytes),
                    human_bytes(budget)
                )));
            }
        }

        let schema = plan.schema();
        let mut stream = execute_stream(Arc::clone(&plan), ctx.task_ctx()).map_err(|e| self.error(e))?;
        let mut out = self.results.create(&self.job.result, Artifact::Csv).await.map_err(|e| RunError(e.message))?;
        let mut preview = PreviewBuilder::new(&schema, max_rows);
        let too_large = |rows: u64| {
            RunError(format!(
                "the result grew past limits.maxResultBytes ({}) after {rows} rows, so it was not kept: raise limits.maxResultBytes, select fewer columns or rows, or lower limits.maxRows",
                human_bytes(max_bytes)
            ))
        };
        let header = csv_header(&schema);
        let mut written = header.len() as u64;
        if written > max_bytes {
            return Err(too_large(0));
        }
        out.write(header.as_bytes()).await.map_err(|e| RunError(e.message))?;
        let mut rows = 0u64;
        let mut truncated = false;
        let mut buf = String::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| self.error(e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            if rows >= max_rows {
                truncated = true;
                break;
            }
            let take = usize::try_from(max_rows - rows).unwrap_or(usize::MAX).min(batch.num_rows());
            let batch = if take < batch.num_rows() {
                truncated = true;
                batch.slice(0, take)
            } else {
                batch
            };
            buf.clear();
            let room = usize::try_from(max_bytes - written).unwrap_or(usize::MAX);
            if let Some(fitted) = render_batch(&batch, &mut buf, &mut preview, room)? {
                return Err(too_large(rows + fitted as u64));
            }
            out.write(buf.as_bytes()).await.map_err(|e| RunError(e.message))?;
            written += buf.len() as u64;
            rows += batch.num_rows() as u64;
            if let Some(budget) = budget {
                let scanned = scanned_bytes(&plan).unwrap_or(0);
                if scanned > budget {
                    return Err(RunError(format!(
                        "query scanned {} of table data, over the {} this run may scan (limits.maxBytesScanned, or what an over-budget approval accepted)",
                        human_bytes(scanned),
                        human_bytes(budget)
                    )));
                }
            }
            if truncated {
                break;
            }
        }
        drop(stream);
        let mut preview = preview.finish();
        preview.truncated |= truncated;
        let outcome = QueryOutcome {
            rows,
            bytes_scanned: scanned_bytes(&plan),
            cost_usd: None,
            duration_ms: started.elapsed().as_millis() as u64,
            output_location: String::new(),
            preview,
            truncated: truncated.then(|| format!("stopped at limits.maxRows ({max_rows} rows)")),
            columns: result_columns(&schema),
        };
        Ok((outcome, out))
    }

    /// The whole execution task: waits for a slot, runs and commits under the job's timeout,
    /// records the final state (unless cancelled meanwhile) and then wakes the controller.
    pub(super) async fn run_to_end(self, slots: Arc<Semaphore>, waker: Waker) {
        let key: ObjectKey = self.job.key.clone();
        let _slot = slots.acquire_owned().await;
        let started = Instant::now();
        let timeout = Duration::from_millis(self.job.limits.timeout_ms);
        tracing::info!(id = %self.id, request = %key, database = %self.job.database, "local query started");
        // The commit (an upload to S3, if any) is part of the run: it counts against the
        // timeout, and the execution succeeds only once the result is where its location says.
        let work = async {
            let (mut outcome, pending) = self.execute(started).await.map_err(|RunError(reason)| (reason, false))?;
            outcome.output_location = self.results.commit(pending).await.map_err(|e| (e.message, e.transient))?;
            Ok::<_, (String, bool)>(outcome)
        };
        let state = match tokio::time::timeout(timeout, work).await {
            Ok(Ok(outcome)) => ExecState::Succeeded(outcome),
            Ok(Err((reason, transient))) => ExecState::Failed { reason, transient },
            Err(_) => ExecState::Failed {
                reason: format!("query exceeded its timeout of {}", format_duration(timeout)),
                transient: false,
            },
        };
        match &state {
            ExecState::Succeeded(o) => {
                tracing::info!(id = %self.id, request = %key, rows = o.rows, duration_ms = o.duration_ms, "local query succeeded")
            }
            ExecState::Failed { reason, .. } => {
                tracing::info!(id = %self.id, request = %key, reason, "local query failed")
            }
            _ => {}
        }
        let recorded = self.executions.lock().unwrap_or_else(|e| e.into_inner()).finish(&self.id, state);
        if recorded {
            waker(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    use super::super::testing::{SLOW, counting_waker, data_dir, engine, failure, job, run, succeeded, wait};
    use super::super::{LocalEngine, PREVIEW_MAX_BYTES, run_sql_collect};
    #[cfg(feature = "aws")]
    use crate::aws::S3Uri;
    use crate::engine::Engine;
    #[cfg(feature = "aws")]
    use crate::results::local::LocalResults;
    #[cfg(feature = "aws")]
    use crate::results::s3::S3Results;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_join_with_aggregates_writes_csv_and_a_preview() {
        let (engine, results) = engine();
        let sql = "select n.n_name, count(*) as orders, sum(o.o_totalprice) as total, min(o.o_orderdate) as first \
                   from orders o join customer c on o.o_custkey = c.c_custkey join nation n on c.c_nationkey = n.n_nationkey \
                   group by n.n_name order by n.n_name";
        let (waker, woken) = counting_waker();
        let id = engine.start(&job("join", sql), waker).await.unwrap();
        assert_eq!(id, "join");
        let outcome = succeeded(wait(&engine, &id).await);
        // The waker runs just after the state is recorded: a poll can see the state first.
        let woke_by = std::time::Instant::now() + Duration::from_secs(10);
        while woken.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < woke_by {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(outcome.rows, 25);
        assert_eq!(outcome.cost_usd, None);
        assert!(outcome.bytes_scanned.is_some_and(|b| b > 0), "{:?}", outcome.bytes_scanned);
        assert_eq!(outcome.preview.columns, ["n_name", "orders", "total", "first"]);
        assert_eq!(outcome.preview.rows.len(), 25);
        assert!(!outcome.preview.truncated);
        let first = &outcome.preview.rows[0];
        assert_eq!(first[0].as_deref(), Some("ALGERIA"));
        let total = first[2].as_deref().unwrap();
        assert!(total.split_once('.').is_some_and(|(_, cents)| cents.len() == 2), "decimal sum {total}");
        assert!(first[3].as_deref().unwrap().starts_with("199"), "date {:?}", first[3]);

        // The CSV holds a header and every row, under results_dir/<result key>.csv.
        let path = results.path().join("default/join/u/1-0.csv");
        assert_eq!(outcome.output_location, path.display().to_string());
        let csv = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "n_name,orders,total,first");
        assert_eq!(lines.len(), 26);
        // The same rows as an independent run.
        let (columns, rows) = run_sql_collect(data_dir(), "tpch", sql).await.unwrap();
        assert_eq!(columns, outcome.preview.columns);
        assert_eq!(rows, outcome.preview.rows);
        let rendered: Vec<String> =
            rows.iter().map(|r| r.iter().map(|c| c.clone().unwrap()).collect::<Vec<_>>().join(",")).collect();
        assert_eq!(lines[1..], rendered.iter().map(String::as_str).collect::<Vec<_>>()[..]);
        // No temp file is left next to it.
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["1-0.csv"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decimal_sums_and_date_filters_match_an_independent_run() {
        let (engine, _results) = engine();
        let sql = "select sum(l_extendedprice) as revenue, count(*) as n from tpch.lineitem where l_shipdate < date '1995-01-01'";
        let outcome = succeeded(run(&engine, &job("sum", sql)).await);
        let (_, rows) = run_sql_collect(data_dir(), "tpch", sql).await.unwrap();
        assert_eq!(outcome.preview.rows, rows);
        assert!(rows[0][0].as_deref().unwrap().contains('.'));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unbounded_output_the_csv_and_the_preview_stop_at_max_rows_and_the_preview_is_capped_by_bytes() {
        let (engine, results) = engine();
        let mut j =
            job("cap", "select n_nationkey, n_name, null as nothing, '' as empty from nation order by n_nationkey");
        j.limits.max_rows = 10;
        let outcome = succeeded(run(&engine, &j).await);
        assert_eq!(outcome.rows, 10);
        assert_eq!(outcome.preview.rows.len(), 10);
        assert!(outcome.preview.truncated);
        assert_eq!(outcome.truncated.as_deref(), Some("stopped at limits.maxRows (10 rows)"));
        assert_eq!(outcome.preview.rows[0], [Some("0".into()), Some("ALGERIA".into()), None, Some(String::new())]);
        let csv = std::fs::read_to_string(results.path().join("default/cap/u/1-0.csv")).unwrap();
        assert_eq!(csv.lines().count(), 11, "header and the first 10 rows of the ORDER BY");
        assert_eq!(csv.lines().nth(1).unwrap(), "0,ALGERIA,,\"\"");
        assert!(csv.lines().nth(10).unwrap().starts_with("9,"), "{csv}");

        // A big scan stops at maxRows too, in the file and in what is counted.
        let mut j = job("few", "select * from lineitem");
        j.limits.max_rows = 5;
        let outcome = succeeded(run(&engine, &j).await);
        assert_eq!(outcome.rows, 5);
        let csv = std::fs::read_to_string(results.path().join("default/few/u/1-0.csv")).unwrap();
        assert_eq!(csv.lines().count(), 6);

        // Exactly maxRows rows is not a truncation.
        let mut j = job("five", "select * from region");
        j.limits.max_rows = 5;
        let outcome = succeeded(run(&engine, &j).await);
        assert_eq!((outcome.rows, outcome.preview.truncated, outcome.truncated), (5, false, None));

        let j = job("bytes", "select repeat('x', 10000) as big from lineitem limit 100");
        let outcome = succeeded(run(&engine, &j).await);
        assert_eq!(outcome.rows, 100);
        assert!(outcome.preview.truncated);
        assert_eq!(outcome.preview.rows.len(), PREVIEW_MAX_BYTES / 10_000);

        let outcome = succeeded(run(&engine, &job("exact", "select * from region")).await);
        assert_eq!(outcome.preview.rows.len(), 5);
        assert!(!outcome.preview.truncated);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unbounded_output_a_result_over_max_result_bytes_fails_and_keeps_no_file() {
        let (engine, results) = engine();
        let mut j = job("huge", "select l_comment from lineitem");
        j.limits.max_rows = crate::spec::MAX_MAX_ROWS;
        j.limits.max_result_bytes = 64 * 1024;
        let reason = failure(run(&engine, &j).await);
        assert!(reason.contains("limits.maxResultBytes (64.0 KiB)") && reason.contains("rows"), "{reason}");
        let dir = results.path().join("default/huge/u");
        let left: Vec<_> = std::fs::read_dir(&dir).map(|d| d.flatten().collect()).unwrap_or_default();
        assert!(left.is_empty(), "no partial or temp file: {left:?}");
        // One cell larger than the whole allowance stops the writer before it is copied.
        let mut j = job("cell", "select repeat('x', 100000) as big");
        j.limits.max_result_bytes = 1000;
        assert!(failure(run(&engine, &j).await).contains("after 0 rows"));
        // Within the limit: written whole.
        let mut j = job("fits", "select n_name from nation");
        j.limits.max_result_bytes = 64 * 1024;
        assert_eq!(succeeded(run(&engine, &j).await).rows, 25);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_over_the_memory_pool_fails_and_names_the_setting() {
        let results = tempfile::tempdir().unwrap();
        let engine = LocalEngine::new(data_dir(), results.path()).with_max_query_memory(1 << 20);
        // A hash join's build side cannot spill: it needs more than 1 MiB here.
        let sql = "select count(*) from lineitem a join lineitem b on a.l_comment = b.l_comment and a.l_orderkey = b.l_orderkey";
        let reason = failure(run(&engine, &job("pool", sql)).await);
        assert!(reason.contains("--max-query-memory") && reason.contains("1.0 MiB"), "{reason}");
        // The default pool runs it.
        let (engine, _r) = self::engine();
        assert!(engine.max_query_memory >= 256 << 20);
        succeeded(run(&engine, &job("pool", sql)).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_over_its_timeout_fails() {
        let (engine, results) = engine();
        let mut j = job("slow", SLOW);
        j.limits.timeout_ms = 300;
        let started = Instant::now();
        let reason = failure(run(&engine, &j).await);
        assert_eq!(reason, "query exceeded its timeout of 300ms");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(!results.path().join("default/slow/u/1-0.csv").exists());
        let leftovers = std::fs::read_dir(results.path().join("default/slow/u")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 0, "temp file left behind");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn planning_errors_fail_with_datafusion_s_message() {
        let (engine, _results) = engine();
        let reason = failure(run(&engine, &job("nocol", "select no_such_column from orders")).await);
        assert!(reason.contains("no_such_column"), "{reason}");
        let reason = failure(run(&engine, &job("notable", "select * from nope")).await);
        assert!(reason.contains("nope"), "{reason}");
        let mut j = job("nodb", "select 1");
        j.database = "sales".into();
        let reason = failure(run(&engine, &j).await);
        assert!(reason.contains("sqlctl init"), "{reason}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_scan_budget_is_enforced_from_file_sizes() {
        let (engine, _results) = engine();
        let narrow = engine.estimate_scan("tpch", "select l_orderkey from lineitem").await.unwrap().bytes;
        let wide = engine.estimate_scan("tpch", "select * from lineitem").await.unwrap().bytes;
        let file = std::fs::metadata(data_dir().join("tpch/lineitem.parquet")).unwrap().len();
        assert!(0 < narrow && narrow < wide && wide <= file, "{narrow} {wide} {file}");

        let mut j = job("budget", "select * from lineitem");
        j.limits.max_bytes_scanned = Some(narrow);
        let reason = failure(run(&engine, &j).await);
        assert!(reason.contains("this run may scan") && reason.contains("maxBytesScanned"), "{reason}");

        let mut j = job("within", "select count(*) from region");
        j.limits.max_bytes_scanned = Some(wide);
        succeeded(run(&engine, &j).await);
    }

    /// `--results s3://…` against moto: a small result in one PutObject, a large one in parts.
    #[cfg(feature = "aws")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_are_uploaded_to_s3_whole_or_in_parts() {
        let Some(url) = crate::aws::testing::moto_url() else { return };
        let conf = crate::aws::testing::config_for(&url).await;
        let client = crate::aws::s3(&conf);
        let bucket = crate::aws::testing::unique("results");
        client.create_bucket().bucket(&bucket).send().await.unwrap();
        let root = S3Uri::parse(&format!("s3://{bucket}/team/out")).unwrap();
        let results = tempfile::tempdir().unwrap();
        let store = Arc::new(
            S3Results::upload_from(client.clone(), root, LocalResults::new(results.path()))
                .with_part_size(5 * 1024 * 1024),
        );
        let engine = LocalEngine::new(data_dir(), results.path()).with_results(store.clone());

        let small = succeeded(run(&engine, &job("small", "select r_name from region order by r_name")).await);
        assert_eq!(small.output_location, format!("s3://{bucket}/team/out/default/small/u/1-0.csv"));
        let body = store.read(&small.output_location, None).await.unwrap().unwrap();
        assert_eq!(body, std::fs::read(results.path().join("default/small/u/1-0.csv")).unwrap());
        assert!(String::from_utf8(body).unwrap().starts_with("r_name\nAFRICA\n"));

        let mut whole = job("big", "select * from lineitem");
        whole.limits.max_rows = crate::spec::MAX_MAX_ROWS;
        let big = succeeded(run(&engine, &whole).await);
        let local = std::fs::read(results.path().join("default/big/u/1-0.csv")).unwrap();
        assert!(local.len() > 5 * 1024 * 1024, "{} bytes: not multipart", local.len());
        let head = client.head_object().bucket(&bucket).key("team/out/default/big/u/1-0.csv").send().await.unwrap();
        assert!(head.e_tag().unwrap_or_default().contains('-'), "a multipart ETag: {:?}", head.e_tag());
        assert_eq!(store.read(&big.output_location, None).await.unwrap().unwrap(), local);
        assert_eq!(store.read(&big.output_location, Some(1024)).await.unwrap(), None);
        let uploads = client.list_multipart_uploads().bucket(&bucket).send().await.unwrap();
        assert!(uploads.uploads().is_empty(), "no upload left open");

        // The chart goes to S3 next to the CSV, and a local copy next to the local CSV.
        let svg = store.put_next_to(&small.output_location, Artifact::Chart, b"<svg/>".to_vec()).await;
        assert_eq!(svg.unwrap(), format!("s3://{bucket}/team/out/default/small/u/1-0.svg"));
        let got = client.get_object().bucket(&bucket).key("team/out/default/small/u/1-0.svg").send().await.unwrap();
        assert_eq!(got.content_type(), Some("image/svg+xml"));
        assert!(results.path().join("default/small/u/1-0.svg").exists());
        // Only locations under the configured root are read.
        for other in [format!("s3://{bucket}/elsewhere/x.csv"), "s3://other/team/out/default/small/u/1-0.csv".into()] {
            let err = store.read(&other, None).await.unwrap_err().to_string();
            assert!(err.contains("not a result of this engine"), "{err}");
        }
    }

    #[cfg(feature = "aws")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_failures_are_transient_unless_a_retry_cannot_help() {
        let Some(url) = crate::aws::testing::moto_url() else { return };
        let results = tempfile::tempdir().unwrap();
        let conf = crate::aws::testing::config_for(&url).await;
        let missing = S3Uri::parse(&format!("s3://{}/p", crate::aws::testing::unique("missing"))).unwrap();
        let upload = |conf: &aws_config::SdkConfig, root: S3Uri| {
            Arc::new(S3Results::upload_from(crate::aws::s3(conf), root, LocalResults::new(results.path())))
        };
        let engine = LocalEngine::new(data_dir(), results.path()).with_results(upload(&conf, missing.clone()));
        match run(&engine, &job("nobucket", "select 1")).await {
            ExecState::Failed { reason, transient: false } => {
                assert!(reason.contains(&format!("bucket {} does not exist", missing.bucket)), "{reason}");
            }
            other => panic!("expected a permanent failure, got {other:?}"),
        }
        // Nothing listens on port 9: a connection failure is worth another attempt.
        let closed = crate::aws::testing::config_for("http://127.0.0.1:9").await;
        let engine = LocalEngine::new(data_dir(), results.path()).with_results(upload(&closed, missing));
        match run(&engine, &job("unreachable", "select 1")).await {
            ExecState::Failed { reason, transient: true } => assert!(reason.contains("S3 PutObject"), "{reason}"),
            other => panic!("expected a transient failure, got {other:?}"),
        }
    }
}
