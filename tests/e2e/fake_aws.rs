//! A loopback fake of the AWS JSON protocol for what moto cannot do, fronting moto for the rest.
//!
//! moto's Athena ignores `ClientRequestToken`, never fails and runs no SQL, and its Glue ignores
//! pagination. This server answers `AmazonAthena.*` itself — idempotent per token, with
//! executions that run the SQL on the local warehouse through DataFusion, stay RUNNING, report
//! bytes scanned or FAIL as markers in the SQL ask (`'fake:…'` in a string literal, since comments are
//! not part of the canonical SQL that runs) — and optionally
//! `AWSGlue.GetTables`/`GetDatabases` with small pages. Every other request (DynamoDB, SQS, S3,
//! STS, Glue when not faked) is forwarded unchanged to moto. It counts every call by service and
//! operation, which is how the tests measure AWS calls per request.
//!
//! `EXPLAIN …` executions (the engine's dry-run plan before approval) ignore the markers, are
//! not start effects, are counted as `StartQueryExecution(EXPLAIN)`, and run DataFusion's
//! `EXPLAIN` on the first poll: SUCCEEDED, or FAILED (USER) with DataFusion's planning error.
//!
//! Markers: `fake:running=N` (RUNNING for N polls, default 1), `fake:forever`,
//! `fake:scan=BYTES` (DataScannedInBytes while running), `fake:fail-transient=K` (the first K
//! executions of this SQL fail with a retryable SYSTEM error), `fake:fail-user`, `fake:throttle`
//! (every start is refused with `TooManyRequestsException`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use sqlctl::catalog::Table;

/// A running fake; stops when dropped.
pub struct FakeAws {
    pub url: String,
    pub state: Arc<FakeState>,
    _server: crate::harness::Served,
}

/// Glue served by the fake: one database's tables, `page` per `GetTables` page.
pub struct FakeGlue {
    pub database: String,
    pub tables: Vec<Table>,
    pub page: usize,
}

pub struct FakeState {
    upstream: Option<String>,
    warehouse: PathBuf,
    http: reqwest::Client,
    glue: Option<FakeGlue>,
    calls: Mutex<BTreeMap<(String, String), u64>>,
    pub athena: Mutex<Athena>,
}

#[derive(Default)]
pub struct Athena {
    by_token: HashMap<String, String>,
    pub execs: HashMap<String, Exec>,
    /// Executions created (start *effects*), by SQL.
    pub effects: HashMap<String, u32>,
    /// StopQueryExecution calls, by query id.
    pub stopped: Vec<String>,
}

/// A result's column names and rows (NULL as None).
pub type Rows = (Vec<String>, Vec<Vec<Option<String>>>);

#[derive(Clone, Debug)]
#[allow(dead_code)]
pub struct Exec {
    pub id: String,
    pub sql: String,
    pub database: String,
    pub token: String,
    pub state: String,
    pub polls: u32,
    pub output_location: String,
    pub error: Option<(i32, bool, String)>,
    pub rows: Option<Rows>,
}

impl FakeAws {
    /// Starts on 127.0.0.1 (a free port), forwarding what it does not fake to `upstream`.
    pub fn start(upstream: Option<String>, warehouse: PathBuf, glue: Option<FakeGlue>) -> FakeAws {
        let state = Arc::new(FakeState {
            upstream,
            warehouse,
            http: reqwest::Client::new(),
            glue,
            calls: Mutex::new(BTreeMap::new()),
            athena: Mutex::new(Athena::default()),
        });
        let st = state.clone();
        let server = crate::harness::Served::start(2, |_| axum::Router::new().fallback(handle).with_state(st));
        FakeAws { url: server.url(), state, _server: server }
    }

    /// Calls so far by (service, operation).
    pub fn calls(&self) -> BTreeMap<(String, String), u64> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn reset_calls(&self) {
        self.state.calls.lock().unwrap().clear();
    }

    /// Calls so far per service.
    pub fn calls_by_service(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for ((s, _), n) in self.calls() {
            *m.entry(s).or_insert(0) += n;
        }
        m
    }

    pub fn effects(&self, sql_contains: &str) -> u32 {
        self.state.athena.lock().unwrap().effects.iter().filter(|(s, _)| s.contains(sql_contains)).map(|(_, n)| n).sum()
    }

