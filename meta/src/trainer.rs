//! The outer loop: estimate, clip, Adam step, log a row; validate the unperturbed theta every
//! `validation.every` steps and keep the best checkpoint by that score (not by the noisy
//! meta-loss); checkpoint every `checkpoint_every` steps.
//!
//! **Output folder** (the layout is known here only):
//! ```text
//! OUT/state.json                     resumable state: step, theta, Adam, best, rows
//! OUT/meta_loss.csv                  one row per outer step
//! OUT/checkpoints/step-000025.safetensors (+ .yaml)   every checkpoint_every steps
//! OUT/best.safetensors (+ .yaml)     best validation score so far
//! OUT/final.safetensors (+ .yaml)    theta after the last outer step
//! ```
//!
//! **Crash safety.** Every file is written whole (temporary file, fsync, rename), and
//! `state.json` last, so a kill at any moment leaves a consistent state at the last checkpoint;
//! running the same command again resumes from it. Everything after that checkpoint is computed
//! again, bit for bit the same (every random draw is named by (seed, step, pair)), so the
//! resumed run ends with the same bytes as an uninterrupted one. A folder holding another
//! recipe's state is refused rather than mixed.

use crate::full_es::{self, FullEsConfig};
use crate::inner::{InnerTasks, RegistryTasks, MAX_LOSS};
use crate::outer::Adam;
use crate::recipe::{Estimator, Init, Resolved};
use crate::truncated_pes::{self, PesConfig, PesState};
use anyhow::{bail, Context, Result};
use beatmatch_learned::checkpoint::native::{self, MetaProvenance, Sidecar};
use beatmatch_learned::theta::Theta;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Version of `state.json`'s layout.
pub const STATE_VERSION: u32 = 1;

/// One outer step's row of `meta_loss.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Outer steps taken after this one (1-based).
    pub outer_step: u64,
    /// Mean normalised meta-loss the step's pairs saw.
    pub meta_loss: f64,
    /// Exponential moving average of the meta-loss (weight 0.9 on the past).
    pub smoothed: f64,
    /// Norm of the meta-gradient estimate before clipping.
    pub grad_norm: f32,
    /// Outer learning rate used.
    pub lr: f32,
    /// Inner steps taken by this outer step (all members).
    pub inner_steps: u64,
    /// Validation score after this step, when evaluated (lower is better).
    pub validation: Option<f64>,
}

/// Everything needed to resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The recipe file's SHA-256 (a folder belongs to one recipe).
    pub recipe_sha256: String,
    /// Outer steps taken.
    pub step: u64,
    /// Current theta (flat, [`Theta::flatten`] order).
    pub theta: Vec<f32>,
    /// Outer optimizer state.
    pub adam: Adam,
    /// Best validation so far: (outer step, score).
    pub best: Option<(u64, f64)>,
    /// Rows so far.
    pub rows: Vec<Row>,
}

/// What the caller is told after each outer step.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// The row just written.
    pub row: &'a Row,
    /// Outer steps in the recipe.
    pub total: u64,
    /// Step the run resumed from (0 for a fresh run).
    pub resumed_from: u64,
    /// Best validation (step, score) so far.
    pub best: Option<(u64, f64)>,
    /// Whether a checkpoint was written after this step.
    pub checkpointed: bool,
}

/// Paths of a meta-training output folder.
#[derive(Clone, Debug)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The folder `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }
    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    /// `meta_loss.csv`.
    pub fn csv(&self) -> PathBuf {
        self.dir.join("meta_loss.csv")
    }
    /// `meta_loss.png` (drawn by the front end).
    pub fn plot(&self) -> PathBuf {
        self.dir.join("meta_loss.png")
    }
    /// The checkpoint after `step` outer steps.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.dir.join("checkpoints").join(format!("step-{step:06}.safetensors"))
    }
    /// The best checkpoint by validation.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }
    /// The last theta.
    pub fn final_checkpoint(&self) -> PathBuf {
        self.dir.join("final.safetensors")
    }
    /// The log file (wall times; not part of the reproducible outputs).
    pub fn log(&self) -> PathBuf {
        self.dir.join("meta-train.log")
    }
}

