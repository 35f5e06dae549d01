//! Optimizers from other languages through the step protocol (docs/step-protocol.md; draft):
//! the frames ([`frame`]) and the suite's side of a worker process ([`worker`]).

pub mod frame;
pub mod optimizer;
pub mod worker;
