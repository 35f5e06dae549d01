//! A small registry and recipe for the meta-training tests (MNIST-1D is generated, so no data
//! needs fetching).

use beatmatch_tasks::Task;

pub const REGISTRY: &str = include_str!("registry.yaml");

pub fn registry() -> Vec<Task> {
    beatmatch_tasks::registry::parse("test.yaml", REGISTRY).unwrap()
}

/// A recipe of `estimator` (`full_es` or `truncated_pes`) over the registry above.
pub fn recipe(estimator: &str, outer_steps: u64) -> String {
    let (unroll, extra) = if estimator == "truncated_pes" { ("{ min: 20, max: 20 }", "truncation: 10\n") } else { ("{ min: 10, max: 30 }", "") };
    format!(
        "name: tiny
architecture: small_fc
init: {{ seed: 3 }}
estimator: {estimator}
sigma: 0.01
pairs: 3
outer_steps: {outer_steps}
unroll: {unroll}
{extra}tasks:
  ids: [logreg.mnist1d.b32.s40, mlp-w8-d1-relu.mnist1d.b32.s30]
validation: {{ tasks: [mlp-w8-d1-tanh.mnist1d.b32.s30], every: 2 }}
outer: {{ lr: 0.01, warmup: 2, clip: {{ elementwise: 3.0 }} }}
checkpoint_every: 2
seed: 5
"
    )
}
