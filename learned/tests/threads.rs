//! A learned update split over threads gives the same bits as one thread.

use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext};
use beatmatch_learned::checkpoint;
use beatmatch_learned::small_fc::{SmallFcConfig, SmallFcNet};
use beatmatch_learned::velo::{VeloConfig, VeloNet};
use beatmatch_testkit::fixtures_dir;
use std::sync::Arc;

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
fn two_and_three_threads_give_the_bits_of_one() {
    let dir = fixtures_dir();
    // A tensor above the threading threshold with a length that is not a multiple of the
    // block, and a small one below it.
    let infos = [ParamInfo { name: "b".into(), shape: vec![256] }, ParamInfo { name: "w".into(), shape: vec![301, 257] }];
    let small = checkpoint::load(&dir.join("adafac_case1.theta.msgpack"), None).unwrap();
    let velo = checkpoint::load(&dir.join("velo_case1.theta.msgpack"), None).unwrap();
    let sf = |threads| SmallFcNet::bind(&small.theta, SmallFcConfig::default()).unwrap().with_threads(threads);
    let vn = |threads| VeloNet::bind(&velo.theta, VeloConfig::default()).unwrap().with_threads(threads);
    let one = run(&mut Bound::new(Arc::new(sf(1)), &infos), &infos);
    for threads in [2, 3] {
        assert_eq!(run(&mut Bound::new(Arc::new(sf(threads)), &infos), &infos), one, "small_fc on {threads} threads");
    }
    let one = run(&mut Bound::new(Arc::new(vn(1)), &infos), &infos);
    for threads in [2, 3] {
        assert_eq!(run(&mut Bound::new(Arc::new(vn(threads)), &infos), &infos), one, "VeLO on {threads} threads");
    }
}
