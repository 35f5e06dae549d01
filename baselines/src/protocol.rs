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
];

/// How the tuned configuration is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Lowest seed-mean final training loss; a diverged or non-finite run counts as +∞.
    LowestMeanFinalTrainLoss,
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
        bail!("unknown protocol `{name}`; known: {}", Self::embedded_names().join(", "))
    }

    /// Names of the embedded protocols.
    pub fn embedded_names() -> Vec<String> {
        EMBEDDED.iter().filter_map(|(f, t)| Self::parse(f, t).ok().map(|p| p.name)).collect()
    }

    /// A protocol by embedded name or YAML file path.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        if name_or_path.ends_with(".yaml") || name_or_path.ends_with(".yml") {
            let text = std::fs::read_to_string(name_or_path).with_context(|| format!("reading protocol {name_or_path}"))?;
            return Self::parse(name_or_path, &text);
        }
        Self::embedded(name_or_path)
    }

    /// Every configuration the protocol tries, in grid order (last key fastest).
    pub fn configs(&self) -> Vec<OptimizerSpec> {
        let mut specs = vec![OptimizerSpec { kind: self.optimizer.clone(), hparams: self.fixed.clone() }];
        for (key, values) in &self.grid {
            specs = specs
                .into_iter()
                .flat_map(|s| values.iter().map(move |&v| s.clone().with(key, v)))
                .collect();
        }
        specs
    }

    /// Legend label with trial count, as in VeLO's Fig. 1: `AdamLR (15 trials)`.
    pub fn legend(&self) -> String {
        format!("{} ({} trials)", self.label, self.configs().len())
    }
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
        assert!(Protocol::embedded("sgdm-lr15").unwrap().configs().iter().all(|s| s.kind == "sgdm"));
    }

    #[test]
    fn bad_protocol_names_line() {
        let e = Protocol::parse("p.yaml", "name: x\nlabel: X\nsource: s\noptimizer: adam\nseeds: 1\nselection: best_guess\n").unwrap_err();
        assert!(e.to_string().starts_with("p.yaml:6:"), "{e}");
    }
}
