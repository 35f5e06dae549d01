//! Conformance of the learned optimizers against learned_optimization's reference trajectories,
//! data-driven: every case in the fixtures folder whose optimizer is VeLO, small_fc_lopt or
//! MLP-LOpt runs, configured from its sidecar, with meta-parameters read from the case's
//! `.theta.msgpack` (learned_optimization's checkpoint format) — through the host rule and
//! through the device rule (on candle's CPU device by default, or on the device named by
//! `BEATMATCH_TEST_DEVICE`, `cuda` or `cuda:N`: what `ci/gpu/verify.sh` sets).

use beatmatch_core::{Bound, Optimizer};
use beatmatch_learned::celo::scheduler::Schedule;
use beatmatch_learned::celo::{CeloConfig, CeloNet, CELO};
use beatmatch_learned::celo_adam::{CeloAdamNet, CELO_ADAM};
use beatmatch_learned::checkpoint::{self, native};
use beatmatch_learned::theta::{Tensor, Theta};
use beatmatch_learned::velo::{VeloConfig, VeloNet};
use beatmatch_learned::{mlp_lopt::MLP_LOPT, velo::VELO, Architecture};
use beatmatch_testkit::{cases, fixtures_dir, run, Case, Deviation, PARAMS_RTOL, UPDATE_ATOL};
use serde_json::{json, Value};
use std::sync::Arc;

/// The architecture whose reference implementation made `case`.
fn arch_of(case: &Case) -> Option<Architecture> {
    Architecture::for_reference_kind(case.meta["kind"].as_str()?)
}

/// Constructor arguments this implementation fixes; a case asking for others fails loudly.
fn check_constructor(case: &Case, arch: Architecture) {
    let a = &case.meta["constructor_args"];
    let expect: Vec<(&str, Value)> = match arch.as_str() {
        "velo" => vec![
            ("lstm_hidden_size", json!(512)),
            ("param_inits", json!(256)),
            ("ff_hidden_size", json!(4)),
            ("ff_hidden_layers", json!(2)),
            ("exp_mult", json!(0.001)),
            ("step_mult", json!(0.001)),
            ("use_bugged_loss_features", json!(false)),
            ("use_bugged_next_lstm_state", json!(false)),
            ("mix_layers", json!(true)),
            ("param_scale_mult", json!(true)),
            ("precondition_output", json!(false)),
            ("rnn_state_decay", json!(0.0)),
            ("constant_loss", json!(false)),
            ("clip_param_scale_amount", Value::Null),
            ("initial_momentum_decays", json!([0.9, 0.99, 0.999])),
            ("initial_rms_decays", json!([0.999])),
            ("initial_adafactor_decays", json!([0.9, 0.99, 0.999])),
        ],
        "small_fc" => vec![
            ("hidden_size", json!(4)),
            ("hidden_layers", json!(2)),
            ("exp_mult", json!(0.001)),
            ("step_mult", json!(0.001)),
            ("concat_weights", json!(true)),
            ("initial_momentum_decays", json!([0.9, 0.99, 0.999])),
            ("initial_rms_decays", json!([0.999])),
            ("initial_adafactor_decays", json!([0.9, 0.99, 0.999])),
        ],
        "celo" => vec![
            ("lstm_hidden_size", json!(64)),
            ("param_inits", json!(1)),
            ("train_phase", json!(2)),
            ("initial_momentum_decays", json!([0.9, 0.99, 0.999])),
            ("initial_rms_decays", json!([0.999])),
            ("initial_adafactor_decays", json!([0.9, 0.99, 0.999])),
        ],
        "celo_adam" => vec![
            ("lstm_hidden_size", json!(64)),
            ("initial_epsilon", json!(1e-8)),
            ("initial_momentum_decays", json!([0.9])),
            ("initial_rms_decays", json!([0.999])),
        ],
        "celo2" => vec![
            ("ff_hidden_size", json!(8)),
            ("initial_momentum_decays", json!([0.9, 0.99, 0.999])),
            ("initial_rms_decays", json!([0.95])),
            ("initial_adafactor_decays", json!([0.9, 0.99, 0.999])),
            ("exp_mult", json!(0.0)),
            ("rmsmult", json!(1.0)),
            ("orthogonalize", json!(true)),
            ("ns_iters", json!(5)),
            ("ns_eps", json!(1e-8)),
            ("normalize_input", json!(true)),
            ("normalize_output", json!(true)),
            ("mlp_activation", json!("relu")),
            ("bias_correction", json!(false)),
            ("param_scale_mult", json!(false)),
            ("adamw_b1", json!(0.9)),
            ("adamw_b2", json!(0.95)),
            ("adamw_eps", json!(1e-8)),
        ],
        "mlp_lopt" => vec![("hidden_size", json!(32)), ("hidden_layers", json!(2)), ("exp_mult", json!(0.001)), ("step_mult", json!(0.001))],
        other => panic!("{}: no constructor check for architecture {other}", case.name),
    };
    for (k, v) in expect {
        assert_eq!(a[k], v, "{}: constructor argument {k} = {} is not implemented (expected {v})", case.name, a[k]);
    }
}

