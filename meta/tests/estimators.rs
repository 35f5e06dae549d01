//! The estimators on a quadratic whose meta-gradient is known by finite differences.
//!
//! Inner problem j: f_j(x) = ½ Σ_k a_jk x_k², x₀ = 1; the "learned optimizer" is gradient
//! descent with a per-coordinate step 0.2·sigmoid(θ_k). The meta-loss is the mean
//! pre-update loss over the unroll, smooth in θ.

use anyhow::Result;
use beatmatch_meta::full_es::{self, FullEsConfig};
use beatmatch_meta::inner::InnerTasks;
use beatmatch_meta::recipe::MetaLoss;
use beatmatch_meta::truncated_pes::{self, PesConfig, PesState};

const D: usize = 4;

struct Quadratic {
    a: Vec<[f64; D]>,
}

struct QRun {
    x: Vec<[f64; D]>,
    thetas: Vec<Vec<f32>>,
    step: u64,
    steps: u64,
    task: usize,
}

fn loss(a: &[f64; D], x: &[f64; D]) -> f64 {
    0.5 * a.iter().zip(x).map(|(a, x)| a * x * x).sum::<f64>()
}

fn step_sizes(theta: &[f32]) -> Vec<f64> {
    theta.iter().map(|&t| 0.2 / (1.0 + (-(t as f64)).exp())).collect()
}

impl InnerTasks for Quadratic {
    type Run<'a> = QRun;
    fn len(&self) -> usize {
        self.a.len()
    }
    fn name(&self, task: usize) -> String {
        format!("quadratic{task}")
    }
    fn theta_len(&self) -> usize {
        D
    }
    fn start(&self, task: usize, _seed: u64, steps: u64, thetas: &[Vec<f32>]) -> Result<QRun> {
        Ok(QRun { x: vec![[1.0; D]; thetas.len()], thetas: thetas.to_vec(), step: 0, steps, task })
    }
    fn rebind(&self, run: &mut QRun, thetas: &[Vec<f32>]) -> Result<()> {
        run.thetas = thetas.to_vec();
        Ok(())
    }
    fn advance(&self, run: &mut QRun, n: u64) -> Result<Vec<Vec<f32>>> {
        let a = &self.a[run.task];
        let mut out = vec![Vec::new(); run.x.len()];
        while run.step < run.steps && (out[0].len() as u64) < n {
            for (m, x) in run.x.iter_mut().enumerate() {
                out[m].push(loss(a, x) as f32);
                let lr = step_sizes(&run.thetas[m]);
                for k in 0..D {
                    x[k] -= lr[k] * a[k] * x[k];
                }
            }
            run.step += 1;
        }
        Ok(out)
    }
    fn is_done(&self, run: &QRun) -> bool {
        run.step >= run.steps
    }
    fn recompute(&self, run: &mut QRun, _batches: usize, _seed: u64) -> Result<Vec<f32>> {
        Ok(self.final_loss(run))
    }
    fn final_loss(&self, run: &QRun) -> Vec<f32> {
        run.x.iter().map(|x| loss(&self.a[run.task], x) as f32).collect()
    }
}

fn tasks() -> Quadratic {
    Quadratic { a: vec![[1.0, 0.5, 2.0, 0.1], [0.3, 1.5, 0.8, 1.0]] }
}

