//! sqlctl: a declarative controller for human-approved text-to-SQL on a data lake.
//!
//! Module map (imports run one way): `spec` imports nothing else; the backend traits (`store`,
//! `catalog`, `generate`, `engine`, `notify`) import `spec`; `guard` imports `spec`; `controller`
//! talks to backends only through their traits; `cli` and `config` choose concrete backends.

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
pub mod spec;
pub mod store;
pub mod textdiff;
pub mod warehouse;

#[cfg(test)]
mod layering;
#[cfg(test)]
mod proptests;
