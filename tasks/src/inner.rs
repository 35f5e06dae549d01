//! A resumable inner run: one optimizer training one problem from one seed, advanced a few
//! steps at a time, snapshotted and restored — the unit meta-training unrolls, a population
//! masks, and [`crate::train::train`] drives to the end in one go.
//!
//! The loop, per step index `s` (0 ≤ s ≤ steps): measure the train loss when `s` is a
//! measurement step (and evaluate held out at a budget), checking for divergence; then, unless
//! `s` is the last, draw a batch, take the gradients and update. [`InnerRun::advance`] runs
//! that body a given number of times; the state between calls is all in the struct, so
//! `advance(a)` then `advance(b)` is `advance(a + b)`.
//!
//! Parameters live as candle variables on the run's device for the whole run: the forward
//! pass, the measurements and the update all use the same storage (no per-step upload). On the
//! CPU the optimizer updates that storage in place through host slices ([`Buffers::Host`]);
//! on another device it receives the tensors themselves ([`DeviceTensors`] behind
//! [`Buffers::Device`]).

use crate::data::{rng, BatchStream, View, STREAM_INIT};
use crate::datasets::Dataset;
use crate::ledger::Ledger;
use crate::models::{self, Model};
use crate::task::Problem;
use anyhow::{bail, Context, Result};
use beatmatch_core::{Buffers, CurvePoint, EvalAt, EvalPoint, Optimizer, ParamInfo, Params, RunStatus, Snapshot, StepContext};

pub use crate::ledger::EXPLOSION_FACTOR;
use beatmatch_device::DeviceTensors;
use candle_core::{CpuStorage, Device, InplaceOp1, Layout, Tensor, Var};
use std::cell::RefCell;

/// One training run's settings.
#[derive(Clone, Copy, Debug)]
pub struct RunSettings<'a> {
    /// Device to compute on.
    pub device: &'a Device,
    /// Seed for initialisation and data order.
    pub seed: u64,
    /// Steps to train.
    pub steps: u64,
    /// Horizon told to the optimizer (steps).
    pub horizon: u64,
}

/// What a run produced (the caller wraps it into a `RunRecord`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOutcome {
    /// How it ended.
    pub status: RunStatus,
    /// Train loss at each measurement step.
    pub curve: Vec<CurvePoint>,
    /// Held-out loss and accuracy at each budget reached.
    pub evals: Vec<EvalPoint>,
}

/// Everything a run has accumulated, to put it back later with [`InnerRun::restore`].
pub struct RunSnapshot {
    values: Vec<Vec<f32>>,
    optimizer: Snapshot,
    batches: BatchStream,
    step: u64,
    ledger: Ledger,
}

/// A run in progress. `O` is the optimizer type; `dyn Optimizer` unless the caller needs the
/// concrete one (meta-training rebinds a learned optimizer's theta between truncations).
pub struct InnerRun<'d, O: Optimizer + ?Sized = dyn Optimizer> {
    problem: &'d Problem,
    model: Box<dyn Model>,
    train_view: View<'d>,
    test_view: View<'d>,
    device: Device,
    steps: u64,
    horizon: u64,
    params: Vec<Var>,
    optimizer: Box<O>,
    batches: BatchStream,
    measure_idx: Vec<u32>,
    step: u64,
    ledger: Ledger,
    batch_losses: Vec<f32>,
    idx: Vec<u32>,
}

impl<'d, O: Optimizer + ?Sized> InnerRun<'d, O> {
    /// A fresh run: parameters initialised from the seed, nothing trained yet.
    pub fn new(problem: &'d Problem, data: &'d Dataset, optimizer: Box<O>, settings: RunSettings<'_>) -> Result<Self> {
        let model = problem.build_model();
        let train_view = View::new(problem, data, false)?;
        let test_view = View::new(problem, data, true)?;
        if optimizer.members() != 1 {
            bail!("an inner run trains one member; the optimizer has {}", optimizer.members());
        }
        let values = model.init(&mut rng(settings.seed, STREAM_INIT));
        let dev = settings.device;
        let params = values.into_iter().zip(model.params()).map(|(v, p)| Var::from_vec(v, p.shape.clone(), dev)).collect::<candle_core::Result<Vec<_>>>()?;
        let measure_idx = train_view.measurement_items(problem);
        let batches = BatchStream::new(train_view.len(), settings.seed);
        Ok(Self {
            ledger: Ledger::new(problem, settings.steps),
            problem,
            model,
            train_view,
            test_view,
            device: dev.clone(),
            steps: settings.steps,
            horizon: settings.horizon,
            params,
            optimizer,
            batches,
            measure_idx,
            step: 0,
            batch_losses: Vec::new(),
            idx: Vec::with_capacity(problem.batch_size),
        })
    }

