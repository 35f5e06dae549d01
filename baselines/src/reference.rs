//! The beatmatch spec of a reference optimizer configuration, as the fixture sidecars record
//! it (`optimizer` plus optax's `constructor_args`, or an OptList entry): the one mapping every
//! conformance check — host, device — configures itself from.

use crate::opt_list;
use anyhow::{bail, Context, Result};
use beatmatch_core::OptimizerSpec;
use serde_json::Value;

/// The spec for the sidecar `meta` of case `name`, `None` when its optimizer is not a
/// hand-designed one (learned optimizers). A reference argument beatmatch does not implement is
/// an error naming it, never silently dropped.
pub fn spec_for(name: &str, meta: &Value) -> Result<Option<OptimizerSpec>> {
    let a = &meta["constructor_args"];
    let num = |k: &str| a[k].as_f64().with_context(|| format!("{name}: constructor_args.{k} is not a number"));
    let require = |k: &str, ok: &dyn Fn(&Value) -> bool| -> Result<()> {
        if !ok(&a[k]) {
            bail!("{name}: unsupported {k} = {}", a[k]);
        }
        Ok(())
    };
    let is_null = |v: &Value| v.is_null();
    let is_false = |v: &Value| v == &Value::Bool(false);
    let flag = |k: &str| if a[k] == Value::Bool(true) { 1.0 } else { 0.0 };
    let spec = match meta["optimizer"].as_str().unwrap_or("") {
        kind @ ("optax.adam" | "optax.adamw") => {
            require("eps_root", &|v| v.as_f64() == Some(0.0))?;
            require("mu_dtype", &is_null)?;
            require("nesterov", &is_false)?;
            let ours = if kind == "optax.adam" { "adam" } else { "adamw" };
            let s = OptimizerSpec::new(ours).with("lr", num("learning_rate")?).with("b1", num("b1")?).with("b2", num("b2")?).with("eps", num("eps")?);
            if ours == "adamw" {
                require("mask", &is_null)?;
                s.with("wd", num("weight_decay")?)
            } else {
                s
            }
        }
        "optax.sgd" => {
            require("accumulator_dtype", &is_null)?;
            OptimizerSpec::new("sgdm")
                .with("lr", num("learning_rate")?)
                .with("momentum", a["momentum"].as_f64().unwrap_or(0.0))
                .with("nesterov", flag("nesterov"))
        }
        "optax.rmsprop" => {
            require("centered", &is_false)?;
            require("momentum", &is_null)?;
            require("initial_scale", &|v| v.as_f64() == Some(0.0))?;
            OptimizerSpec::new("rmsprop").with("lr", num("learning_rate")?).with("decay", num("decay")?).with("eps", num("eps")?)
        }
        "optax.lion" => {
            require("mask", &is_null)?;
            require("mu_dtype", &is_null)?;
            OptimizerSpec::new("lion").with("lr", num("learning_rate")?).with("b1", num("b1")?).with("b2", num("b2")?).with("wd", num("weight_decay")?)
        }
        "optax.adafactor" => {
            require("momentum", &is_null)?;
            require("weight_decay_rate", &is_null)?;
            OptimizerSpec::new("adafactor")
                .with("lr", num("learning_rate")?)
                .with("decay_rate", num("decay_rate")?)
                .with("decay_offset", num("decay_offset")?)
                .with("min_dim_size_to_factor", num("min_dim_size_to_factor")?)
                .with("eps", num("eps")?)
                .with("clipping_threshold", a["clipping_threshold"].as_f64().unwrap_or(0.0))
                .with("multiply_by_parameter_scale", flag("multiply_by_parameter_scale"))
                .with("factored", flag("factored"))
        }
        _ if meta["kind"] == "nadamw_optlist" => {
            if meta["nadamw_fixed"]["use_bias_correction"] != Value::Bool(true) {
                bail!("{name}: only bias-corrected NAdamW is implemented");
            }
            opt_list::entry_to_spec(&meta["opt_list_entry_json"])?
        }
        _ => return Ok(None),
    };
    Ok(Some(spec))
}