/// The initial theta a recipe names.
pub fn initial_theta(r: &Resolved) -> Result<Theta> {
    match &r.recipe.init {
        Init::Seed(s) => r.recipe.architecture.reference_init(*s).context("no reference initialisation for this architecture"),
        Init::Checkpoint(p) => Ok(beatmatch_learned::checkpoint::load(p, Some(r.recipe.architecture))?.theta),
    }
}

/// Per entry of the flat theta ([`Theta::flatten`] order), whether the recipe's `frozen`
/// prefixes hold it fixed; a prefix that names no tensor is an error.
pub fn frozen_mask(r: &Resolved, template: &Theta) -> Result<Vec<bool>> {
    let matches = |name: &str, prefix: &str| name == prefix || name.starts_with(&format!("{prefix}/"));
    for prefix in &r.recipe.frozen {
        if !template.tensors.keys().any(|n| matches(n, prefix)) {
            let roots: std::collections::BTreeSet<&str> = template.tensors.keys().map(|n| n.split('/').next().unwrap_or(n)).collect();
            bail!(
                "{}: frozen `{prefix}` names no meta-parameter of {} (its tensors start with: {})",
                r.path.display(),
                r.recipe.architecture.as_str(),
                roots.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(template.tensors.iter().flat_map(|(name, t)| std::iter::repeat_n(r.recipe.frozen.iter().any(|p| matches(name, p)), t.data.len())).collect())
}

/// Training and validation tasks of a recipe, their data loaded.
pub fn registry_tasks(r: &Resolved, template: &Theta) -> Result<(RegistryTasks, RegistryTasks)> {
    let load = |tasks: &[beatmatch_tasks::Task]| -> Result<Vec<_>> {
        tasks.iter().map(|t| Ok((t.clone(), t.problem.dataset.load().with_context(|| format!("data for {}", t.id()))?))).collect()
    };
    Ok((
        RegistryTasks::new(r.recipe.architecture, r.recipe.hyperparameters.clone(), template.clone(), load(&r.train)?)?,
        RegistryTasks::new(r.recipe.architecture, r.recipe.hyperparameters.clone(), template.clone(), load(&r.validation)?)?,
    ))
}

/// Mean normalised final train loss of `theta` over the validation tasks at their budgets
/// (seeds 2⁴¹ + s, apart from the seeds reports score); a diverged run counts [`MAX_LOSS`].
pub fn validate<T: InnerTasks>(tasks: &T, budgets: &[u64], theta: &[f32], seeds: u64, jobs: usize) -> Result<f64> {
    let mut work: Vec<(usize, u64)> = (0..tasks.len()).flat_map(|t| (0..seeds).map(move |s| (t, s))).collect();
    let scores = crate::parallel_map(&mut work, jobs, |_, &mut (t, s)| -> Result<f32> {
        let mut run = tasks.start(t, (1 << 41) + s, budgets[t], &[theta.to_vec()])?;
        tasks.advance(&mut run, budgets[t])?;
        Ok(tasks.final_loss(&run)[0])
    });
    let scores: Vec<f32> = scores.into_iter().collect::<Result<_>>()?;
    Ok(if scores.is_empty() { MAX_LOSS as f64 } else { crate::mean(&scores) })
}

fn write_checkpoint(path: &Path, r: &Resolved, template: &Theta, theta: &[f32], step: u64, validation: Option<f64>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let sidecar = Sidecar {
        architecture: r.recipe.architecture,
        hyperparameters: r.recipe.hyperparameters.clone(),
        source: format!("meta-trained by recipe {} ({})", r.recipe.name, r.path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default()),
        meta_training: Some(MetaProvenance {
            recipe: r.recipe.name.clone(),
            recipe_sha256: r.sha256.clone(),
            outer_step: step,
            code_version: beatmatch_core::code_version(),
            validation,
        }),
    };
    native::write(path, &template.with_flat(theta)?, &sidecar)
}

/// `meta_loss.csv`'s bytes for `rows`.
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from("outer_step,meta_loss,smoothed,grad_norm,lr,inner_steps,validation\n");
    for r in rows {
        let v = r.validation.map(|v| v.to_string()).unwrap_or_default();
        s.push_str(&format!("{},{},{},{},{},{},{v}\n", r.outer_step, r.meta_loss, r.smoothed, r.grad_norm, r.lr, r.inner_steps));
    }
    s
}

/// Read the state in `out`, if any; an error if it belongs to another recipe or is unreadable.
pub fn read_state(out: &Path, r: &Resolved) -> Result<Option<State>> {
    let path = Layout::new(out).state();
    let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
    let state: State =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a meta-training state (remove the folder to start over)", path.display()))?;
    if state.version != STATE_VERSION {
        bail!("{}: state version {} (this build reads {STATE_VERSION}); use another --out", path.display(), state.version);
    }
    if state.recipe_sha256 != r.sha256 {
        bail!(
            "{} holds a run of another recipe (sha256 {}…, this one {}…): use another --out, or remove the folder to start over",
            out.display(),
            &state.recipe_sha256[..12.min(state.recipe_sha256.len())],
            &r.sha256[..12]
        );
    }
    Ok(Some(state))
}

/// What a run trains: the recipe, the theta template (names and shapes; its values are the
/// initial theta) and the training and validation tasks with the validation budgets.
pub struct Setup<'a, T: InnerTasks> {
    /// The recipe.
    pub recipe: &'a Resolved,
    /// Initial theta.
    pub template: &'a Theta,
    /// Tasks the estimator samples.
    pub train: &'a T,
    /// Held-back validation tasks.
    pub validation: &'a T,
    /// Steps of each validation task.
    pub validation_budgets: &'a [u64],
}

impl<T: InnerTasks> Clone for Setup<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: InnerTasks> Copy for Setup<'_, T> {}

/// The state to start from in `out`: the one saved there (a resumed run), or a fresh one.
pub fn open<T: InnerTasks>(setup: &Setup<'_, T>, out: &Path) -> Result<State> {
    let st = read_state(out, setup.recipe)?.unwrap_or_else(|| State {
        version: STATE_VERSION,
        recipe_sha256: setup.recipe.sha256.clone(),
        step: 0,
        theta: setup.template.flatten(),
        adam: Adam::new(setup.template.count()),
        best: None,
        rows: Vec::new(),
    });
    if st.theta.len() != setup.train.theta_len() {
        bail!("{}: theta has {} values, the architecture {}", Layout::new(out).state().display(), st.theta.len(), setup.train.theta_len());
    }
    Ok(st)
}

/// Run the recipe from `st` ([`open`]) into `out` on `jobs` threads, calling `on_step` after
/// every outer step; with `until`, stop once that many outer steps are done (a time-boxed
/// session: the next call resumes from the last checkpoint). Returns the state reached.
pub fn run<T: InnerTasks>(
    setup: &Setup<'_, T>,
    mut st: State,
    out: &Path,
    jobs: usize,
    until: Option<u64>,
    on_step: &mut dyn FnMut(&Report<'_>),
) -> Result<State> {
    let Setup { recipe: r, template, train, validation, validation_budgets } = *setup;
    let rc = &r.recipe;
    let layout = Layout::new(out);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let resumed_from = st.step;
    let sigma = rc.sigma as f32;
    let frozen = frozen_mask(r, template)?;
    let es = FullEsConfig {
        pairs: rc.pairs,
        sigma,
        unroll: (rc.unroll.min, rc.unroll.max),
        meta_loss: rc.meta_loss,
        recompute_batches: rc.recompute_batches,
        seed: rc.seed,
        frozen: frozen.clone(),
    };
    let pes_cfg =
        PesConfig { pairs: rc.pairs, sigma, episode: rc.unroll.min, truncation: rc.truncation.unwrap_or(rc.unroll.min), seed: rc.seed, frozen: frozen.clone() };
    let mut pes: PesState<'_, T> = PesState::fresh(&pes_cfg, st.theta.len());
    let mut checkpoint_due = false;
    let stop = until.unwrap_or(rc.outer_steps).min(rc.outer_steps);
    while st.step < stop {
        let t = st.step;
        let est = match rc.estimator {
            Estimator::FullEs => full_es::estimate(train, &st.theta, &es, t, jobs)?,
            Estimator::TruncatedPes => truncated_pes::estimate(train, &mut pes, &st.theta, &pes_cfg, t, jobs)?,
        };
        let mut grad = est.grad;
        // Frozen entries: no gradient (their perturbations were 0 already) and, whatever the
        // outer optimizer does, their values restored.
        let held: Vec<(usize, f32)> = frozen.iter().enumerate().filter(|(_, &f)| f).map(|(i, _)| (i, st.theta[i])).collect();
        for &(i, _) in &held {
            grad[i] = 0.0;
        }
        let grad_norm = Adam::clip(rc.outer.clip, &mut grad);
        let lr = Adam::lr(&rc.outer, t, rc.outer_steps);
        st.adam.step(&rc.outer, &mut st.theta, &grad, lr);
        for (i, v) in held {
            st.theta[i] = v;
        }
        if st.theta.iter().any(|x| !x.is_finite()) {
            bail!("outer step {}: theta became non-finite (meta-gradient norm {grad_norm}); lower outer.lr or clip harder", t + 1);
        }
        st.step = t + 1;
        let smoothed = st.rows.last().map_or(est.meta_loss, |p| 0.9 * p.smoothed + 0.1 * est.meta_loss);
        let last = st.step == rc.outer_steps;
        let validation_score = if st.step.is_multiple_of(rc.validation.every) || last {
            Some(validate(validation, validation_budgets, &st.theta, rc.validation.seeds, jobs)?)
        } else {
            None
        };
        if let Some(v) = validation_score {
            if st.best.is_none_or(|(_, b)| v < b) {
                st.best = Some((st.step, v));
                write_checkpoint(&layout.best(), r, template, &st.theta, st.step, Some(v))?;
            }
        }
        st.rows.push(Row {
            outer_step: st.step,
            meta_loss: est.meta_loss,
            smoothed,
            grad_norm,
            lr,
            inner_steps: est.inner_steps,
            validation: validation_score,
        });
        checkpoint_due |= st.step.is_multiple_of(rc.checkpoint_every) || last;
        // PES checkpoints between episodes only (nothing else in flight to save).
        let checkpointed = checkpoint_due && pes.between_episodes();
        if checkpointed {
            checkpoint_due = false;
            write_checkpoint(&layout.checkpoint(st.step), r, template, &st.theta, st.step, validation_score)?;
            if last {
                write_checkpoint(&layout.final_checkpoint(), r, template, &st.theta, st.step, validation_score)?;
            }
            beatmatch_core::store::write_atomic(&layout.csv(), csv(&st.rows).as_bytes())?;
            beatmatch_core::store::write_json_atomic(&layout.state(), &st)?;
        }
        on_step(&Report { row: st.rows.last().expect("pushed"), total: rc.outer_steps, resumed_from, best: st.best, checkpointed });
    }
    if resumed_from == rc.outer_steps && !layout.final_checkpoint().exists() {
        write_checkpoint(&layout.final_checkpoint(), r, template, &st.theta, st.step, st.rows.last().and_then(|r| r.validation))?;
    }
    Ok(st)
}
