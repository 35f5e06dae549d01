//! A population of members (one optimizer, each member its own hyperparameters) computes, for
//! every member, exactly what that member computes alone — bit for bit — for every kind.

use beatmatch_baselines::{build, build_members};
use beatmatch_core::{OptimizerSpec, ParamInfo, StepContext};

fn infos() -> Vec<ParamInfo> {
    // A bias, a matrix large enough for Adafactor to factor, and a rank-3 tensor.
    [vec![7], vec![130, 129], vec![2, 3, 4]].into_iter().enumerate().map(|(i, shape)| ParamInfo::new(format!("t{i}"), shape)).collect()
}

/// Deterministic pseudo-random values, different per member, tensor and step.
fn values(seed: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 2654435761 + seed * 40503) % 10007) as f32 / 10007.0 - 0.5) * 0.2).collect()
}

/// Train `members` members of one optimizer together for 6 steps; returns each member's
/// parameters after every step.
fn together(specs: &[OptimizerSpec]) -> Vec<Vec<Vec<f32>>> {
    let infos = infos();
    let k = specs.len();
    let mut opt = build_members(specs, &infos).unwrap();
    assert_eq!(opt.members(), k);
    let mut params: Vec<Vec<f32>> = infos.iter().enumerate().map(|(i, p)| (0..k).flat_map(|m| values(100 * m + i, p.numel())).collect()).collect();
    let mut out = vec![Vec::new(); k];
    for step in 0..6u64 {
        let grads: Vec<Vec<f32>> =
            infos.iter().enumerate().map(|(i, p)| (0..k).flat_map(|m| values(1000 * step as usize + 100 * m + 10 + i, p.numel())).collect()).collect();
        let losses: Vec<f32> = (0..k).map(|m| 1.0 + m as f32).collect();
        let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
        let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
        opt.step(&mut p, &g, &StepContext { step, num_steps: 6, losses: &losses });
        for (m, o) in out.iter_mut().enumerate() {
            o.push(params.iter().zip(&infos).flat_map(|(v, info)| v[m * info.numel()..(m + 1) * info.numel()].to_vec()).collect());
        }
    }
    out
}

/// The same member trained alone, with its own initial values, gradients and loss.
fn alone(spec: &OptimizerSpec, m: usize) -> Vec<Vec<f32>> {
    let infos = infos();
    let mut opt = build(spec, &infos).unwrap();
    let mut params: Vec<Vec<f32>> = infos.iter().enumerate().map(|(i, p)| values(100 * m + i, p.numel())).collect();
    let mut out = Vec::new();
    for step in 0..6u64 {
        let grads: Vec<Vec<f32>> = infos.iter().enumerate().map(|(i, p)| values(1000 * step as usize + 100 * m + 10 + i, p.numel())).collect();
        let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
        let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
        opt.step(&mut p, &g, &StepContext { step, num_steps: 6, losses: &[1.0 + m as f32] });
        out.push(params.concat());
    }
    out
}

#[test]
fn every_member_of_a_population_equals_that_member_alone() {
    let populations: [&[&str]; 10] = [
        &["adam:lr=1e-3", "adam:lr=3e-2,b1=0.8", "adam:lr=1e-1,eps=1e-6"],
        &["adamw:lr=1e-3", "adamw:lr=1e-2,wd=0.1"],
        &["sgdm:lr=1e-2", "sgdm:lr=0.3,momentum=0.5", "sgdm:lr=0.1,nesterov=1"],
        &["nadamw:lr=1e-3,warmup_fraction=0.2,constant_fraction=0.5", "nadamw:lr=1e-2", "nadamw:lr=3e-3,adamw_wd=0.01,l2_wd=0.001,nesterov=0"],
        &["rmsprop:lr=1e-3", "rmsprop:lr=1e-2,decay=0.5"],
        &["adafactor:lr=1e-2", "adafactor:lr=1e-1,factored=0", "adafactor:lr=3e-2,min_dim_size_to_factor=200,multiply_by_parameter_scale=0"],
        &["lion:lr=1e-4", "lion:lr=1e-3,b1=0.5,wd=0"],
        &["ademamix:lr=1e-3", "ademamix:lr=1e-2,alpha=2,b3=0.99", "ademamix:lr=3e-3,wd=0.1"],
        &["algoperf_nadamw", "algoperf_nadamw:lr=1e-2,warmup_factor=0", "algoperf_nadamw:lr=3e-3,wd=0,b1=0.5"],
        &["muon", "muon:lr=0.05,nesterov=0,ns_steps=3", "muon:adam_lr=1e-3,wd=0.1,adam_wd=0.1"],
    ];
    for pop in populations {
        let specs: Vec<OptimizerSpec> = pop.iter().map(|s| OptimizerSpec::parse(s).unwrap()).collect();
        let got = together(&specs);
        for (m, spec) in specs.iter().enumerate() {
            assert_eq!(got[m], alone(spec, m), "{spec}: member {m} of {pop:?} differs from the member alone");
        }
        // A population of one is the single-member optimizer.
        assert_eq!(together(&specs[..1])[0], alone(&specs[0], 0));
    }
}

/// Every kind of the list, a new one included without a line here: a population of its defaults
/// and two other learning rates, each member as alone.
#[test]
fn every_kind_at_three_learning_rates_equals_each_member_alone() {
    for kind in beatmatch_baselines::kinds() {
        let lr = kind.hparams().iter().find(|h| h.name == "lr").map(|h| h.default);
        let mut specs = vec![OptimizerSpec::new(kind.name())];
        if let Some(lr) = lr {
            specs.push(OptimizerSpec::new(kind.name()).with("lr", lr * 3.0));
            specs.push(OptimizerSpec::new(kind.name()).with("lr", lr * 0.5));
        }
        let got = together(&specs);
        for (m, spec) in specs.iter().enumerate() {
            assert_eq!(got[m], alone(spec, m), "{spec}: member {m} differs from the member alone");
        }
    }
}

#[test]
fn a_population_cannot_mix_kinds_or_be_empty() {
    let infos = infos();
    let specs = [OptimizerSpec::parse("adam").unwrap(), OptimizerSpec::parse("sgdm").unwrap()];
    let e = build_members(&specs, &infos).err().unwrap().to_string();
    assert!(e.contains("cannot mix kinds"), "{e}");
    assert!(build_members(&[], &infos).is_err());
}
