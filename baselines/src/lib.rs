//! Hand-designed optimizers (one module each) and the tuning protocols that sweep them.
//!
//! Every optimizer is a [`beatmatch_core::UpdateRule`] — its hyperparameters, one set per
//! member — with an explicit state type, updating flat host buffers; [`build`] (one member) and
//! [`build_members`] (a population of one kind) turn specs into a bound [`Optimizer`].

pub mod adafactor;
pub mod adam;
pub mod adamw;
pub mod lion;
pub mod nadamw;
pub mod opt_list;
pub mod protocol;
pub mod reference;
pub mod rmsprop;
pub mod schedule;
pub mod sgd;

use anyhow::{bail, Result};
use beatmatch_core::{Bound, Optimizer, OptimizerSpec, ParamInfo, UpdateRule};
use std::sync::Arc;

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

/// Build the optimizer `spec` names for tensors `params` (one member). Unknown kinds or
/// hyperparameters are errors listing what is accepted.
pub fn build(spec: &OptimizerSpec, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
    build_members(std::slice::from_ref(spec), params)
}

/// Build one optimizer over several members, member `k` configured by `specs[k]`; every spec
/// must name the same kind. Each tensor buffer then holds the members one after another.
pub fn build_members(specs: &[OptimizerSpec], params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
    fn bound<R: UpdateRule>(rule: R, params: &[ParamInfo]) -> Box<dyn Optimizer> {
        Box::new(Bound::new(Arc::new(rule), params))
    }
    Ok(match configure(specs)? {
        Config::Adam(hp) => bound(adam::Adam::new(&hp), params),
        Config::AdamW(hp) => bound(adamw::AdamW::new(&hp), params),
        Config::Sgd(hp) => bound(sgd::Sgd::new(&hp), params),
        Config::NAdamW(hp) => bound(nadamw::NAdamW::new(&hp), params),
        Config::RmsProp(hp) => bound(rmsprop::RmsProp::new(&hp), params),
        Config::Adafactor(hp) => bound(adafactor::Adafactor::new(&hp), params),
        Config::Lion(hp) => bound(lion::Lion::new(&hp), params),
    })
}

/// The hyperparameters of one or more members of one hand-designed kind, parsed from specs
/// with defaults filled in and ranges checked: what the host rules here and the device rules
/// (`beatmatch-device`) are both built from.
#[derive(Clone, Debug)]
pub enum Config {
    /// Adam.
    Adam(Vec<adam::AdamHp>),
    /// AdamW.
    AdamW(Vec<adamw::AdamWHp>),
    /// SGD with momentum (heavy ball or Nesterov).
    Sgd(Vec<sgd::SgdParams>),
    /// NAdamW with its cosine schedule.
    NAdamW(Vec<nadamw::NAdamWParams>),
    /// RMSProp: (lr, decay, eps) per member.
    RmsProp(Vec<(f64, f64, f64)>),
    /// Adafactor.
    Adafactor(Vec<adafactor::AdafactorParams>),
    /// Lion.
    Lion(Vec<lion::LionHp>),
}

impl Config {
    /// Members configured.
    pub fn members(&self) -> usize {
        match self {
            Config::Adam(v) => v.len(),
            Config::AdamW(v) => v.len(),
            Config::Sgd(v) => v.len(),
            Config::NAdamW(v) => v.len(),
            Config::RmsProp(v) => v.len(),
            Config::Adafactor(v) => v.len(),
            Config::Lion(v) => v.len(),
        }
    }
}

