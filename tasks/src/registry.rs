//! The task registry: YAML files of model-family grids × datasets × batch sizes × step budgets,
//! expanded into concrete [`Task`]s.
//!
//! ```yaml
//! families:
//!   - tier: quick              # smallest tier that includes these tasks (smoke ⊂ quick ⊂ full)
//!     mlp: { width: [32, 128], depth: [1, 2], activation: [relu, tanh] }
//!     datasets: [mnist1d]
//!     batch_sizes: [128]
//!     steps: [100, 300, 1000]
//! ```
//!
//! Unknown keys and bad values are errors naming the file, line and what was expected.

use crate::datasets::DatasetName;
use crate::models::{Activation, ModelConfig, Pooling};
use crate::task::{Problem, Task, Tier};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::Path;

/// The registry compiled into the binary (`tasks/registry/*.yaml`), as (file name, text).
pub const EMBEDDED: &[(&str, &str)] = &[("tasks/registry/core.yaml", include_str!("../registry/core.yaml"))];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    families: Vec<FamilyBlock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyBlock {
    tier: Tier,
    #[serde(default)]
    logreg: Option<LogregGrid>,
    #[serde(default)]
    mlp: Option<MlpGrid>,
    #[serde(default)]
    conv: Option<ConvGrid>,
    datasets: Vec<DatasetName>,
    batch_sizes: Vec<Bounded<1, 65536>>,
    steps: Vec<Bounded<1, 1_000_000>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogregGrid {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvGrid {
    channels: Vec<Bounded<1, 1024>>,
    depth: Vec<Bounded<1, 8>>,
    pooling: Vec<Pooling>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MlpGrid {
    width: Vec<Bounded<1, 65536>>,
    depth: Vec<Bounded<0, 8>>,
    activation: Vec<Activation>,
}

/// An integer validated to lie in `LO..=HI` while parsing, so the error carries the YAML line.
#[derive(Clone, Copy)]
struct Bounded<const LO: u64, const HI: u64>(u64);

impl<'de, const LO: u64, const HI: u64> Deserialize<'de> for Bounded<LO, HI> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if !(LO..=HI).contains(&v) {
            return Err(serde::de::Error::custom(format!("{v} is out of range: expected an integer in {LO}..={HI}")));
        }
        Ok(Self(v))
    }
}

/// Parse one registry file's text; `name` is used in error messages.
pub fn parse(name: &str, text: &str) -> Result<Vec<Task>> {
    let file: RegistryFile = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        anyhow::anyhow!("{name}{loc}: {e}")
    })?;
    let mut tasks = Vec::new();
    for (i, block) in file.families.iter().enumerate() {
        let ctx = || format!("{name}: families[{i}]");
        let models: Vec<ModelConfig> = match (&block.logreg, &block.mlp, &block.conv) {
            (Some(_), None, None) => vec![ModelConfig::Logreg],
            (None, None, Some(g)) => {
                let mut v = Vec::new();
                for c in &g.channels {
                    for d in &g.depth {
                        for &p in &g.pooling {
                            v.push(ModelConfig::Conv { channels: c.0 as usize, depth: d.0 as usize, pooling: p });
                        }
                    }
                }
                v
            }
            (None, Some(g), None) => {
                let mut v = Vec::new();
                for w in &g.width {
                    for d in &g.depth {
                        for &a in &g.activation {
                            v.push(ModelConfig::Mlp { width: w.0 as usize, depth: d.0 as usize, activation: a });
                        }
                    }
                }
                v
            }
            _ => bail!("{}: expected exactly one model family key (`logreg`, `mlp` or `conv`)", ctx()),
        };
        for (what, empty) in [
            ("datasets", block.datasets.is_empty()),
            ("batch_sizes", block.batch_sizes.is_empty()),
            ("steps", block.steps.is_empty()),
            ("a model grid axis", models.is_empty()),
        ] {
            if empty {
                bail!("{}: {what} is empty; expected at least one value", ctx());
            }
        }
        let budgets: Vec<u64> = {
            let mut b: Vec<u64> = block.steps.iter().map(|s| s.0).collect();
            b.sort_unstable();
            b.dedup();
            b
        };
        for model in &models {
            for &dataset in &block.datasets {
                for bs in &block.batch_sizes {
                    let problem = Problem::new(model.clone(), dataset, bs.0 as usize, &budgets);
                    for &steps in &budgets {
                        tasks.push(Task { problem: problem.clone(), steps, tier: block.tier });
                    }
                }
            }
        }
    }
    Ok(tasks)
}