    pub fn stops(&self) -> usize {
        self.state.athena.lock().unwrap().stopped.len()
    }

    pub fn calls_named(&self, service: &str, op: &str) -> u64 {
        self.calls().get(&(service.to_string(), op.to_string())).copied().unwrap_or(0)
    }
}

fn marker(sql: &str, name: &str) -> Option<String> {
    let at = sql.find(&format!("fake:{name}"))?;
    let rest = &sql[at + 5 + name.len()..];
    Some(rest.strip_prefix('=').map(|v| v.chars().take_while(|c| c.is_ascii_digit()).collect()).unwrap_or_default())
}

fn is_explain(sql: &str) -> bool {
    sql.trim_start().get(..8).is_some_and(|p| p.eq_ignore_ascii_case("explain "))
}

fn err(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, [("content-type", "application/x-amz-json-1.1")], json!({"__type": kind, "Message": message}).to_string())
        .into_response()
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/x-amz-json-1.1")], v.to_string()).into_response()
}

/// Service from the SigV4 credential scope (`Credential=AKID/date/region/SERVICE/aws4_request`).
fn service_of(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unsigned")
        .to_string()
}

fn operation_of(headers: &HeaderMap, method: &Method, body: &[u8]) -> String {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let op = t.rsplit('.').next().unwrap_or(t).to_string();
        if op == "StartQueryExecution"
            && serde_json::from_slice::<Value>(body).ok().and_then(|v| v["QueryString"].as_str().map(is_explain))
                == Some(true)
        {
            return format!("{op}(EXPLAIN)");
        }
        // DynamoDB: say which kind of item or index, so per-request costs can be told from polling.
        let text = String::from_utf8_lossy(body);
        let idx = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["IndexName"].as_str().map(str::to_string));
        if let Some(i) = idx {
            return format!("{op}({i})");
        }
        for kind in ["LEASE#", "POLICY", "DEC#", "REQ#", "TOMB#"] {
            if text.contains(&format!("\"S\":\"{kind}")) {
                return format!("{op}({})", kind.trim_end_matches('#'));
            }
        }
        return op;
    }
    let text = String::from_utf8_lossy(body);
    if let Some(a) = text.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return a.to_string();
    }
    method.to_string()
}

async fn handle(
    State(st): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let service = service_of(&headers);
    let op = operation_of(&headers, &method, &body);
    *st.calls.lock().unwrap().entry((service.clone(), op.clone())).or_insert(0) += 1;
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(op) = target.strip_prefix("AmazonAthena.") {
        return athena(&st, op, &input).await;
    }
    if let (Some(op), Some(glue)) = (target.strip_prefix("AWSGlue."), &st.glue)
        && (op == "GetTables" || op == "GetDatabases")
    {
        return fake_glue(glue, op, &input);
    }
    forward(&st, method, uri, headers, body).await
}

