//! Planning: from selected tasks, a candidate and baseline protocols to the study manifest and
//! the deduplicated list of runs to execute.
//!
//! Horizon-free optimizers (constant learning rate) are run once per (problem, config, seed) to
//! the longest budget of the problem and read off at shorter budgets; the speedup reference arm
//! (LR-tuned Adam) runs to 4× that so speedups above 1 are measurable. Horizon-dependent
//! optimizers (schedules, learned optimizers) get one run per budget with that budget as horizon.

use crate::factory::OptimizerFactory;
use anyhow::Result;
use beatmatch_baselines::Protocol;
use beatmatch_core::{content_hash, Arm, ArmRole, Cell, OptimizerSpec, RunKey, Study, StudyTask, SPEEDUP_CAP, STUDY_SCHEMA_VERSION};
use beatmatch_tasks::{Problem, Task};
use std::collections::{BTreeMap, HashMap};

/// One run to execute.
#[derive(Clone, Debug)]
pub struct Job {
    /// Identity of the run; its hash names the record.
    pub key: RunKey,
    /// The problem to train.
    pub problem: Problem,
    /// Trainable parameters.
    pub params: u64,
}

impl Job {
    /// The run group this job belongs to: runs of one problem from one seed share their
    /// initialisation and every mini-batch, so a runner may train them together.
    pub fn group_key(&self) -> (&str, u64) {
        (&self.key.problem_hash, self.key.seed)
    }
}

/// What was asked for.
pub struct PlanRequest<'a> {
    /// Tasks to cover (already filtered for available data).
    pub tasks: &'a [Task],
    /// Label of the task selection, e.g. `quick`.
    pub selection: String,
    /// The optimizer under test.
    pub candidate: OptimizerSpec,
    /// Seeds for the candidate.
    pub candidate_seeds: u32,
    /// Baseline protocols (seeds already overridden if asked).
    pub baselines: &'a [Protocol],
    /// Device name, e.g. `cpu`.
    pub device: String,
    /// Tasks skipped before planning, with reasons.
    pub skipped: Vec<(String, String)>,
}

/// The manifest and the unique runs it needs, largest first.
pub fn plan(req: &PlanRequest<'_>) -> Result<(Study, Vec<Job>)> {
    let code_version = beatmatch_core::code_version();
    let mut arms = vec![Arm {
        name: "candidate".into(),
        legend: candidate_legend(&req.candidate),
        role: ArmRole::Candidate,
        configs: vec![req.candidate.clone()],
        seeds: req.candidate_seeds,
        speedup_reference: false,
        provenance: OptimizerFactory::provenance(&req.candidate),
    }];
    for p in req.baselines {
        arms.push(Arm {
            name: p.name.clone(),
            legend: p.legend(),
            role: ArmRole::Baseline,
            configs: p.configs(),
            seeds: p.seeds,
            speedup_reference: p.optimizer == beatmatch_baselines::adam::NAME && p.grid.keys().eq(["lr"]) && p.fixed.is_empty(),
            provenance: None,
        });
    }
    // Problems and their longest budgets.
    let mut longest: HashMap<String, u64> = HashMap::new();
    for t in req.tasks {
        let e = longest.entry(t.problem.hash()).or_default();
        *e = (*e).max(t.steps);
    }
    let mut params_of: HashMap<String, u64> = HashMap::new();
    let mut tasks = Vec::with_capacity(req.tasks.len());
    for t in req.tasks {
        let ph = t.problem.hash();
        let params = *params_of.entry(ph.clone()).or_insert_with(|| t.params());
        tasks.push(StudyTask { id: t.id(), problem_id: t.problem.id(), problem_hash: ph, params, steps: t.steps, split: t.split });
    }

    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    let mut cells = Vec::new();
    for (ti, t) in req.tasks.iter().enumerate() {
        let st = &tasks[ti];
        for (ai, arm) in arms.iter().enumerate() {
            for (ci, spec) in arm.configs.iter().enumerate() {
                let (steps, horizon) = if OptimizerFactory::is_horizon_free(spec) {
                    let reach = longest[&st.problem_hash] * if arm.speedup_reference { SPEEDUP_CAP } else { 1 };
                    (reach, reach)
                } else {
                    (t.steps, t.steps)
                };
                for seed in 0..u64::from(arm.seeds) {
                    let key = RunKey {
                        problem_id: st.problem_id.clone(),
                        problem_hash: st.problem_hash.clone(),
                        optimizer: spec.clone(),
                        optimizer_hash: content_hash(spec),
                        seed,
                        steps,
                        horizon,
                        code_version: code_version.clone(),
                        device: req.device.clone(),
                    };
                    let hash = key.hash();
                    jobs.entry(hash.clone()).or_insert_with(|| Job { key, problem: t.problem.clone(), params: st.params });
                    cells.push(Cell { task: ti, arm: ai, config: ci, seed, record: hash });
                }
            }
        }
    }
    let study = Study {
        schema_version: STUDY_SCHEMA_VERSION,
        selection: req.selection.clone(),
        code_version,
        device: req.device.clone(),
        speedup_cap: SPEEDUP_CAP,
        tasks,
        arms,
        cells,
        skipped: req.skipped.clone(),
    };
    let mut jobs: Vec<Job> = jobs.into_values().collect();
    // Longest first, so the last runs to finish on N workers are short ones.
    jobs.sort_by(|a, b| cost(b).total_cmp(&cost(a)).then_with(|| a.key.hash().cmp(&b.key.hash())));
    Ok((study, jobs))
}

/// Relative cost estimate of a job: steps × (parameters × batch + fixed per-step overhead).
pub fn cost(job: &Job) -> f64 {
    job.key.steps as f64 * (job.params as f64 * job.problem.batch_size as f64 + 2.0e6)
}

fn candidate_legend(spec: &OptimizerSpec) -> String {
    OptimizerFactory::legend(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_lr_runs_are_shared_across_budgets_and_reference_runs_past_them() {
        let tasks = beatmatch_tasks::registry::parse(
            "t.yaml",
            "families:\n  - tier: smoke\n    logreg: {}\n    datasets: [mnist1d]\n    batch_sizes: [32]\n    steps: [10, 20]\n",
        )
        .unwrap();
        let adam = Protocol::embedded("adam-lr15").unwrap();
        let sgd = Protocol::embedded("sgdm-lr15").unwrap();
        let req = PlanRequest {
            tasks: &tasks,
            selection: "test".into(),
            candidate: OptimizerSpec::parse("adam:lr=1e-3").unwrap(),
            candidate_seeds: 2,
            baselines: &[adam, sgd],
            device: "cpu".into(),
            skipped: vec![],
        };
        let (study, jobs) = plan(&req).unwrap();
        assert_eq!(study.tasks.len(), 2);
        assert_eq!(study.cells.len(), 2 * (2 + 15 * 2 + 15 * 2));
        // Candidate adam lr=1e-3 and the grid's lr=1e-3 differ only by run length (20 vs 80).
        assert_eq!(jobs.len(), 2 + 15 * 2 + 15 * 2);
        assert!(study.arms[1].speedup_reference && !study.arms[2].speedup_reference);
        assert!(jobs.iter().filter(|j| j.key.optimizer.kind == beatmatch_baselines::sgd::NAME).all(|j| j.key.steps == 20));
        assert!(
            jobs.iter().filter(|j| j.key.optimizer.kind == beatmatch_baselines::adam::NAME && j.key.optimizer.hparams.len() == 1 && j.key.steps == 80).count()
                == 30
        );
    }
}