/// The true meta-gradient of the task-averaged `avg` meta-loss, by central differences in f64.
fn true_gradient(q: &Quadratic, theta: &[f32], steps: u64) -> Vec<f64> {
    let meta = |th: &[f64]| -> f64 {
        let lr: Vec<f64> = th.iter().map(|&t| 0.2 / (1.0 + (-t).exp())).collect();
        let mut total = 0.0;
        for a in &q.a {
            let mut x = [1.0; D];
            let mut sum = 0.0;
            for _ in 0..steps {
                sum += loss(a, &x);
                for k in 0..D {
                    x[k] -= lr[k] * a[k] * x[k];
                }
            }
            total += sum / steps as f64;
        }
        total / q.a.len() as f64
    };
    let th: Vec<f64> = theta.iter().map(|&t| t as f64).collect();
    (0..D)
        .map(|k| {
            let h = 1e-5;
            let (mut p, mut m) = (th.clone(), th.clone());
            p[k] += h;
            m[k] -= h;
            (meta(&p) - meta(&m)) / (2.0 * h)
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y).sum();
    let na = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn es(pairs: usize, steps: u64) -> FullEsConfig {
    FullEsConfig { pairs, sigma: 0.01, unroll: (steps, steps), meta_loss: MetaLoss::Avg, recompute_batches: 1, seed: 7, frozen: Vec::new() }
}

#[test]
fn full_es_estimate_points_along_the_true_meta_gradient() {
    let q = tasks();
    let theta = [0.3f32, -0.5, 0.1, 1.0];
    let truth = true_gradient(&q, &theta, 20);
    let few = full_es::estimate(&q, &theta, &es(4, 20), 0, 1).unwrap();
    let many = full_es::estimate(&q, &theta, &es(2000, 20), 0, 2).unwrap();
    let (c_few, c_many) = (cosine(&few.grad, &truth), cosine(&many.grad, &truth));
    assert!(c_many >= 0.9, "cosine with the finite-difference meta-gradient {c_many} (4 pairs: {c_few})");
    // The estimate is of the gradient itself, not just its direction: norms within 20%.
    let n_est = many.grad.iter().map(|&g| (g as f64).powi(2)).sum::<f64>().sqrt();
    let n_true = truth.iter().map(|g| g * g).sum::<f64>().sqrt();
    assert!((n_est / n_true - 1.0).abs() < 0.2, "norm {n_est} vs {n_true}");
}

#[test]
fn full_es_does_not_depend_on_the_thread_count() {
    let q = tasks();
    let theta = [0.3f32, -0.5, 0.1, 1.0];
    let one = full_es::estimate(&q, &theta, &es(37, 10), 3, 1).unwrap();
    let three = full_es::estimate(&q, &theta, &es(37, 10), 3, 3).unwrap();
    assert_eq!(one, three);
}

#[test]
fn pes_with_one_truncation_spanning_the_episode_equals_full_es_avg() {
    let q = tasks();
    let theta = [0.3f32, -0.5, 0.1, 1.0];
    let cfg = PesConfig { pairs: 16, sigma: 0.01, episode: 25, truncation: 25, seed: 7, frozen: Vec::new() };
    let mut state = PesState::fresh(&cfg, D);
    let pes = truncated_pes::estimate(&q, &mut state, &theta, &cfg, 0, 2).unwrap();
    let full = full_es::estimate(&q, &theta, &es(16, 25), 0, 1).unwrap();
    assert_eq!(pes.grad, full.grad);
    assert_eq!(pes.meta_loss, full.meta_loss);
    assert_eq!(pes.deltas, full.deltas);
    assert!(state.between_episodes());
}

#[test]
fn pes_truncations_keep_the_episode_and_reset_at_its_end() {
    let q = tasks();
    let theta = [0.3f32, -0.5, 0.1, 1.0];
    let cfg = PesConfig { pairs: 256, sigma: 0.01, episode: 30, truncation: 10, seed: 1, frozen: Vec::new() };
    let mut state = PesState::fresh(&cfg, D);
    let truth = true_gradient(&q, &theta, 30);
    let mut sum = vec![0f32; D];
    for t in 0..3 {
        let e = truncated_pes::estimate(&q, &mut state, &theta, &cfg, t, 2).unwrap();
        assert_eq!(e.inner_steps, 256 * 2 * 10);
        assert_eq!(state.between_episodes(), t == 2, "outer step {t}");
        sum.iter_mut().zip(&e.grad).for_each(|(s, g)| *s += g / 3.0);
    }
    // Averaged over the episode's truncations, PES is an estimate of the whole episode's
    // meta-gradient (unbiased: the accumulator carries the earlier perturbations).
    let c = cosine(&sum, &truth);
    assert!(c >= 0.8, "cosine {c}");
}

#[test]
fn last_recompute_estimates_the_gradient_of_the_final_loss() {
    let q = tasks();
    let theta = [0.3f32, -0.5, 0.1, 1.0];
    let steps = 15;
    // The final loss (after `steps` updates) averaged over the tasks, by central differences.
    let final_loss = |th: &[f64]| -> f64 {
        let lr: Vec<f64> = th.iter().map(|&t| 0.2 / (1.0 + (-t).exp())).collect();
        q.a.iter()
            .map(|a| {
                let mut x = [1.0; D];
                for _ in 0..steps {
                    for k in 0..D {
                        x[k] -= lr[k] * a[k] * x[k];
                    }
                }
                loss(a, &x)
            })
            .sum::<f64>()
            / q.a.len() as f64
    };
    let th: Vec<f64> = theta.iter().map(|&t| t as f64).collect();
    let truth: Vec<f64> = (0..D)
        .map(|k| {
            let (mut p, mut m) = (th.clone(), th.clone());
            p[k] += 1e-5;
            m[k] -= 1e-5;
            (final_loss(&p) - final_loss(&m)) / 2e-5
        })
        .collect();
    let cfg = FullEsConfig { meta_loss: MetaLoss::LastRecompute, ..es(2000, steps) };
    let est = full_es::estimate(&q, &theta, &cfg, 0, 2).unwrap();
    let c = cosine(&est.grad, &truth);
    assert!(c >= 0.9, "cosine {c}");
    // And it is another objective than `avg`'s.
    let avg = full_es::estimate(&q, &theta, &es(2000, steps), 0, 2).unwrap();
    assert_ne!(avg.grad, est.grad);
}
