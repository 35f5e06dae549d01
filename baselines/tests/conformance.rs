//! Conformance of every hand-designed optimizer against the reference fixtures (optax 0.2.3 and
//! learned_optimization's OptList), data-driven: every case in the fixtures folder whose
//! optimizer this crate knows runs, configured from its sidecar.

use beatmatch_baselines::{build, opt_list, schedule::Cosine};
use beatmatch_core::OptimizerSpec;
use beatmatch_testkit::{cases, fixtures_dir, run, Case, PARAMS_RTOL, UPDATE_ATOL};
use serde_json::Value;

/// The beatmatch spec for a case's reference optimizer, or None when the case is not ours
/// (learned optimizers). Reference arguments we do not implement fail loudly.
fn spec_for(case: &Case) -> Option<OptimizerSpec> {
    let a = &case.meta["constructor_args"];
    let num = |k: &str| a[k].as_f64().unwrap_or_else(|| panic!("{}: constructor_args.{k} is not a number", case.name));
    let require = |k: &str, ok: &dyn Fn(&Value) -> bool| {
        assert!(ok(&a[k]), "{}: unsupported {k} = {}", case.name, a[k]);
    };
    let is_null = |v: &Value| v.is_null();
    let is_false = |v: &Value| v == &Value::Bool(false);
    let spec = match case.optimizer() {
        "optax.adam" | "optax.adamw" => {
            require("eps_root", &|v| v.as_f64() == Some(0.0));
            require("mu_dtype", &is_null);
            require("nesterov", &is_false);
            let kind = if case.optimizer() == "optax.adam" { "adam" } else { "adamw" };
            let s = OptimizerSpec::new(kind).with("lr", num("learning_rate")).with("b1", num("b1")).with("b2", num("b2")).with("eps", num("eps"));
            if kind == "adamw" {
                require("mask", &is_null);
                s.with("wd", num("weight_decay"))
            } else {
                s
            }
        }
        "optax.sgd" => {
            require("accumulator_dtype", &is_null);
            OptimizerSpec::new("sgdm")
                .with("lr", num("learning_rate"))
                .with("momentum", a["momentum"].as_f64().unwrap_or(0.0))
                .with("nesterov", if a["nesterov"] == Value::Bool(true) { 1.0 } else { 0.0 })
        }
        "optax.rmsprop" => {
            require("centered", &is_false);
            require("momentum", &is_null);
            require("initial_scale", &|v| v.as_f64() == Some(0.0));
            OptimizerSpec::new("rmsprop").with("lr", num("learning_rate")).with("decay", num("decay")).with("eps", num("eps"))
        }
        "optax.lion" => {
            require("mask", &is_null);
            require("mu_dtype", &is_null);
            OptimizerSpec::new("lion").with("lr", num("learning_rate")).with("b1", num("b1")).with("b2", num("b2")).with("wd", num("weight_decay"))
        }
        "optax.adafactor" => {
            require("momentum", &is_null);
            require("weight_decay_rate", &is_null);
            let flag = |k: &str| if a[k] == Value::Bool(true) { 1.0 } else { 0.0 };
            OptimizerSpec::new("adafactor")
                .with("lr", num("learning_rate"))
                .with("decay_rate", num("decay_rate"))
                .with("decay_offset", num("decay_offset"))
                .with("min_dim_size_to_factor", num("min_dim_size_to_factor"))
                .with("eps", num("eps"))
                .with("clipping_threshold", a["clipping_threshold"].as_f64().unwrap_or(0.0))
                .with("multiply_by_parameter_scale", flag("multiply_by_parameter_scale"))
                .with("factored", flag("factored"))
        }
        _ if case.meta["kind"] == "nadamw_optlist" => {
            let fixed = &case.meta["nadamw_fixed"];
            assert_eq!(fixed["use_bias_correction"], Value::Bool(true), "{}: only bias-corrected NAdamW is implemented", case.name);
            opt_list::entry_to_spec(&case.meta["opt_list_entry_json"]).unwrap()
        }
        _ => return None,
    };
    Some(spec)
}

