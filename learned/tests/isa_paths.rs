//! Every instruction-set path of the learned updates gives the same bits: AVX-512F, AVX2 + FMA
//! and the baseline (whichever this CPU has), forced in turn with `simd::limit`. One test in
//! its own binary, since the limit is process-wide.

use beatmatch_core::{simd, Optimizer, ParamInfo, StepContext};
use beatmatch_learned::checkpoint;
use beatmatch_testkit::fixtures_dir;

fn run(opt: &mut dyn Optimizer, infos: &[ParamInfo]) -> Vec<Vec<f32>> {
    let mut params: Vec<Vec<f32>> =
        infos.iter().enumerate().map(|(t, p)| (0..p.numel()).map(|i| (((i * 31 + t * 7) % 997) as f32 / 997.0 - 0.5) * 0.2).collect()).collect();
    for step in 0..3u64 {
        let grads: Vec<Vec<f32>> = infos
            .iter()
            .enumerate()
            .map(|(t, p)| (0..p.numel()).map(|i| (((i * 131 + t + step as usize * 17) % 1009) as f32 / 1009.0 - 0.5) * 0.01).collect())
            .collect();
        let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
        let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
        opt.step(&mut p, &g, &StepContext { step, num_steps: 100, losses: &[2.0 - 0.1 * step as f32] });
    }
    params
}

#[test]
fn every_instruction_set_gives_the_same_bits() {
    let dir = fixtures_dir();
    // A bias with a tail block, a rank-2 tensor over several pass-1 chunks whose rows do not
    // align with blocks, and a rank-3 tensor (the gathered statistics path).
    let infos = [
        ParamInfo { name: "b".into(), shape: vec![37] },
        ParamInfo { name: "w".into(), shape: vec![70, 101] },
        ParamInfo { name: "k".into(), shape: vec![3, 5, 7] },
    ];
    let mut isas = vec!["baseline"];
    let widest = simd::isa();
    if widest != "baseline" {
        isas.push("avx2");
    }
    if widest == "avx512f" {
        isas.push("avx512f");
    }
    for file in ["velo_case1.theta.msgpack", "adafac_case1.theta.msgpack", "mlp_lopt_case1.theta.msgpack"] {
        let ckpt = checkpoint::load(&dir.join(file), None).unwrap();
        let mut results = Vec::new();
        for isa in &isas {
            simd::limit(isa).unwrap();
            assert_eq!(simd::isa(), *isa);
            results.push(run(&mut *beatmatch_learned::build(&ckpt, &infos).unwrap(), &infos));
        }
        simd::limit("avx512f").unwrap();
        let start: Vec<Vec<f32>> =
            infos.iter().enumerate().map(|(t, p)| (0..p.numel()).map(|i| (((i * 31 + t * 7) % 997) as f32 / 997.0 - 0.5) * 0.2).collect()).collect();
        assert_ne!(results[0], start, "{file}: the update changed nothing");
        for (isa, r) in isas.iter().zip(&results).skip(1) {
            assert_eq!(r, &results[0], "{file}: {isa} differs from the baseline");
        }
    }
    assert!(simd::limit("sse9").is_err());
}
