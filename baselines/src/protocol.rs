//! Tuning protocols: which configurations of an optimizer are tried, with how many seeds, and
//! how the tuned one is chosen. Declared in YAML (`baselines/protocols/*.yaml`), not code.

use anyhow::{bail, Context, Result};
use beatmatch_core::OptimizerSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Protocols compiled into the binary, as (file name, text).
pub const EMBEDDED: &[(&str, &str)] = &[
    ("baselines/protocols/adam-lr15.yaml", include_str!("../protocols/adam-lr15.yaml")),
    ("baselines/protocols/sgdm-lr15.yaml", include_str!("../protocols/sgdm-lr15.yaml")),
    ("baselines/protocols/optlist-10.yaml", include_str!("../protocols/optlist-10.yaml")),
    ("baselines/protocols/nadamw-random-20.yaml", include_str!("../protocols/nadamw-random-20.yaml")),
    ("baselines/protocols/algoperf-nadamw-5.yaml", include_str!("../protocols/algoperf-nadamw-5.yaml")),
    ("baselines/protocols/algoperf-nadamw-1.yaml", include_str!("../protocols/algoperf-nadamw-1.yaml")),
    ("baselines/protocols/adamw-cosine.yaml", include_str!("../protocols/adamw-cosine.yaml")),
    ("baselines/protocols/muon-lr.yaml", include_str!("../protocols/muon-lr.yaml")),
    ("baselines/protocols/soap-lr.yaml", include_str!("../protocols/soap-lr.yaml")),
    ("baselines/protocols/sfadamw-lr.yaml", include_str!("../protocols/sfadamw-lr.yaml")),
    ("baselines/protocols/ademamix-lr.yaml", include_str!("../protocols/ademamix-lr.yaml")),
    ("baselines/protocols/celo2-lr.yaml", include_str!("../protocols/celo2-lr.yaml")),
];

/// Named sets of protocols, usable wherever a protocol name is: (name, members, what it is).
pub const SETS: &[(&str, &[&str], &str)] = &[
    ("2020", &["adam-lr15", "sgdm-lr15"], "VeLO's Fig. 1 pair: Adam and SGD-momentum over learned_optimization's 15-value LR grid"),
    (
        "2026-light",
        &["adam-lr15", "sgdm-lr15", "algoperf-nadamw-5", "algoperf-nadamw-1", "adamw-cosine", "muon-lr", "sfadamw-lr", "ademamix-lr"],
        "the default: the 2020 pair and the 2026 protocols but SOAP's, the costliest to tune (its 784-wide factors on Fashion-MNIST)",
    ),
    (
        "2026",
        &["adam-lr15", "sgdm-lr15", "algoperf-nadamw-5", "algoperf-nadamw-1", "adamw-cosine", "muon-lr", "soap-lr", "sfadamw-lr", "ademamix-lr"],
        "the 2020 pair and every 2026 protocol: AlgoPerf's NAdamW (external and self-tuning), AdamW with warm-up and cosine, Muon, SOAP, Schedule-Free AdamW, AdEMAMix",
    ),
];

/// The baselines `suite run` tunes unless told otherwise (a set of [`SETS`]).
pub const DEFAULT_BASELINES: &str = "2026-light";

/// `names` with every set name replaced by its members, first occurrences kept in order.
pub fn expand_sets(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let members: Vec<String> = match SETS.iter().find(|(s, _, _)| s == n) {
            Some((_, m, _)) => m.iter().map(|x| x.to_string()).collect(),
            None => vec![n.clone()],
        };
        for m in members {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

/// How the tuned configuration is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Lowest seed-mean final training loss; a diverged or non-finite run counts as +∞.
    LowestMeanFinalTrainLoss,
}

/// A random search: `trials` configurations drawn from `seed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSearch {
    /// Seed of the draws (ChaCha8).
    pub seed: u64,
    /// Number of configurations.
    pub trials: usize,
    /// Log-uniform ranges `[low, high]`; a key `one_minus_X` sets `X = 1 − draw`.
    #[serde(default)]
    pub log_uniform: BTreeMap<String, [f64; 2]>,
    /// Uniform ranges `[low, high]`.
    #[serde(default)]
    pub uniform: BTreeMap<String, [f64; 2]>,
}

