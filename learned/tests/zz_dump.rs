use beatmatch_core::StepContext;
use beatmatch_learned::checkpoint;
use beatmatch_testkit::{cases, fixtures_dir};
#[test]
fn dump() {
    let dir = fixtures_dir();
    for case in cases(&dir) {
        let Ok(ckpt) = checkpoint::load(&dir.join(format!("{}.theta.msgpack", case.name)), None) else { continue };
        let infos = case.params();
        let mut opt = beatmatch_learned::build(&ckpt, &infos).unwrap();
        let mut p: Vec<Vec<f32>> = infos.iter().map(|i| case.tensor(&format!("params/init/{}", i.name)).to_vec()).collect();
        let mut h: u64 = 1469598103934665603;
        for t in 0..case.steps() {
            let g: Vec<&[f32]> = infos.iter().map(|i| case.tensor(&format!("grads/{t}/{}", i.name))).collect();
            let mut s: Vec<&mut [f32]> = p.iter_mut().map(|v| v.as_mut_slice()).collect();
            opt.step(&mut s, &g, &StepContext { step: t as u64, num_steps: case.num_steps(), losses: &[case.loss(t)] });
            for v in p.iter().flatten() {
                h = (h ^ v.to_bits() as u64).wrapping_mul(1099511628211);
            }
        }
        eprintln!("DUMP {} {:016x}", case.name, h);
    }
}
