//! The optimizer interface and the textual specification that names an optimizer configuration.
//!
//! Optimizers update flat `f32` host buffers in place. On CPU this is one fused pass over each
//! tensor with no per-op allocation (candle allocates a fresh tensor per op, which dominates the
//! cost of small models); a CUDA path will implement the same trait over device buffers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Name and shape of one parameter tensor, in the model's canonical (sorted-name) order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// `/`-joined path of the tensor in the model, e.g. `layer0/w`.
    pub name: String,
    /// Shape in elements per dimension; `[]` for a scalar.
    pub shape: Vec<usize>,
}

impl ParamInfo {
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What an optimizer may know about the current step besides the gradients.
#[derive(Clone, Copy, Debug)]
pub struct StepContext {
    /// Zero-based index of the step being taken.
    pub step: u64,
    /// Training horizon in steps (learned optimizers and schedules read it; constant ones ignore it).
    pub num_steps: u64,
    /// Training loss of the mini-batch the gradients came from (nats).
    pub loss: f32,
}

/// An optimizer: owns its per-parameter state and updates parameters in place.
pub trait Optimizer: Send {
    /// Apply one update. `params[i]` and `grads[i]` are the flat (row-major) buffers of the
    /// i-th tensor given at construction.
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext);
}

/// A textual optimizer configuration: `kind:key=value,key=value`, e.g. `adam:lr=1e-3`.
///
/// Values are numbers; they are stored as `f64` so `1e-3` and `0.001` name the same configuration
/// (and hash the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSpec {
    /// Optimizer family, e.g. `adam`, `sgdm`.
    pub kind: String,
    /// Hyperparameters by name; unspecified ones take the optimizer's defaults.
    #[serde(default)]
    pub hparams: BTreeMap<String, f64>,
    /// SHA-256 (hex) of the checkpoint a learned optimizer is loaded from: the content, not the
    /// path, names the optimizer, so a moved file keeps its cached runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// A malformed optimizer specification.
#[derive(Debug, thiserror::Error)]
#[error("bad optimizer spec `{spec}`: {reason} (expected `kind:key=value,...`, e.g. `adam:lr=1e-3`)")]
pub struct SpecError {
    /// The text that failed to parse.
    pub spec: String,
    /// What was wrong with it.
    pub reason: String,
}

impl OptimizerSpec {
    /// A spec with no hyperparameters set.
    pub fn new(kind: &str) -> Self {
        Self { kind: kind.to_string(), hparams: BTreeMap::new(), checkpoint: None }
    }

    /// Builder: set one hyperparameter.
    pub fn with(mut self, key: &str, value: f64) -> Self {
        self.hparams.insert(key.to_string(), value);
        self
    }

    /// Parse `kind:key=value,...`.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let err = |reason: String| SpecError { spec: text.to_string(), reason };
        let (kind, rest) = match text.split_once(':') {
            Some((k, r)) => (k.trim(), r.trim()),
            None => (text.trim(), ""),
        };
        if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(err(format!("optimizer kind `{kind}` must be a non-empty name")));
        }
        let mut spec = Self::new(kind);
        for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| err(format!("`{pair}` is not `key=value`")))?;
            let value: f64 = v.trim().parse().map_err(|_| err(format!("value of `{}` is `{}`, not a number", k.trim(), v.trim())))?;
            if spec.hparams.insert(k.trim().to_string(), value).is_some() {
                return Err(err(format!("`{}` given twice", k.trim())));
            }
        }
        Ok(spec)
    }

    /// Hyperparameter `key`, or `default` when unset.
    pub fn get(&self, key: &str, default: f64) -> f64 {
        self.hparams.get(key).copied().unwrap_or(default)
    }
}

impl fmt::Display for OptimizerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(sha) = &self.checkpoint {
            write!(f, "@{}", &sha[..sha.len().min(12)])?;
        }
        for (i, (k, v)) in self.hparams.iter().enumerate() {
            write!(f, "{}{k}={v:e}", if i == 0 { ':' } else { ',' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let s = OptimizerSpec::parse("adam:lr=0.001, b1=0.8").unwrap();
        assert_eq!(s.kind, "adam");
        assert_eq!(s.get("lr", 0.0), 1e-3);
        assert_eq!(s.get("b2", 0.999), 0.999);
        assert_eq!(s.to_string(), "adam:b1=8e-1,lr=1e-3");
        assert_eq!(OptimizerSpec::parse(&s.to_string()).unwrap(), s);
        assert_eq!(OptimizerSpec::parse("sgdm").unwrap(), OptimizerSpec::new("sgdm"));
    }

    #[test]
    fn parse_rejects_garbage_with_reason() {
        let e = OptimizerSpec::parse("adam:lr=fast").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        assert!(OptimizerSpec::parse("adam:lr").is_err());
        assert!(OptimizerSpec::parse(":lr=1").is_err());
        assert!(OptimizerSpec::parse("adam:lr=1,lr=2").is_err());
    }
}
