//! A device population: the members of one run group trained as one candle computation on
//! the run's device (a GPU, or candle's CPU device where it is tested) — the device path's
//! counterpart of [`crate::population::Population`].
//!
//! Members are updated by optimizer *groups*, as in the host population: contiguous member
//! ranges sharing one optimizer. A group of several members (a fused kind's learning-rate
//! grid, say) keeps its parameters as `[members, …]` tensors and steps them with one kernel
//! launch per tensor; a group of one keeps the member's own shapes (the rules written as candle
//! operations, the learned optimizers). Each step joins the groups' tensors into `[K, …]` (no
//! copy when one group holds every member) and runs one forward and backward pass for all
//! members ([`Model::forward_members`]: batched matrix products, one kernel per elementwise op).
//! Members share the initialisation, every mini-batch and the measurement batches.
//!
//! Members end independently: a member whose mini-batch loss is not finite diverges at that
//! step, one whose budget is reached measures its end. A group whose members have all ended
//! leaves the computation; within a group still training, an ended member's values keep being
//! computed and never read. A member's arithmetic never reads another member's values, so on
//! the CPU its record is the same bits in a population of 1 or 30, and those of the device
//! path's run alone ([`crate::inner::InnerRun`]); both are tested. `advance(a)` then
//! `advance(b)` is `advance(a + b)`.
//!
//! Every family's model batches members ([`Model::batches_members`]); a family added without
//! that trains one run at a time on the device. A ConvNet's convolutions are grouped, one group
//! per member, which candle runs as one convolution per member.

use crate::data::{rng, BatchStream, View, STREAM_INIT};
use crate::datasets::Dataset;
use crate::inner::{eval_tensors, update};
use crate::models::{self, Model};
use crate::population::{advance, check_groups, Member, MemberPlan, Members, OptimizerGroup, Stepper};
use crate::task::Problem;
use anyhow::{bail, Context, Result};
use beatmatch_core::{Optimizer, StepContext};
use candle_core::{Device, Tensor, Var};
use std::ops::Range;

/// One optimizer over a contiguous range of members, and their parameters.
struct Group {
    members: Range<usize>,
    /// `[members, …]` per tensor for several members; the member's own shapes for one.
    params: Vec<Var>,
    optimizer: Box<dyn Optimizer>,
}

impl Group {
    /// Tensor `i` as `[members, …]` (a view).
    fn stacked(&self, i: usize) -> candle_core::Result<Tensor> {
        self.member_axis(self.params[i].as_tensor().clone())
    }

    /// `t`, one of this group's tensors (or one of its evaluation point's), as `[members, …]`.
    fn member_axis(&self, t: Tensor) -> candle_core::Result<Tensor> {
        if self.optimizer.members() == 1 {
            t.unsqueeze(0)
        } else {
            Ok(t)
        }
    }
}

/// A device population in progress.
pub struct DevicePopulation<'d> {
    problem: &'d Problem,
    model: Box<dyn Model>,
    train_view: View<'d>,
    test_view: View<'d>,
    device: Device,
    groups: Vec<Group>,
    members: Vec<Member>,
    batches: BatchStream,
    measure_idx: Vec<u32>,
    step: u64,
    idx: Vec<u32>,
}

impl<'d> DevicePopulation<'d> {
    /// Whether `problem`'s family trains several members at once on a device.
    pub fn supports(problem: &Problem) -> bool {
        problem.build_model().batches_members()
    }

