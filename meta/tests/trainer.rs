//! The outer loop on real (tiny) registry tasks: the same bytes for any thread count, a
//! resumed run equal to an uninterrupted one, ± members that are mirror images.

mod common;

use beatmatch_meta::inner::InnerTasks;
use beatmatch_meta::recipe;
use beatmatch_meta::trainer::{self, Layout};
use std::path::Path;

fn run(text: &str, out: &Path, jobs: usize, stop_after: Option<u64>) -> trainer::State {
    let file = out.join("recipe.yaml");
    std::fs::create_dir_all(out).unwrap();
    std::fs::write(&file, text).unwrap();
    let r = recipe::load(&file, &common::registry()).unwrap();
    let template = trainer::initial_theta(&r).unwrap();
    let (train, val) = trainer::registry_tasks(&r, &template).unwrap();
    let budgets: Vec<u64> = r.validation.iter().map(|t| t.steps).collect();
    let setup = trainer::Setup { recipe: &r, template: &template, train: &train, validation: &val, validation_budgets: &budgets };
    let state = trainer::open(&setup, out).unwrap();
    trainer::run(&setup, state, out, jobs, stop_after, &mut |_| {}).unwrap()
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn same_recipe_and_seed_give_the_same_checkpoint_bytes_for_one_and_two_threads() {
    for estimator in ["full_es", "truncated_pes"] {
        let dir = tempfile::tempdir().unwrap();
        let text = common::recipe(estimator, 4);
        let (a, b) = (dir.path().join("j1"), dir.path().join("j2"));
        let sa = run(&text, &a, 1, None);
        let sb = run(&text, &b, 2, None);
        assert_eq!(sa, sb, "{estimator}");
        let (la, lb) = (Layout::new(&a), Layout::new(&b));
        for (pa, pb) in [(la.final_checkpoint(), lb.final_checkpoint()), (la.best(), lb.best()), (la.csv(), lb.csv()), (la.checkpoint(2), lb.checkpoint(2))] {
            assert_eq!(bytes(&pa), bytes(&pb), "{}", pa.display());
        }
        assert_eq!(bytes(&la.final_checkpoint().with_extension("yaml")), bytes(&lb.final_checkpoint().with_extension("yaml")));
        // Theta moved, and every step wrote its row.
        assert_eq!(sa.rows.len(), 4);
        assert_ne!(sa.theta, beatmatch_learned::small_fc::SMALL_FC.reference_init(3).unwrap().flatten());
        assert!(sa.rows.iter().all(|r| r.meta_loss.is_finite() && r.meta_loss > 0.0 && r.meta_loss <= 1.5));
    }
}

#[test]
fn meta_training_on_convnet_lstm_and_transformer_tasks_moves_theta_and_repeats_its_bytes() {
    // Trains on a ConvNet and a Transformer, validates on an LSTM: each family's population
    // through the meta-training loop.
    let text = common::recipe("full_es", 2)
        .replace(
            "ids: [logreg.mnist1d.b32.s40, mlp-w8-d1-relu.mnist1d.b32.s30]",
            "ids: [conv-c4-d1-max.digits.b16.s10, transformer-d8-l1-h2-t8.moby_dick.b4.s10]",
        )
        .replace("unroll: { min: 10, max: 30 }", "unroll: { min: 4, max: 8 }")
        .replace("validation: { tasks: [mlp-w8-d1-tanh.mnist1d.b32.s30], every: 2 }", "validation: { tasks: [lstm-h8-l1-t8.moby_dick.b4.s10], every: 2 }");
    assert!(text.contains("conv-c4") && text.contains("min: 4") && text.contains("validation: { tasks: [lstm"), "the recipe template changed: {text}");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("j1"), dir.path().join("j2"));
    let sa = run(&text, &a, 1, None);
    let sb = run(&text, &b, 2, None);
    assert_eq!(sa, sb);
    assert_eq!(bytes(&Layout::new(&a).final_checkpoint()), bytes(&Layout::new(&b).final_checkpoint()));
    assert_eq!(sa.rows.len(), 2);
    assert_ne!(sa.theta, beatmatch_learned::small_fc::SMALL_FC.reference_init(3).unwrap().flatten());
    assert!(sa.rows.iter().all(|r| r.meta_loss.is_finite() && r.meta_loss > 0.0 && r.meta_loss <= 1.5), "{:?}", sa.rows);
}

#[test]
fn a_run_stopped_at_a_checkpoint_and_resumed_ends_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let text = common::recipe("full_es", 4);
    let (whole, cut) = (dir.path().join("whole"), dir.path().join("cut"));
    run(&text, &whole, 2, None);
    let partial = run(&text, &cut, 2, Some(2));
    assert_eq!(partial.step, 2);
    let resumed = run(&text, &cut, 1, None);
    assert_eq!(resumed.step, 4);
    let (lw, lc) = (Layout::new(&whole), Layout::new(&cut));
    for (pw, pc) in [(lw.final_checkpoint(), lc.final_checkpoint()), (lw.best(), lc.best()), (lw.csv(), lc.csv()), (lw.state(), lc.state())] {
        assert_eq!(bytes(&pw), bytes(&pc), "{}", pw.display());
    }
}

