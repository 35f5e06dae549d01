//! The task registry: YAML files of model-family grids × datasets × batch sizes × step budgets,
//! expanded into concrete [`Task`]s.
//!
//! ```yaml
//! families:
//!   - tier: quick              # smallest tier that includes these tasks (smoke ⊂ quick ⊂ cpu ⊂ full)
//!     mlp: { width: [32, 128], depth: [1, 2], activation: [relu, tanh] }
//!     datasets: [mnist1d]
//!     batch_sizes: [128]
//!     steps: [100, 300, 1000]
//!     split: meta_test         # optional; default: by problem hash, ~1 in 4 held out
//!     device: cuda             # optional; default cpu
//! ```
//!
//! Model families (exactly one per block, each with its own grid: see each family's module
//! under [`crate::models`]): `logreg: {}`, `mlp`, `conv {channels, depth, pooling}`,
//! `autoencoder {width, depth, code, activation}` (image/vector datasets), and the language
//! models `transformer {d_model, layers, heads, context}` and `lstm {hidden, layers, context}`
//! (text datasets). Unknown keys and bad values are errors naming the file, line and what was
//! expected.

use crate::datasets::DatasetName;
use crate::models::family::Bounded;
use crate::models::{FamilyGrid, ModelConfig, FAMILIES};
use crate::task::{DeviceReq, Problem, Split, Task, Tier};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The registry compiled into the binary (`tasks/registry/*.yaml`), as (file name, text).
pub const EMBEDDED: &[(&str, &str)] = &[
    ("tasks/registry/core.yaml", include_str!("../registry/core.yaml")),
    ("tasks/registry/language_models.yaml", include_str!("../registry/language_models.yaml")),
    ("tasks/registry/scale.yaml", include_str!("../registry/scale.yaml")),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    families: Vec<FamilyBlock>,
}

/// One `families:` entry: exactly one family's grid (one optional key per family of the one
/// list, `with_families!`) and the axes every family shares.
macro_rules! family_block {
    ($($key:ident: $variant:ident($config:ty),)*) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct FamilyBlock {
            tier: Tier,
            $(
                #[serde(default)]
                $key: Option<<$config as FamilyGrid>::Grid>,
            )*
            datasets: Vec<DatasetName>,
            batch_sizes: Vec<Bounded<1, 65536>>,
            steps: Vec<Bounded<1, 1_000_000>>,
            #[serde(default)]
            split: Option<Split>,
            #[serde(default)]
            device: Option<DeviceReq>,
        }

        impl FamilyBlock {
            /// Every model of the block's grids (one family's, when the block is well formed),
            /// and how many family keys it has.
            fn models(&self) -> (Vec<ModelConfig>, usize) {
                let mut models = Vec::new();
                let mut keys = 0;
                $(
                    if let Some(grid) = &self.$key {
                        keys += 1;
                        models.extend(<$config as FamilyGrid>::expand(grid).into_iter().map(ModelConfig::$variant));
                    }
                )*
                (models, keys)
            }
        }
    };
}

crate::with_families!(family_block);

/// Parse one registry file's text; `name` is used in error messages.
pub fn parse(name: &str, text: &str) -> Result<Vec<Task>> {
    let file: RegistryFile = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        anyhow::anyhow!("{name}{loc}: {e}")
    })?;
    let mut tasks = Vec::new();
    for (i, block) in file.families.iter().enumerate() {
        let ctx = || match block_line(text, i) {
            Some(line) => format!("{name}:{line}: families[{i}]"),
            None => format!("{name}: families[{i}]"),
        };
        let (models, keys) = block.models();
        if keys != 1 {
            let names: Vec<String> = FAMILIES.iter().map(|f| format!("`{f}`")).collect();
            bail!("{}: expected exactly one model family key (one of {})", ctx(), names.join(", "));
        }
        if let Some(bad) = models.iter().find_map(|m| m.check().err()) {
            bail!("{}: {bad}", ctx());
        }
        let lm = models.first().is_some_and(ModelConfig::is_text);
        if let Some(d) = block.datasets.iter().find(|d| d.is_text() != lm) {
            let expected = if lm { "a text dataset (moby_dick)" } else { "an image or vector dataset" };
            bail!("{}: dataset `{d}` cannot train this model family; expected {expected}", ctx());
        }
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
                    let split = block.split.unwrap_or_else(|| Split::by_hash(&problem.hash()));
                    let device = block.device.unwrap_or(DeviceReq::Cpu);
                    for &steps in &budgets {
                        tasks.push(Task { problem: problem.clone(), steps, tier: block.tier, split, device });
                    }
                }
            }
        }
    }
    Ok(tasks)
}

