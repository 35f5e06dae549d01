//! Conformance of every hand-designed optimizer against the reference fixtures (optax 0.2.3 and
//! learned_optimization's OptList), data-driven: every case in the fixtures folder whose
//! optimizer this crate knows runs, configured from its sidecar — through the host rule and
//! through the device rule (on candle's CPU device by default, or on the device named by
//! `BEATMATCH_TEST_DEVICE`, `cuda` or `cuda:N`: what `ci/gpu/verify.sh` sets), with the same
//! tolerances.

use beatmatch_baselines::{build, build_on, reference, schedule::Cosine};
use beatmatch_core::{EvalAt, Optimizer, OptimizerSpec, ParamInfo, Params};
use beatmatch_testkit::{cases, fixtures_dir, run, Case, PARAMS_RTOL, UPDATE_ATOL};

/// The beatmatch spec for a case's reference optimizer, or None when the case is not ours
/// (learned optimizers). Reference arguments we do not implement fail loudly.
fn spec_for(case: &Case) -> Option<OptimizerSpec> {
    reference::spec_for(&case.name, &case.meta).unwrap_or_else(|e| panic!("{e:#}"))
}

fn ours(dir_cases: &[Case]) -> Vec<(&Case, OptimizerSpec)> {
    dir_cases.iter().filter_map(|c| spec_for(c).map(|s| (c, s))).collect()
}

/// Every case of ours through the optimizer `build` makes (`path` names it in messages).
fn check_every_case(path: &str, build: impl Fn(&OptimizerSpec, &[ParamInfo]) -> Box<dyn Optimizer>) {
    let dir = fixtures_dir();
    let all = cases(&dir);
    let mine = ours(&all);
    assert!(mine.len() >= 9, "only {} baseline fixtures in {}", mine.len(), dir.display());
    let mut failures = Vec::new();
    for (case, spec) in &mine {
        let mut opt = build(spec, &case.params());
        // Where the case records the point it is evaluated at (Schedule-Free's x), ours must be
        // that point: the worst deviation relative to each tensor's largest |value|.
        let mut eval_rel = 0f64;
        let d = run(case, opt.as_mut(), |t, o, ours: &[Vec<f32>]| {
            let infos = case.params();
            let Some(_) = case.get(&format!("debug/eval_params/{t}/{}", infos[0].name)) else { return };
            let slices: Vec<&[f32]> = ours.iter().map(Vec::as_slice).collect();
            let Ok(Some(EvalAt::Host(x))) = o.eval_point(Params::Host(&slices)) else {
                eval_rel = f64::INFINITY;
                return;
            };
            for (p, ours) in infos.iter().zip(&x) {
                let reference = case.tensor(&format!("debug/eval_params/{t}/{}", p.name));
                let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
                let worst = ours.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                eval_rel = eval_rel.max(f64::from(worst / scale));
            }
        });
        eprintln!("{path:<8} {:<22} {:<60} params rel {:.2e}  update/max {:.2e}  eval point {eval_rel:.2e}", case.name, spec.to_string(), d.params_rel, d.update_norm);
        if eval_rel > PARAMS_RTOL {
            failures.push(format!("{}: the evaluation point deviates from debug/eval_params by {eval_rel:.3e} of the tensor's scale (rtol {PARAMS_RTOL:e})", case.name));
        }
        if !d.passes() {
            failures.push(format!(
                "{}: params rel error {:.3e} (rtol {PARAMS_RTOL:e}) at step {} {}[{}] (ours {:e}, reference {:e}), normalised update error {:.3e} (atol {UPDATE_ATOL:e})",
                case.name, d.params_rel, d.worst.0, case.params()[d.worst.1].name, d.worst.2, d.worst_values.0, d.worst_values.1, d.update_norm
            ));
        }
    }
    assert!(failures.is_empty(), "{path}:\n{}", failures.join("\n"));
}

#[test]
fn every_baseline_fixture_matches_the_reference() {
    check_every_case("host", |spec, params| build(spec, params).unwrap());
}

#[test]
fn every_baseline_fixture_matches_the_reference_on_the_device_path() {
    let name = std::env::var("BEATMATCH_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = beatmatch_device::parse_device(&name).unwrap_or_else(|e| panic!("BEATMATCH_TEST_DEVICE={name}: {e:#}"));
    check_every_case(&name, |spec, params| build_on(std::slice::from_ref(spec), params, &device).unwrap());
}

#[test]
fn the_fixture_set_covers_the_reference_cases() {
    let all = cases(&fixtures_dir());
    let names: Vec<&str> = ours(&all).iter().map(|(c, _)| c.name.as_str()).collect();
    // With the project's own copy, all of these must be there; a user's folder may hold more.
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
            "optax_ademamix",
            "algoperf_nadamw",
            "optax_muon",
            "optax_muon_wd",
            "optax_schedule_free_adamw",
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