impl RandomSearch {
    fn draw(&self, base: &OptimizerSpec) -> Vec<OptimizerSpec> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        (0..self.trials)
            .map(|_| {
                let mut s = base.clone();
                for (k, [lo, hi]) in &self.log_uniform {
                    let x = (lo.ln() + rng.random::<f64>() * (hi.ln() - lo.ln())).exp();
                    match k.strip_prefix("one_minus_") {
                        Some(name) => s.hparams.insert(name.to_string(), 1.0 - x),
                        None => s.hparams.insert(k.clone(), x),
                    };
                }
                for (k, [lo, hi]) in &self.uniform {
                    s.hparams.insert(k.clone(), lo + rng.random::<f64>() * (hi - lo));
                }
                s
            })
            .collect()
    }
}

/// A tuning protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// Name used on the command line, e.g. `adam-lr15`.
    pub name: String,
    /// Legend label, e.g. `AdamLR`.
    pub label: String,
    /// Where the protocol comes from (paper, code).
    pub source: String,
    /// Optimizer kind, e.g. `adam`.
    pub optimizer: String,
    /// Hyperparameters held fixed.
    #[serde(default)]
    pub fixed: BTreeMap<String, f64>,
    /// Hyperparameters swept: the Cartesian product of these lists.
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<f64>>,
    /// An explicit list of configurations (each on top of `fixed`), tried in order.
    #[serde(default)]
    pub configs: Vec<BTreeMap<String, f64>>,
    /// A random search.
    #[serde(default)]
    pub random: Option<RandomSearch>,
    /// Seeds per configuration (seeds `0..seeds`); the command line may override it.
    pub seeds: u32,
    /// Selection rule.
    pub selection: Selection,
}

