//! What a learned-optimizer architecture is, as one descriptor in the spirit of
//! learned_optimization's `LearnedOptimizer` (`init → theta`, `opt_fn(theta)`): its name and
//! label, how to recognise its meta-parameters, which hyperparameters a checkpoint may set,
//! how theta binds into an optimizer on the host and on a device, its reference
//! initialisation, and whether it reads the training horizon. Each architecture's module
//! holds one [`LearnedOptimizer`]; [`crate::ARCHS`] lists them, and everything else — the
//! checkpoint readers, the factory, meta-training, the CLI — goes through [`Architecture`].

use crate::theta::{Theta, ThetaError};
use crate::Hyperparameters;
use anyhow::{bail, Result};
use beatmatch_core::{Optimizer, ParamInfo};
use candle_core::Device;
use std::fmt;

/// A learned-optimizer architecture: the one descriptor everything about it is read from.
pub trait LearnedOptimizer: Send + Sync {
    /// The name on the command line (`velo:PATH`) and in checkpoint sidecars.
    fn name(&self) -> &'static str;

    /// The name in legends and papers, e.g. `VeLO`.
    fn label(&self) -> &'static str;

    /// The `kind` the reference fixtures' sidecars give this architecture's reference
    /// implementation (learned_optimization's class, in snake case).
    fn reference_kind(&self) -> &'static str;

    /// Whether `theta` holds this architecture's meta-parameters (learned_optimization's files
    /// do not name their architecture).
    fn detect(&self, theta: &Theta) -> bool;

    /// Hyperparameters a checkpoint may set (the rest are fixed by the architecture).
    fn settable(&self) -> &'static [&'static str] {
        &[]
    }

    /// The host optimizer: `theta` bound with the checkpoint's hyperparameters, over `members`
    /// members (each its own state), splitting a large tensor's update over `threads` threads
    /// where the architecture can (the same bits either way).
    fn host(&self, theta: &Theta, hyper: &Hyperparameters, members: usize, threads: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, ThetaError>;

    /// The device optimizer (one member), uploading host slices (when handed those) to
    /// `device`.
    fn device(&self, theta: &Theta, hyper: &Hyperparameters, params: &[ParamInfo], device: &Device) -> Result<Box<dyn Optimizer>>;

    /// A fresh theta from `seed`, as the reference's `init(key)` gives it in distribution;
    /// `None` for an architecture not meta-trained here.
    fn reference_init(&self, _seed: u64) -> Option<Theta> {
        None
    }

    /// Whether the update ignores the training horizon, so one run serves every budget.
    fn is_horizon_free(&self) -> bool;

    /// The checkpoint its authors published, shipped in this repository (a path relative to
    /// the workspace root, with its licence and provenance beside it in
    /// `learned/checkpoints/published/`): what `--candidate NAME` loads without a path.
    fn published(&self) -> Option<&'static str> {
        None
    }

    /// Who published [`Self::published`]'s checkpoint and what it was meta-trained on, for
    /// reports (one sentence).
    fn provenance(&self) -> Option<&'static str> {
        None
    }
}

/// A handle on one architecture's descriptor: compared, printed and (de)serialised by name.
#[derive(Clone, Copy)]
pub struct Architecture(&'static dyn LearnedOptimizer);

impl Architecture {
    /// The architecture `descriptor` describes.
    pub const fn new(descriptor: &'static dyn LearnedOptimizer) -> Self {
        Self(descriptor)
    }

    /// Every architecture: [`crate::ARCHS`], then those [`crate::register`]ed.
    pub fn all() -> Vec<Architecture> {
        crate::archs()
    }

    /// Its command-line name.
    pub fn as_str(self) -> &'static str {
        self.0.name()
    }

    /// The architecture called `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::all().into_iter().find(|a| a.as_str() == name)
    }

    /// The architecture `theta`'s tensors belong to, if any.
    pub fn detect(theta: &Theta) -> Option<Self> {
        Self::all().into_iter().find(|a| a.0.detect(theta))
    }

    /// The architecture whose reference implementation a fixture sidecar's `kind` names.
    pub fn for_reference_kind(kind: &str) -> Option<Self> {
        Self::all().into_iter().find(|a| a.0.reference_kind() == kind)
    }

    /// The names of every architecture, comma-separated, for messages and help.
    pub fn names() -> String {
        Self::all().iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Whether it is meta-trained here (it has a reference initialisation).
    pub fn meta_trainable(self) -> bool {
        self.0.reference_init(0).is_some()
    }

    /// Check hyperparameters a checkpoint sets: settable for this architecture, and positive.
    pub fn check_hyperparameters(self, h: &Hyperparameters) -> Result<()> {
        let allowed = self.0.settable();
        for (k, v) in h {
            if !allowed.contains(&k.as_str()) {
                bail!("hyperparameter `{k}` is not settable for {} (settable: {allowed:?})", self.as_str());
            }
            if !(v.is_finite() && *v > 0.0) {
                bail!("hyperparameter `{k}` = {v}: expected a positive number");
            }
        }
        Ok(())
    }
}

impl std::ops::Deref for Architecture {
    type Target = dyn LearnedOptimizer;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for Architecture {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Architecture {}

impl fmt::Debug for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Architecture({})", self.as_str())
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Architecture {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Architecture {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown architecture `{name}`; expected one of: {}", Self::names())))
    }
}
