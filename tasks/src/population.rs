//! A population: the members of one run group — one problem trained from one seed, each member
//! with its own optimizer configuration and step budget — trained as one computation on a
//! [`NativeNet`] (a dense network, a ConvNet, an LSTM or a Transformer).
//!
//! Members share the initialisation (the seed's), every mini-batch (one batch stream) and the
//! measurement batches, and keep their own parameters (`[K, …]` member-major buffers),
//! optimizer state, curve and status. Members are updated by optimizer *groups*: contiguous
//! member ranges sharing one optimizer kind and horizon, each group one optimizer over its
//! members (per-member hyperparameters). A member's arithmetic never reads another member's
//! values, so its record is the same bits in a population of 1 or 30.
//!
//! Members end independently: a member that diverges is marked at its step and skipped from
//! then on (no forward or backward pass, zero gradients into its optimizer, nothing of it
//! reaching the others); a member whose budget is reached measures its end and stops while
//! the rest go on. Like [`crate::inner::InnerRun`] it is resumable: `advance(a)` then
//! `advance(b)` is `advance(a + b)`, and a snapshot restores everything.

use crate::data::{rng, BatchStream, View, STREAM_INIT};
use crate::datasets::Dataset;
use crate::inner::TrainOutcome;
use crate::ledger::Ledger;
use crate::models::EvalSums;
use crate::native::{Batch, NativeNet};
use crate::task::Problem;
use anyhow::{bail, Result};
use beatmatch_core::{Buffers, EvalAt, Optimizer, Params, RunStatus, Snapshot, StepContext};
use std::ops::Range;

/// One member's budget: steps to train and the horizon its optimizer is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberPlan {
    /// Steps to train.
    pub steps: u64,
    /// Horizon told to the optimizer (steps).
    pub horizon: u64,
}

/// One optimizer over a contiguous range of members sharing its horizon.
pub struct OptimizerGroup<O: Optimizer + ?Sized = dyn Optimizer> {
    /// The optimizer, with `members.len()` members.
    pub optimizer: Box<O>,
    /// Which members.
    pub members: Range<usize>,
}

/// One member's measurements: its horizon, its ledger and the mini-batch losses of the last
/// advance. A population keeps one per member, whichever engine trains it.
#[derive(Clone, Debug)]
pub struct Member {
    pub(crate) horizon: u64,
    pub(crate) ledger: Ledger,
    pub(crate) batch_losses: Vec<f32>,
}

impl Member {
    /// A member of `problem` that trains to `plan`.
    pub(crate) fn new(problem: &Problem, plan: &MemberPlan) -> Self {
        Self { horizon: plan.horizon, ledger: Ledger::new(problem, plan.steps), batch_losses: Vec::new() }
    }
}

/// What a population is to the code that drives it — the host's [`Population`] or a
/// [`crate::device_population::DevicePopulation`]: members trained together from one seed,
/// each ending on its own.
pub trait Members {
    /// Each member's measurements, in member order.
    fn roster(&self) -> &[Member];
    /// Steps taken (by the members still training).
    fn step(&self) -> u64;
    /// Take up to `n` more steps (fewer when every member ends first); returns the steps taken.
    /// `advance(a)` then `advance(b)` is `advance(a + b)`.
    fn advance(&mut self, n: u64) -> Result<u64>;

