//! Optimizers from other languages through the step protocol (`docs/step-protocol.md`; the
//! wire format is [`beatmatch_core::step_protocol`]): what a `python:` or `exec:` candidate
//! names ([`source`]), the suite's side of a worker process ([`worker`]) and the worker as an
//! [`beatmatch_core::Optimizer`] ([`optimizer`]).

pub mod optimizer;
pub mod source;
pub mod worker;
