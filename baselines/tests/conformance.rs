//! Conformance of every hand-designed optimizer against the reference fixtures (optax 0.2.3 and
//! learned_optimization's OptList), data-driven: every case in the fixtures folder whose
//! optimizer this crate knows runs, configured from its sidecar — through the host rule and
//! through the device rule (on candle's CPU device by default, or on the device named by
//! `BEATMATCH_TEST_DEVICE`, `cuda` or `cuda:N`: what `ci/gpu/verify.sh` sets), with the same
//! tolerances.

use beatmatch_baselines::soap::{self, basis::Factors};
use beatmatch_baselines::{build, build_on, reference, schedule::Cosine};
use beatmatch_core::{EvalAt, Optimizer, OptimizerSpec, ParamInfo, Params, Snapshot};
use beatmatch_testkit::{cases, fixtures_dir, run_checking, Case, Deviation, PARAMS_RTOL, UPDATE_ATOL};

/// The beatmatch spec for a case's reference optimizer, or None when the case is not ours
/// (learned optimizers). Reference arguments we do not implement fail loudly.
fn spec_for(case: &Case) -> Option<OptimizerSpec> {
    reference::spec_for(&case.name, &case.meta).unwrap_or_else(|e| panic!("{e:#}"))
}

fn ours(dir_cases: &[Case]) -> Vec<(&Case, OptimizerSpec)> {
    dir_cases.iter().filter_map(|c| spec_for(c).map(|s| (c, s))).collect()
}

/// How a case is scored: which tensors, and the eigenbases to give SOAP.
struct Scoring {
    /// Per tensor, whether it is scored.
    checked: Vec<bool>,
    /// (step, tensor, axis, basis): the reference's eigenbases, put in after that step.
    pins: Vec<(usize, usize, usize, Vec<f32>)>,
    /// The SOAP factors of each tensor (empty for other kinds).
    factors: Vec<Factors>,
}

/// Every tensor, except SOAP's: a SOAP tensor whose eigenbasis is underdetermined at its first
/// step or at a refresh (a factor with a null space of 2 or more dimensions, where the
/// reference's LAPACK picks a basis from rounding noise and the updates depend on it; see
/// `docs/methodology.md`) is scored only when the case records the reference's pick at each of
/// those steps (`debug/q/<t>/<name>/<axis>`, the `soap_pinned_*` cases), which the run then
/// takes.
fn scoring(case: &Case, spec: &OptimizerSpec) -> Scoring {
    let infos = case.params();
    let mut s = Scoring { checked: vec![true; infos.len()], pins: Vec::new(), factors: Vec::new() };
    if spec.kind != soap::NAME {
        return s;
    }
    let flag = |k: &str, d: f64| spec.get(k, d) != 0.0;
    let frequency = spec.get("precondition_frequency", 10.0) as usize;
    for (i, p) in infos.iter().enumerate() {
        let f = Factors::of(&p.shape, spec.get("max_precond_dim", 10000.0) as usize, flag("merge_dims", 0.0), flag("precondition_1d", 0.0));
        // Steps that build a basis: the first, and every refresh (after update t, t + 1 gradients).
        for t in (0..case.steps()).filter(|&t| t == 0 || t % frequency == 0) {
            let recorded: Vec<_> =
                (0..f.dims.len()).filter_map(|a| case.get(&format!("debug/q/{t}/{}/{a}", p.name)).map(|(_, q)| (t, i, a, q.to_vec()))).collect();
            if f.underdetermined(t + 1) && recorded.len() < f.preconditioned.iter().filter(|&&p| p).count() {
                s.checked[i] = false;
            }
            s.pins.extend(recorded);
        }
        s.factors.push(f);
    }
    s
}

