//! The training loop: one run of one optimizer on one problem from one seed.
//!
//! Determinism: initialisation and data order come from ChaCha8 streams of the seed; the
//! measurement batches are fixed for the problem (the same for every seed and optimizer), so
//! losses are comparable across runs. On CPU the same seed gives the same bytes provided candle
//! runs single-threaded (`RAYON_NUM_THREADS=1`, which the `suite` binary sets).
//!
//! The loop is written for one member; a sweep's K members share the problem, data order per
//! seed and measurement batches, which is what a later batched (vmapped) executor needs.

use crate::datasets::{Dataset, Layout};
use crate::models::{self, EvalSums, Model};
use crate::task::Problem;
use anyhow::{Context, Result};
use beatmatch_core::{CurvePoint, EvalPoint, Optimizer, RunStatus, StepContext};
use candle_core::{Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A run is declared diverged when its measured train loss exceeds this multiple of the loss at
/// initialisation (a "loss explosion"), or any loss is not finite.
pub const EXPLOSION_FACTOR: f32 = 10.0;

/// ChaCha8 stream ids, so initialisation, data order and measurement draw independent numbers.
const STREAM_INIT: u64 = 0;
const STREAM_DATA: u64 = 1;
const STREAM_MEASURE: u64 = 2;

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

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Batches drawn epoch by epoch from a seeded shuffle of the training split.
struct BatchStream {
    order: Vec<u32>,
    pos: usize,
    rng: ChaCha8Rng,
}

impl BatchStream {
    fn new(n: usize, seed: u64) -> Self {
        let mut s = Self { order: (0..n as u32).collect(), pos: n, rng: rng(seed, STREAM_DATA) };
        s.order.shuffle(&mut s.rng);
        s.pos = 0;
        s
    }

    fn next_indices(&mut self, batch: usize, out: &mut Vec<u32>) {
        out.clear();
        while out.len() < batch {
            if self.pos == self.order.len() {
                self.order.shuffle(&mut self.rng);
                self.pos = 0;
            }
            let take = (batch - out.len()).min(self.order.len() - self.pos);
            out.extend_from_slice(&self.order[self.pos..self.pos + take]);
            self.pos += take;
        }
    }
}

/// How a problem cuts training items out of a dataset split.
struct View<'a> {
    x: &'a [f32],
    y: &'a [u32],
    kind: ViewKind,
}

#[derive(Clone, Copy)]
enum ViewKind {
    /// Labelled examples of `width` values.
    Rows { width: usize },
    /// `count` windows of `len` tokens starting every `stride` tokens: inputs are the first
    /// `len − 1`, targets the last `len − 1`.
    Windows { len: usize, stride: usize, count: usize },
}

/// Held-out token streams are evaluated on at most this many predicted tokens (non-overlapping
/// windows from the start of the stream), which keeps an evaluation to seconds for mid-size
/// models; 32,768 tokens resolve the loss to well under 0.01 nats.
pub const EVAL_TOKENS: usize = 32_768;

impl<'a> View<'a> {
    /// The training (`test == false`) or held-out split of `data` as `problem` reads it.
    fn new(problem: &Problem, data: &'a Dataset, test: bool) -> Result<Self> {
        let (x, y) = if test { (&data.test_x[..], &data.test_y[..]) } else { (&data.train_x[..], &data.train_y[..]) };
        let kind = match (data.layout, problem.model.context()) {
            (Layout::Examples, None) => {
                anyhow::ensure!(
                    data.example_shape == problem.dataset.signature().0,
                    "{}: dataset examples are {:?}, expected {:?}",
                    problem.id(),
                    data.example_shape,
                    problem.dataset.signature().0
                );
                ViewKind::Rows { width: data.example_len() }
            }
            (Layout::Stream, Some(ctx)) => {
                let (len, stride) = (ctx + 1, if test { ctx } else { 1 });
                let all = if x.len() < len { 0 } else { (x.len() - len) / stride + 1 };
                let count = if test { all.min((EVAL_TOKENS / ctx).max(1)) } else { all };
                ViewKind::Windows { len, stride, count }
            }
            (layout, ctx) => anyhow::bail!("{}: a {:?} dataset cannot feed a model with context {ctx:?}", problem.id(), layout),
        };
        let view = Self { x, y, kind };
        anyhow::ensure!(view.len() > 0, "{}: the {} split is too short for one item", problem.id(), if test { "held-out" } else { "training" });
        Ok(view)
    }

    /// Number of items.
    fn len(&self) -> usize {
        match self.kind {
            ViewKind::Rows { .. } => self.y.len(),
            ViewKind::Windows { count, .. } => count,
        }
    }

    /// Items per evaluation chunk.
    fn chunk(&self) -> usize {
        match self.kind {
            ViewKind::Rows { .. } => 1000,
            ViewKind::Windows { len, .. } => (8192 / (len - 1)).max(1),
        }
    }