    /// Members.
    fn len(&self) -> usize {
        self.roster().len()
    }
    /// Whether the population has no members (never: populations refuse that).
    fn is_empty(&self) -> bool {
        self.roster().is_empty()
    }
    /// Whether every member has ended.
    fn is_done(&self) -> bool {
        self.roster().iter().all(|m| m.ledger.ended().is_some())
    }
    /// How member `m` ended, once it has.
    fn ended(&self, m: usize) -> Option<&RunStatus> {
        self.roster()[m].ledger.ended()
    }
    /// Member `m`'s mini-batch losses (nats) of the steps the last [`Members::advance`] took.
    fn batch_losses(&self, m: usize) -> &[f32] {
        &self.roster()[m].batch_losses
    }
    /// Member `m`'s result so far (its status `Finished` unless it diverged).
    fn outcome(&self, m: usize) -> TrainOutcome {
        self.roster()[m].ledger.outcome()
    }
    /// Train every member to its end; their outcomes in member order.
    fn finish(mut self) -> Result<Vec<TrainOutcome>>
    where
        Self: Sized,
    {
        while !self.is_done() {
            self.advance(u64::MAX)?;
        }
        Ok((0..self.len()).map(|m| self.outcome(m)).collect())
    }
}

/// Everything a population has accumulated, for [`Population::restore`].
pub struct PopulationSnapshot {
    params: Vec<Vec<f32>>,
    optimizers: Vec<Snapshot>,
    batches: BatchStream,
    step: u64,
    members: Vec<Member>,
}

/// A population in progress.
pub struct Population<'d, O: Optimizer + ?Sized = dyn Optimizer> {
    problem: &'d Problem,
    net: Box<dyn NativeNet>,
    train_view: View<'d>,
    test_view: View<'d>,
    params: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    groups: Vec<OptimizerGroup<O>>,
    members: Vec<Member>,
    batches: BatchStream,
    measure_idx: Vec<u32>,
    step: u64,
    idx: Vec<u32>,
    xb: Vec<f32>,
    yb: Vec<u32>,
}

impl<'d, O: Optimizer + ?Sized> Population<'d, O> {
    /// Whether `problem`'s family trains on the native engine (and so as a population).
    pub fn supports(problem: &Problem) -> bool {
        native_net(problem).is_some()
    }

    /// A fresh population from `seed`: member `m` trains for `members[m]`, updated by the group
    /// whose range holds it (groups must cover `0..members.len()` in order, each optimizer with
    /// as many members as its range, and every member of a group the same horizon).
    pub fn new(problem: &'d Problem, data: &'d Dataset, seed: u64, members: &[MemberPlan], groups: Vec<OptimizerGroup<O>>) -> Result<Self> {
        let Some(net) = native_net(problem) else { bail!("{}: only the families the native engine has train as a population", problem.id()) };
        let k = members.len();
        check_groups(members, &groups)?;
        let train_view = View::new(problem, data, false)?;
        let test_view = View::new(problem, data, true)?;
        // Every member starts from the seed's initialisation (the same as a run alone).
        let init = problem.build_model().init(&mut rng(seed, STREAM_INIT));
        let params: Vec<Vec<f32>> = init.iter().map(|v| v.repeat(k)).collect();
        let grads = params.iter().map(|v| vec![0.0; v.len()]).collect();
        let members = members.iter().map(|p| Member::new(problem, p)).collect();
        Ok(Self {
            measure_idx: train_view.measurement_items(problem),
            batches: BatchStream::new(train_view.len(), seed),
            problem,
            net,
            train_view,
            test_view,
            params,
            grads,
            groups,
            members,
            step: 0,
            idx: Vec::with_capacity(problem.batch_size),
            xb: Vec::new(),
            yb: Vec::new(),
        })
    }

    /// The optimizer groups (to rebind a learned optimizer's theta, say).
    pub fn groups_mut(&mut self) -> &mut [OptimizerGroup<O>] {
        &mut self.groups
    }

    /// Items in the training split (what batch indices index).
    pub fn train_len(&self) -> usize {
        self.train_view.len()
    }

    /// Each member's mean loss (nats) over the training items `idx` at its current
    /// parameters, in mini-batches of the problem's size; NaN for a member that diverged.
    pub fn train_losses_on(&mut self, idx: &[u32]) -> Vec<f32> {
        let who: Vec<bool> = self.members.iter().map(|m| !matches!(m.ledger.ended(), Some(RunStatus::Diverged { .. }))).collect();
        let eval = self.eval_values().expect("populations evaluate on the host, where evaluation points cannot fail");
        let sums = self.sums(eval.as_deref(), false, Some(idx), self.problem.batch_size, &who);
        sums.iter().zip(&who).map(|(s, &w)| if w { s.mean_loss() } else { f32::NAN }).collect()
    }

