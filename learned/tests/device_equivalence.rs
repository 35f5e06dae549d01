//! The learned rules whose device path is a fused kernel (`beatmatch_device::lopt`) compute on
//! candle's CPU device what their host rules compute, bit for bit: over tensors of every rank
//! and lengths with a partial last block, over several steps, with the published (trained)
//! meta-parameters. (Every learned device rule also passes the reference fixtures:
//! `conformance.rs`.)

use beatmatch_core::ParamInfo;
use beatmatch_learned::checkpoint;
use beatmatch_learned::mlp_lopt::MLP_LOPT;
use beatmatch_learned::small_fc::SMALL_FC;
use beatmatch_learned::{celo::CELO, velo::VELO};
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
    for (arch, path) in [
        (MLP_LOPT, root.join("checkpoints/mlp_lopt_es_mnist1d.safetensors")),
        (SMALL_FC, root.join("checkpoints/small_fc_es_mnist1d.safetensors")),
        (VELO, root.join("../testdata/fixtures/velo_case1.theta.msgpack")),
        (CELO, root.join("checkpoints/celo_phase2_mnist1d.safetensors")),
    ] {
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

/// The `velo` kernel (VeLO's and Celo's per-parameter step) against the host's accumulators and
/// `features::process_tensor` with VeLO's flavour and step, from the same state and network,
/// bit for bit over three steps: the optimizers' own runs can't show it (their per-tensor
/// statistics are summed in another order on the device, so their LSTM inputs may differ in a
/// last bit).
#[test]
fn the_velo_kernel_gives_the_host_features_bits() {
    use beatmatch_device::lopt::{self, LoptConsts, LoptKernel};
    use beatmatch_learned::accum::{Accumulators, Factored, Momentum, SecondMoment};
    use beatmatch_learned::features::{process_tensor, simd_dispatch, Flavor, Mlp, StepRule, TensorInputs};
    use candle_core::{Tensor, Var};

    let values = |len: usize, a: usize, m: usize, scale: f32| -> Vec<f32> { (0..len).map(|i| ((i * a % m) as f32 - (m / 2) as f32) * scale).collect() };
    let dims = [(30, 4), (4, 4), (4, 3)];
    let mlp = Mlp { layers: dims.iter().enumerate().map(|(l, &(i, o))| (values(i * o, 37 + l, 101, 0.05), values(o, 11, 7, 0.1), i, o)).collect() };
    // The kernel's copy: the third output, never read, cut.
    let net = beatmatch_learned::device_net::fused_net(LoptKernel::Velo, &mlp, None).unwrap();
    let (mom, rms, fac) = ([0.9f32, 0.99, 0.999], [0.999f32], [0.9f32, 0.99, 0.999]);
    let (param_scale, lr_mult) = (0.37f32, 1.7f32);
    let rule = StepRule::Velo { exp_mult: 0.001, step_mult: 0.001, param_scale, lr_mult };
    let k = LoptConsts::new(0.001, 0.001, &[&mom[..], &rms, &fac].concat()).with_velo_step(param_scale, lr_mult);
    for info in infos() {
        let n = info.numel();
        let params = [info.clone()];
        let (mut m, mut v, mut f, mut fac_g) = (Momentum::new(3, &params), SecondMoment::new(1, &params), Factored::new(3, &params), Vec::new());
        let start = values(n, 53, 97, 0.02);
        let mut host = start.clone();
        let w = Var::from_slice(&host, info.shape.as_slice(), &Device::Cpu).unwrap();
        let mut st = lopt::zeros(LoptKernel::Velo, &w).unwrap();
        for step in 0..3 {
            let g = values(n, 29 + step, 89, 0.03);
            let grads = [g.as_slice()];
            simd_dispatch(&mut Accumulators { mom: (&mut m, &mom), rms: (&mut v, &rms), fac: (&mut f, &fac), grads: &grads, fac_g: &mut fac_g });
            let t = TensorInputs { g: &g, p: &host, m: &m.m[0], rms: &v.v[0], fac_g: &fac_g[0], fac: &f.state[0] };
            let mut new = vec![0f32; n];
            process_tensor(Flavor::Velo, &t, &mlp, rule, &mut new);
            host = new;
            let gt = Tensor::from_slice(&g, info.shape.as_slice(), &Device::Cpu).unwrap();
            st = lopt::step(k, &w, &gt, &st, &net).unwrap();
            let device: Vec<f32> = w.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let differing = host.iter().zip(&device).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differing, 0, "velo kernel: {} has {differing} of {n} values differing from the host at step {step}", info.name);
        }
        assert!(n == 0 || host != start, "velo kernel: {} did not move", info.name);
    }
}

/// VeLO's per-tensor statistics as one fused reduction (`beatmatch_device::lopt::velo_stats`,
/// the LSTM's inputs) against the host's `velo::tensor_stats` and mean square, bit for bit, on
/// values large enough that the LSTM's clipped logarithms read them (the optimizers' runs above
/// reach them only through the mean square), over lengths with a partial last lane block, and
/// on a tensor whose sums cancel within one of the 16 lanes (so only the host's summation tree
/// gives its bits).
#[test]
fn velos_statistics_give_the_host_bits() {
    use beatmatch_device::lopt::{self, LoptKernel};
    use beatmatch_learned::features::sum_squares;
    use beatmatch_learned::velo::tensor_stats;
    use candle_core::Tensor;
    let check = |name: &str, p: &[f32], st: &[f32]| {
        let n = p.len();
        let got: Vec<f32> = lopt::velo_stats(&Tensor::from_slice(p, n, &Device::Cpu).unwrap(), &Tensor::from_slice(st, st.len(), &Device::Cpu).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        let mean_sq = (sum_squares(p) / n as f64) as f32;
        let s = tensor_stats(mean_sq, &st[..3 * n], &st[3 * n..4 * n]);
        let want = [mean_sq, s.mean_rms, s.var_m[0], s.var_m[1], s.var_m[2], s.var_rms[0], s.var_rms[1], s.var_rms[2]];
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}: {got:?} against {want:?}"
        );
    };
    for info in infos() {
        let n = info.numel();
        let p: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        // Momenta, then the second moment (values 3n..4n, ≥ 0), then the statistics.
        let st: Vec<f32> = (0..LoptKernel::Velo.state_len(&info.shape))
            .map(|i| ((i * 53 % 97) as f32 - 40.0) * 0.021)
            .enumerate()
            .map(|(i, x)| if (3 * n..4 * n).contains(&i) { x.abs() } else { x })
            .collect();
        check(&info.name, &p, &st);
    }
    // 40 values: the first momentum's ±1e30 both fall in lane 0 and cancel there, beside a 1 in
    // lane 1; added in element order instead, the 1 would vanish into 1e30.
    let n = 40;
    let p = vec![0.5f32; n];
    let mut st = vec![0.25f32; 7 * n];
    st[..n].fill(0.0);
    (st[0], st[1], st[16]) = (1e30, 1.0, -1e30);
    check("cancelling", &p, &st);
}
