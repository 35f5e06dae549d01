//! Theta apart from run state: a learned optimizer rebound to θ′ is the one freshly built from
//! θ′; rebinding mid-run keeps the state; a population sharing θ equals its members alone.

use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext, UpdateRule};
use beatmatch_learned::celo::{CeloConfig, CeloNet};
use beatmatch_learned::celo2::{Celo2Config, Celo2Net};
use beatmatch_learned::celo_adam::CeloAdamNet;
use beatmatch_learned::checkpoint;
use beatmatch_learned::mlp_lopt::{MlpLoptConfig, MlpLoptNet};
use beatmatch_learned::small_fc::{SmallFcConfig, SmallFcNet};
use beatmatch_learned::theta::Theta;
use beatmatch_learned::velo::{VeloConfig, VeloNet};
use beatmatch_learned::Architecture;
use beatmatch_testkit::{cases, fixtures_dir, run, Case};
use std::sync::Arc;

/// θ′: every meta-parameter nudged by a deterministic 1% pattern, through the flat vector.
fn perturbed(theta: &Theta) -> Theta {
    let flat: Vec<f32> = theta.flatten().iter().enumerate().map(|(i, &v)| v * (1.0 + 0.01 * ((i as f32) * 0.37).sin())).collect();
    theta.with_flat(&flat).unwrap()
}

fn trajectory<O: Optimizer + ?Sized>(case: &Case, opt: &mut O) -> Vec<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    run(case, opt, |_, _, p: &[Vec<f32>]| out.push(p.to_vec()));
    out
}

fn check<R: UpdateRule>(case: &Case, theta: &Theta, bind: impl Fn(&Theta) -> R) {
    let params = case.params();
    let theta2 = perturbed(theta);
    let fresh = trajectory(case, &mut Bound::new(Arc::new(bind(&theta2)), &params));
    let original = trajectory(case, &mut Bound::new(Arc::new(bind(theta)), &params));
    assert_ne!(fresh, original, "{}: θ′ must change the trajectory for this test to mean anything", case.name);
    let mut rebound = Bound::new(Arc::new(bind(theta)), &params);
    rebound.rebind(Arc::new(bind(&theta2)));
    assert_eq!(trajectory(case, &mut rebound), fresh, "{}: rebound to θ′ differs from freshly built from θ′", case.name);

    // Mid-run: state carried across a rebind equals a fresh θ′ optimizer given that state.
    let half = case.steps() / 2;
    let steps = |opt: &mut dyn Optimizer, params: &mut Vec<Vec<f32>>, range: std::ops::Range<usize>| {
        for t in range {
            let grads: Vec<&[f32]> = case.params().iter().map(|p| case.tensor(&format!("grads/{t}/{}", p.name))).collect();
            let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
            opt.step(&mut p, &grads, &StepContext { step: t as u64, num_steps: case.num_steps(), losses: &[case.loss(t)] });
        }
    };
    let init: Vec<Vec<f32>> = params.iter().map(|p| case.tensor(&format!("params/init/{}", p.name)).to_vec()).collect();
    let (mut a_params, mut b_params) = (init.clone(), init);
    let mut a = Bound::new(Arc::new(bind(theta)), &params);
    steps(&mut a, &mut a_params, 0..half);
    let snap = a.snapshot();
    a.rebind(Arc::new(bind(&theta2)));
    steps(&mut a, &mut a_params, half..case.steps());
    let mut b = Bound::new(Arc::new(bind(&theta2)), &params);
    let mut warm = Bound::new(Arc::new(bind(theta)), &params);
    steps(&mut warm, &mut b_params, 0..half);
    b.restore(&snap).unwrap();
    steps(&mut b, &mut b_params, half..case.steps());
    assert_eq!(a_params, b_params, "{}: rebinding mid-run differs from restoring the state into a θ′ optimizer", case.name);
}

