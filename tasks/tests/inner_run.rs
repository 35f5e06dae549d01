//! The resumable inner run (candle's forward and backward pass) against itself run whole:
//! advancing in pieces, snapshotting and restoring, all bit for bit; and against the native
//! dense engine `train` uses for MLPs, to float rounding.

use beatmatch_core::{OptimizerSpec, RunStatus};
use beatmatch_tasks::inner::{InnerRun, RunSettings};
use beatmatch_tasks::models::mlp::MlpConfig;
use beatmatch_tasks::models::{Activation, ModelConfig};
use beatmatch_tasks::train::train;
use beatmatch_tasks::{Dataset, DatasetName, Problem};
use candle_core::Device;

fn problem() -> Problem {
    // Budgets 30 and 60: measurements every step, a held-out evaluation at step 30 and 60.
    Problem::new(ModelConfig::Mlp(MlpConfig { width: 16, depth: 1, activation: Activation::Tanh }), DatasetName::Mnist1d, 32, &[30, 60])
}

fn optimizer(problem: &Problem, spec: &str) -> Box<dyn beatmatch_core::Optimizer> {
    beatmatch_baselines::build(&OptimizerSpec::parse(spec).unwrap(), problem.build_model().params()).unwrap()
}

fn settings(steps: u64) -> RunSettings<'static> {
    static CPU: Device = Device::Cpu;
    RunSettings { device: &CPU, seed: 3, steps, horizon: steps }
}

/// The candle run from start to end in one piece.
fn whole(p: &Problem, d: &Dataset, spec: &str, steps: u64) -> beatmatch_tasks::TrainOutcome {
    InnerRun::new(p, d, optimizer(p, spec), settings(steps)).unwrap().finish().unwrap()
}

fn data() -> std::sync::Arc<Dataset> {
    DatasetName::Mnist1d.load().unwrap()
}

#[test]
fn advancing_in_pieces_equals_one_whole_run() {
    let (p, d) = (problem(), data());
    for spec in ["adam:lr=1e-2", "sgdm:lr=0.1", "nadamw:lr=1e-2,warmup_fraction=0.1,constant_fraction=0.5"] {
        let whole = whole(&p, &d, spec, 60);
        for (a, b) in [(0, 60), (1, 59), (17, 43), (30, 30), (59, 1)] {
            let mut run = InnerRun::new(&p, &d, optimizer(&p, spec), settings(60)).unwrap();
            assert_eq!(run.advance(a).unwrap(), a);
            assert_eq!(run.step(), a);
            assert_eq!(run.advance(b).unwrap(), b);
            assert!(run.ended().is_some(), "{spec}: the run ends when its last step is taken");
            let params = run.param_values().unwrap();
            assert_eq!(run.finish().unwrap(), whole, "{spec}: advance({a}) + advance({b}) differs from train(60)");
            let mut again = InnerRun::new(&p, &d, optimizer(&p, spec), settings(60)).unwrap();
            again.advance(60).unwrap();
            assert_eq!(again.param_values().unwrap(), params, "{spec}: final parameters differ");
        }
        assert_eq!(whole.curve.len(), 61);
        assert_eq!(whole.evals.iter().map(|e| e.step).collect::<Vec<_>>(), [30, 60]);
    }
}

#[test]
fn snapshot_restore_continue_equals_an_uninterrupted_run() {
    let (p, d) = (problem(), data());
    for spec in ["adam:lr=1e-2", "adafactor:lr=1e-2", "lion:lr=1e-3"] {
        let whole = whole(&p, &d, spec, 60);
        let mut run = InnerRun::new(&p, &d, optimizer(&p, spec), settings(60)).unwrap();
        run.advance(25).unwrap();
        let snap = run.snapshot().unwrap();
        // Wander off: more steps change parameters, optimizer state, batch position, curve.
        run.advance(20).unwrap();
        assert_eq!(run.step(), 45);
        run.restore(&snap).unwrap();
        assert_eq!(run.step(), 25);
        run.advance(35).unwrap();
        assert_eq!(run.finish().unwrap(), whole, "{spec}: restored run differs");
        // A fresh run of the same problem and seed, given the snapshot, continues the same way.
        let mut other = InnerRun::new(&p, &d, optimizer(&p, spec), settings(60)).unwrap();
        other.restore(&snap).unwrap();
        assert_eq!(other.finish().unwrap(), whole, "{spec}: snapshot restored into another run differs");
    }
}

#[test]
fn a_snapshot_of_another_optimizer_kind_is_refused() {
    let (p, d) = (problem(), data());
    let run = InnerRun::new(&p, &d, optimizer(&p, "adam:lr=1e-2"), settings(10)).unwrap();
    let snap = run.snapshot().unwrap();
    let mut other = InnerRun::new(&p, &d, optimizer(&p, "sgdm:lr=1e-2"), settings(10)).unwrap();
    let e = other.restore(&snap).unwrap_err().to_string();
    assert!(e.contains("snapshot does not hold `sgdm` state"), "{e}");
}

