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

/// A flat meta-parameter vector had the wrong length for the tensors it was poured into.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("flat theta has {actual} values, but the tensors hold {expected}")]
pub struct FlatLengthError {
    /// Values the tensors hold.
    pub expected: usize,
    /// Values given.
    pub actual: usize,
}

impl Theta {
    /// Every value in one vector: tensors in name order, each row-major. The one mapping
    /// between the named tensors and a flat vector (what meta-training perturbs).
    pub fn flatten(&self) -> Vec<f32> {
        self.tensors.values().flat_map(|t| t.data.iter().copied()).collect()
    }

    /// The same names and shapes holding `flat` (in [`Theta::flatten`]'s order).
    pub fn with_flat(&self, flat: &[f32]) -> Result<Theta, FlatLengthError> {
        if flat.len() != self.count() {
            return Err(FlatLengthError { expected: self.count(), actual: flat.len() });
        }
        let mut at = 0;
        let tensors = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let data = flat[at..at + t.data.len()].to_vec();
                at += t.data.len();
                (name.clone(), Tensor { shape: t.shape.clone(), data })
            })
            .collect();
        Ok(Theta { tensors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_and_with_flat_round_trip_in_name_order() {
        let mut t = Theta::default();
        t.tensors.insert("b".into(), Tensor { shape: vec![2], data: vec![3.0, 4.0] });
        t.tensors.insert("a".into(), Tensor { shape: vec![1, 2], data: vec![1.0, 2.0] });
        assert_eq!(t.flatten(), vec![1.0, 2.0, 3.0, 4.0]);
        let u = t.with_flat(&[5.0, 6.0, 7.0, 8.0]).unwrap();
        assert_eq!(u.tensors["a"].data, vec![5.0, 6.0]);
        assert_eq!(u.tensors["b"].shape, vec![2]);
        assert_eq!(u.with_flat(&t.flatten()).unwrap(), t);
        assert_eq!(t.with_flat(&[1.0]), Err(FlatLengthError { expected: 4, actual: 1 }));
    }
}
