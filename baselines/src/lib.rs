//! Hand-designed optimizers and the tuning protocols that sweep them.
//!
//! Each optimizer is one module holding everything about it — its hyperparameters (name,
//! default, range, doc), its host rule (a [`beatmatch_core::UpdateRule`] over one set of
//! hyperparameters per member, updating flat host buffers), its device rule
//! (`beatmatch-device`), whether one run serves every budget, and the reference
//! configurations it answers — behind one descriptor, a [`Kind`]. [`KINDS`] lists them; it is
//! the only other place a kind is named. [`build`] (one member), [`build_members`] (a
//! population of one kind) and [`build_on`] (the device rule) read that list, as do the CLI's
//! help and the README's table ([`kinds_markdown`]). A program adds its own kinds with
//! [`register`].

pub mod adafactor;
pub mod adam;
pub mod adamw;
pub mod ademamix;
pub mod algoperf_nadamw;
pub mod kind;
pub mod lion;
pub mod muon;
pub mod nadamw;
pub mod opt_list;
pub mod protocol;
pub mod reference;
pub mod rmsprop;
pub mod schedule;
pub mod sfadamw;
pub mod sgd;
pub mod soap;

use anyhow::{bail, Result};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo};
use candle_core::Device;
use std::sync::RwLock;

pub use kind::{Hparam, Kind, Range, Values};
pub use protocol::{Protocol, Selection};

/// The hand-designed optimizer kinds this crate implements: the one list. A new kind is its
/// module plus one line here.
pub static KINDS: &[&dyn Kind] = &[
    &adam::AdamKind,
    &adamw::AdamWKind,
    &sgd::SgdKind,
    &nadamw::NAdamWKind,
    &rmsprop::RmsPropKind,
    &adafactor::AdafactorKind,
    &lion::LionKind,
    &ademamix::AdemamixKind,
    &algoperf_nadamw::AlgoperfNadamwKind,
    &muon::MuonKind,
    &sfadamw::SfAdamwKind,
    &soap::SoapKind,
];

/// Kinds added at run time by [`register`], after [`KINDS`].
static REGISTERED: RwLock<Vec<&'static dyn Kind>> = RwLock::new(Vec::new());

/// Add a kind defined outside this crate, so specs, protocols and the suite know it. Its name
/// must be new and spec-shaped, and its defaults within their ranges.
pub fn register(kind: &'static dyn Kind) -> Result<()> {
    let name = kind.name();
    if OptimizerSpec::parse(name).map_or(true, |s| s.kind != name) {
        bail!("cannot register optimizer kind `{name}`: a kind's name is letters, digits, `_` and `-`");
    }
    if let Some(h) = kind.hparams().iter().find(|h| !h.range.accepts(h.default)) {
        bail!("cannot register `{name}`: the default {} = {} is not {}", h.name, h.default, h.range.describe());
    }
    let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if KINDS.iter().chain(registered.iter()).any(|k| k.name() == name) {
        bail!("cannot register optimizer kind `{name}`: a kind of that name exists");
    }
    registered.push(kind);
    Ok(())
}

/// Every kind: [`KINDS`], then those [`register`]ed, in order.
pub fn kinds() -> Vec<&'static dyn Kind> {
    let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    KINDS.iter().copied().chain(registered.iter().copied()).collect()
}

/// The kind called `name`.
pub fn find(name: &str) -> Option<&'static dyn Kind> {
    kinds().into_iter().find(|k| k.name() == name)
}

