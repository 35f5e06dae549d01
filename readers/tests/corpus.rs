//! The committed fuzz inputs as regression tests: every seed (`fuzz/corpus/NAME/`) goes
//! through its reader without a panic, and each reader accepts at least one (a reader that
//! rejects everything would make its fuzzing vacuous); every input that once found a bug
//! (`fuzz/regressions/NAME/`: all invalid files, that panicked or were wrongly accepted) is
//! rejected with an error.

use beatmatch_readers::{feed, Target};
use std::path::{Path, PathBuf};

fn inputs(kind: &str, t: Target) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz").join(kind).join(t.name());
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect()).unwrap_or_default();
    files.sort();
    files
}

fn fed(t: Target, path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    match std::panic::catch_unwind(|| feed(t, &bytes)) {
        Ok(accepted) => accepted,
        Err(_) => panic!("{} panicked on {}", t.name(), path.display()),
    }
}

#[test]
fn every_seed_is_read_without_a_panic_and_each_reader_accepts_one() {
    for t in Target::ALL {
        let seeds = inputs("corpus", t);
        assert!(!seeds.is_empty(), "no seed corpus for {}", t.name());
        let accepted = seeds.iter().filter(|p| fed(t, p)).count();
        assert!(accepted > 0, "{} rejects all {} seeds", t.name(), seeds.len());
    }
}

#[test]
fn inputs_that_found_bugs_are_rejected_with_an_error() {
    let mut n = 0;
    for t in Target::ALL {
        for p in inputs("regressions", t) {
            assert!(!fed(t, &p), "{} accepts {}", t.name(), p.display());
            n += 1;
        }
    }
    assert!(n > 0, "the regression inputs are missing");
}

/// The learned-theta seeds (Celo- and Celo-Adam-shaped thetas with an LSTM 2 wide, so they fit
/// libFuzzer's input limit) each bind and step: the fuzzer starts from the Celo code paths.
#[test]
fn every_learned_theta_seed_binds_and_steps() {
    let seeds = inputs("corpus", Target::LearnedTheta);
    assert!(seeds.len() >= 2, "{} learned_theta seeds", seeds.len());
    for p in &seeds {
        assert!(fed(Target::LearnedTheta, p), "{} was rejected", p.display());
    }
}