    /// A fresh population on `device` from `seed`: member `m` trains for `plans[m]`, updated by
    /// the group whose range holds it (groups must cover `0..plans.len()` in order, each
    /// optimizer with as many members as its range, every member of a group the same horizon).
    pub fn new(problem: &'d Problem, data: &'d Dataset, seed: u64, device: &Device, plans: &[MemberPlan], groups: Vec<OptimizerGroup>) -> Result<Self> {
        let model = problem.build_model();
        if !model.batches_members() {
            bail!("{}: this family trains one member at a time on a device", problem.id());
        }
        check_groups(plans, &groups)?;
        // Every member starts from the seed's initialisation (the same as a run alone).
        let init = model.init(&mut rng(seed, STREAM_INIT));
        let groups = groups
            .into_iter()
            .map(|g| {
                let k = g.members.len();
                let params = init
                    .iter()
                    .zip(model.params())
                    .map(|(v, p)| match g.optimizer.members() {
                        1 => Var::from_slice(v, p.shape.clone(), device),
                        _ => Var::from_vec(v.repeat(k), std::iter::once(k).chain(p.shape.iter().copied()).collect::<Vec<_>>(), device),
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Ok(Group { members: g.members, params, optimizer: g.optimizer })
            })
            .collect::<Result<Vec<_>>>()?;
        let train_view = View::new(problem, data, false)?;
        let test_view = View::new(problem, data, true)?;
        Ok(Self {
            measure_idx: train_view.measurement_items(problem),
            batches: BatchStream::new(train_view.len(), seed),
            members: plans.iter().map(|p| Member::new(problem, p)).collect(),
            problem,
            model,
            train_view,
            test_view,
            device: device.clone(),
            groups,
            step: 0,
            idx: Vec::with_capacity(problem.batch_size),
        })
    }

    /// Member `m`'s parameter values, one flat buffer per tensor.
    pub fn param_values(&self, m: usize) -> Result<Vec<Vec<f32>>> {
        let g = self.groups.iter().find(|g| g.members.contains(&m)).expect("groups cover every member");
        (0..g.params.len()).map(|i| Ok(g.stacked(i)?.get(m - g.members.start)?.flatten_all()?.to_vec1::<f32>()?)).collect()
    }

    /// Seconds of one train-loss measurement and one held-out evaluation of every member (for
    /// time estimates; nothing of the population changes).
    pub fn time_measurements(&mut self) -> Result<(f64, f64)> {
        let all: Vec<usize> = (0..self.groups.len()).collect();
        let stacked = self.joined(&all)?;
        let t = std::time::Instant::now();
        self.train_view.evaluate_members(self.model.as_ref(), &stacked, Some(&self.measure_idx), self.problem.batch_size, &self.device)?;
        let train = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        self.test_view.evaluate_members(self.model.as_ref(), &stacked, None, self.test_view.chunk(), &self.device)?;
        Ok((train, t.elapsed().as_secs_f64()))
    }

    /// The parameters of the groups `which`, joined per tensor into `[their members, …]` (the
    /// group's own tensors, no copy, when there is one).
    fn joined(&self, which: &[usize]) -> Result<Vec<Tensor>> {
        let n = self.model.params().len();
        (0..n)
            .map(|i| {
                let parts = which.iter().map(|&g| self.groups[g].stacked(i)).collect::<candle_core::Result<Vec<_>>>()?;
                Ok(if parts.len() == 1 { parts.into_iter().next().expect("one part") } else { Tensor::cat(&parts, 0)? })
            })
            .collect()
    }

    /// Measure every member due at this step (train loss; held out at a budget), end those that
    /// diverged or reached their budget.
    fn measure(&mut self) -> Result<()> {
        let s = self.step;
        let due: Vec<usize> = (0..self.members.len()).filter(|&m| self.members[m].ledger.due(s)).collect();
        if !due.is_empty() {
            let at = self.at_eval_points(&due)?;
            let train = self.train_view.evaluate_members(self.model.as_ref(), &at, Some(&self.measure_idx), self.problem.batch_size, &self.device)?;
            // Positions in `due` of the members also evaluated held out (at a budget).
            let eval_due: Vec<usize> = (0..due.len()).filter(|&j| self.members[due[j]].ledger.evaluates_at(s)).collect();
            let held_out = if eval_due.is_empty() {
                Vec::new()
            } else {
                let rows = Tensor::new(eval_due.iter().map(|&j| j as u32).collect::<Vec<_>>(), &self.device)?;
                let some = at.iter().map(|t| t.index_select(&rows, 0)).collect::<candle_core::Result<Vec<_>>>()?;
                self.test_view.evaluate_members(self.model.as_ref(), &some, None, self.test_view.chunk(), &self.device)?
            };
            for (j, (&m, t)) in due.iter().zip(&train).enumerate() {
                let h = eval_due.iter().position(|&e| e == j).map(|i| &held_out[i]);
                self.members[m].ledger.record(s, t.mean_loss(), h);
            }
        }
        for member in &mut self.members {
            member.ledger.finish_at(s);
        }
        Ok(())
    }

    /// The members `who` (ascending), each at the point its optimizer is measured at (the
    /// parameters, or Schedule-Free's `x`), stacked `[who.len(), …]` per tensor.
    fn at_eval_points(&self, who: &[usize]) -> Result<Vec<Tensor>> {
        let infos = self.model.params();
        let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); infos.len()];
        for g in self.groups.iter().filter(|g| who.iter().any(|m| g.members.contains(m))) {
            let at = eval_tensors(g.optimizer.as_ref(), &g.params, infos)?;
            let rows: Vec<u32> = who.iter().filter(|m| g.members.contains(m)).map(|&m| (m - g.members.start) as u32).collect();
            let rows = Tensor::new(rows, &self.device)?;
            for (i, t) in at.into_iter().enumerate() {
                parts[i].push(g.member_axis(t)?.index_select(&rows, 0)?);
            }
        }
        Ok(parts.into_iter().map(|p| Tensor::cat(&p, 0)).collect::<candle_core::Result<_>>()?)
    }

