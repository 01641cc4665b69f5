//! End-to-end tests: the real `sqlctl` binary on a temp `$SQLCTL_HOME`, a real SQLite file, the
//! real DataFusion engine over a scale-0.01 TPC-H warehouse built once per test run.
//!
//! One integration-test binary on purpose: each `tests/*.rs` file would link DataFusion again.

mod harness;

mod aws_athena;
mod aws_flow;
mod aws_support;
mod bad_input;
mod charts;
mod console;
mod decisions;
mod estimate;
mod fake_aws;
mod flows;
mod gchat;
mod generation_llm;
mod generation_offline;
mod gitops;
mod kinds;
mod kubectl;
#[cfg(feature = "otlp")]
mod otlp;
mod resilience;
mod results_s3;
mod safety_canonical;
mod safety_controller;
mod safety_engine;
mod safety_identity;
mod wire;
mod wire_wedges;