/// Put the reference's eigenbases `pins` of step `step` into a SOAP optimizer's state (host or
/// device rule), the first moment carried into them as the reference carries it.
fn pin<O: Optimizer + ?Sized>(opt: &mut O, step: usize, s: &Scoring) {
    let pins: Vec<_> = s.pins.iter().filter(|p| p.0 == step).collect();
    if pins.is_empty() {
        return;
    }
    let mut scratch = soap::basis::Scratch::default();
    // m in the basis `old` → m in the basis `new`, for tensor t.
    let mut rebase = |t: usize, m: &[f32], old: &[Option<Vec<f32>>], new: &[Option<Vec<f32>>]| {
        let (mut back, mut out) = (Vec::new(), Vec::new());
        soap::basis::project(m, &s.factors[t], old, true, &mut scratch, &mut back);
        soap::basis::project(&back, &s.factors[t], new, false, &mut scratch, &mut out);
        out
    };
    let snap = opt.snapshot();
    if let Some(state) = snap.get::<soap::SoapState>() {
        let mut state = state.clone();
        for t in 0..state.tensors.len() {
            let st = &mut state.tensors[t][0];
            let old = st.q.clone();
            pins.iter().filter(|p| p.1 == t).for_each(|p| st.q[p.2] = Some(p.3.clone()));
            st.m = rebase(t, &st.m, &old, &st.q);
        }
        opt.restore(&Snapshot::new(state)).unwrap();
    } else if let Some(Some(state)) = snap.get::<Option<soap::device::State>>() {
        let mut state = state.clone();
        let host = |x: &candle_core::Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for t in 0..state.tensors.len() {
            let st = &mut state.tensors[t];
            let old: Vec<Option<Vec<f32>>> = st.q.iter().map(|q| q.as_ref().map(host)).collect();
            let mut new = old.clone();
            pins.iter().filter(|p| p.1 == t).for_each(|p| new[p.2] = Some(p.3.clone()));
            let m = rebase(t, &host(&st.m), &old, &new);
            st.m = candle_core::Tensor::from_vec(m, st.m.dims(), st.m.device()).unwrap();
            for (q, v) in st.q.iter_mut().zip(new) {
                if let (Some(q), Some(v)) = (q.as_mut(), v) {
                    *q = candle_core::Tensor::from_vec(v, q.dims(), q.device()).unwrap();
                }
            }
        }
        opt.restore(&Snapshot::new(Some(state))).unwrap();
    } else {
        panic!("pinning eigenbases of an optimizer that is not SOAP");
    }
}

/// Run one case through `opt`, scored as [`scoring`] says; `eval_rel` receives the worst
/// deviation of the evaluation point where the case records one (Schedule-Free's x), relative
/// to each tensor's largest |value|.
fn check<O: Optimizer + ?Sized>(case: &Case, spec: &OptimizerSpec, opt: &mut O, eval_rel: &mut f64) -> (Deviation, Vec<String>) {
    let infos = case.params();
    let s = scoring(case, spec);
    let d = run_checking(case, opt, &s.checked, |t, o: &mut O, ours: &[Vec<f32>]| {
        pin(o, t, &s);
        let Some(_) = case.get(&format!("debug/eval_params/{t}/{}", infos[0].name)) else { return };
        let slices: Vec<&[f32]> = ours.iter().map(Vec::as_slice).collect();
        let Ok(Some(EvalAt::Host(x))) = o.eval_point(Params::Host(&slices)) else {
            *eval_rel = f64::INFINITY;
            return;
        };
        for (p, ours) in infos.iter().zip(&x) {
            let reference = case.tensor(&format!("debug/eval_params/{t}/{}", p.name));
            let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
            let worst = ours.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            *eval_rel = eval_rel.max(f64::from(worst / scale));
        }
    });
    let unscored = infos.iter().zip(&s.checked).filter(|(_, &c)| !c).map(|(p, _)| p.name.clone()).collect();
    (d, unscored)
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
        let mut eval_rel = 0f64;
        let (d, unscored) = check(case, spec, opt.as_mut(), &mut eval_rel);
        let note = if unscored.is_empty() { String::new() } else { format!("  unscored (underdetermined eigenbasis): {}", unscored.join(",")) };
        eprintln!(
            "{path:<8} {:<22} {:<60} params rel {:.2e}  update/max {:.2e}  eval point {eval_rel:.2e}{note}",
            case.name,
            spec.to_string(),
            d.params_rel,
            d.update_norm
        );
        if unscored.len() == case.params().len() {
            failures.push(format!("{}: no tensor could be scored", case.name));
        }
        if eval_rel > PARAMS_RTOL {
            failures.push(format!(
                "{}: the evaluation point deviates from debug/eval_params by {eval_rel:.3e} of the tensor's scale (rtol {PARAMS_RTOL:e})",
                case.name
            ));
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
            "optax_adamw_cosine",
            "soap_case1",
            "soap_case2",
            "soap_pinned_case1",
            "soap_pinned_case2",
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
            let (d, _) = check(case, &wrong, opt.as_mut(), &mut 0.0);
            eprintln!("{:<20} {key} wrong: params rel {:.2e}, update/max {:.2e} -> rejected: {}", case.name, d.params_rel, d.update_norm, !d.passes());
            assert!(!d.passes(), "{}: {key} × 1.01 still passes (params rel {:.2e}, update {:.2e})", case.name, d.params_rel, d.update_norm);
        }
    }
}
