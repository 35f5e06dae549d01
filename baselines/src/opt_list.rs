//! learned_optimization's opt_list format: a JSON array of NAdamW hyperparameter sets
//! (`learning_rate`, `beta1`, `beta2`, `epsilon`, `use_nesterov`, `adamw_weight_decay`,
//! `l2_weight_decay`, `warmup_fraction`, `constant_fraction`, `min_learning_rate_mult`).

use anyhow::{bail, Context, Result};
use beatmatch_core::OptimizerSpec;
use std::path::Path;

/// (opt_list key, beatmatch `nadamw` hyperparameter).
const KEYS: [(&str, &str); 10] = [
    ("learning_rate", "lr"),
    ("beta1", "b1"),
    ("beta2", "b2"),
    ("epsilon", "eps"),
    ("adamw_weight_decay", "adamw_wd"),
    ("l2_weight_decay", "l2_wd"),
    ("use_nesterov", "nesterov"),
    ("warmup_fraction", "warmup_fraction"),
    ("constant_fraction", "constant_fraction"),
    ("min_learning_rate_mult", "min_lr_mult"),
];

/// One opt_list entry as a `nadamw` spec.
pub fn entry_to_spec(entry: &serde_json::Value) -> Result<OptimizerSpec> {
    let mut spec = OptimizerSpec::new(crate::nadamw::NAME);
    for (key, name) in KEYS {
        let v = entry.get(key).with_context(|| format!("missing `{key}`"))?;
        let x = match v {
            serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
            serde_json::Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            other => bail!("`{key}` is {other}, expected a number or boolean"),
        };
        spec.hparams.insert(name.to_string(), x);
    }
    Ok(spec)
}

/// Read a whole opt_list JSON file.
pub fn read(path: &Path) -> Result<Vec<OptimizerSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading opt_list {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let entries = value.as_array().with_context(|| format!("{}: expected a JSON array of hyperparameter sets", path.display()))?;
    entries.iter().enumerate().map(|(i, e)| entry_to_spec(e).with_context(|| format!("{}: entry {i}", path.display()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_optlist_10_matches_the_format_reader() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opt_list.json");
        std::fs::write(
            &p,
            r#"[{"learning_rate": 0.5, "beta1": 0.9, "beta2": 0.99, "epsilon": 1e-8, "use_nesterov": true,
            "adamw_weight_decay": 0.01, "l2_weight_decay": 0.0, "warmup_fraction": 0.1, "min_learning_rate_mult": 0.0,
            "constant_fraction": 0.5}]"#,
        )
        .unwrap();
        let specs = read(&p).unwrap();
        assert_eq!(specs[0].get("nesterov", -1.0), 1.0);
        assert_eq!(specs[0].get("lr", -1.0), 0.5);
        std::fs::write(&p, r#"[{"learning_rate": 0.5}]"#).unwrap();
        assert!(format!("{:#}", read(&p).unwrap_err()).contains("entry 0: missing `beta1`"));
    }
}