    /// One training step of every group with a member still training: one forward and backward
    /// pass over their members, then each group's update.
    fn train(&mut self) -> Result<()> {
        let s = self.step;
        let active: Vec<usize> = (0..self.groups.len()).filter(|&g| self.groups[g].members.clone().any(|m| self.members[m].ledger.ended().is_none())).collect();
        self.batches.next_indices(self.problem.batch_size, &mut self.idx);
        let (xb, yb) = self.train_view.batch(&self.idx, &self.device)?;
        let losses = models::member_losses(self.model.as_ref(), &self.joined(&active)?, &xb, &yb)?;
        let values = losses.to_vec1::<f32>()?;
        // Each member's gradient is its own loss's: the sum's backward gives every loss weight
        // one, and no member's loss reads another's parameters.
        let grads = losses.sum_all()?.backward()?;
        let mut at = 0;
        for &gi in &active {
            let g = &mut self.groups[gi];
            let losses = &values[at..at + g.members.len()];
            at += g.members.len();
            for (m, &loss) in g.members.clone().zip(losses) {
                let member = &mut self.members[m];
                if member.ledger.ended().is_some() {
                    continue;
                }
                if loss.is_finite() {
                    member.batch_losses.push(loss);
                } else {
                    member.ledger.diverge(s, "non-finite mini-batch loss".into());
                }
            }
            if g.members.clone().all(|m| self.members[m].ledger.ended().is_some()) {
                continue; // its last member diverged at this step: no update from that loss
            }
            let grads = g
                .params
                .iter()
                .zip(self.model.params())
                .map(|(v, p)| grads.get(v.as_tensor()).cloned().with_context(|| format!("no gradient for {}", p.name)))
                .collect::<Result<Vec<_>>>()?;
            let ctx = StepContext { step: s, num_steps: self.members[g.members.start].horizon, losses };
            update(g.optimizer.as_mut(), &g.params, &grads, &ctx)?;
        }
        self.step += 1;
        Ok(())
    }
}

impl Members for DevicePopulation<'_> {
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

impl Stepper for DevicePopulation<'_> {
    fn roster_mut(&mut self) -> &mut [Member] {
        &mut self.members
    }
    fn measure(&mut self) -> Result<()> {
        DevicePopulation::measure(self)
    }
    fn train(&mut self) -> Result<()> {
        DevicePopulation::train(self)
    }
}