    /// Inputs and targets of the items `idx`.
    fn batch(&self, idx: &[u32], dev: &Device) -> Result<(Tensor, Tensor)> {
        match self.kind {
            ViewKind::Rows { width } => {
                let mut xb = Vec::with_capacity(idx.len() * width);
                let mut yb = Vec::with_capacity(idx.len());
                for &i in idx {
                    let i = i as usize;
                    xb.extend_from_slice(&self.x[i * width..(i + 1) * width]);
                    yb.push(self.y[i]);
                }
                Ok((Tensor::from_vec(xb, (idx.len(), width), dev)?, Tensor::from_vec(yb, idx.len(), dev)?))
            }
            ViewKind::Windows { len, stride, .. } => {
                let t = len - 1;
                let mut xb = Vec::with_capacity(idx.len() * t);
                let mut yb = Vec::with_capacity(idx.len() * t);
                for &i in idx {
                    let w = &self.x[i as usize * stride..i as usize * stride + len];
                    xb.extend(w[..t].iter().map(|&v| v as u32));
                    yb.extend(w[1..].iter().map(|&v| v as u32));
                }
                Ok((Tensor::from_vec(xb, (idx.len(), t), dev)?, Tensor::from_vec(yb, (idx.len(), t), dev)?))
            }
        }
    }

    /// Mean loss (and accuracy where defined) of `params` over the items `idx` (all items if
    /// `None`), in chunks.
    fn evaluate(&self, model: &dyn Model, params: &[Tensor], idx: Option<&[u32]>, chunk: usize, dev: &Device) -> Result<EvalSums> {
        let all: Vec<u32>;
        let idx = match idx {
            Some(i) => i,
            None => {
                all = (0..self.len() as u32).collect();
                &all
            }
        };
        let mut sums: Option<EvalSums> = None;
        for part in idx.chunks(chunk.max(1)) {
            let (xb, yb) = self.batch(part, dev)?;
            let s = models::evaluate(model, params, &xb, &yb)?;
            sums = Some(match sums {
                Some(acc) => acc.add(s),
                None => s,
            });
        }
        Ok(sums.unwrap_or_default())
    }
}

fn finite(v: f32) -> Option<f32> {
    v.is_finite().then_some(v)
}

/// Train `problem` with `optimizer`. `on_progress(steps_done)` is called now and then for
/// progress display. Divergence is an outcome, not an error; errors are bugs or I/O.
pub fn train(
    problem: &Problem,
    data: &Dataset,
    optimizer: &mut dyn Optimizer,
    settings: RunSettings<'_>,
    on_progress: &mut dyn FnMut(u64),
) -> Result<TrainOutcome> {
    let dev = settings.device;
    let model = problem.build_model();
    let infos = model.params().to_vec();
    let train_view = View::new(problem, data, false)?;
    let test_view = View::new(problem, data, true)?;
    let mut values = model.init(&mut rng(settings.seed, STREAM_INIT));
    let mut batches = BatchStream::new(train_view.len(), settings.seed);

    // Fixed measurement items: the same for every seed and optimizer.
    let mut measure_idx: Vec<u32> = (0..train_view.len() as u32).collect();
    measure_idx.shuffle(&mut rng(0, STREAM_MEASURE));
    measure_idx.truncate(problem.measurement.batches * problem.batch_size);

    let to_tensors =
        |values: &[Vec<f32>]| -> Result<Vec<Tensor>> { values.iter().zip(&infos).map(|(v, p)| Ok(Tensor::from_slice(v, p.shape.clone(), dev)?)).collect() };

    let measure_steps = problem.measure_steps(settings.steps);
    let mut next_measure = 0usize;
    let mut curve = Vec::with_capacity(measure_steps.len());
    let mut evals = Vec::new();
    let mut initial_loss = None;
    let mut idx = Vec::with_capacity(problem.batch_size);
    let mut status = RunStatus::Finished;

    for step in 0..=settings.steps {
        if measure_steps.get(next_measure) == Some(&step) {
            next_measure += 1;
            let params = to_tensors(&values)?;
            let loss = train_view.evaluate(model.as_ref(), &params, Some(&measure_idx), problem.batch_size, dev)?.mean_loss();
            curve.push(CurvePoint { step, train_loss: finite(loss) });
            if problem.measurement.eval_at.contains(&step) {
                let held_out = test_view.evaluate(model.as_ref(), &params, None, test_view.chunk(), dev)?;
                evals.push(EvalPoint { step, eval_loss: finite(held_out.mean_loss()), eval_accuracy: held_out.accuracy() });
            }
            let initial = *initial_loss.get_or_insert(loss);
            if !loss.is_finite() {
                status = RunStatus::Diverged { step, reason: "non-finite train loss".into() };
                break;
            }
            if loss > EXPLOSION_FACTOR * initial {
                status = RunStatus::Diverged { step, reason: format!("train loss {loss:.3} > {EXPLOSION_FACTOR} × initial {initial:.3}") };
                break;
            }
        }
        if step == settings.steps {
            break;
        }

        batches.next_indices(problem.batch_size, &mut idx);
        let (xb, yb) = train_view.batch(&idx, dev)?;
        let Some((loss_value, grad_tensors)) = gradients(model.as_ref(), &values, &xb, &yb, dev)? else {
            status = RunStatus::Diverged { step, reason: "non-finite mini-batch loss".into() };
            break;
        };
        let ctx = StepContext { step, num_steps: settings.horizon, loss: loss_value };
        step_on_host(optimizer, &mut values, &grad_tensors, &ctx)?;
        if step % 64 == 0 {
            on_progress(step);
        }
    }
    on_progress(settings.steps);
    Ok(TrainOutcome { status, curve, evals })
}

