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
use beatmatch_core::{content_hash, Arm, ArmRole, Cell, RunKey, Study, StudyTask, SPEEDUP_CAP, STUDY_SCHEMA_VERSION};
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
    /// The candidate's arm first ([`candidate_arm`]), then the baselines' ([`baseline_arm`]).
    pub arms: &'a [Arm],
    /// Device name, e.g. `cpu`.
    pub device: String,
    /// Tasks skipped before planning, with reasons.
    pub skipped: Vec<(String, String)>,
}

/// Whether `--candidate TEXT` names a tuning protocol (an embedded one's name or a YAML file)
/// rather than one configuration.
pub fn is_protocol(text: &str) -> bool {
    text.ends_with(".yaml") || text.ends_with(".yml") || Protocol::embedded_names().iter().any(|n| n == text)
}

/// The arm of the optimizer under test, from `--candidate TEXT`: one configuration (a spec,
/// `ARCH:PATH`, or a published `ARCH`), or a protocol's configurations tuned as a baseline's
/// are, its legend counting its trials (`Celo2 LR (5 trials)`). `seeds` overrides the
/// protocol's; a single configuration takes `default_seeds`.
pub fn candidate_arm(factory: &mut OptimizerFactory, text: &str, seeds: Option<u32>, default_seeds: u32) -> Result<Arm> {
    let (legend, configs, seeds) = if is_protocol(text) {
        let p = Protocol::resolve(text)?;
        (p.legend(), factory.bind_protocol(&p)?, seeds.unwrap_or(p.seeds))
    } else {
        let spec = factory.parse_candidate(text)?;
        (factory.legend(&spec), vec![spec], seeds.unwrap_or(default_seeds))
    };
    let provenance = factory.provenance(&configs[0]);
    Ok(Arm { name: "candidate".into(), legend, role: ArmRole::Candidate, provenance, configs, seeds, speedup_reference: false })
}

/// A baseline's arm: protocol `p`'s configurations (seeds as `p` says), the speedup reference
/// when it is Adam over a learning-rate grid alone.
pub fn baseline_arm(factory: &mut OptimizerFactory, p: &Protocol) -> Result<Arm> {
    Ok(Arm {
        name: p.name.clone(),
        legend: p.legend(),
        role: ArmRole::Baseline,
        configs: factory.bind_protocol(p)?,
        seeds: p.seeds,
        speedup_reference: p.optimizer == beatmatch_baselines::adam::NAME && p.grid.keys().eq(["lr"]) && p.fixed.is_empty(),
        provenance: None,
    })
}

/// The manifest and the unique runs it needs, largest first.
pub fn plan(req: &PlanRequest<'_>) -> Result<(Study, Vec<Job>)> {
    let code_version = beatmatch_core::code_version();
    let arms = req.arms.to_vec();
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
        let mut f = OptimizerFactory::default();
        let arms = [
            candidate_arm(&mut f, "adam:lr=1e-3", None, 2).unwrap(),
            baseline_arm(&mut f, &Protocol::embedded("adam-lr15").unwrap()).unwrap(),
            baseline_arm(&mut f, &Protocol::embedded("sgdm-lr15").unwrap()).unwrap(),
        ];
        let req = PlanRequest { tasks: &tasks, selection: "test".into(), arms: &arms, device: "cpu".into(), skipped: vec![] };
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
