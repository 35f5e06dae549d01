//! One run's measurement ledger: the steps it measures at, its train-loss curve, its held-out
//! evaluations at the problem's budgets, its loss at initialisation and how it ended — with
//! the one divergence rule. [`crate::inner::InnerRun`] keeps one, and a
//! [`crate::population::Population`] one per member, so a run is scored the same whichever
//! trained it.

use crate::data::finite;
use crate::models::EvalSums;
use crate::task::Problem;
use beatmatch_core::{CurvePoint, EvalPoint, RunStatus};

/// A run is declared diverged when its measured train loss exceeds this multiple of the loss at
/// initialisation (a "loss explosion"), or any loss is not finite.
pub const EXPLOSION_FACTOR: f32 = 10.0;

/// What one run has measured so far, and whether it has ended.
#[derive(Clone, Debug)]
pub struct Ledger {
    steps: u64,
    eval_at: Vec<u64>,
    measure_steps: Vec<u64>,
    next: usize,
    curve: Vec<CurvePoint>,
    evals: Vec<EvalPoint>,
    initial_loss: Option<f32>,
    ended: Option<RunStatus>,
}

impl Ledger {
    /// A fresh ledger for a run of `steps` steps of `problem`.
    pub fn new(problem: &Problem, steps: u64) -> Self {
        Self {
            steps,
            eval_at: problem.measurement.eval_at.clone(),
            measure_steps: problem.measure_steps(steps),
            next: 0,
            curve: Vec::new(),
            evals: Vec::new(),
            initial_loss: None,
            ended: None,
        }
    }

    /// Whether the run, still going, measures at `step`.
    pub fn due(&self, step: u64) -> bool {
        self.ended.is_none() && self.measure_steps.get(self.next) == Some(&step)
    }

    /// Whether a measurement at `step` also evaluates held out (`step` is a budget).
    pub fn evaluates_at(&self, step: u64) -> bool {
        self.eval_at.contains(&step)
    }

    /// Record the measurement due at `step`: the train loss (nats) and, at a budget, the
    /// held-out sums; the run diverges here when the loss is not finite or exceeds
    /// [`EXPLOSION_FACTOR`] × the first one.
    pub fn record(&mut self, step: u64, loss: f32, held_out: Option<&EvalSums>) {
        self.next += 1;
        self.curve.push(CurvePoint { step, train_loss: finite(loss) });
        if let Some(h) = held_out {
            self.evals.push(EvalPoint { step, eval_loss: finite(h.mean_loss()), eval_accuracy: h.accuracy() });
        }
        let initial = *self.initial_loss.get_or_insert(loss);
        if !loss.is_finite() {
            self.diverge(step, "non-finite train loss".into());
        } else if loss > EXPLOSION_FACTOR * initial {
            self.diverge(step, format!("train loss {loss:.3} > {EXPLOSION_FACTOR} × initial {initial:.3}"));
        }
    }

    /// End the run as diverged at `step`, for `reason`.
    pub fn diverge(&mut self, step: u64, reason: String) {
        self.ended = Some(RunStatus::Diverged { step, reason });
    }

    /// End the run as finished when `step` is its last and it has not ended otherwise.
    pub fn finish_at(&mut self, step: u64) {
        if self.ended.is_none() && step == self.steps {
            self.ended = Some(RunStatus::Finished);
        }
    }

    /// Steps the run trains.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// How the run ended, once it has.
    pub fn ended(&self) -> Option<&RunStatus> {
        self.ended.as_ref()
    }

    /// The train-loss curve so far.
    pub fn curve(&self) -> &[CurvePoint] {
        &self.curve
    }

    /// The run's result so far (status `Finished` unless it diverged).
    pub fn outcome(&self) -> crate::TrainOutcome {
        crate::TrainOutcome { status: self.ended.clone().unwrap_or(RunStatus::Finished), curve: self.curve.clone(), evals: self.evals.clone() }
    }

    /// [`Ledger::outcome`], consuming the ledger.
    pub fn into_outcome(self) -> crate::TrainOutcome {
        crate::TrainOutcome { status: self.ended.unwrap_or(RunStatus::Finished), curve: self.curve, evals: self.evals }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::DatasetName;
    use crate::models::{logreg::Logreg, ModelConfig};

    fn ledger(steps: u64) -> Ledger {
        Ledger::new(&Problem::new(ModelConfig::Logreg(Logreg {}), DatasetName::Mnist1d, 8, &[steps]), steps)
    }

    #[test]
    fn a_loss_ten_times_the_first_or_not_finite_diverges_there() {
        let mut l = ledger(40);
        assert!(l.due(0) && !l.due(1));
        l.record(0, 2.0, None);
        l.record(2, 19.9, None);
        assert!(l.ended().is_none());
        l.record(4, 20.5, None);
        assert_eq!(l.ended(), Some(&RunStatus::Diverged { step: 4, reason: "train loss 20.500 > 10 × initial 2.000".into() }));
        assert!(!l.due(6), "an ended run measures no more");
        let mut l = ledger(40);
        l.record(0, f32::NAN, None);
        assert_eq!(l.ended(), Some(&RunStatus::Diverged { step: 0, reason: "non-finite train loss".into() }));
        assert_eq!(l.curve()[0].train_loss, None);
    }

    #[test]
    fn a_run_finishes_at_its_last_step_and_evaluates_at_budgets() {
        let mut l = ledger(20);
        assert!(l.evaluates_at(20) && !l.evaluates_at(10));
        l.finish_at(19);
        assert!(l.ended().is_none());
        l.finish_at(20);
        assert_eq!(l.ended(), Some(&RunStatus::Finished));
        let sums = EvalSums { loss_sum: 3.0, items: 2, correct: Some(1) };
        let mut l = ledger(20);
        l.record(20, 1.0, Some(&sums));
        assert_eq!(l.outcome().evals, vec![EvalPoint { step: 20, eval_loss: Some(1.5), eval_accuracy: Some(0.5) }]);
    }
}
