//! A hand-designed optimizer written outside beatmatch's crates, judged by beatmatch: this file
//! defines Signum (sign descent with momentum; Bernstein et al. 2018, "signSGD"), registers
//! it as a kind, and trains the smoke tier with it as the candidate against the default tuned
//! baselines (Adam and SGD-momentum over learned_optimization's learning-rate grid).
//!
//! ```sh
//! cargo run --release --example custom_optimizer            # results/examples/custom_optimizer
//! cargo run --release --example custom_optimizer -- DIR     # or into DIR
//! ```
//!
//! Everything about the optimizer is here: its hyperparameters (with defaults, ranges and
//! docs), its update rule over member-major buffers, and its descriptor. Its name is then a kind
//! like any built-in one — `signum:lr=3e-4`, in specs, tuning protocols and reports. (It has
//! no device rule, so `--device cpu-device` refuses it with that reason.)

use anyhow::Result;
use beatmatch_baselines::kind::{bound, Hparam, Kind, Values};
use beatmatch_core::optimizer::{member, member_mut};
use beatmatch_core::{Optimizer, ParamInfo, StepContext, UpdateRule};
use beatmatch_suite::study::{run_study, StudyOptions};
use beatmatch_tasks::Tier;

/// The kind's name in specs.
const NAME: &str = "signum";

beatmatch_baselines::hyperparameters! {
    /// One Signum member's hyperparameters.
    pub struct SignumHp {
        /// Learning rate (the size of every coordinate's step).
        lr: f64 = 1e-3, Positive;
        /// Momentum decay β of the gradient average whose sign is taken.
        beta: f64 = 0.9, Decay;
    }
}

/// Signum over one or more members: `m ← β·m + (1 − β)·g`, `p ← p − lr·sign(m)`.
struct Signum(Vec<SignumHp>);

impl UpdateRule for Signum {
    /// The momentum per tensor (`members × numel`, member-major).
    type State = Vec<Vec<f32>>;

    fn name(&self) -> &'static str {
        NAME
    }

    fn members(&self) -> usize {
        self.0.len()
    }

    fn init(&self, params: &[ParamInfo]) -> Self::State {
        params.iter().map(|p| vec![0.0; p.numel() * self.0.len()]).collect()
    }

    fn update(&self, momentum: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        let k = self.0.len();
        for ((p, g), m) in params.iter_mut().zip(grads).zip(momentum.iter_mut()) {
            for (i, hp) in self.0.iter().enumerate() {
                let (lr, beta) = (hp.lr as f32, hp.beta as f32);
                let g = member(g, k, i);
                let m = member_mut(m, k, i);
                for ((p, &g), m) in member_mut(p, k, i).iter_mut().zip(g).zip(m.iter_mut()) {
                    *m = beta * *m + (1.0 - beta) * g;
                    *p -= lr
                        * if *m > 0.0 {
                            1.0
                        } else if *m < 0.0 {
                            -1.0
                        } else {
                            0.0
                        };
                }
            }
        }
    }
}

/// Signum's descriptor: what beatmatch reads to parse, check and build it.
struct SignumKind;

impl Kind for SignumKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "Signum: sign descent with momentum (Bernstein et al. 2018), from examples/custom_optimizer.rs"
    }
    fn hparams(&self) -> &'static [Hparam] {
        SignumHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Signum(members.iter().map(SignumHp::from_values).collect()), params)
    }
}

static SIGNUM: SignumKind = SignumKind;

fn main() -> Result<()> {
    beatmatch_baselines::register(&SIGNUM)?;
    let out = std::env::args().nth(1).unwrap_or_else(|| "results/examples/custom_optimizer".into());
    let mut opts = StudyOptions::new(Tier::Smoke);
    opts.candidate = format!("{NAME}:lr=3e-4");
    opts.out = Some(out.into());
    let (dir, summary) = run_study(&opts)?;
    let report = beatmatch_reports::write_report(&dir, &Default::default())?;
    println!("{} runs trained, {} already done; report in {}", summary.trained, summary.cached, dir.display());
    println!("{}", report.headline);
    Ok(())
}