#[test]
fn another_recipe_in_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run(&common::recipe("full_es", 2), dir.path(), 1, None);
    let other = common::recipe("full_es", 3);
    let file = dir.path().join("recipe.yaml");
    std::fs::write(&file, other).unwrap();
    let r = recipe::load(&file, &common::registry()).unwrap();
    let err = trainer::read_state(dir.path(), &r).unwrap_err().to_string();
    assert!(err.contains("another recipe"), "{err}");
}

#[test]
fn swapping_the_perturbation_sign_swaps_the_members_exactly() {
    let r = recipe::parse("r.yaml", &common::recipe("full_es", 1), &common::registry()).unwrap();
    let template = trainer::initial_theta(&r).unwrap();
    let (train, _) = trainer::registry_tasks(&r, &template).unwrap();
    let theta = template.flatten();
    let eps = beatmatch_meta::epsilon(1, 0, 0, theta.len(), 0.05);
    let (p, m) = (beatmatch_meta::perturbed(&theta, &eps, 1.0), beatmatch_meta::perturbed(&theta, &eps, -1.0));
    for task in 0..train.len() {
        let mut fwd = train.start(task, 11, 25, &[p.clone(), m.clone()]).unwrap();
        let mut rev = train.start(task, 11, 25, &[m.clone(), p.clone()]).unwrap();
        let (a, b) = (train.advance(&mut fwd, 25).unwrap(), train.advance(&mut rev, 25).unwrap());
        assert_eq!(a[0], b[1]);
        assert_eq!(a[1], b[0]);
        let delta = beatmatch_meta::mean(&a[0]) - beatmatch_meta::mean(&a[1]);
        let flipped = beatmatch_meta::mean(&b[0]) - beatmatch_meta::mean(&b[1]);
        assert_eq!(delta, -flipped);
        assert_ne!(delta, 0.0, "the perturbation changes the run");
        assert_eq!(a[0].len(), 25);
    }
}

/// Celo's two phases from its published weights: phase 1 (`train_phase: 1`) moves only the
/// per-parameter MLP, phase 2 only the scheduler; the checkpoints carry the phase.
#[test]
fn a_phase_moves_only_what_it_does_not_freeze() {
    let published = Path::new(env!("CARGO_MANIFEST_DIR")).join("../learned/checkpoints/published/celo/theta.state");
    let start = beatmatch_learned::checkpoint::load(&published, None).unwrap().theta;
    for (frozen, phase) in [(&["rnn_params", "lstm_init_state"][..], 1), (&["ff_mod_stack"][..], 2)] {
        let dir = tempfile::tempdir().unwrap();
        let text = common::recipe("full_es", 2)
            .replace("architecture: small_fc", "architecture: celo")
            .replace("init: { seed: 3 }", &format!("init: {{ checkpoint: {} }}", published.display()))
            + &format!("frozen: [{}]\nhyperparameters: {{ train_phase: {phase} }}\n", frozen.join(", "));
        run(&text, dir.path(), 2, None);
        let layout = Layout::new(dir.path());
        let end = beatmatch_learned::checkpoint::load(&layout.final_checkpoint(), None).unwrap();
        assert_eq!(end.hyperparameters.get("train_phase"), Some(&f64::from(phase)));
        for (name, t) in &start.tensors {
            let moved = end.theta.tensors[name] != *t;
            let held = frozen.iter().any(|p| name.starts_with(&format!("{p}/")));
            assert_eq!(moved, !held, "phase {phase}: {name} moved = {moved}, frozen = {held}");
        }
    }
}

#[test]
fn frozen_and_hyperparameters_are_checked_against_the_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("recipe.yaml");
    std::fs::write(&file, common::recipe("full_es", 2) + "hyperparameters: { train_phase: 1 }\n").unwrap();
    let e = format!("{:#}", recipe::load(&file, &common::registry()).unwrap_err());
    assert!(e.contains("recipe.yaml:") && e.contains("train_phase") && e.contains("not settable for small_fc"), "{e}");
    std::fs::write(&file, common::recipe("full_es", 2) + "frozen: [rnn_params]\n").unwrap();
    let r = recipe::load(&file, &common::registry()).unwrap();
    let e = trainer::frozen_mask(&r, &trainer::initial_theta(&r).unwrap()).unwrap_err().to_string();
    assert!(e.contains("frozen `rnn_params` names no meta-parameter of small_fc") && e.contains("nn"), "{e}");
}

/// Every shipped recipe parses against the built-in registry, its initial theta loads and its
/// frozen prefixes name tensors of its architecture.
#[test]
fn every_shipped_recipe_resolves() {
    let registry = beatmatch_tasks::registry::embedded().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../learned/recipes");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let r = recipe::load(&path, &registry).unwrap_or_else(|e| panic!("{e:#}"));
            let theta = trainer::initial_theta(&r).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            trainer::frozen_mask(&r, &theta).unwrap();
            n += 1;
        }
    }
    assert!(n >= 3, "{n} recipes");
}
