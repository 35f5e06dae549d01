//! The training loop: one run of one optimizer on one problem from one seed.
//!
//! Determinism: initialisation and data order come from ChaCha8 streams of the seed; the
//! measurement batches are fixed for the problem (the same for every seed and optimizer), so
//! losses are comparable across runs. On CPU the same seed gives the same bytes provided candle
//! runs single-threaded (`RAYON_NUM_THREADS=1`, which the `suite` binary sets).
//!
//! The loop is written for one member; a sweep's K members share the problem, data order per
//! seed and measurement batches, which is what a later batched (vmapped) executor needs.

use crate::datasets::Dataset;
use crate::task::Problem;
use anyhow::{Context, Result};
use beatmatch_core::{CurvePoint, EvalPoint, Optimizer, RunStatus, StepContext};
use candle_core::{DType, Device, Tensor, Var};
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

fn gather(x: &[f32], y: &[u32], width: usize, idx: &[u32], dev: &Device) -> Result<(Tensor, Tensor)> {
    let mut xb = Vec::with_capacity(idx.len() * width);
    let mut yb = Vec::with_capacity(idx.len());
    for &i in idx {
        let i = i as usize;
        xb.extend_from_slice(&x[i * width..(i + 1) * width]);
        yb.push(y[i]);
    }
    Ok((Tensor::from_vec(xb, (idx.len(), width), dev)?, Tensor::from_vec(yb, idx.len(), dev)?))
}

/// Mean cross-entropy and accuracy of `params` over `(x, y)` in chunks of `chunk` examples.
fn evaluate(model: &dyn crate::models::Model, params: &[Tensor], x: &[f32], y: &[u32], width: usize, chunk: usize, dev: &Device) -> Result<(f32, f32)> {
    let n = y.len();
    let (mut loss_sum, mut correct) = (0f64, 0u64);
    let mut start = 0;
    while start < n {
        let end = (start + chunk).min(n);
        let idx: Vec<u32> = (start as u32..end as u32).collect();
        let (xb, yb) = gather(x, y, width, &idx, dev)?;
        let logits = model.forward(params, &xb)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &yb)?.to_scalar::<f32>()?;
        loss_sum += f64::from(loss) * (end - start) as f64;
        let pred = logits.argmax(1)?.to_dtype(DType::U32)?;
        correct += pred.eq(&yb)?.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as u64;
        start = end;
    }
    Ok(((loss_sum / n as f64) as f32, correct as f32 / n as f32))
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
    let width = data.example_len();
    anyhow::ensure!(width == problem.dataset.signature().0.iter().product::<usize>(), "dataset shape mismatch");

    let mut values = model.init(&mut rng(settings.seed, STREAM_INIT));
    let mut batches = BatchStream::new(data.train_len(), settings.seed);

    // Fixed measurement batches: the same examples for every seed and optimizer.
    let mut measure_order: Vec<u32> = (0..data.train_len() as u32).collect();
    measure_order.shuffle(&mut rng(0, STREAM_MEASURE));
    measure_order.truncate(problem.measurement.batches * problem.batch_size);
    let measure_x: Vec<f32> = measure_order.iter().flat_map(|&i| data.train_x[i as usize * width..(i as usize + 1) * width].iter().copied()).collect();
    let measure_y: Vec<u32> = measure_order.iter().map(|&i| data.train_y[i as usize]).collect();

    let to_tensors = |values: &[Vec<f32>]| -> Result<Vec<Tensor>> {
        values.iter().zip(&infos).map(|(v, p)| Ok(Tensor::from_slice(v, p.shape.clone(), dev)?)).collect()
    };

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
            let (loss, _) = evaluate(model.as_ref(), &params, &measure_x, &measure_y, width, problem.batch_size, dev)?;
            curve.push(CurvePoint { step, train_loss: finite(loss) });
            if problem.measurement.eval_at.contains(&step) {
                let (eval_loss, acc) = evaluate(model.as_ref(), &params, &data.test_x, &data.test_y, width, 1000, dev)?;
                evals.push(EvalPoint { step, eval_loss: finite(eval_loss), eval_accuracy: Some(acc) });
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
        let (xb, yb) = gather(&data.train_x, &data.train_y, width, &idx, dev)?;
        let vars: Vec<Var> = values.iter().zip(&infos).map(|(v, p)| Var::from_slice(v, p.shape.clone(), dev)).collect::<candle_core::Result<_>>()?;
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let loss = candle_nn::loss::cross_entropy(&model.forward(&tensors, &xb)?, &yb)?;
        let loss_value = loss.to_scalar::<f32>()?;
        if !loss_value.is_finite() {
            status = RunStatus::Diverged { step, reason: "non-finite mini-batch loss".into() };
            break;
        }
        let grads = loss.backward()?;
        let grad_tensors: Vec<Tensor> = tensors
            .iter()
            .zip(&infos)
            .map(|(t, p)| grads.get(t).cloned().with_context(|| format!("no gradient for {}", p.name)))
            .collect::<Result<_>>()?;
        let ctx = StepContext { step, num_steps: settings.horizon, loss: loss_value };
        step_on_host(optimizer, &mut values, &grad_tensors, &ctx)?;
        if step % 64 == 0 {
            on_progress(step);
        }
    }
    on_progress(settings.steps);
    Ok(TrainOutcome { status, curve, evals })
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