/// The hyperparameters a case sets that a checkpoint may carry: Celo2's learning rate and
/// weight decay (`lr`, `weight_decay` in the sidecar's constructor arguments).
fn case_hyperparameters(case: &Case) -> Vec<(String, f64)> {
    let a = &case.meta["constructor_args"];
    if case.meta["kind"] != "celo2" {
        return Vec::new();
    }
    vec![("lr".into(), a["lr"].as_f64().unwrap()), ("wd".into(), a["weight_decay"].as_f64().unwrap())]
}

fn theta_from_safetensors(case: &Case) -> Theta {
    let mut t = Theta::default();
    for (name, shape, data) in case.theta_tensors() {
        t.tensors.insert(name, Tensor { shape, data });
    }
    t
}

fn learned_cases() -> Vec<(Case, Architecture)> {
    cases(&fixtures_dir()).into_iter().filter_map(|c| arch_of(&c).map(|a| (c, a))).collect()
}

fn report(case: &Case, d: &Deviation) -> Option<String> {
    eprintln!("{:<18} params rel {:.2e}  update/max {:.2e}", case.name, d.params_rel, d.update_norm);
    (!d.passes()).then(|| {
        format!(
            "{}: params rel error {:.3e} (rtol {PARAMS_RTOL:e}) at step {} {}[{}] (ours {:e}, reference {:e}); normalised update error {:.3e} (atol {UPDATE_ATOL:e})",
            case.name, d.params_rel, d.worst.0, case.params()[d.worst.1].name, d.worst.2, d.worst_values.0, d.worst_values.1, d.update_norm
        )
    })
}

/// Every learned case through the optimizer `build` makes of its checkpoint (`path` names it
/// in messages).
fn check_every_case(path: &str, build: impl Fn(&checkpoint::Checkpoint, &Case) -> Box<dyn Optimizer>) {
    let dir = fixtures_dir();
    let all = learned_cases();
    assert!(all.len() >= 6, "only {} learned-optimizer fixtures in {}", all.len(), dir.display());
    let mut failures = Vec::new();
    for (case, arch) in &all {
        check_constructor(case, *arch);
        let mut ckpt = checkpoint::load(&dir.join(case.theta_file()), Some(*arch)).unwrap();
        assert_eq!(ckpt.arch, *arch);
        ckpt.hyperparameters.extend(case_hyperparameters(case));
        let mut opt = build(&ckpt, case);
        let d = run(case, opt.as_mut(), |_, _, _| {});
        eprint!("{path:<8} ");
        failures.extend(report(case, &d));
    }
    assert!(failures.is_empty(), "{path}:\n{}", failures.join("\n"));
}

#[test]
fn every_learned_fixture_matches_the_reference() {
    check_every_case("host", |ckpt, case| beatmatch_learned::build(ckpt, &case.params()).unwrap());
}

