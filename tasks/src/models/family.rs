//! What a model family is, as one descriptor: its configuration (a struct, serialised under
//! the family's tag in [`super::ModelConfig`] so content hashes stay what they were), the
//! registry's grid of it and that grid's expansion, the network it builds, the activation
//! memory one example keeps, the context length of a language model, the native engine's
//! network where it trains as a population, and how meta-training normalises its losses
//! (learned_optimization's `Task.normalizer`). Each family's module implements [`Family`] and
//! [`FamilyGrid`] for its configuration; [`crate::with_families!`] is the one list.

use super::Model;
use crate::dense::{DenseEngine, DenseNet, DenseShape};
use crate::native::NativeNet;
use serde::{Deserialize, Deserializer};

/// A model family's configuration and everything derived from it.
pub trait Family {
    /// The readable id fragment, e.g. `mlp-w128-d2-relu`.
    fn id(&self) -> String;

    /// Whether the family trains on a text dataset (language models) rather than on images
    /// or vectors.
    fn text(&self) -> bool {
        false
    }

    /// What a configuration must satisfy beyond its axes' ranges: `Err(why)`.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Tokens per training sequence, for language models.
    fn context(&self) -> Option<usize> {
        None
    }

    /// The network for inputs of `shape` (e.g. `[28, 28]` or `[40]`) and `classes` outputs
    /// (the vocabulary size for language models).
    fn build(&self, shape: &[usize], classes: usize) -> Box<dyn Model>;

    /// Floats the forward pass of one example keeps for its backward pass (inputs, pre- and
    /// post-activation values, attention weights, logits and their softmax): the activation
    /// memory estimate per example.
    fn activation_floats(&self, shape: &[usize], classes: usize) -> u64;

    /// The layer widths the native dense engine trains for `input` values and `classes`
    /// outputs, when the family trains there (as populations); `None` for candle's families.
    fn dense(&self, _input: usize, _classes: usize) -> Option<DenseShape> {
        None
    }

    /// The native engine's network for inputs of `shape` and `classes` outputs, when the family
    /// trains there (as populations); `None` for a family only candle trains. The default:
    /// the dense network of [`Family::dense`].
    fn native(&self, shape: &[usize], classes: usize) -> Option<Box<dyn NativeNet>> {
        let input = shape.iter().product();
        let shape = self.dense(input, classes)?;
        Some(Box::new(DenseEngine::new(DenseNet::new(input, shape))))
    }

    /// How meta-training normalises the family's losses across tasks.
    fn normalizer(&self) -> Normalizer {
        Normalizer::LogClasses
    }
}

/// How the registry spells a family's configurations: its grid and the grid's expansion.
pub trait FamilyGrid: Family + Sized {
    /// The registry's grid: one list of values per axis (unknown keys are errors).
    type Grid: serde::de::DeserializeOwned;

    /// Every configuration of `grid`, the first axis slowest.
    fn expand(grid: &Self::Grid) -> Vec<Self>;
}

/// How a task's losses are put on one scale for meta-training (learned_optimization's
/// `Task.normalizer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalizer {
    /// Divide by ln C, the loss of a uniform guess over C classes (cross-entropy tasks).
    LogClasses,
    /// Divide by the run's first mini-batch loss (reconstruction, whose scale is the data's).
    InitialLoss,
}

/// An integer validated to lie in `LO..=HI` while parsing a grid, so the error carries the
/// YAML line.
#[derive(Clone, Copy, Debug)]
pub struct Bounded<const LO: u64, const HI: u64>(pub u64);

impl<const LO: u64, const HI: u64> Bounded<LO, HI> {
    /// The value as a count.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

impl<'de, const LO: u64, const HI: u64> Deserialize<'de> for Bounded<LO, HI> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if !(LO..=HI).contains(&v) {
            return Err(serde::de::Error::custom(format!("{v} is out of range: expected an integer in {LO}..={HI}")));
        }
        Ok(Self(v))
    }
}
