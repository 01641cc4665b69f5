//! Fixtures for the tests of this module's parts: requests, a recording loopback webhook
//! server, fast options.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};

use super::ChatOptions;
use crate::spec::*;

/// A request in `phase`: in `growth`, with a question and SQL full of characters to escape.
pub(super) fn request(phase: Phase) -> QueryRequest {
    QueryRequest {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: ObjectMeta {
            name: "top-customers".into(),
            namespace: Some("growth".into()),
            uid: Some("uid-1".into()),
            generation: Some(2),
            annotations: [(REQUESTER_ANNOTATION.to_string(), "alice".to_string())].into(),
            ..Default::default()
        },
        spec: QueryRequestSpec {
            question: Some("Who spent the most <b>& why</b>? <users/all>".into()),
            catalog: CatalogRef { database: "tpch".into(), tables: vec![] },
            ..Default::default()
        },
        status: Some(QueryRequestStatus {
            phase,
            observed_generation: 2,
            approval_round: 1,
            generated: Some(Generated {
                sql: "select c_name, sum(o_totalprice) as total\nfrom orders\n  join customer on c_custkey = o_custkey\nwhere o_comment <> 'x' and 1 < 2\ngroup by 1 order by 2 desc limit 10".into(),
                sql_digest: "0123456789abcdef".repeat(4),
                explanation: "Sums <totals> per customer".into(),
                confidence: 0.87,
                tables_used: vec!["orders".into(), "customer".into()],
                model: "offline".into(),
                ..Default::default()
            }),
            estimate: Some(Estimate { bytes: 3 * 1024 * 1024, cost_usd: 0.00002, method: "footer".into() }),
            ..Default::default()
        }),
    }
}

/// A Done request with a `rows` × `cols` preview (column 1 NULL), approved by bob.
pub(super) fn done(rows: usize, cols: usize) -> QueryRequest {
    let mut r = request(Phase::Done);
    let st = r.status.as_mut().unwrap();
    // From JSON, so fields added to the type later keep their defaults here.
    st.approval = Some(
        serde_json::from_value(json!({
            "decision": "Approve", "by": "bob", "at": "2026-01-01T00:00:00Z", "generation": 2,
            "sqlDigest": "d", "decisionId": "x",
        }))
        .unwrap(),
    );
    st.execution = Some(Execution {
        token: "t".into(),
        attempt: 1,
        state: "Succeeded".into(),
        rows: Some(rows as u64),
        bytes_scanned: Some(5 * 1024 * 1024),
        cost_usd: Some(0.031),
        duration_ms: Some(1_500),
        output_location: Some("s3://results/growth/top-customers/abc.csv".into()),
        chart_location: Some("s3://results/growth/top-customers/abc.svg".into()),
        preview: Some(Preview {
            columns: (0..cols).map(|i| format!("col{i}")).collect(),
            rows: (0..rows)
                .map(|r| (0..cols).map(|c| if c == 1 { None } else { Some(format!("<v{r}.{c}>")) }).collect())
                .collect(),
            truncated: false,
        }),
        ..Default::default()
    });
    r
}

/// One request the server received.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    pub(super) query: BTreeMap<String, String>,
    pub(super) body: Value,
}

type Script = dyn Fn(usize) -> (u16, Vec<(&'static str, String)>, Duration) + Send + Sync;

/// A recording loopback webhook.
pub(super) struct Server {
    /// Its webhook URL (`key` and `token` are `KEYSECRET123` and `TOKSECRET456`).
    pub(super) url: String,
    pub(super) seen: Arc<Mutex<Vec<Seen>>>,
}

/// Answers request `n` (from 0) with `script(n)`: status, headers and a delay before answering.
pub(super) async fn server(
    script: impl Fn(usize) -> (u16, Vec<(&'static str, String)>, Duration) + Send + Sync + 'static,
) -> Server {
    let seen: Arc<Mutex<Vec<Seen>>> = Default::default();
    let script: Arc<Script> = Arc::new(script);
    let n = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
        let (s, script, n) = (s.clone(), script.clone(), n.clone());
        async move {
            let query = Url::parse(&format!("http://x/?{}", uri.query().unwrap_or("")))
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            s.lock().unwrap().push(Seen { query, body: serde_json::from_slice(&body).unwrap_or(Value::Null) });
            let (status, headers, delay) = script(n.fetch_add(1, Ordering::SeqCst));
            tokio::time::sleep(delay).await;
            let mut b = axum::response::Response::builder().status(status);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(axum::body::Body::from(r#"{"error":{"message":"backend says no"}}"#)).unwrap()
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { url: format!("http://127.0.0.1:{port}/v1/spaces/AAAA/messages?key=KEYSECRET123&token=TOKSECRET456"), seen }
}

/// Short timeouts, backoffs and cool-down, for tests.
pub(super) fn fast() -> ChatOptions {
    ChatOptions {
        timeout: Duration::from_millis(400),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(80),
        max_retry_after: Duration::from_secs(2),
        breaker_cooldown: Duration::from_millis(300),
        ..Default::default()
    }
}