#[test]
fn rebound_theta_equals_freshly_built_and_keeps_state_mid_run() {
    let dir = fixtures_dir();
    let mut checked = 0;
    for case in cases(&dir) {
        let Some(arch) = case.meta["kind"].as_str().and_then(Architecture::for_reference_kind) else { continue };
        let ckpt = checkpoint::load(&dir.join(case.theta_file()), Some(arch)).unwrap();
        match arch.as_str() {
            "velo" => check(&case, &ckpt.theta, |t| VeloNet::bind(t, VeloConfig::default()).unwrap()),
            "celo" => check(&case, &ckpt.theta, |t| CeloNet::bind(t, CeloConfig::default()).unwrap()),
            "celo_adam" => check(&case, &ckpt.theta, |t| CeloAdamNet::bind(t).unwrap()),
            "celo2" => check(&case, &ckpt.theta, |t| Celo2Net::bind(t, Celo2Config::default()).unwrap()),
            "small_fc" => check(&case, &ckpt.theta, |t| SmallFcNet::bind(t, SmallFcConfig::default()).unwrap()),
            "mlp_lopt" => check(&case, &ckpt.theta, |t| MlpLoptNet::bind(t, MlpLoptConfig::default()).unwrap()),
            other => panic!("{}: no rebind check for architecture {other}", case.name),
        }
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} learned fixture cases found");
}

#[test]
fn a_population_sharing_theta_equals_each_member_alone() {
    let dir = fixtures_dir();
    for arch in Architecture::all() {
        let Some(case) = cases(&dir).into_iter().find(|c| c.meta["kind"].as_str().and_then(Architecture::for_reference_kind) == Some(arch)) else {
            // A user's folder (BEATMATCH_FIXTURES) may lack an architecture's cases; ours may not.
            assert!(std::env::var_os("BEATMATCH_FIXTURES").is_some(), "no fixture case for {arch} in {}", dir.display());
            continue;
        };
        let ckpt = checkpoint::load(&dir.join(case.theta_file()), None).unwrap();
        let infos: Vec<ParamInfo> = case.params();
        let k = 3;
        let mut pop = beatmatch_learned::build_members(arch, &ckpt.theta, k, &infos).unwrap();
        // Member m starts from the case's initial values scaled by (1 + m) and sees the case's
        // gradients scaled by (1 + m), with loss × (1 + m).
        let scale = |m: usize| 1.0 + m as f32;
        let init = |m: usize| -> Vec<Vec<f32>> {
            infos.iter().map(|p| case.tensor(&format!("params/init/{}", p.name)).iter().map(|v| v * scale(m)).collect()).collect()
        };
        let grads = |m: usize, t: usize| -> Vec<Vec<f32>> {
            infos.iter().map(|p| case.tensor(&format!("grads/{t}/{}", p.name)).iter().map(|v| v * scale(m)).collect()).collect()
        };
        let mut together: Vec<Vec<f32>> = (0..infos.len()).map(|i| (0..k).flat_map(|m| init(m)[i].clone()).collect()).collect();
        for t in 0..case.steps() {
            let g: Vec<Vec<f32>> = (0..infos.len()).map(|i| (0..k).flat_map(|m| grads(m, t)[i].clone()).collect()).collect();
            let losses: Vec<f32> = (0..k).map(|m| case.loss(t) * scale(m)).collect();
            let mut p: Vec<&mut [f32]> = together.iter_mut().map(|v| v.as_mut_slice()).collect();
            let gs: Vec<&[f32]> = g.iter().map(|v| v.as_slice()).collect();
            pop.step(&mut p, &gs, &StepContext { step: t as u64, num_steps: case.num_steps(), losses: &losses });
        }
        for m in 0..k {
            let mut alone = beatmatch_learned::build_members(arch, &ckpt.theta, 1, &infos).unwrap();
            let mut params = init(m);
            for t in 0..case.steps() {
                let g = grads(m, t);
                let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
                let gs: Vec<&[f32]> = g.iter().map(|v| v.as_slice()).collect();
                alone.step(&mut p, &gs, &StepContext { step: t as u64, num_steps: case.num_steps(), losses: &[case.loss(t) * scale(m)] });
            }
            for (i, info) in infos.iter().enumerate() {
                let n = info.numel();
                assert_eq!(&together[i][m * n..(m + 1) * n], &params[i][..], "{:?} member {m}, tensor {}: population differs from alone", arch, info.name);
            }
        }
    }
}
