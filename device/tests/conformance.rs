//! The device implementations against the reference fixtures: every hand-designed case runs
//! through the device code, on candle's CPU device by default, or on the device named by
//! `BEATMATCH_TEST_DEVICE` (`cuda`, `cuda:N`; what `ci/gpu/verify.sh` sets), with the host
//! rules' tolerances.

use beatmatch_baselines::reference;
use beatmatch_device::{build_on, parse_device};
use beatmatch_testkit::{cases, fixtures_dir, run, PARAMS_RTOL, UPDATE_ATOL};

#[test]
fn every_baseline_fixture_matches_the_reference_on_the_device_path() {
    let name = std::env::var("BEATMATCH_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = parse_device(&name).unwrap_or_else(|e| panic!("BEATMATCH_TEST_DEVICE={name}: {e:#}"));
    let all = cases(&fixtures_dir());
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &all {
        let Some(spec) = reference::spec_for(&case.name, &case.meta).unwrap_or_else(|e| panic!("{e:#}")) else { continue };
        let mut opt = build_on(std::slice::from_ref(&spec), &case.params(), &device).unwrap();
        let d = run(case, opt.as_mut(), |_, _, _| {});
        checked += 1;
        eprintln!("{name:<6} {:<22} {:<60} params rel {:.2e}  update/max {:.2e}", case.name, spec.to_string(), d.params_rel, d.update_norm);
        if !d.passes() {
            failures.push(format!(
                "{}: params rel error {:.3e} (rtol {PARAMS_RTOL:e}), normalised update error {:.3e} (atol {UPDATE_ATOL:e})",
                case.name, d.params_rel, d.update_norm
            ));
        }
    }
    assert!(checked >= 9, "only {checked} baseline fixtures found in {}", fixtures_dir().display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The learned optimizers' device implementations (VeLO, small_fc_lopt, MLP-LOpt) on every
/// learned fixture.
#[test]
fn every_learned_fixture_matches_the_reference_on_the_device_path() {
    use beatmatch_learned::checkpoint::{self, Architecture};
    let name = std::env::var("BEATMATCH_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = parse_device(&name).unwrap_or_else(|e| panic!("BEATMATCH_TEST_DEVICE={name}: {e:#}"));
    let dir = fixtures_dir();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases(&dir) {
        let arch = match case.meta["kind"].as_str() {
            Some("velo") => Architecture::Velo,
            Some("adafac_mlp_lopt") => Architecture::SmallFc,
            Some("mlp_lopt") => Architecture::MlpLopt,
            _ => continue,
        };
        let ckpt = checkpoint::load(&dir.join(format!("{}.theta.msgpack", case.name)), Some(arch)).unwrap();
        let mut opt = beatmatch_device::build_learned(arch, &ckpt.theta, &ckpt.hyperparameters, 1, &case.params(), &device).unwrap();
        checked += 1;
        let d = run(&case, opt.as_mut(), |_, _, _| {});
        eprintln!("{name:<6} {:<16} params rel {:.2e}  update/max {:.2e}", case.name, d.params_rel, d.update_norm);
        if !d.passes() {
            failures.push(format!(
                "{}: params rel error {:.3e} (rtol {PARAMS_RTOL:e}), normalised update error {:.3e} (atol {UPDATE_ATOL:e})",
                case.name, d.params_rel, d.update_norm
            ));
        }
    }
    assert!(checked >= 6, "only {checked} learned fixtures in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