fn ours(dir_cases: &[Case]) -> Vec<(&Case, OptimizerSpec)> {
    dir_cases.iter().filter_map(|c| spec_for(c).map(|s| (c, s))).collect()
}

#[test]
fn every_baseline_fixture_matches_the_reference() {
    let dir = fixtures_dir();
    let all = cases(&dir);
    let mine = ours(&all);
    assert!(!mine.is_empty(), "no baseline fixture in {}", dir.display());
    let mut failures = Vec::new();
    for (case, spec) in &mine {
        let mut opt = build(spec, &case.params()).unwrap();
        let d = run(case, opt.as_mut(), |_, _, _| {});
        eprintln!("{:<22} {:<60} params rel {:.2e}  update/max {:.2e}", case.name, spec.to_string(), d.params_rel, d.update_norm);
        if !d.passes() {
            failures.push(format!(
                "{}: params rel error {:.3e} (rtol {PARAMS_RTOL:e}) at step {} {}[{}] (ours {:e}, reference {:e}), normalised update error {:.3e} (atol {UPDATE_ATOL:e})",
                case.name, d.params_rel, d.worst.0, case.params()[d.worst.1].name, d.worst.2, d.worst_values.0, d.worst_values.1, d.update_norm
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_fixture_set_covers_the_nine_reference_cases() {
    let all = cases(&fixtures_dir());
    let names: Vec<&str> = ours(&all).iter().map(|(c, _)| c.name.as_str()).collect();
    // With the project's own copy, all nine must be there; a user's folder may hold more.
    if std::env::var_os("BEATMATCH_FIXTURES").is_none() {
        for expected in [
            "optax_adam",
            "optax_adamw",
            "optax_sgd_momentum",
            "optax_sgd_nesterov",
            "optax_rmsprop",
            "optax_adafactor",
            "optax_lion",
            "nadamw_optlist0",
            "nadamw_optlist1",
        ] {
            assert!(names.contains(&expected), "fixture {expected} missing from {names:?}");
        }
    }
}

#[test]
fn nadamw_schedule_matches_the_recorded_learning_rates() {
    let all = cases(&fixtures_dir());
    let mut checked = 0;
    for case in all.iter().filter(|c| c.meta["kind"] == "nadamw_optlist") {
        let s = spec_for(case).unwrap();
        let sched = Cosine {
            lr: s.get("lr", 0.0),
            min_lr_mult: s.get("min_lr_mult", 0.0),
            constant_fraction: s.get("constant_fraction", 0.0),
            warmup_fraction: s.get("warmup_fraction", 0.0),
        };
        let recorded = case.tensor("debug/lr");
        for (t, &lr) in recorded.iter().enumerate() {
            let ours = sched.at(t as u64, case.num_steps());
            assert!((ours - lr).abs() <= 1e-6 * lr.abs().max(1e-12), "{} step {t}: lr {ours} vs reference {lr}", case.name);
        }
        checked += 1;
    }
    assert!(checked > 0, "no nadamw_optlist case found");
}

/// A deliberately wrong hyperparameter must fail the conformance check: every case, with its
/// learning rate 1% too large, or a decay's complement (1 − β) doubled, is rejected.
/// This is what keeps the check honest.
#[test]
fn a_wrong_hyperparameter_fails_the_check() {
    let all = cases(&fixtures_dir());
    for (case, spec) in ours(&all) {
        for key in ["lr", "b2", "decay", "momentum"] {
            let Some(&v) = spec.hparams.get(key) else { continue };
            let wrong = spec.clone().with(key, if key == "lr" { v * 1.01 } else { 1.0 - (1.0 - v) * 2.0 });
            let mut opt = build(&wrong, &case.params()).unwrap();
            let d = run(case, opt.as_mut(), |_, _, _| {});
            eprintln!("{:<20} {key} wrong: params rel {:.2e}, update/max {:.2e} -> rejected: {}", case.name, d.params_rel, d.update_norm, !d.passes());
            assert!(!d.passes(), "{}: {key} × 1.01 still passes (params rel {:.2e}, update {:.2e})", case.name, d.params_rel, d.update_norm);
        }
    }
}