#[test]
fn a_diverging_run_stops_where_it_diverges_and_advance_reports_it() {
    let (p, d) = (problem(), data());
    let mut run = InnerRun::new(&p, &d, optimizer(&p, "sgdm:lr=1000"), settings(60)).unwrap();
    let taken = run.advance(60).unwrap();
    assert!(taken < 60, "lr 1000 should diverge early, took {taken} steps");
    let status = run.ended().cloned().unwrap();
    assert!(matches!(status, RunStatus::Diverged { step, .. } if step <= taken), "{status:?}");
    assert_eq!(run.advance(10).unwrap(), 0, "an ended run takes no more steps");
    assert_eq!(run.batch_losses().len(), 0);
    let out = run.finish().unwrap();
    assert_eq!(out.status, status);
    assert_eq!(out, whole(&p, &d, "sgdm:lr=1000", 60));
}

#[test]
fn batch_losses_are_the_pre_update_losses_of_the_steps_just_taken() {
    let (p, d) = (problem(), data());
    let mut run = InnerRun::new(&p, &d, optimizer(&p, "adam:lr=1e-2"), settings(60)).unwrap();
    run.advance(5).unwrap();
    let first: Vec<f32> = run.batch_losses().to_vec();
    assert_eq!(first.len(), 5);
    assert!(first.iter().all(|l| l.is_finite() && *l > 0.0));
    run.advance(3).unwrap();
    assert_eq!(run.batch_losses().len(), 3);
    // The same five steps in one piece of a fresh run give the same losses.
    let mut fresh = InnerRun::new(&p, &d, optimizer(&p, "adam:lr=1e-2"), settings(60)).unwrap();
    fresh.advance(5).unwrap();
    assert_eq!(fresh.batch_losses(), &first[..]);
}

#[test]
fn candle_and_the_native_dense_engine_agree_to_float_rounding() {
    let (p, d) = (problem(), data());
    for spec in ["adam:lr=1e-2", "sgdm:lr=0.1"] {
        let candle = whole(&p, &d, spec, 60);
        let native = train(&p, &d, optimizer(&p, spec), settings(60), &mut |_| {}).unwrap();
        assert_eq!(candle.status, native.status);
        assert_eq!(candle.curve.len(), native.curve.len());
        for (a, b) in candle.curve.iter().zip(&native.curve) {
            let (a, b) = (a.train_loss.unwrap(), b.train_loss.unwrap());
            assert!((a - b).abs() <= 1e-5 * a.abs(), "{spec}: candle {a} vs native {b}");
        }
        for (a, b) in candle.evals.iter().zip(&native.evals) {
            assert!((a.eval_loss.unwrap() - b.eval_loss.unwrap()).abs() <= 1e-5 * a.eval_loss.unwrap());
            assert_eq!(a.eval_accuracy, b.eval_accuracy);
        }
    }
}

/// Schedule-Free AdamW trains `y` and is evaluated at `x`: every measurement of the run — the
/// curve's train loss on the fixed items and the held-out loss and accuracy — equals an
/// evaluation by hand of the optimizer's `eval_params`, and differs from one at `y`.
#[test]
fn schedule_free_is_measured_at_its_evaluation_point() {
    use beatmatch_core::{EvalAt, Params};
    let (p, d) = (problem(), data());
    for (spec, device) in [("sfadamw:lr=1e-2,warmup_steps=5", false), ("sfadamw:lr=3e-3,b1=0.8,wd=1e-3", true)] {
        let opt = if device {
            beatmatch_baselines::build_on(&[OptimizerSpec::parse(spec).unwrap()], p.build_model().params(), &Device::Cpu).unwrap()
        } else {
            optimizer(&p, spec)
        };
        let mut run = InnerRun::new(&p, &d, opt, settings(30)).unwrap();
        run.advance(30).unwrap();
        let y = run.param_values().unwrap();
        let x: Vec<Vec<f32>> = if device {
            run.eval_tensors().unwrap().iter().map(|t| t.flatten_all().unwrap().to_vec1().unwrap()).collect()
        } else {
            let slices: Vec<&[f32]> = y.iter().map(Vec::as_slice).collect();
            match run.optimizer().eval_point(Params::Host(&slices)).unwrap() {
                Some(EvalAt::Host(x)) => x,
                _ => panic!("{spec}: Schedule-Free names its evaluation point on the host"),
            }
        };
        assert_ne!(x, y, "{spec}: x and y coincide, so the test would show nothing");
        let items = run.measurement_items().to_vec();
        let (at_x, at_y) = (run.train_loss_at(&x, &items).unwrap(), run.train_loss_at(&y, &items).unwrap());
        let (held_x, acc_x) = run.held_out_at(&x).unwrap();
        let out = run.into_outcome();
        let last = out.curve.last().unwrap();
        assert_eq!((last.step, last.train_loss), (30, Some(at_x)), "{spec}: the curve is not measured at x");
        assert_ne!(Some(at_y), last.train_loss, "{spec}: the loss at y equals the loss at x");
        let eval = out.evals.last().unwrap();
        assert_eq!((eval.step, eval.eval_loss, eval.eval_accuracy), (30, Some(held_x), acc_x), "{spec}: the held-out evaluation is not at x");
    }
}
