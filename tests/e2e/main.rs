//! End-to-end tests: the real `sqlctl` binary on a temp `$SQLCTL_HOME`, a real SQLite file, the
//! real DataFusion engine over a scale-0.01 TPC-H warehouse built once per test run.
//!
//! One integration-test binary on purpose: each `tests/*.rs` file would link DataFusion again.
//!
//! The AWS tests (moto, fakes of the AWS protocols) need the `aws` feature, which scripts/test
//! turns on for the full suite; built without it, `without_aws` checks the embedded first run
//! and that every AWS choice refuses with how to get it.

mod harness;

#[cfg(feature = "aws")]
mod aws_athena;
#[cfg(feature = "aws")]
mod aws_flow;
#[cfg(feature = "aws")]
mod aws_support;
mod bad_input;
mod charts;
mod console;
mod decisions;
mod estimate;
#[cfg(feature = "aws")]
mod fake_aws;
mod flows;
mod gchat;
mod generation_llm;
mod generation_offline;
mod gitops;
mod kinds;
mod knowledge;
mod kubectl;
#[cfg(feature = "otlp")]
mod otlp;
mod resilience;
#[cfg(feature = "aws")]
mod results_s3;
#[cfg(feature = "aws")]
mod safety_canonical;
mod safety_controller;
mod safety_engine;
#[cfg(feature = "aws")]
mod safety_identity;
#[cfg(feature = "aws")]
mod wire;
#[cfg(feature = "aws")]
mod wire_wedges;
#[cfg(not(feature = "aws"))]
mod without_aws;
