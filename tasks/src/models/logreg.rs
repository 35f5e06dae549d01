//! Multinomial logistic regression: one linear layer and a softmax — the MLP with no hidden
//! layer (`layer0/w`, `layer0/b`), so it trains on the same dense engine.

use super::family::{Family, FamilyGrid};
use super::mlp::{Activation, Mlp};
use super::Model;
use crate::dense::DenseShape;
use serde::{Deserialize, Serialize};

/// Logistic regression has nothing to configure.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Logreg {}

/// The registry's `logreg: {}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogregGrid {}

impl FamilyGrid for Logreg {
    type Grid = LogregGrid;
    fn expand(_: &LogregGrid) -> Vec<Self> {
        vec![Logreg {}]
    }
}

impl Family for Logreg {
    fn id(&self) -> String {
        "logreg".into()
    }
    fn build(&self, shape: &[usize], classes: usize) -> Box<dyn Model> {
        // The activation is never applied: there is no hidden layer.
        Box::new(Mlp::new(shape.iter().product(), &[], classes, Activation::Relu))
    }
    fn activation_floats(&self, shape: &[usize], classes: usize) -> u64 {
        shape.iter().product::<usize>() as u64 + 2 * classes as u64
    }
    fn dense(&self, _input: usize, classes: usize) -> Option<DenseShape> {
        Some(DenseShape::classifier(vec![], classes, Activation::Relu))
    }
}
