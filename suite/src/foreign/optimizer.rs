//! A worker as a beatmatch [`Optimizer`]. The worker starts at the first step (when the
//! horizon is known) and every member's tensors go to it each step. Its state lives in the
//! worker, so it cannot be snapshotted: `restore` is an error. The suite never restores a
//! run's optimizer (a run interrupted is run again from step 0); meta-training does, and
//! foreign optimizers are not meta-trained.

use super::source::Source;
use super::worker::{Spec, Timeouts, Worker};
use anyhow::{Context, Result};
use beatmatch_core::step_protocol::Ready;
use beatmatch_core::{Buffers, EvalAt, Optimizer, ParamInfo, Params, Snapshot, StepContext, UpdateError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything needed to start the workers of one foreign optimizer configuration.
pub struct Launch {
    /// Where it comes from.
    pub source: Source,
    /// The file given to the worker (the copy inside `dir`), for a Python worker.
    pub file: Option<PathBuf>,
    /// Hyperparameters given in the hello.
    pub hyperparameters: BTreeMap<String, f64>,
    /// The study's `workers/` directory: shared files and logs.
    pub dir: PathBuf,
    /// The Python client's package directory (`python/`).
    pub python_dir: PathBuf,
    /// Time limits.
    pub timeouts: Timeouts,
    /// What the first worker started reported (the probe's, in a study): its versions go into
    /// every record, and whether it evaluates elsewhere decides the evaluation layout.
    pub ready: OnceLock<Ready>,
}

impl Launch {
    /// The log file's name in `dir`: one per configuration.
    fn log(&self) -> String {
        let key = self.source.key();
        format!("{}.log", &key[..16])
    }

    /// Start a worker for the members of `tensors`, horizon `horizon` (steps).
    /// Each member's initial parameters, tensor by tensor, are `initial`.
    pub fn start(&self, initial: &[Vec<&mut [f32]>], tensors: &[ParamInfo], horizon: u64) -> Result<Worker> {
        let log = self.log();
        let spec = Spec { horizon, members: initial.len(), initial: Some(initial), ..self.spec(tensors, &log) };
        let eval = self.ready.get().map(|r| r.eval_params).unwrap_or(false);
        let worker = Worker::start(self.source.command(&self.python_dir), &spec, Some(eval))?;
        let _ = self.ready.set(worker.ready.clone());
        Ok(worker)
    }

    /// Start one worker on `tensors` and stop it: the file, the factory, the hyperparameters
    /// and the protocol version are checked before anything trains, and the worker's report is
    /// kept ([`Launch::ready`]).
    pub fn probe(&self, tensors: &[ParamInfo]) -> Result<()> {
        let log = self.log();
        let w = Worker::start(self.source.command(&self.python_dir), &self.spec(tensors, &log), None).with_context(|| match &self.source {
            Source::Python { file, factory, .. } => {
                format!("{} (factory `{factory}`; the worker was given its copy {})", file.display(), self.file.as_deref().unwrap_or(file).display())
            }
            Source::Exec { argv } => format!("exec:{}", argv.join(" ")),
        })?;
        let _ = self.ready.set(w.ready.clone());
        Ok(())
    }

    fn spec<'a>(&'a self, tensors: &'a [ParamInfo], log: &'a str) -> Spec<'a> {
        Spec {
            file: self.file.as_deref(),
            factory: match &self.source {
                Source::Python { factory, .. } => Some(factory),
                Source::Exec { .. } => None,
            },
            hyperparameters: &self.hyperparameters,
            horizon: 1,
            members: 1,
            tensors,
            dir: &self.dir,
            log,
            timeouts: self.timeouts,
            initial: None,
        }
    }
}

/// The optimizer a worker runs.
pub struct Foreign {
    launch: Arc<Launch>,
    members: usize,
    infos: Vec<ParamInfo>,
    /// Values per tensor (one member's).
    numel: Vec<usize>,
    worker: Mutex<Option<Worker>>,
}

impl Foreign {
    /// An optimizer for `members` members of tensors `params`; its worker starts at the first
    /// step.
    pub fn new(launch: Arc<Launch>, members: usize, params: &[ParamInfo]) -> Self {
        Self { launch, members, infos: params.to_vec(), numel: params.iter().map(ParamInfo::numel).collect(), worker: Mutex::new(None) }
    }

    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) -> Result<()> {
        // Tensor-major buffers, member-major within: per-member lists of tensors.
        let numel = &self.numel;
        let mut per_member: Vec<Vec<&mut [f32]>> = (0..self.members).map(|_| Vec::with_capacity(numel.len())).collect();
        for (buf, &n) in params.iter_mut().zip(numel) {
            for (m, chunk) in buf.chunks_mut(n).enumerate() {
                per_member[m].push(chunk);
            }
        }
        let grads: Vec<Vec<&[f32]>> = (0..self.members).map(|m| grads.iter().zip(numel).map(|(g, &n)| &g[m * n..(m + 1) * n]).collect()).collect();
        let losses: Vec<f32> = (0..self.members).map(|m| ctx.loss(m)).collect();
        let worker = self.worker.get_mut().unwrap_or_else(|e| e.into_inner());
        if worker.is_none() {
            *worker = Some(self.launch.start(&per_member, &self.infos, ctx.num_steps)?);
        }
        let worker = worker.as_mut().expect("started");
        worker.step(ctx.step, &losses, &mut per_member, &grads)
    }
}

impl Optimizer for Foreign {
    fn members(&self) -> usize {
        self.members
    }

    fn update(&mut self, bufs: Buffers<'_, '_>, ctx: &StepContext<'_>) -> Result<(), UpdateError> {
        let Buffers::Host { params, grads } = bufs else { return Err(UpdateError::NoDevicePath("a step-protocol worker")) };
        self.step(params, grads, ctx).map_err(|e| UpdateError::Worker(format!("{e:#}")))
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::new(())
    }

    fn restore(&mut self, _snapshot: &Snapshot) -> Result<(), UpdateError> {
        Err(UpdateError::Worker("an optimizer run by a step-protocol worker cannot restore a snapshot: its state lives in the worker".into()))
    }

    fn evaluates_elsewhere(&self) -> bool {
        self.launch.ready.get().is_some_and(|r| r.eval_params)
    }

    /// Before the first step the evaluation point is the parameters themselves (no worker has
    /// started); after it, what the worker writes when asked.
    fn eval_point(&self, params: Params<'_>) -> Result<Option<EvalAt>, UpdateError> {
        if !self.evaluates_elsewhere() {
            return Ok(None);
        }
        if let Params::Device(_) = params {
            return Err(UpdateError::NoDevicePath("a step-protocol worker"));
        }
        let mut worker = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        match worker.as_mut() {
            None => Ok(None),
            Some(w) => w.eval_params().map(|v| Some(EvalAt::Host(v))).map_err(|e| UpdateError::Worker(format!("{e:#}"))),
        }
    }
}
