//! The optimizer factory: the one place that turns an optimizer spec into an optimizer,
//! hand-designed or learned. Every front end (`run`, `validate`, `plan`'s calibration, meta
//! evaluation) builds through it.
//!
//! Learned optimizers are named on the command line as `ARCH:PATH` (an architecture of
//! `beatmatch_learned::ARCHS`, e.g. `velo:PATH`); their spec carries the checkpoint's SHA-256
//! and the file is loaded once. Hand-designed ones are specs of a kind of
//! `beatmatch_baselines::KINDS`. The [`Engine`] decides whether each is built as its host or
//! its device rule.

use crate::engine::Engine;
use crate::foreign::optimizer::{Foreign, Launch};
use crate::foreign::source::{is_foreign, Source};
use crate::foreign::worker::Timeouts;
use anyhow::{bail, Context, Result};
use beatmatch_baselines::Protocol;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo};
use beatmatch_learned::checkpoint::{self, Checkpoint};
use beatmatch_learned::Architecture;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What tells foreign configurations apart: the source's key and the hyperparameters.
fn foreign_key(spec: &OptimizerSpec) -> String {
    format!("{}{:?}", spec.checkpoint.as_deref().unwrap_or_default(), spec.hparams)
}

/// The default candidate of `suite run` and `suite ci`: Celo with its authors' published
/// weights (`learned/checkpoints/published/celo/`), meta-trained on none of beatmatch's tasks.
pub const DEFAULT_CANDIDATE: &str = "celo";

/// `path` as given when it exists, else relative to the workspace the binary was built from (so
/// the shipped checkpoints are found from any working directory).
pub fn resolve_shipped(path: &Path) -> std::path::PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = root.join(path);
    if shipped.exists() {
        shipped
    } else {
        path.to_path_buf()
    }
}

/// The published learned optimizer called `name` (an architecture whose authors' checkpoint
/// ships with beatmatch) and where that checkpoint is.
fn published(name: &str) -> Option<(Architecture, std::path::PathBuf)> {
    let arch = Architecture::parse(name)?;
    Some((arch, resolve_shipped(Path::new(arch.published()?))))
}

/// The names of the published learned optimizers, comma-separated, for messages and help.
pub fn published_names() -> String {
    Architecture::all().into_iter().filter(|a| a.published().is_some()).map(Architecture::as_str).collect::<Vec<_>>().join(", ")
}

/// Builds optimizers from specs; holds the learned checkpoints loaded so far, by SHA-256.
#[derive(Clone)]
pub struct OptimizerFactory {
    by_sha: HashMap<String, Arc<Checkpoint>>,
    /// Optimizers run by step-protocol workers, by [`foreign_key`].
    foreign: HashMap<String, Arc<Launch>>,
    /// Where workers get their shared files, logs and the copies of Python files: the study's
    /// `workers/` directory (a temporary directory's when unset).
    pub worker_dir: Option<PathBuf>,
    /// Threads a learned optimizer's update may use (1 unless the run has cores to itself).
    pub learned_threads: usize,
    /// Where the optimizers run: their host or their device rules.
    pub engine: Engine,
}

impl Default for OptimizerFactory {
    fn default() -> Self {
        Self::new(Engine::Host)
    }
}

impl OptimizerFactory {
    /// A factory building for `engine`, no checkpoint loaded yet.
    pub fn new(engine: Engine) -> Self {
        Self { by_sha: HashMap::new(), foreign: HashMap::new(), worker_dir: None, learned_threads: 1, engine }
    }

    /// Parse a candidate: `kind:key=value,...` for hand-designed optimizers, `ARCH:PATH` for
    /// learned ones, or a bare `ARCH` whose authors' checkpoint ships with beatmatch (`celo`);
    /// the checkpoint is loaded and checked now.
    ///
    /// A published optimizer that takes hyperparameters (Celo2's `lr`, `wd`) may set them as a
    /// hand-designed kind does: `celo2:lr=3e-3`.
    pub fn parse_candidate(&mut self, text: &str) -> Result<OptimizerSpec> {
        if let Some(parsed) = Source::parse(text) {
            let (source, hparams) = parsed?;
            return self.add_foreign(source, hparams);
        }
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        if let Some((arch, path)) = published(name) {
            if rest.is_empty() || (rest.contains('=') && !Path::new(rest).exists()) {
                let hparams = OptimizerSpec::parse(text)?.hparams;
                arch.check_hyperparameters(&hparams)?;
                let ckpt = checkpoint::load(&path, Some(arch))?;
                return Ok(OptimizerSpec { hparams, ..self.add_checkpoint(ckpt) });
            }
        }
        if let Some((kind, path)) = text.split_once(':') {
            if let Some(arch) = Architecture::parse(kind) {
                let ckpt = checkpoint::load(&resolve_shipped(Path::new(path)), Some(arch))?;
                return Ok(self.add_checkpoint(ckpt));
            }
        }
        Ok(OptimizerSpec::parse(text)?)
    }

