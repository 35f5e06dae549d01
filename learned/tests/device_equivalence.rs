//! The learned rules whose device path is a fused kernel (`beatmatch_device::lopt`) compute on
//! candle's CPU device what their host rules compute, bit for bit: over tensors of every rank
//! and lengths with a partial last block, over several steps, with the published (trained)
//! meta-parameters. (Every learned device rule also passes the reference fixtures:
//! `conformance.rs`.)

use beatmatch_core::ParamInfo;
use beatmatch_learned::checkpoint;
use beatmatch_learned::mlp_lopt::MLP_LOPT;
use beatmatch_learned::small_fc::SMALL_FC;
use beatmatch_testkit::synthetic_trajectory;
use candle_core::Device;

fn infos() -> Vec<ParamInfo> {
    // Factored tensors with the largest axis last, first and in the middle (small_fc).
    [
        ("a/w", vec![130, 140]),
        ("b/b", vec![141]),
        ("c/k", vec![3, 17, 13]),
        ("d/s", vec![]),
        ("e/w", vec![5]),
        ("f/w", vec![70, 9]),
        ("g/k", vec![2, 3, 5, 4]),
        ("h/k", vec![4, 6, 3]),
    ]
    .into_iter()
    .map(|(n, s)| ParamInfo::new(n, s))
    .collect()
}

#[test]
fn fused_learned_steps_on_the_cpu_give_the_host_bits() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let infos = infos();
    for (arch, path) in
        [(MLP_LOPT, root.join("checkpoints/mlp_lopt_es_mnist1d.safetensors")), (SMALL_FC, root.join("checkpoints/small_fc_es_mnist1d.safetensors"))]
    {
        let ckpt = checkpoint::load(&path, Some(arch)).unwrap();
        let host = synthetic_trajectory(beatmatch_learned::build(&ckpt, &infos).unwrap().as_mut(), &infos);
        let mut on_device = beatmatch_learned::build_on(arch, &ckpt.theta, &ckpt.hyperparameters, 1, &infos, &Device::Cpu).unwrap();
        let device = synthetic_trajectory(on_device.as_mut(), &infos);
        let start = beatmatch_testkit::synthetic_params(&infos);
        for (((h, d), s), info) in host.iter().zip(&device).zip(&start).zip(&infos) {
            assert!(h != s, "{}: {} did not move", arch.as_str(), info.name);
            let differing = h.iter().zip(d).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differing, 0, "{}: {} has {differing} of {} values differing from the host", arch.as_str(), info.name, h.len());
        }
    }
}