impl Protocol {
    /// Parse a protocol file; errors name the file and line.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let p: Protocol = serde_yaml::from_str(text).map_err(|e| {
            let loc = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
            anyhow::anyhow!("{name}{loc}: {e}")
        })?;
        if p.seeds == 0 {
            bail!("{name}: seeds must be at least 1");
        }
        if let Some((k, _)) = p.grid.iter().find(|(_, v)| v.is_empty()) {
            bail!("{name}: grid `{k}` is empty; expected at least one value");
        }
        let forms = usize::from(!p.grid.is_empty()) + usize::from(!p.configs.is_empty()) + usize::from(p.random.is_some());
        if forms > 1 {
            bail!("{name}: give one of `grid`, `configs` or `random`, not several");
        }
        if let Some(r) = &p.random {
            for (k, [lo, hi]) in &r.log_uniform {
                if !(*lo > 0.0 && lo <= hi) {
                    bail!("{name}: log_uniform `{k}` needs 0 < low <= high, got [{lo}, {hi}]");
                }
            }
        }
        // Every configuration must name real hyperparameters of the optimizer. An optimizer that
        // is not a hand-designed kind (a published learned optimizer, `celo2`) is checked by
        // whoever binds it to its checkpoint (`suite`'s factory), which knows the architectures.
        if crate::find(&p.optimizer).is_some() {
            let infos = [beatmatch_core::ParamInfo::new("check", vec![1])];
            for spec in p.configs() {
                crate::build(&spec, &infos).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            }
        }
        Ok(p)
    }

    /// The embedded protocol called `name`.
    pub fn embedded(name: &str) -> Result<Self> {
        for (file, text) in EMBEDDED {
            let p = Self::parse(file, text)?;
            if p.name == name {
                return Ok(p);
            }
        }
        let hint = if name.starts_with("optlist-") { " (other optlist-K sizes need `--opt-list PATH` to a full opt_list.json)" } else { "" };
        let sets: Vec<&str> = SETS.iter().map(|s| s.0).collect();
        bail!("unknown protocol `{name}`; known: {}; sets: {}{hint}", Self::embedded_names().join(", "), sets.join(", "))
    }

    /// Names of the embedded protocols.
    pub fn embedded_names() -> Vec<String> {
        EMBEDDED.iter().filter_map(|(f, t)| Self::parse(f, t).ok().map(|p| p.name)).collect()
    }

    /// `optlist-K`: the first K entries of a full opt_list JSON file the user has.
    pub fn from_opt_list(k: usize, path: &std::path::Path) -> Result<Self> {
        let all = crate::opt_list::read(path)?;
        if k == 0 || k > all.len() {
            bail!("optlist-{k}: {} has {} entries; expected 1..={}", path.display(), all.len(), all.len());
        }
        Ok(Protocol {
            name: format!("optlist-{k}"),
            label: "NAdamW opt_list".into(),
            source: format!("first {k} entries of {} (Metz et al. 2020, arXiv 2002.11887)", path.display()),
            optimizer: crate::nadamw::NAME.into(),
            fixed: BTreeMap::new(),
            grid: BTreeMap::new(),
            configs: all[..k].iter().map(|s| s.hparams.clone()).collect(),
            random: None,
            seeds: 2,
            selection: Selection::LowestMeanFinalTrainLoss,
        })
    }

    /// A protocol by embedded name or YAML file path; `optlist-K` reads the first K entries of
    /// `opt_list` when given (else only `optlist-10`, embedded, exists).
    pub fn resolve_with(name_or_path: &str, opt_list: Option<&std::path::Path>) -> Result<Self> {
        if let (Some(path), Some(k)) = (opt_list, name_or_path.strip_prefix("optlist-")) {
            let k: usize = k.parse().map_err(|_| anyhow::anyhow!("`{name_or_path}`: expected optlist-<number>"))?;
            return Self::from_opt_list(k, path);
        }
        Self::resolve(name_or_path)
    }

    /// A protocol by embedded name or YAML file path.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml") {
            let text = std::fs::read_to_string(name_or_path).with_context(|| format!("reading protocol {name_or_path}"))?;
            return Self::parse(name_or_path, &text);
        }
        Self::embedded(name_or_path)
    }

    /// Every configuration the protocol tries: the explicit list, the random draws, or the
    /// grid (last key fastest). A key `one_minus_X` (in `fixed`, `configs` or `grid`) sets
    /// `X = 1 − value`, the parametrisation AlgoPerf's search spaces use for β₁.
    pub fn configs(&self) -> Vec<OptimizerSpec> {
        let base = OptimizerSpec { kind: self.optimizer.clone(), hparams: self.fixed.clone(), checkpoint: None };
        let specs = if !self.configs.is_empty() {
            self.configs.iter().map(|c| OptimizerSpec { hparams: base.hparams.clone().into_iter().chain(c.clone()).collect(), ..base.clone() }).collect()
        } else if let Some(r) = &self.random {
            r.draw(&base)
        } else {
            let mut specs = vec![base];
            for (key, values) in &self.grid {
                specs = specs.into_iter().flat_map(|s| values.iter().map(move |&v| s.clone().with(key, v))).collect();
            }
            specs
        };
        specs.into_iter().map(complements).collect()
    }

    /// Legend label with trial count, as in VeLO's Fig. 1: `AdamLR (15 trials)`.
    pub fn legend(&self) -> String {
        let n = self.configs().len();
        format!("{} ({n} {})", self.label, if n == 1 { "trial" } else { "trials" })
    }
}