    /// The configurations protocol `p` tries, each bound to what builds it: a hand-designed
    /// kind's as they are; a published learned optimizer's (`celo2-lr`) on its shipped
    /// checkpoint, each configuration's hyperparameters checked against the architecture's.
    pub fn bind_protocol(&mut self, p: &Protocol) -> Result<Vec<OptimizerSpec>> {
        let configs = p.configs();
        if beatmatch_baselines::find(&p.optimizer).is_some() {
            return Ok(configs);
        }
        // An optimizer in another process: each configuration its own worker (its file's path
        // relative to where `suite` runs).
        if let Some(parsed) = Source::parse(&p.optimizer) {
            let (source, named) = parsed.with_context(|| format!("protocol {}", p.name))?;
            return configs.into_iter().map(|c| self.add_foreign(source.clone(), named.clone().into_iter().chain(c.hparams).collect())).collect();
        }
        let Some((arch, path)) = published(&p.optimizer) else {
            bail!(
                "protocol {}: optimizer `{}` is neither a hand-designed kind ({}), a published learned optimizer ({}), nor `python:PATH[:FACTORY]` or `exec:COMMAND`",
                p.name,
                p.optimizer,
                beatmatch_baselines::kind_names(),
                published_names()
            );
        };
        let base = self.add_checkpoint(checkpoint::load(&path, Some(arch))?);
        configs
            .into_iter()
            .map(|c| {
                arch.check_hyperparameters(&c.hparams).with_context(|| format!("protocol {}", p.name))?;
                Ok(OptimizerSpec { hparams: c.hparams, ..base.clone() })
            })
            .collect()
    }