    /// Member `m`'s parameter values, one flat buffer per tensor.
    pub fn param_values(&self, m: usize) -> Vec<Vec<f32>> {
        let k = self.members.len();
        self.params.iter().map(|v| beatmatch_core::optimizer::member(v, k, m).to_vec()).collect()
    }

    /// A copy of everything the population has accumulated.
    pub fn snapshot(&self) -> PopulationSnapshot {
        PopulationSnapshot {
            params: self.params.clone(),
            optimizers: self.groups.iter().map(|g| g.optimizer.snapshot()).collect(),
            batches: self.batches.clone(),
            step: self.step,
            members: self.members.clone(),
        }
    }

    /// Put back a snapshot of this population (or one of the same problem, seed and plan).
    pub fn restore(&mut self, s: &PopulationSnapshot) -> Result<()> {
        if s.members.len() != self.members.len() || s.optimizers.len() != self.groups.len() {
            bail!(
                "snapshot of a population of {} members in {} groups, not {} in {}",
                s.members.len(),
                s.optimizers.len(),
                self.members.len(),
                self.groups.len()
            );
        }
        for (g, snap) in self.groups.iter_mut().zip(&s.optimizers) {
            g.optimizer.restore(snap)?;
        }
        self.params.clone_from(&s.params);
        self.batches = s.batches.clone();
        self.step = s.step;
        self.members.clone_from(&s.members);
        Ok(())
    }

    fn param_slices(&self) -> Vec<&[f32]> {
        self.params.iter().map(Vec::as_slice).collect()
    }

    /// Every member's values to evaluate, when some optimizer group is evaluated elsewhere
    /// (Schedule-Free): the parameters, with those members at their group's evaluation point.
    /// `None`: every member at its parameters.
    fn eval_values(&self) -> Result<Option<Vec<Vec<f32>>>> {
        if !self.groups.iter().any(|g| g.optimizer.evaluates_elsewhere()) {
            return Ok(None);
        }
        let k = self.members.len();
        let mut values = self.params.clone();
        for g in self.groups.iter().filter(|g| g.optimizer.evaluates_elsewhere()) {
            let r = g.members.clone();
            let slices: Vec<&[f32]> = self.params.iter().map(|v| &v[r.start * v.len() / k..r.end * v.len() / k]).collect();
            match g.optimizer.eval_point(Params::Host(&slices))? {
                Some(EvalAt::Host(x)) => {
                    for (dst, src) in values.iter_mut().zip(&x) {
                        let n = dst.len() / k;
                        dst[r.start * n..r.end * n].copy_from_slice(src);
                    }
                }
                Some(EvalAt::Device(_)) => bail!("a population evaluates on the host; the optimizer answered with device tensors"),
                None => {}
            }
        }
        Ok(Some(values))
    }

    /// Summed loss of the `who` members over `items` of `view`, in chunks of `chunk` rows, at
    /// `values` (every member's, as [`Population::eval_values`] gives them) or the parameters.
    fn sums(&mut self, values: Option<&[Vec<f32>]>, test: bool, items: Option<&[u32]>, chunk: usize, who: &[bool]) -> Vec<EvalSums> {
        let k = self.members.len();
        let view = if test { &self.test_view } else { &self.train_view };
        let all: Vec<u32>;
        let items = match items {
            Some(i) => i.to_vec(),
            None => {
                all = (0..view.len() as u32).collect();
                all
            }
        };
        let params: Vec<&[f32]> = values.unwrap_or(&self.params).iter().map(Vec::as_slice).collect();
        let mut sums = vec![EvalSums::default(); k];
        let mut first = true;
        for part in items.chunks(chunk.max(1)) {
            view.rows_into(part, &mut self.xb, &mut self.yb);
            let batch = Batch { x: &self.xb, y: &self.yb, rows: part.len() };
            let part_sums = self.net.eval(k, who, &params, &batch);
            for m in (0..k).filter(|&m| who[m]) {
                sums[m] = if first { part_sums[m] } else { sums[m].merge(part_sums[m]) };
            }
            first = false;
        }
        sums
    }

