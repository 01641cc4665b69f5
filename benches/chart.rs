//! Chart rendering benchmark: `cargo bench --bench chart` (or `--profile quick`).
//!
//! Draws the charts the controller draws after a query: a 10,000-row time series (line, two
//! series, M4-downsampled), a 10,000-row category result (bar, top categories plus "other") and a
//! 10,000-row scatter, each from its CSV text as the engine wrote it (parsing, type inference,
//! choosing, downsampling and writing the SVG). Reports the median and worst of BENCH_RUNS runs
//! (default 30) and the SVG size.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sqlctl::chart::{ChartKind, draw};
use sqlctl::spec::{ChartSpec, ChartType};

const ROWS: usize = 10_000;

fn time_series() -> String {
    let mut csv = String::from("at,price,volume\n");
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap().timestamp();
    for i in 0..ROWS {
        let t = Utc.timestamp_opt(start + i as i64 * 60, 0).unwrap();
        let price = 100.0 + (i as f64 / 80.0).sin() * 20.0 + (i % 13) as f64;
        csv.push_str(&format!("{},{price:.2},{}\n", t.format("%Y-%m-%dT%H:%M:%S"), (i * 7919) % 5000));
    }
    csv
}

fn categories() -> String {
    let mut csv = String::from("customer,orders,revenue\n");
    for i in 0..ROWS {
        csv.push_str(&format!("Customer#{i:09},{},{:.2}\n", i % 37 + 1, ((i * 7919) % 100_000) as f64 / 7.0));
    }
    csv
}

fn bench(name: &str, csv: &str, spec: &ChartSpec, kind: ChartKind) {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let chart = draw(csv.as_bytes(), spec, name).expect("a chart");
        times.push(started.elapsed());
        last = Some(chart);
    }
    let chart = last.unwrap();
    assert_eq!(chart.kind, kind);
    times.sort();
    println!(
        "{name:<28} {ROWS} rows ({:>4} KiB CSV): median {:>7.2} ms, max {:>7.2} ms; {:>5} marks, {:>4} KiB SVG",
        csv.len() / 1024,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        chart.marks,
        chart.svg.len() / 1024
    );
}

fn main() {
    let series = time_series();
    let cats = categories();
    let auto = ChartSpec::default();
    bench("line (time, 2 series)", &series, &auto, ChartKind::Line);
    let bar = ChartSpec { type_: ChartType::Bar, x: Some("customer".into()), y: vec!["revenue".into()] };
    bench("bar (10,000 categories)", &cats, &bar, ChartKind::Bar);
    let scatter = ChartSpec { type_: ChartType::Scatter, x: Some("orders".into()), y: vec!["revenue".into()] };
    bench("scatter", &cats, &scatter, ChartKind::Scatter);
}
