//! Meta-parameters ("theta"): named f32 tensors, keyed by the `/`-joined path of the reference
//! pytree (e.g. `rnn_params/rnn/linear/w`), with shape-checked access.

use std::collections::BTreeMap;

/// One tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// A missing or mis-shaped meta-parameter.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThetaError {
    /// The checkpoint lacks a tensor the architecture needs.
    #[error("checkpoint has no tensor `{name}` (expected shape {expected:?}) for {arch}")]
    Missing {
        /// Architecture.
        arch: &'static str,
        /// Tensor path.
        name: String,
        /// Expected shape.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` has shape {actual:?}, but {arch} expects {expected:?}")]
    Shape {
        /// Architecture.
        arch: &'static str,
        /// Tensor path.
        name: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Actual shape.
        actual: Vec<usize>,
    },
}

/// Named meta-parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Theta {
    /// Tensors by path.
    pub tensors: BTreeMap<String, Tensor>,
}

impl Theta {
    /// The tensor `name` with exactly `shape`, or an error naming both shapes.
    pub fn get(&self, arch: &'static str, name: &str, shape: &[usize]) -> Result<&[f32], ThetaError> {
        let t = self.tensors.get(name).ok_or_else(|| ThetaError::Missing { arch, name: name.into(), expected: shape.to_vec() })?;
        if t.shape != shape {
            return Err(ThetaError::Shape { arch, name: name.into(), expected: shape.to_vec(), actual: t.shape.clone() });
        }
        Ok(&t.data)
    }

    /// Total number of meta-parameters.
    pub fn count(&self) -> usize {
        self.tensors.values().map(|t| t.data.len()).sum()
    }
}