/// The device rules (VeLO, small_fc_lopt, MLP-LOpt) on every learned fixture.
#[test]
fn every_learned_fixture_matches_the_reference_on_the_device_path() {
    let name = std::env::var("BEATMATCH_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = beatmatch_device::parse_device(&name).unwrap_or_else(|e| panic!("BEATMATCH_TEST_DEVICE={name}: {e:#}"));
    check_every_case(&name, |ckpt, case| beatmatch_learned::build_on(ckpt.arch, &ckpt.theta, &ckpt.hyperparameters, 1, &case.params(), &device).unwrap());
}

#[test]
fn the_fixture_set_covers_the_learned_reference_cases() {
    if std::env::var_os("BEATMATCH_FIXTURES").is_some() {
        return; // a user's folder may hold any subset
    }
    let names: Vec<String> = learned_cases().into_iter().map(|(c, _)| c.name).collect();
    for expected in [
        "velo_case1",
        "velo_case2",
        "celo_case1",
        "celo_case2",
        "celo_adam_case1",
        "celo2_case1",
        "celo2_case2",
        "adafac_case1",
        "adafac_case2",
        "mlp_lopt_case1",
        "mlp_lopt_case2",
    ] {
        assert!(names.iter().any(|n| n == expected), "fixture {expected} missing from {names:?}");
    }
}

/// The msgpack checkpoint, the fixture's safetensors copy of theta, and beatmatch's native
/// format written from it all hold the same meta-parameters, so give identical updates.
#[test]
fn msgpack_safetensors_and_native_checkpoints_agree() {
    let dir = fixtures_dir();
    let tmp = tempfile::tempdir().unwrap();
    for (case, arch) in learned_cases() {
        let from_msgpack = checkpoint::load(&dir.join(case.theta_file()), Some(arch)).unwrap();
        assert_eq!(from_msgpack.theta, theta_from_safetensors(&case), "{}: msgpack and safetensors theta differ", case.name);
        assert_eq!(from_msgpack.sha256, case.theta_sha256().unwrap(), "{}: sha256", case.name);
        let native_path = tmp.path().join(format!("{}.safetensors", case.name));
        native::write(
            &native_path,
            &from_msgpack.theta,
            &native::Sidecar { architecture: arch, hyperparameters: Default::default(), source: case.name.clone(), meta_training: None },
        )
        .unwrap();
        let from_native = checkpoint::load(&native_path, None).unwrap();
        assert_eq!(from_native.arch, arch);
        assert_eq!(from_native.theta, from_msgpack.theta);
        let trajectory = |ckpt: &checkpoint::Checkpoint| {
            let mut opt = beatmatch_learned::build(ckpt, &case.params()).unwrap();
            let mut out = Vec::new();
            run(&case, opt.as_mut(), |_, _, p: &[Vec<f32>]| out.push(p.to_vec()));
            out
        };
        assert_eq!(trajectory(&from_msgpack), trajectory(&from_native), "{}: updates differ between formats", case.name);
    }
}

/// `|ours − ref| ≤ rtol · scale`, scale = the larger of the tensor's max |ref| and `min_scale`
/// (the natural range of a bounded quantity, e.g. 1 for the clipped loss features).
fn close(what: &str, case: &str, t: usize, ours: &[f32], reference: &[f32], rtol: f32, min_scale: f32) {
    assert_eq!(ours.len(), reference.len(), "{case} step {t} {what}: length");
    let scale = reference.iter().fold(0f32, |a, &b| a.max(b.abs())).max(min_scale);
    for (i, (&o, &r)) in ours.iter().zip(reference).enumerate() {
        assert!((o - r).abs() <= rtol * scale, "{case} step {t} {what}[{i}]: ours {o:e}, reference {r:e} (scale {scale:e})");
    }
}

/// VeLO's per-step intermediates against the reference's debug tensors: they localise a bug to
/// the loss buffer, the LSTM inputs, the LSTM or its heads.
#[test]
fn velo_intermediates_match_the_reference_debug_tensors() {
    let mut checked = 0;
    for (case, arch) in learned_cases().into_iter().filter(|(_, a)| *a == VELO) {
        let ckpt = checkpoint::load(&fixtures_dir().join(case.theta_file()), Some(arch)).unwrap();
        let mut velo = Bound::new(Arc::new(VeloNet::bind(&ckpt.theta, VeloConfig::default()).unwrap().with_debug(true)), &case.params());
        run(&case, &mut velo, |t, v: &Bound<VeloNet>, _| {
            let d = v.state()[0].debug.as_ref().expect("the rule records intermediates");
            let flat = |rows: &[Vec<f32>]| rows.concat();
            close("loss_features", &case.name, t, &d.loss_features, case.tensor(&format!("debug/loss_features/{t}")), 1e-4, 1.0);
            close("fraction_trained", &case.name, t, &[d.fraction_trained], case.tensor(&format!("debug/fraction_trained/{t}")), 1e-6, 1e-6);
            close("rnn_inputs", &case.name, t, &d.rnn_inputs.concat(), case.tensor(&format!("debug/rnn_inputs/{t}")), 1e-4, 1e-6);
            close("lstm_cell", &case.name, t, &flat(&d.lstm_cell), case.tensor(&format!("debug/lstm_cell/{t}")), 1e-4, 1e-6);
            close("lstm_hidden", &case.name, t, &flat(&d.lstm_hidden), case.tensor(&format!("debug/lstm_hidden/{t}")), 1e-4, 1e-6);
            close("controls", &case.name, t, &flat(&d.controls), case.tensor(&format!("debug/controls/{t}")), 1e-4, 1e-6);
            close("lr_mult", &case.name, t, &d.lr_mult, case.tensor(&format!("debug/lr_mult/{t}")), 1e-4, 1e-6);
        });
        checked += 1;
    }
    assert!(checked > 0, "no VeLO case");
}

/// Celo's and Celo-Adam's scheduler against the reference's debug tensors (loss features,
/// fraction trained, the LSTM state of every tensor, the multiplier of every tensor).
#[test]
fn celo_scheduler_matches_the_reference_debug_tensors() {
    let mut checked = 0;
    for (case, arch) in learned_cases().into_iter().filter(|(_, a)| *a == CELO || *a == CELO_ADAM) {
        let ckpt = checkpoint::load(&fixtures_dir().join(case.theta_file()), Some(arch)).unwrap();
        let n = case.params().len();
        let check = |t: usize, d: &Schedule| {
            let rows = |row: &[f32]| row.repeat(n);
            close("loss_features", &case.name, t, &d.loss_features, case.tensor(&format!("debug/loss_features/{t}")), 1e-4, 1.0);
            close("fraction_trained", &case.name, t, &[d.fraction_trained], case.tensor(&format!("debug/fraction_trained/{t}")), 1e-6, 1e-6);
            close("lstm_cell", &case.name, t, &rows(&d.cell), case.tensor(&format!("debug/lstm_cell/{t}")), 1e-4, 1e-6);
            close("lstm_hidden", &case.name, t, &rows(&d.hidden), case.tensor(&format!("debug/lstm_hidden/{t}")), 1e-4, 1e-6);
            close("lr_mult", &case.name, t, &vec![d.lr_mult; n], case.tensor(&format!("debug/lr_mult/{t}")), 1e-4, 1e-6);
        };
        if arch == CELO {
            let mut opt = Bound::new(Arc::new(CeloNet::bind(&ckpt.theta, CeloConfig::default()).unwrap().with_debug(true)), &case.params());
            run(&case, &mut opt, |t, o: &Bound<CeloNet>, _| check(t, &o.state()[0].debug.as_ref().expect("recorded").schedule));
        } else {
            let mut opt = Bound::new(Arc::new(CeloAdamNet::bind(&ckpt.theta).unwrap().with_debug(true)), &case.params());
            run(&case, &mut opt, |t, o: &Bound<CeloAdamNet>, _| check(t, o.state()[0].debug.as_ref().expect("recorded")));
        }
        checked += 1;
    }
    if std::env::var_os("BEATMATCH_FIXTURES").is_none() {
        assert!(checked >= 3, "only {checked} Celo cases");
    }
}

/// One corrupted meta-parameter (the bias of the step's output: Celo's MLP direction, the
/// scheduler's or VeLO's step size) makes every such case fail conformance, so the checks
/// above do read theta.
#[test]
fn a_corrupted_theta_value_fails_conformance() {
    let mut checked = 0;
    for (case, arch) in learned_cases() {
        let name = match arch.as_str() {
            "celo" | "celo2" => "ff_mod_stack/~/b2",
            "celo_adam" | "velo" => "rnn_params/step_size/b",
            _ => continue,
        };
        let mut ckpt = checkpoint::load(&fixtures_dir().join(case.theta_file()), Some(arch)).unwrap();
        ckpt.theta.tensors.get_mut(name).unwrap().data[0] += 1.0;
        ckpt.hyperparameters.extend(case_hyperparameters(&case));
        let mut opt = beatmatch_learned::build(&ckpt, &case.params()).unwrap();
        let d = run(&case, opt.as_mut(), |_, _, _| {});
        assert!(!d.passes(), "{}: {name}[0] + 1 still passes (params rel {:e})", case.name, d.params_rel);
        checked += 1;
    }
    assert!(checked > 0, "no VeLO or Celo case");
}

/// A corrupted or mismatched checkpoint is a clear error, never a panic.
#[test]
fn bad_checkpoints_are_clear_errors() {
    let dir = fixtures_dir();
    let tmp = tempfile::tempdir().unwrap();
    let src = dir.join("mlp_lopt_case1.theta.msgpack");
    let bytes = std::fs::read(&src).unwrap();
    let params = [beatmatch_core::ParamInfo::new("w", vec![3])];

    // Truncated file.
    let truncated = tmp.path().join("trunc.msgpack");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = format!("{:#}", checkpoint::load(&truncated, None).unwrap_err());
    assert!(e.contains("truncated or corrupt"), "{e}");

    // Wrong architecture requested.
    let e = format!("{:#}", checkpoint::load(&src, Some(VELO)).unwrap_err());
    assert!(e.contains("expected a velo checkpoint") && e.contains("mlp_lopt"), "{e}");

    // Missing tensor.
    let mut ckpt = checkpoint::load(&src, None).unwrap();
    ckpt.theta.tensors.remove("mlp/~/linear_1/w");
    let e = beatmatch_learned::build(&ckpt, &params).err().unwrap().to_string();
    assert!(e.contains("no tensor `mlp/~/linear_1/w`") && e.contains("[32, 32]"), "{e}");

    // Mis-shaped tensor.
    let mut ckpt = checkpoint::load(&src, None).unwrap();
    ckpt.theta.tensors.get_mut("mlp/~/linear_0/w").unwrap().shape = vec![32, 19];
    let e = beatmatch_learned::build(&ckpt, &params).err().unwrap().to_string();
    assert!(e.contains("`mlp/~/linear_0/w` has shape [32, 19]") && e.contains("expects [19, 32]"), "{e}");

    // Native file without its sidecar, and with a bad one.
    let native_path = tmp.path().join("x.safetensors");
    native::write(
        &native_path,
        &checkpoint::load(&src, None).unwrap().theta,
        &native::Sidecar { architecture: MLP_LOPT, hyperparameters: Default::default(), source: String::new(), meta_training: None },
    )
    .unwrap();
    std::fs::write(native::sidecar_path(&native_path), "architecture: adam\n").unwrap();
    let e = format!("{:#}", checkpoint::load(&native_path, None).unwrap_err());
    assert!(e.contains("x.yaml:1:") && e.contains("unknown architecture `adam`") && e.contains("velo, celo, celo_adam, celo2, small_fc, mlp_lopt"), "{e}");
    std::fs::remove_file(native::sidecar_path(&native_path)).unwrap();
    let e = format!("{:#}", checkpoint::load(&native_path, None).unwrap_err());
    assert!(e.contains("no sidecar") && e.contains("x.yaml"), "{e}");

    // Truncated safetensors.
    let st = std::fs::read(&native_path).unwrap();
    std::fs::write(&native_path, &st[..st.len() - 10]).unwrap();
    std::fs::write(native::sidecar_path(&native_path), "architecture: mlp_lopt\n").unwrap();
    let e = format!("{:#}", checkpoint::load(&native_path, None).unwrap_err());
    assert!(e.contains("truncated or corrupt"), "{e}");

    // Not a checkpoint at all.
    let junk = tmp.path().join("junk.msgpack");
    std::fs::write(&junk, b"\x93\x01\x02\x03").unwrap();
    assert!(checkpoint::load(&junk, None).is_err());
}

fn _assert_object_safe(_: &dyn Optimizer) {}