/// The 1-based line where the `i`-th entry of `families:` starts (its `- `), for errors found
/// after parsing.
fn block_line(text: &str, i: usize) -> Option<usize> {
    let mut lines = text.lines().enumerate().skip_while(|(_, l)| !l.starts_with("families:")).skip(1);
    let mut indent = None;
    let mut seen = 0;
    for (n, l) in &mut lines {
        let trimmed = l.trim_start();
        if !trimmed.starts_with("- ") {
            continue;
        }
        let this = l.len() - trimmed.len();
        if *indent.get_or_insert(this) != this {
            continue;
        }
        if seen == i {
            return Some(n + 1);
        }
        seen += 1;
    }
    None
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
        assert!(e.contains("x.yaml:2: families[0]") && e.contains("exactly one model family"), "{e}");
    }

    #[test]
    fn model_families_must_match_their_data_and_shapes() {
        let lm = "families:\n  - tier: full\n    transformer: { d_model: [32], layers: [1], heads: [3], context: [16] }\n    datasets: [moby_dick]\n    batch_sizes: [8]\n    steps: [10]\n";
        let e = parse("lm.yaml", lm).unwrap_err().to_string();
        assert!(e.contains("lm.yaml:2: families[0]") && e.contains("heads 3 do not divide d_model 32"), "{e}");
        let e = parse("lm.yaml", &lm.replace("heads: [3]", "heads: [4]").replace("[moby_dick]", "[mnist1d]")).unwrap_err().to_string();
        assert!(e.contains("dataset `mnist1d` cannot train") && e.contains("text dataset"), "{e}");
        let e = parse("x.yaml", &GOOD.replace("[mnist1d, fashion_mnist]", "[moby_dick]")).unwrap_err().to_string();
        assert!(e.contains("x.yaml:7: families[1]") && e.contains("image or vector dataset"), "{e}");
        let ok = parse("lm.yaml", &lm.replace("heads: [3]", "heads: [4]").replace("tier: full", "tier: full\n    split: meta_test\n    device: cuda")).unwrap();
        assert_eq!(ok[0].id(), "transformer-d32-l1-h4-t16.moby_dick.b8.s10");
        assert_eq!((ok[0].split, ok[0].device), (Split::MetaTest, DeviceReq::Cuda));
    }

    #[test]
    fn embedded_registry_parses_and_has_the_promised_tiers() {
        let tasks = embedded().unwrap();
        let count = |tier| select(&tasks, tier).len();
        let (smoke, quick, cpu, full) = (count(Tier::Smoke), count(Tier::Quick), count(Tier::Cpu), count(Tier::Full));
        assert!((2..=12).contains(&smoke), "smoke tier has {smoke} tasks");
        assert!(quick >= 40, "quick tier has {quick} tasks");
        assert!(quick < cpu && cpu < full && full >= 300, "tiers: quick {quick}, cpu {cpu}, full {full}");
        // The map the win-rate heatmap is drawn on: ~1e2 to ~1e9 parameters, 1e2 to 2e5 steps.
        let params: Vec<u64> = tasks.iter().map(Task::params).collect();
        assert!(
            *params.iter().min().unwrap() < 200 && *params.iter().max().unwrap() > 900_000_000,
            "params span {:?}",
            (params.iter().min(), params.iter().max())
        );
        assert_eq!(tasks.iter().map(|t| t.steps).min(), Some(100));
        assert_eq!(tasks.iter().map(|t| t.steps).max(), Some(200_000));
        // Every family on the map, GPU-only tasks only outside the CPU tiers, both sides of the meta split.
        for family in ["logreg", "mlp-", "conv-", "ae-", "transformer-", "lstm-"] {
            assert!(tasks.iter().any(|t| t.id().starts_with(family)), "no {family} task");
        }
        assert!(tasks.iter().all(|t| t.device == DeviceReq::Cpu || t.tier == Tier::Full));
        assert!(tasks.iter().any(|t| t.device == DeviceReq::Cuda));
        let held_out = tasks.iter().filter(|t| t.split == Split::MetaTest).count();
        assert!(held_out * 10 > tasks.len() && held_out * 2 < tasks.len(), "{held_out} of {} tasks are meta-test", tasks.len());
    }
}
