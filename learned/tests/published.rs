//! The published checkpoints shipped in `learned/checkpoints/published/`: each loads to the same
//! meta-parameters (and bytes) as the fixture made from it, and a damaged copy is an error
//! naming the tensor or the byte offset before anything trains.

use beatmatch_core::ParamInfo;
use beatmatch_learned::checkpoint::{self, Format};
use beatmatch_learned::Architecture;
use beatmatch_testkit::{cases, fixtures_dir};
use std::path::{Path, PathBuf};

fn shipped(arch: Architecture) -> Option<PathBuf> {
    arch.published().map(|p| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p))
}

#[test]
fn shipped_weights_are_the_fixtures_thetas_byte_for_byte() {
    let mut checked = 0;
    for arch in Architecture::all() {
        let Some(path) = shipped(arch) else { continue };
        let ckpt = checkpoint::load(&path, None).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert_eq!(ckpt.arch, arch, "{}", path.display());
        let expected = if path.extension().is_some_and(|e| e == "pt") { Format::TorchPt } else { Format::FlaxTheta };
        assert_eq!(ckpt.format, expected);
        // Every fixture whose sidecar says it used this very file (same SHA-256) holds this theta.
        for case in cases(&fixtures_dir()) {
            if case.theta_sha256() != Some(ckpt.sha256.as_str()) {
                continue;
            }
            let fixture = checkpoint::load(&fixtures_dir().join(case.theta_file()), Some(arch)).unwrap();
            assert_eq!(fixture.theta, ckpt.theta, "{}: theta differs from the shipped {}", case.name, path.display());
            assert_eq!(std::fs::read(&fixture.path).unwrap(), std::fs::read(&path).unwrap(), "{}: bytes differ", case.name);
            checked += 1;
        }
    }
    if std::env::var_os("BEATMATCH_FIXTURES").is_none() {
        assert!(checked >= 4, "only {checked} fixtures made from a shipped checkpoint");
    }
}

#[test]
fn the_licence_and_provenance_ship_beside_the_weights() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/published");
    let licence = std::fs::read_to_string(dir.join("LICENSE.celo")).unwrap();
    assert!(licence.contains("MIT License"), "LICENSE.celo is not the MIT licence");
    let licence = std::fs::read_to_string(dir.join("LICENSE.pylo")).unwrap();
    assert!(licence.contains("BSD 3-Clause License"), "LICENSE.pylo is not the BSD-3-Clause licence");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for arch in Architecture::all() {
        let Some(path) = shipped(arch) else { continue };
        let sha = checkpoint::sha256(&std::fs::read(&path).unwrap());
        assert!(readme.contains(&sha), "published/README.md does not give {}'s SHA-256 {sha}", arch.as_str());
    }
}

#[test]
fn damaged_published_checkpoints_are_errors_naming_the_place() {
    let tmp = tempfile::tempdir().unwrap();
    let params = [ParamInfo::new("w", vec![3, 2])];
    for arch in Architecture::all() {
        let Some(path) = shipped(arch) else { continue };
        let bytes = std::fs::read(&path).unwrap();

        // Truncated: the byte offset where decoding stopped (msgpack), the length a zip
        // directory was looked for in (.pt).
        let cut = tmp.path().join(path.file_name().unwrap());
        let n = bytes.len() - 1000.min(bytes.len() / 2);
        std::fs::write(&cut, &bytes[..n]).unwrap();
        let e = format!("{:#}", checkpoint::load(&cut, None).unwrap_err());
        let place = if path.extension().is_some_and(|e| e == "pt") { format!("({n} bytes") } else { format!("decoding stopped at byte {n} of {n}") };
        assert!(e.contains(&place) && e.contains("truncated"), "{e}");

        // A missing tensor and a mis-shaped one: named, with the shapes.
        let ckpt = checkpoint::load(&path, None).unwrap();
        let (name, t) = ckpt.theta.tensors.iter().find(|(_, t)| t.shape.len() == 2).map(|(n, t)| (n.clone(), t.clone())).unwrap();
        let mut missing = ckpt.clone();
        missing.theta.tensors.remove(&name);
        let e = beatmatch_learned::build(&missing, &params).err().unwrap().to_string();
        assert!(e.contains(&format!("no tensor `{name}`")) && e.contains(&format!("{:?}", t.shape)), "{e}");
        let mut wrong = ckpt.clone();
        let bad = vec![t.shape[0], t.shape[1] + 1];
        wrong.theta.tensors.get_mut(&name).unwrap().shape = bad.clone();
        let e = beatmatch_learned::build(&wrong, &params).err().unwrap().to_string();
        assert!(e.contains(&format!("`{name}` has shape {bad:?}")) && e.contains(&format!("expects {:?}", t.shape)), "{e}");
    }
}