/// Parse several registry files and check task ids are unique across them.
pub fn parse_all<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Vec<Task>> {
    let mut tasks = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (name, text) in files {
        for t in parse(name, text)? {
            if let Some(prev) = seen.insert(t.id(), name.to_string()) {
                bail!("{name}: task `{}` is also defined in {prev}; task ids must be unique", t.id());
            }
            tasks.push(t);
        }
    }
    Ok(tasks)
}

/// The embedded registry.
pub fn embedded() -> Result<Vec<Task>> {
    parse_all(EMBEDDED.iter().copied())
}

/// Every `*.yaml` in `dir`, in file-name order.
pub fn load_dir(dir: &Path) -> Result<Vec<Task>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading registry directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let texts: Vec<(String, String)> = paths
        .iter()
        .map(|p| Ok((p.display().to_string(), std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)))
        .collect::<Result<_>>()?;
    parse_all(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

/// The tasks of tier `tier` (a tier includes every smaller tier).
pub fn select(tasks: &[Task], tier: Tier) -> Vec<Task> {
    tasks.iter().filter(|t| t.tier <= tier).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "families:
  - tier: smoke
    logreg: {}
    datasets: [mnist1d]
    batch_sizes: [64]
    steps: [300, 100]
  - tier: quick
    mlp: { width: [16, 32], depth: [1, 2], activation: [relu, tanh] }
    datasets: [mnist1d, fashion_mnist]
    batch_sizes: [128]
    steps: [100]
";

    #[test]
    fn expands_the_grid_with_readable_ids() {
        let tasks = parse("t.yaml", GOOD).unwrap();
        assert_eq!(tasks.len(), 2 + 2 * 2 * 2 * 2);
        let ids: Vec<String> = tasks.iter().map(Task::id).collect();
        assert_eq!(ids[0], "logreg.mnist1d.b64.s100");
        assert_eq!(ids[1], "logreg.mnist1d.b64.s300");
        assert!(ids.contains(&"mlp-w32-d2-tanh.fashion_mnist.b128.s100".to_string()));
        assert_eq!(tasks[0].problem.hash(), tasks[1].problem.hash(), "budgets share a problem");
        assert_ne!(tasks[2].problem.hash(), tasks[3].problem.hash());
        assert_eq!(tasks[0].params(), 40 * 10 + 10);
        assert_eq!(select(&tasks, Tier::Smoke).len(), 2);
        assert_eq!(select(&tasks, Tier::Quick).len(), tasks.len());
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let bad = GOOD.replace("    batch_sizes: [128]", "    batch_size: [128]");
        let e = parse("reg/x.yaml", &bad).unwrap_err().to_string();
        assert!(e.starts_with("reg/x.yaml:10:"), "{e}");
        assert!(e.contains("unknown field `batch_size`") && e.contains("expected one of"), "{e}");
    }

    #[test]
    fn bad_values_name_file_line_and_expectation() {
        let e = parse("x.yaml", &GOOD.replace("[relu, tanh]", "[relu, sigmoid]")).unwrap_err().to_string();
        assert!(e.starts_with("x.yaml:8:") && e.contains("unknown variant `sigmoid`"), "{e}");
        let e = parse("x.yaml", &GOOD.replace("steps: [100]", "steps: [0]")).unwrap_err().to_string();
        assert!(e.starts_with("x.yaml:11:") && e.contains("expected an integer in 1..=1000000"), "{e}");
        let e = parse("x.yaml", &GOOD.replace("[mnist1d, fashion_mnist]", "[cifar99]")).unwrap_err().to_string();
        assert!(e.contains("x.yaml:9:") && e.contains("unknown variant `cifar99`"), "{e}");
        let e = parse("x.yaml", &GOOD.replace("    logreg: {}\n", "")).unwrap_err().to_string();
        assert!(e.contains("families[0]") && e.contains("exactly one model family"), "{e}");
    }

    #[test]
    fn embedded_registry_parses_and_has_the_promised_tiers() {
        let tasks = embedded().unwrap();
        let smoke = select(&tasks, Tier::Smoke).len();
        let quick = select(&tasks, Tier::Quick).len();
        assert!((2..=12).contains(&smoke), "smoke tier has {smoke} tasks");
        assert!(quick >= 40, "quick tier has {quick} tasks");
    }
}