async fn forward(st: &FakeState, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let Some(up) = &st.upstream else { return err(StatusCode::NOT_IMPLEMENTED, "NotImplemented", "no upstream") };
    let url = format!("{up}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut req = st.http.request(method, url).body(body);
    for (k, v) in &headers {
        if !matches!(k.as_str(), "host" | "content-length" | "transfer-encoding" | "connection") {
            req = req.header(k, v);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = Response::builder().status(status.as_u16());
            for (k, v) in resp.headers() {
                if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection") {
                    out = out.header(k, v);
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            out.body(axum::body::Body::from(bytes)).unwrap()
        }
        Err(e) => err(StatusCode::BAD_GATEWAY, "InternalServerError", &format!("upstream: {e}")),
    }
}

fn fake_glue(glue: &FakeGlue, op: &str, input: &Value) -> Response {
    if op == "GetDatabases" {
        return ok(json!({"DatabaseList": [{"Name": glue.database}]}));
    }
    let db = input["DatabaseName"].as_str().unwrap_or("");
    if db == "forbidden" {
        return err(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "User is not authorized to perform: glue:GetTables",
        );
    }
    if db != glue.database {
        return err(StatusCode::BAD_REQUEST, "EntityNotFoundException", &format!("Database {db} not found."));
    }
    let start: usize = input["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = glue
        .tables
        .iter()
        .skip(start)
        .take(glue.page)
        .map(|t| {
            let col = |c: &sqlctl::catalog::Column| {
                let mut v = json!({"Name": c.name, "Type": sqlctl::catalog::glue::hive_type(&c.data_type)});
                if let Some(cm) = &c.comment {
                    v["Comment"] = json!(cm);
                }
                v
            };
            let mut v = json!({
                "Name": t.name,
                "DatabaseName": db,
                "StorageDescriptor": {"Columns": t.columns.iter().map(col).collect::<Vec<_>>(), "Location": format!("s3://fake/{db}/{}/", t.name)},
                "PartitionKeys": t.partition_keys.iter().map(col).collect::<Vec<_>>(),
            });
            if let Some(c) = &t.comment {
                v["Description"] = json!(c);
            }
            v
        })
        .collect();
    let mut out = json!({"TableList": page});
    if start + glue.page < glue.tables.len() {
        out["NextToken"] = json!((start + glue.page).to_string());
    }
    ok(out)
}

fn csv_cell(c: &Option<String>) -> String {
    match c {
        Some(s) => format!("\"{}\"", s.replace('"', "\"\"")),
        None => String::new(),
    }
}

async fn athena(st: &FakeState, op: &str, input: &Value) -> Response {
    match op {
        "StartQueryExecution" => {
            let token = input["ClientRequestToken"].as_str().unwrap_or("").to_string();
            let sql = input["QueryString"].as_str().unwrap_or("").to_string();
            let explain = is_explain(&sql);
            if !explain && marker(&sql, "throttle").is_some() {
                return err(StatusCode::BAD_REQUEST, "TooManyRequestsException", "Rate exceeded");
            }
            let mut a = st.athena.lock().unwrap();
            if let Some(id) = a.by_token.get(&token).filter(|_| !token.is_empty()) {
                return ok(json!({"QueryExecutionId": id}));
            }
            let nth = if explain {
                0
            } else {
                let n = a.effects.entry(sql.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let id = uuid::Uuid::new_v4().to_string();
            let out = input["ResultConfiguration"]["OutputLocation"]
                .as_str()
                .unwrap_or("s3://fake-athena-results/")
                .to_string();
            let error = if explain {
                None
            } else if marker(&sql, "fail-user").is_some() {
                Some((2, false, "SYNTAX_ERROR: line 1:8: Column 'nope' cannot be resolved".to_string()))
            } else if let Some(k) = marker(&sql, "fail-transient") {
                (nth <= k.parse().unwrap_or(1)).then(|| {
                    (1, true, "Amazon Athena experienced an internal error while executing this query".to_string())
                })
            } else {
                None
            };
            a.execs.insert(
                id.clone(),
                Exec {
                    id: id.clone(),
                    sql,
                    database: input["QueryExecutionContext"]["Database"].as_str().unwrap_or("default").to_string(),
                    token: token.clone(),
                    state: "QUEUED".into(),
                    polls: 0,
                    output_location: format!("{out}{id}.csv"),
                    error,
                    rows: None,
                },
            );
            if !token.is_empty() {
                a.by_token.insert(token, id.clone());
            }
            ok(json!({"QueryExecutionId": id}))
        }
        "GetQueryExecution" => {
            let id = input["QueryExecutionId"].as_str().unwrap_or("");
            let exec = {
                let mut a = st.athena.lock().unwrap();
                let Some(e) = a.execs.get_mut(id) else {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestException",
                        &format!("QueryExecution {id} was not found"),
                    );
                };
                e.polls += 1;
                e.clone()
            };
            let mut exec = exec;
            let explain = is_explain(&exec.sql);
            let running_polls: u32 =
                if explain { 0 } else { marker(&exec.sql, "running").and_then(|v| v.parse().ok()).unwrap_or(1) };
            let forever = !explain && marker(&exec.sql, "forever").is_some();
            let scanned: u64 =
                if explain { 0 } else { marker(&exec.sql, "scan").and_then(|v| v.parse().ok()).unwrap_or(4096) };
            if exec.state == "QUEUED" || exec.state == "RUNNING" {
                exec.state = if forever || exec.polls <= running_polls {
                    "RUNNING".into()
                } else if exec.error.is_some() {
                    "FAILED".into()
                } else {
                    // Run the SQL for real and write the CSV where Athena would.
                    match sqlctl::engine::datafusion::run_sql_collect(&st.warehouse, &exec.database, &exec.sql).await {
                        Ok((cols, rows)) => {
                            let mut csv = cols.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(",") + "\n";
                            for r in &rows {
                                csv.push_str(&r.iter().map(csv_cell).collect::<Vec<_>>().join(","));
                                csv.push('\n');
                            }
                            if let (Some(up), Some(rest)) = (&st.upstream, exec.output_location.strip_prefix("s3://")) {
                                let _ = st.http.put(format!("{up}/{rest}")).body(csv).send().await;
                            }
                            exec.rows = Some((cols, rows));
                            "SUCCEEDED".into()
                        }
                        Err(e) => {
                            exec.error = Some((2, false, e.to_string()));
                            "FAILED".into()
                        }
                    }
                };
                let mut a = st.athena.lock().unwrap();
                if let Some(stored) = a.execs.get_mut(id) {
                    if stored.state != "CANCELLED" {
                        stored.state = exec.state.clone();
                        stored.rows = exec.rows.clone();
                        stored.error = exec.error.clone();
                    } else {
                        exec.state = "CANCELLED".into();
                    }
                }
            }
            let mut status = json!({"State": exec.state, "SubmissionDateTime": 1.7e9});
            if exec.state == "FAILED" {
                let (cat, retryable, msg) = exec.error.clone().unwrap_or((3, false, "failed".into()));
                status["StateChangeReason"] = json!(msg);
                status["AthenaError"] = json!({"ErrorCategory": cat, "ErrorType": if cat == 1 { 401 } else { 1301 }, "Retryable": retryable, "ErrorMessage": msg});
            }
            if exec.state == "CANCELLED" {
                status["StateChangeReason"] = json!("Query cancelled by user");
            }
            ok(json!({"QueryExecution": {
                "QueryExecutionId": exec.id,
                "Query": exec.sql,
                "StatementType": "DML",
                "ResultConfiguration": {"OutputLocation": exec.output_location},
                "QueryExecutionContext": {"Database": exec.database},
                "Status": status,
                "Statistics": {"DataScannedInBytes": scanned, "EngineExecutionTimeInMillis": 40, "TotalExecutionTimeInMillis": 55},
                "WorkGroup": "fake",
            }}))
        }
        "GetQueryResults" => {
            let id = input["QueryExecutionId"].as_str().unwrap_or("");
            let a = st.athena.lock().unwrap();
            let Some(e) = a.execs.get(id) else {
                return err(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestException",
                    &format!("QueryExecution {id} was not found"),
                );
            };
            let Some((cols, rows)) = &e.rows else {
                return err(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestException",
                    &format!("Query has not yet finished. Current state: {}", e.state),
                );
            };
            // Page 1 starts with the header row, as Athena's does for a SELECT.
            let mut all: Vec<Vec<Option<String>>> = vec![cols.iter().cloned().map(Some).collect()];
            all.extend(rows.iter().cloned());
            let start: usize = input["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            let max = input["MaxResults"].as_u64().unwrap_or(1000) as usize;
            let page: Vec<Value> = all
                .iter()
                .skip(start)
                .take(max)
                .map(|r| json!({"Data": r.iter().map(|c| match c { Some(v) => json!({"VarCharValue": v}), None => json!({}) }).collect::<Vec<_>>()}))
                .collect();
            let mut out = json!({"ResultSet": {
                "Rows": page,
                "ResultSetMetadata": {"ColumnInfo": cols.iter().map(|c| json!({"Name": c, "Type": "varchar"})).collect::<Vec<_>>()},
            }});
            if start + max < all.len() {
                out["NextToken"] = json!((start + max).to_string());
            }
            ok(out)
        }
        "StopQueryExecution" => {
            let id = input["QueryExecutionId"].as_str().unwrap_or("").to_string();
            let mut a = st.athena.lock().unwrap();
            if let Some(e) = a.execs.get_mut(&id)
                && (e.state == "QUEUED" || e.state == "RUNNING")
            {
                e.state = "CANCELLED".into();
            }
            a.stopped.push(id);
            ok(json!({}))
        }
        other => {
            err(StatusCode::BAD_REQUEST, "InvalidRequestException", &format!("the fake does not implement {other}"))
        }
    }
}