/// `one_minus_X = v` → `X = 1 − v`.
fn complements(mut spec: OptimizerSpec) -> OptimizerSpec {
    let keys: Vec<String> = spec.hparams.keys().filter(|k| k.starts_with("one_minus_")).cloned().collect();
    for k in keys {
        let v = spec.hparams.remove(&k).expect("listed above");
        spec.hparams.insert(k["one_minus_".len()..].to_string(), 1.0 - v);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr15_grid_is_learned_optimizations() {
        let p = Protocol::embedded("adam-lr15").unwrap();
        let lrs: Vec<f64> = p.configs().iter().map(|s| s.get("lr", f64::NAN)).collect();
        let mut expected: Vec<f64> = (-7..=-1).flat_map(|k| [1.0, 3.0].map(|m| m * 10f64.powi(k))).collect();
        expected.push(1.0);
        assert_eq!(lrs.len(), 15);
        for (a, b) in lrs.iter().zip(&expected) {
            assert!((a / b - 1.0).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(p.legend(), "AdamLR (15 trials)");
        assert!(Protocol::embedded("sgdm-lr15").unwrap().configs().iter().all(|s| s.kind == crate::sgd::NAME));
    }

    #[test]
    fn optlist_and_random_protocols_expand() {
        let p = Protocol::embedded("optlist-10").unwrap();
        let c = p.configs();
        assert_eq!(c.len(), 10);
        assert!(c.iter().all(|s| s.kind == crate::nadamw::NAME && s.hparams.len() == 10));
        assert_eq!(p.legend(), "NAdamW opt_list (10 trials)");
        let r = Protocol::embedded("nadamw-random-20").unwrap();
        let a = r.configs();
        assert_eq!(a.len(), 20);
        assert_eq!(a, r.configs(), "fixed seed gives the same draws");
        assert!(a.iter().all(|s| (1e-8..=10.0).contains(&s.get("lr", -1.0)) && s.get("b1", 2.0) < 1.0 && s.get("l2_wd", 1.0) == 0.0));
    }

    #[test]
    fn the_2026_protocols_parse_and_share_algoperfs_self_tuning_point() {
        let five = Protocol::embedded("algoperf-nadamw-5").unwrap().configs();
        let one = Protocol::embedded("algoperf-nadamw-1").unwrap().configs();
        assert_eq!(five.len(), 4, "points 1 and 3 differ only in label smoothing");
        assert!(five.contains(&one[0]), "the self-tuning point is one of the five: the runs are shared");
        // one_minus_b1 became b1, computed as the kind's default is.
        let defaults = crate::algoperf_nadamw::AlgoperfNadamwHp::HPARAMS;
        let b1 = defaults.iter().find(|h| h.name == "b1").unwrap().default;
        assert_eq!(one[0].get("b1", 0.0).to_bits(), b1.to_bits());
        assert!(!one[0].hparams.contains_key("one_minus_b1"));
        for (set, members, _) in SETS {
            for m in *members {
                assert!(Protocol::embedded(m).is_ok(), "set {set}: {m}");
            }
        }
        let expanded = expand_sets(&["adam-lr15".into(), "2026".into(), "x.yaml".into()]);
        assert_eq!(expanded[0], "adam-lr15");
        assert_eq!(expanded.iter().filter(|n| *n == "adam-lr15").count(), 1);
        assert_eq!(expanded.last().unwrap(), "x.yaml");
        assert!(expanded.contains(&"soap-lr".to_string()) && !expand_sets(&[DEFAULT_BASELINES.into()]).contains(&"soap-lr".to_string()));
        assert!(Protocol::embedded("2027").unwrap_err().to_string().contains("sets: 2020"));
    }

    #[test]
    fn bad_protocol_names_line() {
        let e = Protocol::parse("p.yaml", "name: x\nlabel: X\nsource: s\noptimizer: adam\nseeds: 1\nselection: best_guess\n").unwrap_err();
        assert!(e.to_string().starts_with("p.yaml:6:"), "{e}");
    }
}