    /// Measure every member due at this step (train loss, held-out at a budget), end those that
    /// diverged or reached their budget.
    fn measure(&mut self) -> Result<()> {
        let s = self.step;
        let due: Vec<bool> = self.members.iter().map(|m| m.ledger.due(s)).collect();
        if due.iter().any(|&d| d) {
            let eval = self.eval_values()?;
            let measure_idx = std::mem::take(&mut self.measure_idx);
            let train = self.sums(eval.as_deref(), false, Some(&measure_idx), self.problem.batch_size, &due);
            self.measure_idx = measure_idx;
            let eval_due: Vec<bool> = self.members.iter().zip(&due).map(|(m, &d)| d && m.ledger.evaluates_at(s)).collect();
            let chunk = self.test_view.chunk();
            let held_out = if eval_due.iter().any(|&d| d) { Some(self.sums(eval.as_deref(), true, None, chunk, &eval_due)) } else { None };
            for (m, member) in self.members.iter_mut().enumerate().filter(|(m, _)| due[*m]) {
                let h = held_out.as_ref().filter(|_| eval_due[m]).map(|h| &h[m]);
                member.ledger.record(s, train[m].mean_loss(), h);
            }
        }
        for member in &mut self.members {
            member.ledger.finish_at(s);
        }
        Ok(())
    }

    /// One training step of every member still training.
    fn train(&mut self) -> Result<()> {
        let s = self.step;
        let k = self.members.len();
        let mut live: Vec<bool> = self.members.iter().map(|m| m.ledger.ended().is_none()).collect();
        self.batches.next_indices(self.problem.batch_size, &mut self.idx);
        self.train_view.rows_into(&self.idx, &mut self.xb, &mut self.yb);
        let batch = Batch { x: &self.xb, y: &self.yb, rows: self.idx.len() };
        let params: Vec<&[f32]> = self.params.iter().map(Vec::as_slice).collect();
        let mut grads: Vec<&mut [f32]> = self.grads.iter_mut().map(Vec::as_mut_slice).collect();
        let losses = self.net.loss_and_grads(k, &live, &params, &batch, &mut grads);
        drop((params, grads));
        for (m, member) in self.members.iter_mut().enumerate() {
            if !live[m] {
                continue;
            }
            if losses[m].is_finite() {
                member.batch_losses.push(losses[m]);
            } else {
                member.ledger.diverge(s, "non-finite mini-batch loss".into());
                live[m] = false;
            }
        }
        // Members not training get zero gradients (their values are never read again).
        for g in &mut self.grads {
            let n = g.len() / k;
            for (m, part) in g.chunks_exact_mut(n.max(1)).enumerate() {
                if !live[m] {
                    part.fill(0.0);
                }
            }
        }
        for group in &mut self.groups {
            let r = group.members.clone();
            if !live[r.clone()].iter().any(|&l| l) {
                continue;
            }
            let mut p: Vec<&mut [f32]> = self
                .params
                .iter_mut()
                .map(|v| {
                    let n = v.len() / k;
                    &mut v[r.start * n..r.end * n]
                })
                .collect();
            let g: Vec<&[f32]> = self
                .grads
                .iter()
                .map(|v| {
                    let n = v.len() / k;
                    &v[r.start * n..r.end * n]
                })
                .collect();
            let ctx = StepContext { step: s, num_steps: self.members[r.start].horizon, losses: &losses[r.clone()] };
            // An optimizer in another process can fail (the step protocol): the error, not a panic.
            group.optimizer.update(Buffers::Host { params: &mut p, grads: &g }, &ctx)?;
        }
        self.step += 1;
        Ok(())
    }
}

