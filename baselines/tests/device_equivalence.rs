//! Every kind's device rule on candle's CPU device computes what the host rules compute, bit for bit:
//! every kind, over tensors of every rank (Adafactor's factored and unfactored statistics
//! included), over several steps; and a snapshot restored continues exactly.

use beatmatch_core::{OptimizerSpec, ParamInfo};
use beatmatch_testkit::synthetic_trajectory;
use candle_core::Device;

fn infos() -> Vec<ParamInfo> {
    [("a/w", vec![130, 140]), ("b/b", vec![140]), ("c/k", vec![3, 129, 131]), ("d/s", vec![])].into_iter().map(|(n, s)| ParamInfo::new(n, s)).collect()
}

const SPECS: &[&str] = &[
    "sgdm:lr=0.1,momentum=0",
    "sgdm:lr=0.1,momentum=0.9",
    "sgdm:lr=0.1,momentum=0.9,nesterov=1",
    "adam:lr=0.01",
    "adamw:lr=0.01,wd=0.1",
    "nadamw:lr=0.01,warmup_fraction=0.1,constant_fraction=0.2,min_lr_mult=0.1,adamw_wd=0.01,l2_wd=0.001",
    "nadamw:lr=0.01,nesterov=0",
    "rmsprop:lr=0.01,decay=0.9",
    "lion:lr=0.001,wd=0.1",
    "adafactor:lr=0.01",
    "adafactor:lr=0.01,factored=0,clipping_threshold=0,multiply_by_parameter_scale=0",
    "ademamix:lr=0.01,wd=0.1",
    "algoperf_nadamw:lr=0.01,warmup_factor=0.2",
];

#[test]
fn the_device_path_on_the_cpu_gives_the_host_bits() {
    let infos = infos();
    // The cases above, and every kind of the list with a device rule at its defaults.
    let defaults = beatmatch_baselines::kinds().into_iter().map(|k| k.name().to_string());
    let with_device: Vec<String> = defaults.filter(|k| beatmatch_baselines::build_on(&[OptimizerSpec::new(k)], &infos, &Device::Cpu).is_ok()).collect();
    for text in SPECS.iter().copied().chain(with_device.iter().map(String::as_str)) {
        let spec = OptimizerSpec::parse(text).unwrap();
        let host = synthetic_trajectory(beatmatch_baselines::build(&spec, &infos).unwrap().as_mut(), &infos);
        let device = synthetic_trajectory(beatmatch_baselines::build_on(std::slice::from_ref(&spec), &infos, &Device::Cpu).unwrap().as_mut(), &infos);
        for ((h, d), info) in host.iter().zip(&device).zip(&infos) {
            let differing = h.iter().zip(d).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            let worst = h.iter().zip(d).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert_eq!(differing, 0, "{text}: {} has {differing} of {} values differing from the host (largest |difference| {worst:e})", info.name, h.len());
        }
    }
}

#[test]
fn several_members_of_a_rule_stepped_one_member_at_a_time_are_refused_with_the_reason() {
    let spec = OptimizerSpec::parse("muon:lr=0.01").unwrap();
    let e = beatmatch_baselines::build_on(&[spec.clone(), spec], &infos(), &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("one member at a time"), "{e}");
}

/// Three members of each fused kind, stepped by one kernel launch per tensor, against the host
/// rule's three members: the same bits (member-major buffers, each member its own
/// hyperparameters and gradients, over three steps).
#[test]
fn several_members_of_a_fused_kind_give_the_host_members_bits() {
    let infos = infos();
    let mut checked = 0;
    for kind in beatmatch_baselines::kinds() {
        let specs: Vec<OptimizerSpec> = (1..=3).map(|k| OptimizerSpec::new(kind.name()).with("lr", 1e-3 * k as f64)).collect();
        if !beatmatch_baselines::steps_members_on_device(&specs[0]) {
            continue;
        }
        let run = |opt: &mut dyn beatmatch_core::Optimizer| {
            let mut params: Vec<Vec<f32>> = beatmatch_testkit::synthetic_params(&infos).into_iter().map(|v| v.repeat(3)).collect();
            for step in 0..3u64 {
                let grads: Vec<Vec<f32>> = params
                    .iter()
                    .enumerate()
                    .map(|(t, p)| (0..p.len()).map(|i| (((i * 131 + t + step as usize * 17) % 1009) as f32 / 1009.0 - 0.5) * 0.01).collect())
                    .collect();
                let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
                let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
                opt.step(&mut p, &g, &beatmatch_core::StepContext { step, num_steps: 100, losses: &[2.0, 2.1, 2.2] });
            }
            params
        };
        let host = run(beatmatch_baselines::build_members(&specs, &infos).unwrap().as_mut());
        let mut device = beatmatch_baselines::build_on(&specs, &infos, &Device::Cpu).unwrap();
        assert_eq!(device.members(), 3);
        let device = run(device.as_mut());
        for (h, d) in host.iter().zip(&device) {
            assert!(h.iter().zip(d).all(|(a, b)| a.to_bits() == b.to_bits()), "{}: three members on the device differ from the host rule's", kind.name());
        }
        checked += 1;
    }
    assert_eq!(checked, 8, "the fused kinds: sgdm, adam, adamw, nadamw, rmsprop, lion, ademamix, algoperf_nadamw");
}

/// Adam and AdamW skip dividing by a bias correction once it has rounded to 1; the device
/// kernels (`kernels/rules.h`) divide at every step. Over 200 steps, with decays that bring each
/// correction to 1 at a different step (1 − 0.5ᵗ from step 25, 1 − 0.9ᵗ from step 165) and
/// gradients that are zero for some parameters (their moments decay into subnormals), the
/// host gives the device's bits at every step of every case.
#[test]
fn adam_past_the_bias_corrections_gives_the_bits_of_dividing_by_them() {
    let infos = vec![ParamInfo::new("w", vec![37, 5])];
    let n = infos[0].numel();
    for text in ["adam:lr=0.01,b1=0.9,b2=0.5", "adam:lr=0.01,b1=0.5,b2=0.999", "adamw:lr=0.01,b1=0.9,b2=0.5,wd=0.1", "adam:lr=0.01"] {
        let spec = OptimizerSpec::parse(text).unwrap();
        let mut host = beatmatch_baselines::build(&spec, &infos).unwrap();
        let mut device = beatmatch_baselines::build_on(std::slice::from_ref(&spec), &infos, &Device::Cpu).unwrap();
        let (mut h, mut d) = (beatmatch_testkit::synthetic_params(&infos), beatmatch_testkit::synthetic_params(&infos));
        for step in 0..200u64 {
            let g: Vec<f32> = (0..n).map(|i| if i % 7 == 0 { 0.0 } else { (((i * 131 + step as usize * 17) % 1009) as f32 / 1009.0 - 0.5) * 0.01 }).collect();
            let ctx = beatmatch_core::StepContext { step, num_steps: 200, losses: &[2.0] };
            host.step(&mut [h[0].as_mut_slice()], &[&g], &ctx);
            device.step(&mut [d[0].as_mut_slice()], &[&g], &ctx);
            let differing = h[0].iter().zip(&d[0]).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differing, 0, "{text}: after step {step}, {differing} of {n} values differ from the device's");
        }
    }
}
