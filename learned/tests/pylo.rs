//! PyLO's checkpoints: files this test writes in PyLO's names and layouts from the fixture thetas
//! load back to the same theta and the same trajectory (the published files cannot be fetched
//! here); a μLO-shaped file (32 hidden units, no decays or step scale in it) runs with PyLO's μLO
//! settings, exactly as the same theta in beatmatch's native format with those settings.

use beatmatch_learned::checkpoint::{self, native, pylo, Format};
use beatmatch_learned::theta::{Tensor, Theta};
use beatmatch_learned::{small_fc::SMALL_FC, velo::VELO, Architecture};
use beatmatch_testkit::{cases, fixtures_dir, run, Case};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

fn trajectory(case: &Case, ckpt: &checkpoint::Checkpoint) -> Vec<Vec<Vec<f32>>> {
    let mut opt = beatmatch_learned::build(ckpt, &case.params()).unwrap();
    let mut out = Vec::new();
    run(case, opt.as_mut(), |_, _, p: &[Vec<f32>]| out.push(p.to_vec()));
    out
}

#[test]
fn pylo_files_written_from_the_fixture_thetas_give_the_fixture_trajectories() {
    let dir = fixtures_dir();
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for case in cases(&dir) {
        // The cases of the architectures PyLO publishes (not MLP-LOpt).
        let Some(arch) = case.meta["kind"].as_str().and_then(Architecture::for_reference_kind).filter(|a| [VELO, SMALL_FC].contains(a)) else { continue };
        let reference = checkpoint::load(&dir.join(case.theta_file()), Some(arch)).unwrap();
        let files = pylo::to_pylo(&reference.theta, reference.arch).unwrap();
        let path = match reference.arch {
            a if a == VELO => {
                let d = tmp.path().join(format!("{}_pylo", case.name));
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("VeLO_RNN.safetensors"), checkpoint::safetensors_bytes(&files[0], None).unwrap()).unwrap();
                std::fs::write(d.join("VeLO_MLP.safetensors"), checkpoint::safetensors_bytes(&files[1], None).unwrap()).unwrap();
                assert_eq!(files[1]["input_weights_"].shape[1..], [4, 30], "torch layout [members, out, in]");
                d
            }
            _ => {
                // learned_optimization's small_fc scales (PyLO's μLO defaults differ), stated in
                // the file's metadata.
                let meta = HashMap::from([("step_mult".to_string(), "0.001".to_string()), ("exp_mult".to_string(), "0.001".to_string())]);
                let p = tmp.path().join(format!("{}.safetensors", case.name));
                std::fs::write(&p, checkpoint::safetensors_bytes(&files[0], Some(meta)).unwrap()).unwrap();
                assert_eq!(files[0]["network.input.weight"].shape[1], 39, "torch layout [out, in]");
                p
            }
        };
        let loaded = checkpoint::load(&path, None).unwrap();
        assert_eq!(loaded.format, Format::Pylo, "{}", case.name);
        assert_eq!(loaded.arch, reference.arch, "{}", case.name);
        assert_eq!(loaded.theta, reference.theta, "{}: theta differs after the PyLO round trip", case.name);
        assert!(loaded.hyperparameters.is_empty(), "{}: {:?}", case.name, loaded.hyperparameters);
        assert_eq!(trajectory(&case, &loaded), trajectory(&case, &reference), "{}", case.name);
        seen += 1;
    }
    assert!(seen >= 2 || std::env::var_os("BEATMATCH_FIXTURES").is_some(), "no VeLO / small_fc fixtures");
}

#[test]
fn a_mulo_file_runs_as_small_fc_with_32_hidden_units_and_pylos_settings() {
    let dir = fixtures_dir();
    let case = cases(&dir).into_iter().find(|c| c.name.starts_with("adafac")).expect("a small_fc fixture case");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut rand_tensor = |shape: Vec<usize>, scale: f32| {
        let n = shape.iter().product();
        Tensor { shape, data: (0..n).map(|_| rng.random_range(-scale..scale)).collect() }
    };
    // μLO's MetaMLP in PyTorch layout, nothing else in the file.
    let mut file = std::collections::BTreeMap::new();
    for (name, out, inp) in [("network.input", 32, 39), ("network.linear_0", 32, 32), ("network.output", 2, 32)] {
        file.insert(format!("{name}.weight"), rand_tensor(vec![out, inp], 0.3));
        file.insert(format!("{name}.bias"), rand_tensor(vec![out], 0.1));
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("mulo.safetensors");
    std::fs::write(&p, checkpoint::safetensors_bytes(&file, None).unwrap()).unwrap();
    let mulo = checkpoint::load(&p, None).unwrap();
    assert_eq!((mulo.arch, mulo.format), (SMALL_FC, Format::Pylo));
    assert_eq!(mulo.theta.tensors["nn/~/w1"].shape, vec![32, 32]);
    assert_eq!(mulo.hyperparameters.get("step_mult"), Some(&pylo::MULO_STEP_MULT));
    // The same theta, written natively with PyLO's decays and step scale spelled out.
    let mut theta = Theta::default();
    for (i, name) in ["network.input", "network.linear_0", "network.output"].iter().enumerate() {
        let w = &file[&format!("{name}.weight")];
        let (o, n) = (w.shape[0], w.shape[1]);
        let data = (0..n * o).map(|j| w.data[(j % o) * n + j / o]).collect();
        theta.tensors.insert(format!("nn/~/w{i}"), Tensor { shape: vec![n, o], data });
        theta.tensors.insert(format!("nn/~/b{i}"), file[&format!("{name}.bias")].clone());
    }
    let (m, r, a) = pylo::MULO_DECAYS;
    for (name, v) in [("momentum_decays", &m[..]), ("rms_decays", &r[..]), ("adafactor_decays", &a[..])] {
        theta.tensors.insert(name.into(), Tensor { shape: vec![v.len()], data: v.to_vec() });
    }
    let native_path = tmp.path().join("mulo_native.safetensors");
    let side = native::Sidecar {
        architecture: SMALL_FC,
        hyperparameters: [("step_mult".to_string(), pylo::MULO_STEP_MULT)].into(),
        source: "test".into(),
        meta_training: None,
    };
    native::write(&native_path, &theta, &side).unwrap();
    let native_ckpt = checkpoint::load(&native_path, None).unwrap();
    assert_eq!(native_ckpt.theta, mulo.theta);
    let (a, b) = (trajectory(&case, &mulo), trajectory(&case, &native_ckpt));
    assert_eq!(a, b);
    // The step scale matters: the default small_fc scale gives another trajectory.
    let mut default_scale = native_ckpt.clone();
    default_scale.hyperparameters.clear();
    assert_ne!(trajectory(&case, &default_scale), a);
}

#[test]
fn an_unknown_safetensors_file_without_a_sidecar_is_refused_with_what_was_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("x.safetensors");
    let file = std::collections::BTreeMap::from([("foo".to_string(), Tensor { shape: vec![1], data: vec![1.0] })]);
    std::fs::write(&p, checkpoint::safetensors_bytes(&file, None).unwrap()).unwrap();
    let e = checkpoint::load(&p, None).unwrap_err().to_string();
    assert!(e.contains("not a PyLO checkpoint") && e.contains("sidecar"), "{e}");
}