    /// Steps taken so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Steps the run was set up for.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// How the run ended, once it has (all steps taken, or diverged).
    pub fn ended(&self) -> Option<&RunStatus> {
        self.ledger.ended()
    }

    /// The train-loss curve so far.
    pub fn curve(&self) -> &[CurvePoint] {
        self.ledger.curve()
    }

    /// The mini-batch losses (nats, before each update) of the steps the last
    /// [`InnerRun::advance`] took.
    pub fn batch_losses(&self) -> &[f32] {
        &self.batch_losses
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// The optimizer, mutably (to rebind a learned optimizer's theta, say).
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }

    /// The parameter tensors, in the model's canonical order.
    pub fn param_tensors(&self) -> Vec<Tensor> {
        self.params.iter().map(|v| v.as_tensor().clone()).collect()
    }

    /// The parameters' values, one flat buffer per tensor.
    pub fn param_values(&self) -> Result<Vec<Vec<f32>>> {
        self.params.iter().map(|v| Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)).collect()
    }

    /// Names and shapes of the parameters.
    pub fn param_infos(&self) -> &[ParamInfo] {
        self.model.params()
    }

    /// Mean loss of the current parameters over the training items `idx` (in mini-batches).
    pub fn train_loss_on(&self, idx: &[u32]) -> Result<f32> {
        Ok(self.train_view.evaluate(self.model.as_ref(), &self.param_tensors(), Some(idx), self.problem.batch_size, &self.device)?.mean_loss())
    }

    /// Take up to `n` more steps (fewer when the run ends first); returns the steps taken.
    pub fn advance(&mut self, n: u64) -> Result<u64> {
        self.advance_with(n, &mut |_| {})
    }

    /// [`InnerRun::advance`], calling `on_progress(steps done)` every 64 steps.
    pub fn advance_with(&mut self, n: u64, on_progress: &mut dyn FnMut(u64)) -> Result<u64> {
        let _ftz = beatmatch_core::simd::FlushDenormals::new();
        self.batch_losses.clear();
        let start = self.step;
        while self.ledger.ended().is_none() && self.step - start < n {
            self.body(on_progress)?;
        }
        // A run whose last update was just taken measures its end now, not at the next call.
        if self.ledger.ended().is_none() && self.step == self.steps {
            self.body(on_progress)?;
        }
        Ok(self.step - start)
    }

    /// Train to the end and return what the run produced.
    pub fn finish(self) -> Result<TrainOutcome> {
        self.finish_with(&mut |_| {})
    }

    /// [`InnerRun::finish`] with progress.
    pub fn finish_with(mut self, on_progress: &mut dyn FnMut(u64)) -> Result<TrainOutcome> {
        self.advance_with(self.steps - self.step, on_progress)?;
        on_progress(self.steps);
        Ok(self.into_outcome())
    }

    /// What the run has produced so far, ending it where it stands (status `Finished` unless it
    /// diverged).
    pub fn into_outcome(self) -> TrainOutcome {
        self.ledger.into_outcome()
    }

    /// A copy of everything the run has accumulated.
    pub fn snapshot(&self) -> Result<RunSnapshot> {
        Ok(RunSnapshot {
            values: self.param_values()?,
            optimizer: self.optimizer.snapshot(),
            batches: self.batches.clone(),
            step: self.step,
            ledger: self.ledger.clone(),
        })
    }

    /// Put back a snapshot of this run (or of a run of the same problem, seed and optimizer
    /// type): continuing from it gives exactly what the run gave from there.
    pub fn restore(&mut self, s: &RunSnapshot) -> Result<()> {
        for ((var, v), info) in self.params.iter().zip(&s.values).zip(self.model.params()) {
            var.set(&Tensor::from_slice(v, info.shape.clone(), &self.device)?)?;
        }
        self.optimizer.restore(&s.optimizer)?;
        self.batches = s.batches.clone();
        self.step = s.step;
        self.ledger = s.ledger.clone();
        Ok(())
    }

    /// One loop body at step index `self.step`: measure if due, then (unless at the end) update.
    fn body(&mut self, on_progress: &mut dyn FnMut(u64)) -> Result<()> {
        let step = self.step;
        if self.ledger.due(step) {
            self.measure(step)?;
        }
        self.ledger.finish_at(step);
        if self.ledger.ended().is_some() {
            return Ok(());
        }
        self.batches.next_indices(self.problem.batch_size, &mut self.idx);
        let (xb, yb) = self.train_view.batch(&self.idx, &self.device)?;
        let tensors = self.param_tensors();
        let Some((loss, grads)) = loss_and_grads(self.model.as_ref(), &tensors, &xb, &yb)? else {
            self.ledger.diverge(step, "non-finite mini-batch loss".into());
            return Ok(());
        };
        self.batch_losses.push(loss);
        let ctx = StepContext { step, num_steps: self.horizon, losses: &[loss] };
        update(self.optimizer.as_mut(), &self.params, &grads, &ctx)?;
        self.step += 1;
        if step.is_multiple_of(64) {
            on_progress(step);
        }
        Ok(())
    }

    /// The tensors measurements evaluate: the parameters, or where the optimizer asks them to
    /// be evaluated (Schedule-Free trains `y` and is measured at `x`).
    pub fn eval_tensors(&self) -> Result<Vec<Tensor>> {
        eval_tensors(self.optimizer.as_ref(), &self.params, self.model.params())
    }

    /// The training items every measurement's train loss averages over (a fixed set, the same
    /// at every measurement).
    pub fn measurement_items(&self) -> &[u32] {
        &self.measure_idx
    }

    /// Mean loss (nats) over the training items `idx` of the model at `values` (one flat buffer
    /// per tensor), in mini-batches: what a measurement computes, for checking it by hand.
    pub fn train_loss_at(&self, values: &[Vec<f32>], idx: &[u32]) -> Result<f32> {
        Ok(self.train_view.evaluate(self.model.as_ref(), &self.tensors_of(values)?, Some(idx), self.problem.batch_size, &self.device)?.mean_loss())
    }

    /// Held-out mean loss (nats) and accuracy of the model at `values`, as a held-out
    /// evaluation computes them.
    pub fn held_out_at(&self, values: &[Vec<f32>]) -> Result<(f32, Option<f32>)> {
        let sums = self.test_view.evaluate(self.model.as_ref(), &self.tensors_of(values)?, None, self.test_view.chunk(), &self.device)?;
        Ok((sums.mean_loss(), sums.accuracy()))
    }

    fn tensors_of(&self, values: &[Vec<f32>]) -> Result<Vec<Tensor>> {
        Ok(values
            .iter()
            .zip(self.model.params())
            .map(|(v, p)| Tensor::from_slice(v, p.shape.clone(), &self.device))
            .collect::<candle_core::Result<Vec<_>>>()?)
    }

    /// Measure the train loss (and, at a budget, held out) into the ledger, at the point the
    /// optimizer is evaluated at.
    fn measure(&mut self, step: u64) -> Result<()> {
        let params = self.eval_tensors()?;
        let loss = self.train_view.evaluate(self.model.as_ref(), &params, Some(&self.measure_idx), self.problem.batch_size, &self.device)?.mean_loss();
        let held_out = if self.ledger.evaluates_at(step) {
            Some(self.test_view.evaluate(self.model.as_ref(), &params, None, self.test_view.chunk(), &self.device)?)
        } else {
            None
        };
        self.ledger.record(step, loss, held_out.as_ref());
        Ok(())
    }
}