/// The names of every kind, comma-separated, for messages and help.
pub fn kind_names() -> String {
    kinds().iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// Build the optimizer `spec` names for tensors `params` (one member). Unknown kinds or
/// hyperparameters are errors listing what is accepted.
pub fn build(spec: &OptimizerSpec, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
    build_members(std::slice::from_ref(spec), params)
}

/// Build one optimizer over several members, member `k` configured by `specs[k]`; every spec
/// must name the same kind. Each tensor buffer then holds the members one after another.
pub fn build_members(specs: &[OptimizerSpec], params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
    let (kind, members) = configure(specs)?;
    Ok(kind.host(&members, params))
}

/// The device rule of the members `specs` name, uploading host slices (when handed those) to
/// `device`: specs are parsed and checked exactly as [`build_members`] checks them. A kind
/// without a device rule is an error, and so are several members of a kind whose device rule
/// steps one member at a time (only the fused kernels step several).
pub fn build_on(specs: &[OptimizerSpec], params: &[ParamInfo], device: &Device) -> Result<Box<dyn Optimizer>> {
    let (kind, members) = configure(specs)?;
    if members.len() > 1 {
        if let Some(opt) = kind.device_members(&members, params, device) {
            return Ok(opt);
        }
    }
    let opt = kind
        .device(&members[0], params, device)
        .ok_or_else(|| anyhow::anyhow!("optimizer `{}` has no device implementation (host buffers only)", kind.name()))?;
    beatmatch_device::one_member(members.len(), kind.name())?;
    Ok(opt)
}

/// Whether `spec`'s kind steps several members in one device rule (a fused kernel).
pub fn steps_members_on_device(spec: &OptimizerSpec) -> bool {
    find(&spec.kind).is_some_and(|k| configure(std::slice::from_ref(spec)).is_ok_and(|(_, m)| k.device_members(&m, &[], &Device::Cpu).is_some()))
}

/// Parse `specs` (one per member, all of one kind) into their kind and each member's values.
/// Unknown kinds or hyperparameters, mixed kinds and out-of-range values are errors saying
/// what is accepted.
pub fn configure(specs: &[OptimizerSpec]) -> Result<(&'static dyn Kind, Vec<Values>)> {
    let Some(first) = specs.first() else { bail!("an optimizer needs at least one member") };
    let Some(kind) = find(&first.kind) else {
        bail!("unknown optimizer `{}`; known: {}", first.kind, kind_names());
    };
    let hparams = kind.hparams();
    for spec in specs {
        if spec.kind != first.kind {
            bail!("one optimizer cannot mix kinds: member `{spec}` is not `{}`", first.kind);
        }
        for key in spec.hparams.keys() {
            if !hparams.iter().any(|h| h.name == key) {
                let names: Vec<&str> = hparams.iter().map(|h| h.name).collect();
                bail!("`{}` has no hyperparameter `{key}`; it takes: {}", spec.kind, names.join(", "));
            }
        }
    }
    for spec in specs {
        for (key, &value) in &spec.hparams {
            let range = hparams.iter().find(|h| h.name == key).expect("checked above").range;
            if !range.accepts(value) {
                bail!("`{spec}`: {key} = {value} is out of range; {key} must be {}", range.describe());
            }
        }
    }
    Ok((kind, specs.iter().map(|s| Values::of(hparams, s)).collect()))
}

/// Whether the optimizer's update rule ignores the training horizon, so one run to the longest
/// budget can be read off at every shorter budget (NAdamW's cosine schedule reads it unless the
/// schedule is constant). Unknown or malformed specs are not.
pub fn is_horizon_free(spec: &OptimizerSpec) -> bool {
    configure(std::slice::from_ref(spec)).is_ok_and(|(kind, members)| kind.is_horizon_free(&members[0]))
}

/// `v` as people write it: `1e-8` rather than `0.00000001`, `0.9` as it is.
fn number(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// The table of every kind, its hyperparameters with their defaults and whether it has a
/// device rule, as markdown: the README's table (a test keeps it in step) and `suite kinds`.
pub fn kinds_markdown() -> String {
    let mut out = String::from("| kind | what | hyperparameters (defaults) | device |\n|---|---|---|---|\n");
    let probe = [ParamInfo::new("w", vec![1])];
    for k in kinds() {
        let hp: Vec<String> = k.hparams().iter().map(|h| format!("`{}`={}", h.name, number(h.default))).collect();
        let defaults = Values::of(k.hparams(), &OptimizerSpec::new(k.name()));
        let device = if k.device(&defaults, &probe, &Device::Cpu).is_some() { "yes" } else { "no" };
        out += &format!("| `{}` | {} | {} | {device} |\n", k.name(), k.about(), hp.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kind_or_hparam_is_a_clear_error() {
        let p = [ParamInfo::new("w", vec![2])];
        let e = build(&OptimizerSpec::parse("adamx:lr=1").unwrap(), &p).err().unwrap().to_string();
        assert!(e.contains("unknown optimizer `adamx`") && e.contains("adam, adamw, sgdm"), "{e}");
        let e = build(&OptimizerSpec::parse("adam:learning_rate=1").unwrap(), &p).err().unwrap().to_string();
        assert!(e.contains("no hyperparameter `learning_rate`") && e.contains("lr"), "{e}");
    }

    #[test]
    fn hyperparameters_out_of_range_are_refused_with_the_range() {
        let p = [ParamInfo::new("w", vec![2])];
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
            ("muon:ns_steps=0", "ns_steps must be a whole number ≥ 1"),
            ("muon:beta=1", "beta must be in [0, 1)"),
            ("muon:lr=-0.02", "lr must be a finite number > 0"),
            ("muon:adam_io=2", "adam_io must be 0 or 1"),
            ("soap:precondition_frequency=0", "precondition_frequency must be a whole number ≥ 1"),
            ("soap:b2=1", "b2 must be in [0, 1)"),
            ("soap:shampoo_beta=1.5", "shampoo_beta must be in [0, 1), or -1 (unset)"),
            ("soap:max_precond_dim=0", "max_precond_dim must be a whole number ≥ 1"),
            ("sfadamw:b1=0", "b1 must be in (0, 1]"),
            ("sfadamw:warmup_steps=2.5", "warmup_steps must be a whole number ≥ 0"),
            ("ademamix:b3=1", "b3 must be in [0, 1)"),
            ("algoperf_nadamw:warmup_factor=1.5", "warmup_factor must be in [0, 1]"),
            ("adamw:cosine=0.5", "cosine must be 0 or 1"),
        ] {
            let e = build(&OptimizerSpec::parse(spec).unwrap(), &p).err().unwrap_or_else(|| panic!("{spec} accepted")).to_string();
            assert!(e.contains(range) && e.contains("out of range"), "{spec}: {e}");
        }
        assert!(build(&OptimizerSpec::parse("adam:lr=1e-3,b1=0,b2=0.999,eps=1e-8").unwrap(), &p).is_ok());
    }
}