/// Parse `specs` (one per member, all of one kind) into a [`Config`]. Unknown kinds or
/// hyperparameters, mixed kinds and out-of-range values are errors saying what is accepted.
pub fn configure(specs: &[OptimizerSpec]) -> Result<Config> {
    let Some(first) = specs.first() else { bail!("an optimizer needs at least one member") };
    let Some((_, allowed)) = KINDS.iter().find(|(k, _)| *k == first.kind) else {
        let known: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        bail!("unknown optimizer `{}`; known: {}", first.kind, known.join(", "));
    };
    for spec in specs {
        if spec.kind != first.kind {
            bail!("one optimizer cannot mix kinds: member `{spec}` is not `{}`", first.kind);
        }
        for key in spec.hparams.keys() {
            if !allowed.iter().any(|(k, _)| k == key) {
                let names: Vec<&str> = allowed.iter().map(|(k, _)| *k).collect();
                bail!("`{}` has no hyperparameter `{key}`; it takes: {}", spec.kind, names.join(", "));
            }
        }
    }
    for spec in specs {
        for (key, &value) in &spec.hparams {
            check_range(&spec.kind, key, value).map_err(|range| anyhow::anyhow!("`{spec}`: {key} = {value} is out of range; {key} must be {range}"))?;
        }
    }
    let get = |spec: &OptimizerSpec, key: &str| spec.get(key, allowed.iter().find(|(k, _)| *k == key).unwrap().1);
    let flag = |spec: &OptimizerSpec, key: &str| get(spec, key) != 0.0;
    Ok(match first.kind.as_str() {
        "adam" => {
            let hp: Vec<_> = specs.iter().map(|s| adam::AdamHp { lr: get(s, "lr"), b1: get(s, "b1"), b2: get(s, "b2"), eps: get(s, "eps") }).collect();
            Config::Adam(hp)
        }
        "adamw" => {
            let hp: Vec<_> =
                specs.iter().map(|s| adamw::AdamWHp { lr: get(s, "lr"), b1: get(s, "b1"), b2: get(s, "b2"), eps: get(s, "eps"), wd: get(s, "wd") }).collect();
            Config::AdamW(hp)
        }
        "sgdm" => {
            let hp: Vec<_> = specs.iter().map(|s| sgd::SgdParams { lr: get(s, "lr"), momentum: get(s, "momentum"), nesterov: flag(s, "nesterov") }).collect();
            Config::Sgd(hp)
        }
        "nadamw" => {
            let hp: Vec<_> = specs
                .iter()
                .map(|s| nadamw::NAdamWParams {
                    schedule: schedule::Cosine {
                        lr: get(s, "lr"),
                        min_lr_mult: get(s, "min_lr_mult"),
                        constant_fraction: get(s, "constant_fraction"),
                        warmup_fraction: get(s, "warmup_fraction"),
                    },
                    b1: get(s, "b1"),
                    b2: get(s, "b2"),
                    eps: get(s, "eps"),
                    adamw_wd: get(s, "adamw_wd"),
                    l2_wd: get(s, "l2_wd"),
                    nesterov: flag(s, "nesterov"),
                })
                .collect();
            Config::NAdamW(hp)
        }
        "rmsprop" => {
            let hp: Vec<_> = specs.iter().map(|s| (get(s, "lr"), get(s, "decay"), get(s, "eps"))).collect();
            Config::RmsProp(hp)
        }
        "adafactor" => {
            let hp: Vec<_> = specs
                .iter()
                .map(|s| adafactor::AdafactorParams {
                    lr: get(s, "lr"),
                    decay_rate: get(s, "decay_rate"),
                    decay_offset: get(s, "decay_offset"),
                    min_dim_size_to_factor: get(s, "min_dim_size_to_factor") as usize,
                    eps: get(s, "eps"),
                    clipping_threshold: get(s, "clipping_threshold"),
                    multiply_by_parameter_scale: flag(s, "multiply_by_parameter_scale"),
                    factored: flag(s, "factored"),
                })
                .collect();
            Config::Adafactor(hp)
        }
        "lion" => {
            let hp: Vec<_> = specs.iter().map(|s| lion::LionHp { lr: get(s, "lr"), b1: get(s, "b1"), b2: get(s, "b2"), wd: get(s, "wd") }).collect();
            Config::Lion(hp)
        }
        _ => unreachable!("kind checked above"),
    })
}

/// The accepted range of hyperparameter `key` of optimizer `kind`: `Err(range)` describes it
/// when `value` is outside (NaN is outside every range).
pub fn check_range(_kind: &str, key: &str, value: f64) -> Result<(), &'static str> {
    let ok = |c: bool, range: &'static str| if c && value.is_finite() { Ok(()) } else { Err(range) };
    match key {
        "lr" => ok(value > 0.0, "a finite number > 0"),
        "b1" | "b2" | "momentum" | "decay" => ok((0.0..1.0).contains(&value), "in [0, 1)"),
        "eps" => ok(value > 0.0, "> 0"),
        "wd" | "adamw_wd" | "l2_wd" | "decay_offset" | "clipping_threshold" => ok(value >= 0.0, "≥ 0 (0 turns it off)"),
        "nesterov" | "factored" | "multiply_by_parameter_scale" => ok(value == 0.0 || value == 1.0, "0 or 1"),
        "warmup_fraction" | "constant_fraction" | "min_lr_mult" => ok((0.0..=1.0).contains(&value), "in [0, 1]"),
        "decay_rate" => ok(value > 0.0 && value <= 1.0, "in (0, 1]"),
        "min_dim_size_to_factor" => ok(value >= 1.0 && value.fract() == 0.0, "a whole number ≥ 1"),
        _ => ok(true, "finite"),
    }
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

    #[test]
    fn hyperparameters_out_of_range_are_refused_with_the_range() {
        let p = [ParamInfo { name: "w".into(), shape: vec![2] }];
        for (spec, range) in [
            ("adam:lr=-1", "lr must be a finite number > 0"),
            ("adam:lr=0", "lr must be a finite number > 0"),
            ("adam:lr=NaN", "lr must be a finite number > 0"),
            ("adam:b1=1", "b1 must be in [0, 1)"),
            ("adam:b2=-0.1", "b2 must be in [0, 1)"),
            ("adam:eps=0", "eps must be > 0"),
            ("sgdm:momentum=1.5", "momentum must be in [0, 1)"),
            ("sgdm:nesterov=2", "nesterov must be 0 or 1"),
            ("adamw:wd=-1", "wd must be ≥ 0"),
            ("nadamw:warmup_fraction=2", "warmup_fraction must be in [0, 1]"),
            ("rmsprop:decay=1", "decay must be in [0, 1)"),
            ("adafactor:min_dim_size_to_factor=0.5", "whole number"),
            ("lion:lr=inf", "lr must be a finite number > 0"),
        ] {
            let e = build(&OptimizerSpec::parse(spec).unwrap(), &p).err().unwrap_or_else(|| panic!("{spec} accepted")).to_string();
            assert!(e.contains(range) && e.contains("out of range"), "{spec}: {e}");
        }
        assert!(build(&OptimizerSpec::parse("adam:lr=1e-3,b1=0,b2=0.999,eps=1e-8").unwrap(), &p).is_ok());
    }
}