/// The tensors to measure `params` (shapes `infos`) at: the parameters themselves, or where
/// `optimizer` asks them to be evaluated (Schedule-Free trains `y` and is measured at `x`).
pub fn eval_tensors<O: Optimizer + ?Sized>(optimizer: &O, params: &[Var], infos: &[ParamInfo]) -> Result<Vec<Tensor>> {
    let own = || params.iter().map(|v| v.as_tensor().clone()).collect();
    if !optimizer.evaluates_elsewhere() {
        return Ok(own());
    }
    let on_host = params.iter().all(|p| p.device().is_cpu()) && !optimizer.wants_device_tensors();
    let point = if on_host {
        let values = params.iter().map(|v| v.as_tensor().flatten_all()?.to_vec1::<f32>()).collect::<candle_core::Result<Vec<_>>>()?;
        let slices: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
        optimizer.eval_point(Params::Host(&slices))?
    } else {
        optimizer.eval_point(Params::Device(&params.to_vec()))?
    };
    match point {
        None => Ok(own()),
        Some(EvalAt::Host(values)) => {
            let dev = params.first().map_or(Device::Cpu, |p| p.device().clone());
            Ok(values.into_iter().zip(infos).map(|(v, p)| Tensor::from_vec(v, p.shape.clone(), &dev)).collect::<candle_core::Result<_>>()?)
        }
        Some(EvalAt::Device(any)) => match any.downcast::<Vec<Tensor>>() {
            Ok(tensors) => Ok(*tensors),
            Err(_) => bail!("the optimizer's evaluation point is not a Vec<candle_core::Tensor>"),
        },
    }
}