    /// Register a `python:` or `exec:` optimizer: its Python file is copied into the worker
    /// directory; its runs are keyed by the file's SHA-256 and factory (or the command's
    /// SHA-256) and the hyperparameters.
    fn add_foreign(&mut self, source: Source, hparams: BTreeMap<String, f64>) -> Result<OptimizerSpec> {
        let spec = OptimizerSpec { checkpoint: Some(source.key()), hparams, ..OptimizerSpec::new(source.kind()) };
        let dir = self.worker_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("beatmatch-workers"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let launch = Launch {
            file: source.place(&dir)?,
            source,
            hyperparameters: spec.hparams.clone(),
            dir,
            python_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../python"),
            timeouts: Timeouts::from_env()?,
            ready: Default::default(),
        };
        self.foreign.entry(foreign_key(&spec)).or_insert_with(|| Arc::new(launch));
        Ok(spec)
    }

    fn launch(&self, spec: &OptimizerSpec) -> Result<&Arc<Launch>> {
        self.foreign.get(&foreign_key(spec)).with_context(|| format!("{spec} was not registered (parse it with `parse_candidate` first)"))
    }

    /// Check that `spec` builds for tensors `params`; a foreign optimizer's worker is started
    /// once and stopped ([`Launch::probe`]): its file, factory, hyperparameters and protocol
    /// version are checked before anything trains.
    pub fn check(&self, spec: &OptimizerSpec, params: &[ParamInfo]) -> Result<()> {
        self.build(spec, params)?;
        if is_foreign(spec) {
            self.launch(spec)?.probe(params)?;
        }
        Ok(())
    }

    /// The library versions the worker of a foreign `spec` reported (empty for others, or before
    /// a worker of it started).
    pub fn worker_versions(&self, spec: &OptimizerSpec) -> BTreeMap<String, String> {
        if !is_foreign(spec) {
            return BTreeMap::new();
        }
        self.launch(spec).ok().and_then(|l| l.ready.get()).map(|r| r.versions.clone()).unwrap_or_default()
    }

    /// A foreign optimizer's label and where it came from; `None` for others.
    fn foreign_origin(&self, spec: &OptimizerSpec) -> Option<(String, String)> {
        let launch = self.launch(spec).ok().filter(|_| is_foreign(spec))?;
        let sha = spec.checkpoint.as_deref().unwrap_or_default();
        let origin = match &launch.source {
            Source::Python { file, .. } => format!("{} (SHA-256 {sha})", file.display()),
            Source::Exec { .. } => format!("the command's SHA-256 {sha}"),
        };
        Some((launch.source.label(), origin))
    }

    /// Register a loaded checkpoint; returns the spec that names it.
    pub fn add_checkpoint(&mut self, ckpt: Checkpoint) -> OptimizerSpec {
        let spec = OptimizerSpec { checkpoint: Some(ckpt.sha256.clone()), ..OptimizerSpec::new(ckpt.arch.as_str()) };
        self.by_sha.insert(ckpt.sha256.clone(), Arc::new(ckpt));
        spec
    }

    /// Build the optimizer `spec` names for tensors `params` (one member).
    pub fn build(&self, spec: &OptimizerSpec, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
        self.build_members(std::slice::from_ref(spec), params)
    }

    /// Build one optimizer over several members, member `k` configured by `specs[k]`: specs of
    /// one hand-designed kind, or copies of one learned checkpoint.
    pub fn build_members(&self, specs: &[OptimizerSpec], params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
        let Some(first) = specs.first() else { bail!("an optimizer needs at least one member") };
        if is_foreign(first) {
            if self.engine.is_device() {
                bail!("`{first}` runs in a step-protocol worker, which trains on the host path only; run it without --device");
            }
            if let Some(other) = specs.iter().find(|s| s != &first) {
                bail!("members of one worker share its configuration: `{other}` differs from `{first}`");
            }
            return Ok(Box::new(Foreign::new(self.launch(first)?.clone(), specs.len(), params)));
        }
        match &first.checkpoint {
            Some(sha) => {
                if let Some(other) = specs.iter().find(|s| s != &first) {
                    bail!("members of one learned optimizer share its checkpoint: `{other}` differs from `{first}`");
                }
                let ckpt = self.by_sha.get(sha).with_context(|| format!("checkpoint {sha} was not loaded"))?;
                if ckpt.arch.as_str() != first.kind {
                    bail!("checkpoint {sha} is {}, not {}", ckpt.arch.as_str(), first.kind);
                }
                if first.hparams.is_empty() {
                    return self.engine.build_learned(ckpt, specs.len(), self.learned_threads.max(1), params);
                }
                // The spec's hyperparameters over the checkpoint's.
                ckpt.arch.check_hyperparameters(&first.hparams)?;
                let mut set = Checkpoint::clone(ckpt);
                set.hyperparameters.extend(first.hparams.clone());
                self.engine.build_learned(&set, specs.len(), self.learned_threads.max(1), params)
            }
            None => self.engine.build_kind(specs, params),
        }
    }

    /// Whether one run to the longest budget can be read off at shorter budgets.
    pub fn is_horizon_free(spec: &OptimizerSpec) -> bool {
        match Architecture::parse(&spec.kind) {
            Some(arch) if spec.checkpoint.is_some() => arch.is_horizon_free(),
            _ => beatmatch_baselines::is_horizon_free(spec),
        }
    }

    /// The provenance of a published learned optimizer run from its authors' checkpoint (the
    /// shipped file, by SHA-256): who published it and what it was meta-trained on.
    /// A foreign optimizer's: its file (or command) and content hash.
    pub fn provenance(&self, spec: &OptimizerSpec) -> Option<String> {
        if let Some((label, origin)) = self.foreign_origin(spec) {
            return Some(format!("{label}: {origin}, run by a step-protocol worker (docs/step-protocol.md)"));
        }
        let (arch, path) = published(&spec.kind)?;
        let shipped = checkpoint::sha256(&std::fs::read(path).ok()?);
        (spec.checkpoint.as_deref() == Some(shipped.as_str())).then(|| arch.provenance().map(str::to_string)).flatten()
    }

    /// Legend label: a learned optimizer is "hyperparameter-free (1 trial)" unless it takes a
    /// learning rate (Celo2: "at its defaults (1 trial)", or the values set); a hand-designed
    /// configuration's is its kind's.
    pub fn legend(&self, spec: &OptimizerSpec) -> String {
        let set = || spec.hparams.iter().map(|(k, v)| format!("{k}={v:e}")).collect::<Vec<_>>().join(", ");
        if let Some((label, _)) = self.foreign_origin(spec) {
            return if spec.hparams.is_empty() { format!("{label} (1 trial)") } else { format!("{label}, {} (1 trial)", set()) };
        }
        match (Architecture::parse(&spec.kind), spec.checkpoint.as_deref()) {
            (Some(arch), Some(sha)) => {
                let sha = &sha[..8.min(sha.len())];
                if !spec.hparams.is_empty() {
                    format!("{} {sha}, {} (1 trial)", arch.label(), set())
                } else if arch.settable().contains(&"lr") {
                    format!("{} {sha}, at its defaults (1 trial)", arch.label())
                } else {
                    format!("{} {sha}, hyperparameter-free (1 trial)", arch.label())
                }
            }
            _ => match beatmatch_baselines::find(&spec.kind) {
                Some(kind) => kind.legend(spec),
                None => format!("{spec} (1 trial)"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_optimizers_need_no_path_and_say_what_they_were_given() {
        let mut f = OptimizerFactory::default();
        let celo = f.parse_candidate("celo").unwrap();
        assert_eq!(celo.kind, "celo");
        assert!(f.legend(&celo).ends_with("hyperparameter-free (1 trial)"), "{}", f.legend(&celo));
        assert!(f.provenance(&celo).unwrap().contains("every task here is held out"));

        let celo2 = f.parse_candidate("celo2").unwrap();
        assert!(f.legend(&celo2).ends_with("at its defaults (1 trial)"), "{}", f.legend(&celo2));
        let tuned = f.parse_candidate("celo2:lr=3e-3").unwrap();
        assert_eq!(tuned.hparams.get("lr"), Some(&3e-3));
        assert_eq!(tuned.checkpoint, celo2.checkpoint);
        assert!(f.legend(&tuned).ends_with("lr=3e-3 (1 trial)"), "{}", f.legend(&tuned));

        // The learning rate reaches the update: one step moves a hidden matrix 3× as far.
        let params = [ParamInfo::new("in", vec![4, 3]), ParamInfo::new("hidden", vec![3, 3]), ParamInfo::new("out", vec![3, 2])];
        let step = |spec: &OptimizerSpec| {
            let mut opt = f.build(spec, &params).unwrap();
            let mut w: Vec<Vec<f32>> = params.iter().map(|p| (0..p.numel()).map(|i| (i as f32 * 0.37).sin()).collect()).collect();
            let before = w[1].clone();
            let g: Vec<Vec<f32>> = params.iter().map(|p| (0..p.numel()).map(|i| (i as f32 * 0.11).cos()).collect()).collect();
            let mut p: Vec<&mut [f32]> = w.iter_mut().map(|v| v.as_mut_slice()).collect();
            let gs: Vec<&[f32]> = g.iter().map(|v| v.as_slice()).collect();
            opt.step(&mut p, &gs, &beatmatch_core::StepContext { step: 0, num_steps: 10, losses: &[1.0] });
            w[1].iter().zip(&before).map(|(a, b)| f64::from(a - b).abs()).sum::<f64>()
        };
        let ratio = step(&tuned) / step(&celo2);
        assert!((ratio - 3.0).abs() < 1e-3, "moved {ratio}× as far");

        let e = f.parse_candidate("celo2:momentum=0.9").unwrap_err().to_string();
        assert!(e.contains("momentum") && e.contains("settable"), "{e}");
        let e = f.parse_candidate("celo:lr=1e-3").unwrap_err().to_string();
        assert!(e.contains("not settable for celo"), "{e}");
    }

    #[test]
    fn a_protocol_of_a_published_learned_optimizer_binds_each_trial_to_its_weights() {
        let mut f = OptimizerFactory::default();
        let p = Protocol::embedded("celo2-lr").unwrap();
        let configs = f.bind_protocol(&p).unwrap();
        let alone = f.parse_candidate("celo2").unwrap();
        assert_eq!(configs.len(), 5);
        assert!(configs.iter().all(|c| c.kind == "celo2" && c.checkpoint == alone.checkpoint && c.hparams.keys().eq(["lr"])));
        assert_eq!(p.legend(), "Celo2 LR (5 trials)");
        // A trial is the same spec, so the same run, as the configuration named alone.
        assert_eq!(configs[0], f.parse_candidate("celo2:lr=1e-3").unwrap());
        // Hand-designed protocols are untouched.
        let adam = Protocol::embedded("adam-lr15").unwrap();
        assert_eq!(f.bind_protocol(&adam).unwrap(), adam.configs());

        let yaml = |opt: &str, key: &str| {
            format!("name: x\nlabel: X\nsource: s\noptimizer: {opt}\ngrid: {{ {key}: [0.1] }}\nseeds: 1\nselection: lowest_mean_final_train_loss\n")
        };
        let e = format!("{:#}", f.bind_protocol(&Protocol::parse("x.yaml", &yaml("celo2", "momentum")).unwrap()).unwrap_err());
        assert!(e.contains("protocol x") && e.contains("momentum") && e.contains("settable"), "{e}");
        let e = f.bind_protocol(&Protocol::parse("x.yaml", &yaml("celo3", "lr")).unwrap()).unwrap_err().to_string();
        assert!(e.contains("`celo3` is neither") && e.contains("adam") && e.contains("celo2"), "{e}");
        // Celo has nothing to tune: a grid over its learning rate is refused.
        assert!(f.bind_protocol(&Protocol::parse("x.yaml", &yaml("celo", "lr")).unwrap()).is_err());
    }
}
