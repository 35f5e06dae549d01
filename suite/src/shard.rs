//! Sharding: which run groups one of N processes (a Slurm array task, a Kubernetes Indexed
//! Job pod) trains.
//!
//! Every shard computes the same assignment from the same selection, so shards need not talk:
//! run groups (one problem, one seed — trained together) are dealt out largest estimated cost
//! first, each to the shard with the least work so far (longest-processing-time scheduling;
//! ties to the lower shard). The assignment is made over the whole selection, data present or
//! not, so hosts that lack a data set still agree on it.

use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};

/// Shard `index` (1-based) of `of`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1-based shard number.
    pub index: usize,
    /// Number of shards.
    pub of: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

/// The variables a scheduler sets to give a process its index: a Slurm array task's, a
/// Kubernetes Indexed Job pod's.
pub const INDEX_VARIABLES: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

impl Shard {
    /// Parse `I/N` (1 ≤ I ≤ N).
    pub fn parse(s: &str) -> Result<Self> {
        let (i, n) = s.split_once('/').with_context(|| format!("--shard `{s}`: expected I/N, e.g. 2/8"))?;
        let index: usize = i.trim().parse().with_context(|| format!("--shard `{s}`: `{i}` is not a shard number"))?;
        let of: usize = n.trim().parse().with_context(|| format!("--shard `{s}`: `{n}` is not a shard count"))?;
        Self::new(index, of).with_context(|| format!("--shard `{s}`"))
    }

    fn new(index: usize, of: usize) -> Result<Self> {
        if of == 0 || index == 0 || index > of {
            bail!("shard {index} of {of}: shards are numbered 1 to N, N ≥ 1");
        }
        Ok(Self { index, of })
    }

    /// The shard of this process: `--shard I/N` if given; else a Slurm array task's
    /// (`SLURM_ARRAY_TASK_ID` among `SLURM_ARRAY_TASK_MIN`, `_STEP` and `_COUNT`); else a
    /// Kubernetes Indexed Job's (`JOB_COMPLETION_INDEX`, 0-based, with `--shards N`); else none.
    pub fn resolve(explicit: Option<&str>, shards: Option<usize>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        if let Some(s) = explicit {
            return Self::parse(s).map(Some);
        }
        let num = |name: &str| -> Result<Option<usize>> {
            env(name).map(|v| v.trim().parse::<usize>().with_context(|| format!("{name}=`{v}` is not a number"))).transpose()
        };
        if let Some(id) = num(INDEX_VARIABLES[0])? {
            let count = num("SLURM_ARRAY_TASK_COUNT")?.context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")?;
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            if id < min || !(id - min).is_multiple_of(step) {
                bail!("SLURM_ARRAY_TASK_ID={id} is not in the array {min}, {}, … (step {step})", min + step);
            }
            let index = (id - min) / step + 1;
            if let Some(n) = shards.filter(|&n| n != count) {
                bail!("--shards {n} disagrees with SLURM_ARRAY_TASK_COUNT={count}");
            }
            return Self::new(index, count).context("from the Slurm array environment").map(Some);
        }
        if let Some(i) = num(INDEX_VARIABLES[1])? {
            let n = shards.context("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): pass --shards N, the Job's completions")?;
            return Self::new(i + 1, n).context("from JOB_COMPLETION_INDEX").map(Some);
        }
        if let Some(n) = shards {
            bail!("--shards {n} needs a shard index: --shard I/{n}, a Slurm array task or a Kubernetes Indexed Job");
        }
        Ok(None)
    }
}

/// Deal `groups` (key, estimated cost) out to `of` shards; returns each key's 1-based shard.
pub fn assign<K: Ord + Clone + std::hash::Hash>(groups: &[(K, f64)], of: usize) -> HashMap<K, usize> {
    let mut order: Vec<&(K, f64)> = groups.iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut load = vec![0f64; of.max(1)];
    let mut out = HashMap::new();
    for (key, cost) in order {
        let (best, _) = load.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1).then(a.0.cmp(&b.0))).expect("at least one shard");
        load[best] += cost;
        out.insert(key.clone(), best + 1);
    }
    out
}

/// Estimated cost per shard of an assignment, for `suite plan`.
pub fn loads<K: Ord + Clone + std::hash::Hash>(groups: &[(K, f64)], assignment: &HashMap<K, usize>, of: usize) -> Vec<f64> {
    let mut by: BTreeMap<usize, f64> = (1..=of).map(|s| (s, 0.0)).collect();
    for (k, c) in groups {
        *by.entry(assignment[k]).or_default() += c;
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn shards_come_from_the_flag_slurm_or_kubernetes() {
        let none = env(&[]);
        assert_eq!(Shard::resolve(Some("2/4"), None, &none).unwrap(), Some(Shard { index: 2, of: 4 }));
        assert_eq!(Shard::resolve(None, None, &none).unwrap(), None);
        for bad in ["0/4", "5/4", "2", "a/4", "1/0"] {
            assert!(Shard::resolve(Some(bad), None, &none).is_err(), "{bad}");
        }
        let slurm = env(&[("SLURM_ARRAY_TASK_ID", "7"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_COUNT", "8")]);
        assert_eq!(Shard::resolve(None, None, &slurm).unwrap(), Some(Shard { index: 7, of: 8 }));
        let stepped = env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_MIN", "0"), ("SLURM_ARRAY_TASK_STEP", "2"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(Shard::resolve(None, None, &stepped).unwrap(), Some(Shard { index: 3, of: 3 }));
        assert!(Shard::resolve(None, Some(5), &slurm).unwrap_err().to_string().contains("disagrees"));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "0")]);
        assert_eq!(Shard::resolve(None, Some(3), &k8s).unwrap(), Some(Shard { index: 1, of: 3 }));
        assert!(Shard::resolve(None, None, &k8s).unwrap_err().to_string().contains("--shards"));
        assert!(Shard::resolve(None, Some(3), &none).is_err());
        assert!(Shard::resolve(None, Some(3), &env(&[("JOB_COMPLETION_INDEX", "3")])).is_err());
    }

    #[test]
    fn every_group_gets_exactly_one_shard_and_loads_are_balanced() {
        // Costs spread like a tier's: a few large groups, many small ones.
        let groups: Vec<(String, f64)> = (0..200).map(|i| (format!("g{i:03}"), if i < 5 { 50.0 } else { 1.0 + (i % 7) as f64 })).collect();
        for of in [1, 2, 3, 8] {
            let a = assign(&groups, of);
            assert_eq!(a.len(), groups.len());
            assert!(a.values().all(|&s| (1..=of).contains(&s)));
            let l = loads(&groups, &a, of);
            let (max, total) = (l.iter().cloned().fold(0.0, f64::max), l.iter().sum::<f64>());
            // LPT is within 4/3 of the optimum; the optimum is at least max(mean, largest group).
            assert!(max <= 4.0 / 3.0 * (total / of as f64).max(50.0), "{of} shards: {l:?}");
            // The same input gives the same assignment whatever its order.
            let mut rev = groups.clone();
            rev.reverse();
            assert_eq!(assign(&rev, of), a);
        }
    }
}