/// Mini-batch loss and gradients of `model` at `params`; `None` if the loss is not finite.
pub fn loss_and_grads(model: &dyn Model, params: &[Tensor], xb: &Tensor, yb: &Tensor) -> Result<Option<(f32, Vec<Tensor>)>> {
    let loss = models::loss(model, params, xb, yb)?;
    let loss_value = loss.to_scalar::<f32>()?;
    if !loss_value.is_finite() {
        return Ok(None);
    }
    let grads = loss.backward()?;
    let grad_tensors =
        params.iter().zip(model.params()).map(|(t, p)| grads.get(t).cloned().with_context(|| format!("no gradient for {}", p.name))).collect::<Result<_>>()?;
    Ok(Some((loss_value, grad_tensors)))
}

/// One optimizer update of `params` with `grads`: through host slices of the parameters' own
/// storage on the CPU, through the tensors themselves elsewhere.
pub fn update<O: Optimizer + ?Sized>(optimizer: &mut O, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> Result<()> {
    let on_cpu = params.iter().all(|p| p.device().is_cpu());
    if !on_cpu || optimizer.wants_device_tensors() {
        let mut dev = DeviceTensors { params: params.to_vec(), grads: grads.to_vec() };
        return Ok(optimizer.update(Buffers::Device(&mut dev), ctx)?);
    }
    // Borrow every gradient's storage at once without copying (a non-contiguous gradient is
    // copied), then every parameter's storage mutably, and update in place.
    let guards: Vec<_> = grads.iter().map(|g| g.storage_and_layout()).collect();
    let mut owned: Vec<(usize, Vec<f32>)> = Vec::new();
    for (i, (storage, layout)) in guards.iter().enumerate() {
        if !matches!((&**storage, layout.contiguous_offsets()), (candle_core::Storage::Cpu(_), Some(_))) {
            owned.push((i, grads[i].flatten_all()?.to_vec1::<f32>()?));
        }
    }
    let mut slices: Vec<&[f32]> = Vec::with_capacity(grads.len());
    for (i, (storage, layout)) in guards.iter().enumerate() {
        match (&**storage, layout.contiguous_offsets()) {
            (candle_core::Storage::Cpu(cpu), Some((s, e))) => slices.push(&cpu.as_slice::<f32>()?[s..e]),
            _ => slices.push(&owned.iter().find(|(j, _)| *j == i).expect("copied above").1),
        }
    }
    let result = RefCell::new(Ok(()));
    with_host_slices_mut(params, &mut |p| {
        *result.borrow_mut() = optimizer.update(Buffers::Host { params: p, grads: &slices }, ctx).map_err(anyhow::Error::from);
    })?;
    result.into_inner()
}

/// Call `f` with mutable host slices of every variable's CPU storage, all borrowed at once.
///
/// candle hands out a variable's storage mutably only inside an in-place op, one tensor per
/// op; nesting one op per tensor holds every write lock at once, and the innermost call sees
/// them all. The slices are built from the storages' pointers, valid while the locks are held
/// (until the innermost call returns) and disjoint because every variable owns its storage.
fn with_host_slices_mut(vars: &[Var], f: &mut dyn FnMut(&mut [&mut [f32]])) -> Result<()> {
    type HostFn<'f> = &'f mut (dyn FnMut(&mut [&mut [f32]]) + 'f);
    struct Level<'a, 'f> {
        vars: &'a [Var],
        at: usize,
        ptrs: &'a RefCell<Vec<(*mut f32, usize)>>,
        f: &'a RefCell<HostFn<'f>>,
    }
    impl InplaceOp1 for Level<'_, '_> {
        fn name(&self) -> &'static str {
            "beatmatch-host-update"
        }
        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
            let (Some((s, e)), CpuStorage::F32(v)) = (layout.contiguous_offsets(), storage) else {
                candle_core::bail!("parameter {} is not a contiguous f32 tensor", self.at)
            };
            let part = &mut v[s..e];
            self.ptrs.borrow_mut().push((part.as_mut_ptr(), part.len()));
            if self.at + 1 < self.vars.len() {
                self.vars[self.at + 1].inplace_op1(&Level { vars: self.vars, at: self.at + 1, ptrs: self.ptrs, f: self.f })
            } else {
                let ptrs = self.ptrs.borrow();
                // SAFETY: each pointer/length pair is a live, exclusively locked storage slice
                // (its lock is held by an enclosing call on this stack) of a distinct variable.
                let mut slices: Vec<&mut [f32]> = ptrs.iter().map(|&(p, n)| unsafe { std::slice::from_raw_parts_mut(p, n) }).collect();
                (self.f.borrow_mut())(&mut slices);
                Ok(())
            }
        }
    }
    if vars.is_empty() {
        f(&mut []);
        return Ok(());
    }
    let ptrs = RefCell::new(Vec::with_capacity(vars.len()));
    let f = RefCell::new(f);
    vars[0].inplace_op1(&Level { vars, at: 0, ptrs: &ptrs, f: &f })?;
    Ok(())
}
