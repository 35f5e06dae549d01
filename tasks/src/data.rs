//! Data as a problem reads it: views of a dataset split (labelled rows or token windows), the
//! seeded batch stream, the fixed measurement items, and the ChaCha8 streams every random draw
//! of a run comes from.
//!
//! Determinism: initialisation and data order come from ChaCha8 streams of the seed; the
//! measurement batches are fixed for the problem (the same for every seed and optimizer), so
//! losses are comparable across runs, and every member of a population sees the same batches.

use crate::datasets::{Dataset, Layout};
use crate::models::{self, EvalSums, Model};
use crate::task::Problem;
use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// ChaCha8 stream ids, so initialisation, data order and measurement draw independent numbers.
/// The ChaCha8 stream of a seed that initialises parameters.
pub const STREAM_INIT: u64 = 0;
/// The stream that orders the training data.
pub const STREAM_DATA: u64 = 1;
/// The stream that picks the fixed measurement batches.
pub const STREAM_MEASURE: u64 = 2;

/// The ChaCha8 stream `stream` of `seed`.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Batches drawn epoch by epoch from a seeded shuffle of the training split.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStream {
    order: Vec<u32>,
    pos: usize,
    rng: ChaCha8Rng,
}

impl BatchStream {
    /// The stream of a training split of `n` items for `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut s = Self { order: (0..n as u32).collect(), pos: n, rng: rng(seed, STREAM_DATA) };
        s.order.shuffle(&mut s.rng);
        s.pos = 0;
        s
    }

    /// The next `batch` item indices, into `out`.
    pub fn next_indices(&mut self, batch: usize, out: &mut Vec<u32>) {
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
pub struct View<'a> {
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
    pub fn new(problem: &Problem, data: &'a Dataset, test: bool) -> Result<Self> {
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
        anyhow::ensure!(!view.is_empty(), "{}: the {} split is too short for one item", problem.id(), if test { "held-out" } else { "training" });
        Ok(view)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self.kind {
            ViewKind::Rows { .. } => self.y.len(),
            ViewKind::Windows { count, .. } => count,
        }
    }

    /// Items per evaluation chunk.
    pub fn chunk(&self) -> usize {
        match self.kind {
            ViewKind::Rows { .. } => 1000,
            ViewKind::Windows { len, .. } => (8192 / (len - 1)).max(1),
        }
    }

    /// The items `idx` into host buffers, as the native engine reads them
    /// ([`crate::native::Batch`]): labelled rows (`x` `[idx.len()][width]`, `y` one label
    /// each) or token windows (`x` the input tokens' ids as floats `[idx.len()][t]`, `y` the
    /// targets `[idx.len()][t]`).
    pub fn rows_into(&self, idx: &[u32], x: &mut Vec<f32>, y: &mut Vec<u32>) {
        x.clear();
        y.clear();
        match self.kind {
            ViewKind::Rows { width } => {
                for &i in idx {
                    let i = i as usize;
                    x.extend_from_slice(&self.x[i * width..(i + 1) * width]);
                    y.push(self.y[i]);
                }
            }
            ViewKind::Windows { len, stride, .. } => {
                for &i in idx {
                    let w = &self.x[i as usize * stride..i as usize * stride + len];
                    x.extend_from_slice(&w[..len - 1]);
                    y.extend(w[1..].iter().map(|&v| v as u32));
                }
            }
        }
    }

    /// Inputs and targets of the items `idx`.
    pub fn batch(&self, idx: &[u32], dev: &Device) -> Result<(Tensor, Tensor)> {
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
    pub fn evaluate(&self, model: &dyn Model, params: &[Tensor], idx: Option<&[u32]>, chunk: usize, dev: &Device) -> Result<EvalSums> {
        let sums = self.fold_chunks(idx, chunk, dev, &mut |x, y| models::evaluate(model, params, x, y), &|a: EvalSums, b| a.merge(b))?;
        Ok(sums.unwrap_or_default())
    }

    /// [`View::evaluate`] of K members at once (`params` each `[K, …]`, as
    /// [`models::evaluate_members`] takes them): each member's sums, merged chunk by chunk in
    /// the order [`View::evaluate`] merges one member's.
    pub fn evaluate_members(&self, model: &dyn Model, params: &[Tensor], idx: Option<&[u32]>, chunk: usize, dev: &Device) -> Result<Vec<EvalSums>> {
        let merge = |a: Vec<EvalSums>, b: Vec<EvalSums>| a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect();
        let sums = self.fold_chunks(idx, chunk, dev, &mut |x, y| models::evaluate_members(model, params, x, y), &merge)?;
        Ok(sums.unwrap_or_else(|| vec![EvalSums::default(); params.first().map_or(0, |p| p.dims()[0])]))
    }

    /// `f` of each chunk of `chunk` items of `idx` (all items if `None`), merged in order;
    /// `None` for no items.
    fn fold_chunks<T>(
        &self,
        idx: Option<&[u32]>,
        chunk: usize,
        dev: &Device,
        f: &mut dyn FnMut(&Tensor, &Tensor) -> candle_core::Result<T>,
        merge: &dyn Fn(T, T) -> T,
    ) -> Result<Option<T>> {
        let all: Vec<u32>;
        let idx = match idx {
            Some(i) => i,
            None => {
                all = (0..self.len() as u32).collect();
                &all
            }
        };
        let mut acc: Option<T> = None;
        for part in idx.chunks(chunk.max(1)) {
            let (xb, yb) = self.batch(part, dev)?;
            let s = f(&xb, &yb)?;
            acc = Some(match acc {
                Some(a) => merge(a, s),
                None => s,
            });
        }
        Ok(acc)
    }
}

/// `Some(v)` when finite.
pub fn finite(v: f32) -> Option<f32> {
    v.is_finite().then_some(v)
}

impl View<'_> {
    /// The fixed measurement items of `problem`: the same for every seed and optimizer.
    pub fn measurement_items(&self, problem: &Problem) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..self.len() as u32).collect();
        idx.shuffle(&mut rng(0, STREAM_MEASURE));
        idx.truncate(problem.measurement.batches * problem.batch_size);
        idx
    }

    /// Whether the view has no items (never true for a view [`View::new`] made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
