//! sqlctl: a declarative controller for human-approved text-to-SQL on a data lake.
//!
//! Module map (imports run one way, held by `layering::imports_between_modules_run_one_way`;
//! README's "Design notes" has one line per module): `spec` imports nothing else; `identity`,
//! `exit`, `textdiff`, `aws`, `warehouse` and `guard` sit just above it; the backend traits
//! (`store`, `results`, `catalog`, `generate`, `engine`, `notify`) import those; `approval`
//! and `chart` build on the traits; `controller` and `console` talk to backends only through
//! their traits; `config` resolves the parsed flags into a `Context` of concrete backends, and
//! `cli` runs each command with it.

pub mod approval;
pub mod aws;
pub mod catalog;
pub mod chart;
pub mod cli;
pub mod config;
pub mod console;
pub mod controller;
pub mod engine;
pub mod exit;
pub mod generate;
pub mod guard;
pub mod identity;
pub mod notify;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod results;
pub mod spec;
pub mod store;
pub mod textdiff;
pub mod version;
pub mod warehouse;

#[cfg(test)]
mod failure;
#[cfg(test)]
mod layering;
#[cfg(test)]
mod proptests;
