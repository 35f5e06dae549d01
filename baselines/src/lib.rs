//! Hand-designed optimizers (one module each) and the tuning protocols that sweep them.
//!
//! Every optimizer implements [`beatmatch_core::Optimizer`] on flat host buffers and is built
//! from an [`OptimizerSpec`] by [`build`].

pub mod adam;
pub mod protocol;
pub mod sgd;

use anyhow::{bail, Result};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo};

pub use protocol::{Protocol, Selection};

/// The optimizer kinds [`build`] knows, with their hyperparameters and defaults.
pub const KINDS: &[(&str, &[(&str, f64)])] = &[
    ("adam", adam::HPARAMS),
    ("sgdm", sgd::HPARAMS),
];

/// Build the optimizer `spec` names for tensors `params`. Unknown kinds or hyperparameters are
/// errors listing what is accepted.
pub fn build(spec: &OptimizerSpec, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
    let Some((_, allowed)) = KINDS.iter().find(|(k, _)| *k == spec.kind) else {
        let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        bail!("unknown optimizer `{}`; known: {}", spec.kind, known.join(", "));
    };
    for key in spec.hparams.keys() {
        if !allowed.iter().any(|(k, _)| k == key) {
            let names: Vec<&str> = allowed.iter().map(|(k, _)| *k).collect();
            bail!("`{}` has no hyperparameter `{key}`; it takes: {}", spec.kind, names.join(", "));
        }
    }
    let get = |key: &str| spec.get(key, allowed.iter().find(|(k, _)| *k == key).unwrap().1);
    Ok(match spec.kind.as_str() {
        "adam" => Box::new(adam::Adam::new(
            adam::AdamParams { lr: get("lr"), b1: get("b1"), b2: get("b2"), eps: get("eps") },
            params,
        )),
        "sgdm" => Box::new(sgd::Sgd::new(sgd::SgdParams { lr: get("lr"), momentum: get("momentum"), nesterov: get("nesterov") != 0.0 }, params)),
        _ => unreachable!("kind checked above"),
    })
}

/// Whether the optimizer's update rule ignores the training horizon, so one run to the longest
/// budget can be read off at every shorter budget.
pub fn is_horizon_free(spec: &OptimizerSpec) -> bool {
    matches!(spec.kind.as_str(), "adam" | "sgdm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_or_hparam_is_a_clear_error() {
        let p = [ParamInfo { name: "w".into(), shape: vec![2] }];
        let e = build(&OptimizerSpec::parse("adamx:lr=1").unwrap(), &p).err().unwrap().to_string();
        assert!(e.contains("unknown optimizer `adamx`") && e.contains("adam, sgdm"), "{e}");
        let e = build(&OptimizerSpec::parse("adam:learning_rate=1").unwrap(), &p).err().unwrap().to_string();
        assert!(e.contains("no hyperparameter `learning_rate`") && e.contains("lr"), "{e}");
    }
}
