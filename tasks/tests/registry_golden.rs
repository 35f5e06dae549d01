//! What every problem of the embedded registry is: its content hash, parameter count,
//! estimated device memory and whether it trains as a population. A record's file name is its
//! content hash, so a change that moved a hash would orphan every cached run; the golden file
//! `tests/registry_golden.txt` was written by the code before the model families became
//! descriptors (`BEATMATCH_UPDATE_GOLDEN=1 cargo test --test registry_golden` rewrites it).

use beatmatch_tasks::memory::estimate;
use beatmatch_tasks::population::Population;
use beatmatch_tasks::registry;
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn every_problem_keeps_its_hash_size_memory_and_engine() {
    let tasks = registry::embedded().unwrap();
    let lines: BTreeSet<String> = tasks
        .iter()
        .map(|t| {
            let p = &t.problem;
            let population = Population::<dyn beatmatch_core::Optimizer>::supports(p);
            format!("{} {} params={} memory={} population={population}", p.id(), p.hash(), t.params(), estimate(p, 2.0).total())
        })
        .collect();
    let text = lines.into_iter().collect::<Vec<_>>().join("\n") + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/registry_golden.txt");
    if std::env::var_os("BEATMATCH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (want, got) in golden.lines().zip(text.lines()) {
        assert_eq!(got, want, "a problem changed (hash, size, memory estimate or engine)");
    }
    assert_eq!(golden.lines().count(), text.lines().count(), "problems added or removed");
}