/// Mini-batch loss and gradients at `values`; `None` if the loss is not finite.
fn gradients(model: &dyn Model, values: &[Vec<f32>], xb: &Tensor, yb: &Tensor, dev: &Device) -> Result<Option<(f32, Vec<Tensor>)>> {
    let infos = model.params();
    let vars: Vec<Var> = values.iter().zip(infos).map(|(v, p)| Var::from_slice(v, p.shape.clone(), dev)).collect::<candle_core::Result<_>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let loss = models::loss(model, &tensors, xb, yb)?;
    let loss_value = loss.to_scalar::<f32>()?;
    if !loss_value.is_finite() {
        return Ok(None);
    }
    let grads = loss.backward()?;
    let grad_tensors =
        tensors.iter().zip(infos).map(|(t, p)| grads.get(t).cloned().with_context(|| format!("no gradient for {}", p.name))).collect::<Result<_>>()?;
    Ok(Some((loss_value, grad_tensors)))
}

/// Measured costs of one problem on one device (seconds), for time estimates.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepCost {
    /// One training step's forward and backward pass (the optimizer update excluded).
    pub step_s: f64,
    /// One train-loss measurement (the fixed measurement batches).
    pub measure_s: f64,
    /// One held-out evaluation.
    pub eval_s: f64,
}

/// Time `steps` training steps (after one warm-up step), one train-loss measurement and one
/// held-out evaluation of `problem`.
pub fn calibrate(problem: &Problem, data: &Dataset, device: &Device, steps: usize) -> Result<StepCost> {
    let model = problem.build_model();
    let train_view = View::new(problem, data, false)?;
    let test_view = View::new(problem, data, true)?;
    let values = model.init(&mut rng(0, STREAM_INIT));
    let mut batches = BatchStream::new(train_view.len(), 0);
    let mut idx = Vec::new();
    let mut timed = 0.0;
    for i in 0..=steps {
        batches.next_indices(problem.batch_size, &mut idx);
        let start = std::time::Instant::now();
        let (xb, yb) = train_view.batch(&idx, device)?;
        gradients(model.as_ref(), &values, &xb, &yb, device)?;
        if i > 0 {
            timed += start.elapsed().as_secs_f64();
        }
    }
    let params: Vec<Tensor> = values.iter().zip(model.params()).map(|(v, p)| Ok(Tensor::from_slice(v, p.shape.clone(), device)?)).collect::<Result<_>>()?;
    let measure_idx: Vec<u32> = (0..(problem.measurement.batches * problem.batch_size).min(train_view.len()) as u32).collect();
    let start = std::time::Instant::now();
    train_view.evaluate(model.as_ref(), &params, Some(&measure_idx), problem.batch_size, device)?;
    let measure_s = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    test_view.evaluate(model.as_ref(), &params, None, test_view.chunk(), device)?;
    Ok(StepCost { step_s: timed / steps.max(1) as f64, measure_s, eval_s: start.elapsed().as_secs_f64() })
}

fn step_on_host(optimizer: &mut dyn Optimizer, values: &mut [Vec<f32>], grads: &[Tensor], ctx: &StepContext) -> Result<()> {
    // Borrow every gradient's storage at once without copying (CPU), then update in place.
    let mut guards = Vec::with_capacity(grads.len());
    for g in grads {
        guards.push(g.storage_and_layout());
    }
    let mut slices: Vec<&[f32]> = Vec::with_capacity(grads.len());
    let mut owned: Vec<Vec<f32>> = Vec::new();
    let mut owned_at = Vec::new();
    for (i, (storage, layout)) in guards.iter().enumerate() {
        match (&**storage, layout.contiguous_offsets()) {
            (candle_core::Storage::Cpu(cpu), Some((s, e))) => slices.push(&cpu.as_slice::<f32>()?[s..e]),
            _ => {
                owned.push(grads[i].flatten_all()?.to_vec1::<f32>()?);
                owned_at.push(i);
                slices.push(&[]);
            }
        }
    }
    for (k, &i) in owned_at.iter().enumerate() {
        slices[i] = &owned[k];
    }
    let mut params: Vec<&mut [f32]> = values.iter_mut().map(|v| v.as_mut_slice()).collect();
    optimizer.step(&mut params, &slices, ctx);
    Ok(())
}
