//! A worker as a beatmatch [`Optimizer`]: every member's tensors go to the worker each step.
//! Draft: its state lives in the worker, so it cannot be snapshotted; `restore` is an error
//! and the run that needs it fails (recorded as failed).

use super::worker::Worker;
use beatmatch_core::{Buffers, Optimizer, ParamInfo, Snapshot, StepContext, UpdateError};

/// The optimizer a worker runs.
pub struct Foreign {
    worker: Worker,
    members: usize,
    numel: Vec<usize>,
}

impl Foreign {
    /// Wrap a started worker for `members` members of tensors `params`.
    pub fn new(worker: Worker, members: usize, params: &[ParamInfo]) -> Self {
        Self { worker, members, numel: params.iter().map(ParamInfo::numel).collect() }
    }
}

impl Optimizer for Foreign {
    fn members(&self) -> usize {
        self.members
    }

    fn update(&mut self, bufs: Buffers<'_, '_>, ctx: &StepContext<'_>) -> Result<(), UpdateError> {
        let Buffers::Host { params, grads } = bufs else { return Err(UpdateError::NoDevicePath("python")) };
        // Tensor-major, member-major within: split into per-member lists of tensors.
        let mut per_member: Vec<Vec<&mut [f32]>> = (0..self.members).map(|_| Vec::with_capacity(self.numel.len())).collect();
        for (buf, &n) in params.iter_mut().zip(&self.numel) {
            for (m, chunk) in buf.chunks_mut(n).enumerate() {
                per_member[m].push(chunk);
            }
        }
        let grads_per: Vec<Vec<&[f32]>> = (0..self.members).map(|m| grads.iter().zip(&self.numel).map(|(g, &n)| &g[m * n..(m + 1) * n]).collect()).collect();
        let losses: Vec<f32> = (0..self.members).map(|m| ctx.loss(m)).collect();
        self.worker.step(ctx.step, &losses, &mut per_member, &grads_per).map_err(|e| UpdateError::Worker(format!("{e:#}")))
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::new(())
    }

    fn restore(&mut self, _snapshot: &Snapshot) -> Result<(), UpdateError> {
        Err(UpdateError::Worker(
            "an optimizer run by a worker cannot restore a snapshot (its state is in the worker); the step protocol has no snapshot frames yet".into(),
        ))
    }
}
