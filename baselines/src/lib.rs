//! Hand-designed optimizers (one module each) and the tuning protocols that sweep them.
//!
//! Every optimizer implements [`beatmatch_core::Optimizer`] on flat host buffers and is built
//! from an [`OptimizerSpec`] by [`build`].

pub mod adafactor;
pub mod adam;
pub mod adamw;
pub mod lion;
pub mod nadamw;
pub mod opt_list;
pub mod protocol;
pub mod rmsprop;
pub mod schedule;
pub mod sgd;

use anyhow::{bail, Result};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo};

pub use protocol::{Protocol, Selection};

/// The optimizer kinds [`build`] knows, with their hyperparameters and defaults.
pub const KINDS: &[(&str, &[(&str, f64)])] = &[
    ("adam", adam::HPARAMS),
    ("adamw", adamw::HPARAMS),
    ("sgdm", sgd::HPARAMS),
    ("nadamw", nadamw::HPARAMS),
    ("rmsprop", rmsprop::HPARAMS),
    ("adafactor", adafactor::HPARAMS),
    ("lion", lion::HPARAMS),
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
    let flag = |key: &str| get(key) != 0.0;
    Ok(match spec.kind.as_str() {
        "adam" => Box::new(adam::Adam::new(get("lr"), get("b1"), get("b2"), get("eps"), params)),
        "adamw" => Box::new(adamw::AdamW::new(get("lr"), get("b1"), get("b2"), get("eps"), get("wd"), params)),
        "sgdm" => Box::new(sgd::Sgd::new(sgd::SgdParams { lr: get("lr"), momentum: get("momentum"), nesterov: flag("nesterov") }, params)),
        "nadamw" => Box::new(nadamw::NAdamW::new(
            nadamw::NAdamWParams {
                schedule: schedule::Cosine {
                    lr: get("lr"),
                    min_lr_mult: get("min_lr_mult"),
                    constant_fraction: get("constant_fraction"),
                    warmup_fraction: get("warmup_fraction"),
                },
                b1: get("b1"),
                b2: get("b2"),
                eps: get("eps"),
                adamw_wd: get("adamw_wd"),
                l2_wd: get("l2_wd"),
                nesterov: flag("nesterov"),
            },
            params,
        )),
        "rmsprop" => Box::new(rmsprop::RmsProp::new(get("lr"), get("decay"), get("eps"), params)),
        "adafactor" => Box::new(adafactor::Adafactor::new(
            adafactor::AdafactorParams {
                lr: get("lr"),
                decay_rate: get("decay_rate"),
                decay_offset: get("decay_offset"),
                min_dim_size_to_factor: get("min_dim_size_to_factor") as usize,
                eps: get("eps"),
                clipping_threshold: get("clipping_threshold"),
                multiply_by_parameter_scale: flag("multiply_by_parameter_scale"),
                factored: flag("factored"),
            },
            params,
        )),
        "lion" => Box::new(lion::Lion::new(get("lr"), get("b1"), get("b2"), get("wd"), params)),
        _ => unreachable!("kind checked above"),
    })
}

/// Whether the optimizer's update rule ignores the training horizon, so one run to the longest
/// budget can be read off at every shorter budget. NAdamW's cosine schedule depends on it
/// unless the schedule is constant.
pub fn is_horizon_free(spec: &OptimizerSpec) -> bool {
    match spec.kind.as_str() {
        "nadamw" => spec.get("constant_fraction", 1.0) >= 1.0 && spec.get("warmup_fraction", 0.0) <= 0.0,
        k => KINDS.iter().any(|(kind, _)| *kind == k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_or_hparam_is_a_clear_error() {
        let p = [ParamInfo { name: "w".into(), shape: vec![2] }];
        let e = build(&OptimizerSpec::parse("adamx:lr=1").unwrap(), &p).err().unwrap().to_string();
        assert!(e.contains("unknown optimizer `adamx`") && e.contains("adam, adamw, sgdm"), "{e}");
        let e = build(&OptimizerSpec::parse("adam:learning_rate=1").unwrap(), &p).err().unwrap().to_string();
        assert!(e.contains("no hyperparameter `learning_rate`") && e.contains("lr"), "{e}");
    }
}
