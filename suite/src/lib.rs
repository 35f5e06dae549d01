//! The library under the `suite` binary, so a second front end can plan, run and report
//! studies the same way.
//!
//! registry → [`study`] (selection, skips, [`plan`]) → [`executor`] (run groups, claimed and
//! handed to a [`runner`]; [`factory`] builds each optimizer) → the result store
//! (`beatmatch_core::store`) → `beatmatch_reports`. [`engine`] decides once whether a study
//! trains on the host engine or a candle device; [`target`] resolves `--device` to one.
//! [`commands`] holds what each CLI command does; [`calibrate`] measures problems and
//! [`estimate`] times plans from those measurements, [`validate`] checks models against
//! published numbers, [`lopt`] handles checkpoints. Many processes share one store: [`shard`]
//! splits a study, [`manifest`] settles its manifest under a lock, the executor claims each
//! run group, [`run_log`] keeps each process's log and [`status`] reads how far a study is.

pub mod calibrate;
pub mod commands;
pub mod duration;
pub mod engine;
pub mod estimate;
pub mod executor;
pub mod factory;
pub mod foreign;
pub mod lopt;
pub mod manifest;
pub mod meta_train;
pub mod plan;
pub mod run_log;
pub mod runner;
pub mod shard;
pub mod status;
pub mod study;
pub mod target;
pub mod validate;
