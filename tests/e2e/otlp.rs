//! Trace export over OTLP/HTTP (`--features otlp`): a controller pointed at a loopback OTLP
//! receiver by the standard `OTEL_EXPORTER_OTLP_ENDPOINT` sends its reconcile spans there.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;

use crate::harness::{Env, Served, signal, sql_spec};

#[test]
fn the_controller_exports_reconcile_spans_to_the_otlp_endpoint() {
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen = bodies.clone();
    let receiver = Served::start(1, move |_| {
        axum::Router::new().route(
            "/v1/traces",
            post(move |headers: axum::http::HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    assert_eq!(headers["content-type"], "application/x-protobuf");
                    seen.lock().unwrap().push(body.to_vec());
                    ""
                }
            }),
        )
    });
    let env = Env::new();
    env.apply(&sql_spec("traced", "select count(*) from nation"));
    let mut c = env.cmd();
    c.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()).env("OTEL_SERVICE_NAME", "sqlctl-e2e");
    let log = env.home.path().join("otlp-controller.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut child = c
        .args(["controller", "--lease-duration", "2s", "--renew-deadline", "1s", "--retry-period", "200ms"])
        .stdout(std::process::Stdio::null())
        .stderr(f)
        .spawn()
        .unwrap();
    env.wait_phase("traced", "AwaitingApproval", Duration::from_secs(60));
    // A graceful stop flushes the spans still in the batch.
    signal(child.id(), libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let all: Vec<u8> = bodies.lock().unwrap().concat();
    // Protobuf keeps strings verbatim: the span name, its attributes and the service are there.
    let has = |needle: &str| all.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in ["reconcile", "traced", "namespace", "generation", "sqlctl-e2e", "service.version"] {
        assert!(
            has(needle),
            "{needle} not exported ({} bytes in {} requests)",
            all.len(),
            bodies.lock().unwrap().len()
        );
    }
}
