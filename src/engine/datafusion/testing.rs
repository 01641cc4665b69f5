//! Fixtures of the local engine's tests: a shared TPC-H warehouse, a Parquet `lake`, jobs and
//! helpers that run one to its end.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;

use super::LocalEngine;
use crate::engine::{Engine, ExecState, QueryJob, QueryOutcome, Waker};
use crate::results::ResultKey;
use crate::spec::{EffectiveLimits, ObjectKey};
use crate::warehouse;

/// One scale-0.01 TPC-H warehouse shared by every engine test (built once).
pub(super) fn data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        warehouse::init_tpch(dir.path(), "tpch", 0.01, &mut |_, _| {}).unwrap();
        dir
    })
    .path()
}

pub(super) fn engine() -> (LocalEngine, tempfile::TempDir) {
    let results = tempfile::tempdir().unwrap();
    (LocalEngine::new(data_dir(), results.path()), results)
}

pub(super) fn job(token: &str, sql: &str) -> QueryJob {
    QueryJob {
        key: ObjectKey::new("default", token),
        token: token.to_string(),
        database: "tpch".into(),
        sql: sql.into(),
        limits: EffectiveLimits {
            max_rows: 1000,
            max_bytes_scanned: None,
            timeout_ms: 120_000,
            max_result_bytes: 1 << 30,
        },
        result: ResultKey {
            namespace: "default".into(),
            name: token.into(),
            uid: "u".into(),
            generation: 1,
            attempt: 0,
        },
    }
}

pub(super) fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let m = Arc::clone(&n);
    (
        Arc::new(move |_: &ObjectKey| {
            m.fetch_add(1, Ordering::SeqCst);
        }),
        n,
    )
}

pub(super) async fn wait(engine: &LocalEngine, id: &str) -> ExecState {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match engine.poll(id).await.unwrap() {
            ExecState::Running { .. } if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            state => return state,
        }
    }
}

pub(super) async fn run(engine: &LocalEngine, job: &QueryJob) -> ExecState {
    let (waker, _) = counting_waker();
    let id = engine.start(job, waker).await.unwrap();
    wait(engine, &id).await
}

pub(super) fn succeeded(state: ExecState) -> QueryOutcome {
    match state {
        ExecState::Succeeded(o) => o,
        other => panic!("expected success, got {other:?}"),
    }
}

pub(super) fn failure(state: ExecState) -> String {
    match state {
        ExecState::Failed { reason, transient } => {
            assert!(!transient);
            reason
        }
        other => panic!("expected failure, got {other:?}"),
    }
}

/// Ten billion generated rows: minutes of work, in batches that yield (so it can be stopped).
pub(super) const SLOW: &str = "select sum(value) from range(10000000000)";

/// A database `lake` with `events.parquet` (10,000 rows sorted by `id`, row groups of 1,000,
/// page statistics) and `notes.csv`.
pub(super) fn lake() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        use datafusion::arrow::array::{Int64Array, StringArray};
        use datafusion::arrow::datatypes::{DataType, Field};
        use datafusion::parquet::arrow::ArrowWriter;
        use datafusion::parquet::file::properties::WriterProperties;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lake");
        std::fs::create_dir_all(&db).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("payload", DataType::Utf8, false),
        ]));
        let props = WriterProperties::builder().set_max_row_group_row_count(Some(1000)).build();
        let file = std::fs::File::create(db.join("events.parquet")).unwrap();
        let mut w = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props)).unwrap();
        for start in (0..10_000i64).step_by(1000) {
            let ids: Vec<i64> = (start..start + 1000).collect();
            let kinds: Vec<String> = ids.iter().map(|i| format!("k{}", i % 7)).collect();
            let payloads: Vec<String> =
                ids.iter().map(|i| format!("payload-{i}-{}", "x".repeat((i % 50) as usize))).collect();
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(kinds)),
                    Arc::new(StringArray::from(payloads)),
                ],
            )
            .unwrap();
            w.write(&batch).unwrap();
        }
        w.close().unwrap();
        std::fs::write(db.join("notes.csv"), "id,note\n1,first\n2,second\n").unwrap();
        dir
    })
    .path()
}
