//! OpenTelemetry trace export over OTLP/HTTP (protobuf), compiled only with `--features otlp`.
//!
//! Off by default twice over: the default build compiles none of the OpenTelemetry crates, and a
//! build with the feature exports only when the standard variable `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Every `tracing` span at INFO or above becomes
//! an OpenTelemetry span: each reconcile is one (`reconcile`, with namespace, name, uid,
//! generation and reason), and what is logged inside it becomes its events. The service is
//! `OTEL_SERVICE_NAME` (default `sqlctl`) with `service.version`. Spans go out in batches on a
//! background thread (a blocking HTTP client, so no async runtime is needed to flush), and the
//! remaining ones are flushed when the process ends ([`Guard`]). The other `OTEL_*` variables
//! (headers, timeout, protocol) work as the OpenTelemetry SDK documents them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::registry::LookupSpan;

/// Flushes and stops the exporter when dropped (at the end of `main`).
pub struct Guard(SdkTracerProvider);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("sqlctl: flushing OTLP traces failed: {e}");
        }
    }
}

/// Whether the environment asks for trace export.
pub fn configured() -> bool {
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// The tracing layer that exports spans, and the guard that flushes them; None when export is
/// not configured or the exporter cannot be built (said once on stderr; logging goes on).
pub fn layer<S>() -> Option<(Box<dyn Layer<S> + Send + Sync>, Guard)>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !configured() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("sqlctl: OTLP trace export is off: {e}");
            return None;
        }
    };
    let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "sqlctl".into());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("sqlctl");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(LevelFilter::INFO).boxed();
    Some((layer, Guard(provider)))
}