impl<O: Optimizer + ?Sized> Members for Population<'_, O> {
    fn roster(&self) -> &[Member] {
        &self.members
    }

    fn step(&self) -> u64 {
        self.step
    }

    fn advance(&mut self, n: u64) -> Result<u64> {
        advance(self, n)
    }
}

impl<O: Optimizer + ?Sized> Stepper for Population<'_, O> {
    fn roster_mut(&mut self) -> &mut [Member] {
        &mut self.members
    }
    fn measure(&mut self) -> Result<()> {
        Population::measure(self)
    }
    fn train(&mut self) -> Result<()> {
        Population::train(self)
    }
}

/// A population's two moves: measure the members due at its step, and take one step.
pub(crate) trait Stepper: Members {
    fn roster_mut(&mut self) -> &mut [Member];
    fn measure(&mut self) -> Result<()>;
    fn train(&mut self) -> Result<()>;
}

/// [`Members::advance`] of either population: per step index, measure whoever is due, then (unless
/// every member has ended) train one step; at the end, measure those the last step finished.
pub(crate) fn advance<P: Stepper>(p: &mut P, n: u64) -> Result<u64> {
    let _ftz = beatmatch_core::simd::FlushDenormals::new();
    p.roster_mut().iter_mut().for_each(|m| m.batch_losses.clear());
    let start = p.step();
    while p.step() - start < n {
        p.measure()?;
        if p.is_done() {
            break;
        }
        p.train()?;
    }
    // Members whose budget the last step reached measure their end now.
    p.measure()?;
    Ok(p.step() - start)
}

/// Refuse groups that do not cover `plans` in order, one optimizer member per population member,
/// one horizon per group.
pub(crate) fn check_groups<O: Optimizer + ?Sized>(plans: &[MemberPlan], groups: &[OptimizerGroup<O>]) -> Result<()> {
    let mut at = 0;
    for g in groups {
        if g.members.start != at || g.members.end <= g.members.start || g.optimizer.members() != g.members.len() {
            bail!("optimizer groups must cover the members in order, each with one optimizer member per population member");
        }
        if plans[g.members.clone()].iter().any(|p| p.horizon != plans[g.members.start].horizon) {
            bail!("members of one optimizer group must share their horizon");
        }
        at = g.members.end;
    }
    if at != plans.len() || plans.is_empty() {
        bail!("optimizer groups cover {at} of {} members", plans.len());
    }
    Ok(())
}

fn native_net(problem: &Problem) -> Option<Box<dyn NativeNet>> {
    let (shape, classes) = problem.dataset.signature();
    problem.model.native(&shape, classes)
}

impl<O: Optimizer + ?Sized> Population<'_, O> {
    /// Parameter buffers of all members (`[K × numel]` per tensor), for tests.
    pub fn params_all(&self) -> Vec<&[f32]> {
        self.param_slices()
    }

    /// Seconds of one train-loss measurement and one held-out evaluation of every member (for
    /// time estimates; nothing of the population changes).
    pub fn time_measurements(&mut self) -> (f64, f64) {
        let all = vec![true; self.members.len()];
        let measure_idx = std::mem::take(&mut self.measure_idx);
        let t = std::time::Instant::now();
        self.sums(None, false, Some(&measure_idx), self.problem.batch_size, &all);
        let train = t.elapsed().as_secs_f64();
        self.measure_idx = measure_idx;
        let chunk = self.test_view.chunk();
        let t = std::time::Instant::now();
        self.sums(None, true, None, chunk, &all);
        (train, t.elapsed().as_secs_f64())
    }
}
