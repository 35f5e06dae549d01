//! The MNIST-1D generator (Greydanus 2020), reproducing `mnist1d.make_dataset` draw for draw:
//! numpy's legacy `RandomState` (MT19937 `init_genrand`, 53-bit doubles, polar Box–Muller with
//! the cached second value, masked-rejection integers), the same interpolation, scaling,
//! rolling, correlated noise (`gaussian_filter1d`, σ = 2, reflect), white noise and shear, then
//! a seeded permutation and global standardisation. With the default arguments it regenerates
//! the frozen standard set; with more samples it makes larger sets.

use super::{Dataset, Layout};
use rand_mt::Mt as Mt19937GenRand32;

/// Generation arguments (`mnist1d.get_dataset_args()` defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mnist1dArgs {
    /// Total examples (train + test).
    pub num_samples: usize,
    /// Fraction used for training.
    pub train_split: f64,
    /// Zero padding appended to the template: `padding.0 + ⌊rand · (padding.1 − padding.0 + 1)⌋`.
    pub padding: (usize, usize),
    /// Random scale amplitude.
    pub scale_coeff: f64,
    /// Largest roll.
    pub max_translation: usize,
    /// Correlated-noise amplitude.
    pub corr_noise_scale: f64,
    /// White-noise amplitude.
    pub iid_noise_scale: f64,
    /// Shear amplitude.
    pub shear_scale: f64,
    /// Output length.
    pub final_seq_length: usize,
    /// RandomState seed.
    pub seed: u32,
}

impl Default for Mnist1dArgs {
    fn default() -> Self {
        Self {
            num_samples: 5000,
            train_split: 0.8,
            padding: (36, 60),
            scale_coeff: 0.4,
            max_translation: 48,
            corr_noise_scale: 0.25,
            iid_noise_scale: 0.02,
            shear_scale: 0.75,
            final_seq_length: 40,
            seed: 42,
        }
    }
}

const TEMPLATES: [[f64; 12]; 10] = [
    [5., 6., 6.5, 6.75, 7., 7., 7., 7., 6.75, 6.5, 6., 5.],
    [5., 3., 3., 3.4, 3.8, 4.2, 4.6, 5., 5.4, 5.8, 5., 5.],
    [5., 6., 6.5, 6.5, 6., 5.25, 4.75, 4., 3.5, 3.5, 4., 5.],
    [5., 6., 6.5, 6.5, 6., 5., 5., 6., 6.5, 6.5, 6., 5.],
    [5., 4.4, 3.8, 3.2, 2.6, 2.6, 5., 5., 5., 5., 5., 5.],
    [5., 3., 3., 3., 3., 5., 6., 6.5, 6.5, 6., 4.5, 5.],
    [5., 4., 3.5, 3.25, 3., 3., 3., 3., 3.25, 3.5, 4., 5.],
    [5., 7., 7., 6.6, 6.2, 5.8, 5.4, 5., 4.6, 4.2, 5., 5.],
    [5., 4., 3.5, 3.5, 4., 5., 5., 4., 3.5, 3.5, 4., 5.],
    [5., 4., 3.5, 3.5, 4., 5., 5., 5., 5., 4.7, 4.3, 5.],
];

/// numpy's legacy RandomState on MT19937.
struct LegacyRandom {
    mt: Mt19937GenRand32,
    gauss: Option<f64>,
}

impl LegacyRandom {
    fn new(seed: u32) -> Self {
        Self { mt: Mt19937GenRand32::new(seed), gauss: None }
    }
    fn next_u32(&mut self) -> u32 {
        self.mt.next_u32()
    }
    /// `random_sample()`: 53-bit double from two outputs.
    fn rand(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67108864.0 + b) / 9007199254740992.0
    }
    /// `standard_normal()`: polar Box–Muller keeping the second value.
    fn randn(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.rand() - 1.0;
            let x2 = 2.0 * self.rand() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }
    /// Uniform integer in `0..=max` by masked rejection.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for s in [1, 2, 4, 8, 16] {
            mask |= mask >> s;
        }
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }
}

/// `np.interp`-style linear interpolation of `y` (on `linspace(0, 1, len)`) onto `n` points,
/// in the recipe's slope form with the left-searchsorted index clipped to `[1, len − 1]`.
fn interpolate(y: &[f64], n: usize) -> Vec<f64> {
    let m = y.len();
    let old: Vec<f64> = linspace(0.0, 1.0, m);
    linspace(0.0, 1.0, n)
        .into_iter()
        .map(|x| {
            let i = old.partition_point(|&o| o < x).clamp(1, m - 1);
            let (x_lo, x_hi) = (old[i - 1], old[i]);
            y[i - 1] + (y[i] - y[i - 1]) / (x_hi - x_lo) * (x - x_lo)
        })
        .collect()
}

/// numpy's linspace (endpoint included): `start + i·step`, the last point exactly `stop`.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    let step = (stop - start) / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { stop } else { start + i as f64 * step }).collect()
}

/// scipy's `gaussian_filter1d(x, 2)`: radius 8, normalised weights, 'reflect' boundary.
fn gaussian_filter(x: &[f64], sigma: f64) -> Vec<f64> {
    let radius = (4.0 * sigma + 0.5) as isize;
    let w: Vec<f64> = (-radius..=radius).map(|k| (-0.5 / (sigma * sigma) * (k * k) as f64).exp()).collect();
    let total: f64 = w.iter().sum();
    let w: Vec<f64> = w.iter().map(|v| v / total).collect();
    let n = x.len() as isize;
    let at = |i: isize| -> f64 {
        // d c b a | a b c d | d c b a
        let mut j = i;
        while j < 0 || j >= n {
            j = if j < 0 { -j - 1 } else { 2 * n - j - 1 };
        }
        x[j as usize]
    };
    (0..n)
        .map(|i| {
            let mut acc = at(i) * w[radius as usize];
            for k in (1..=radius).rev() {
                acc += (at(i - k) + at(i + k)) * w[(radius - k) as usize];
            }
            acc
        })
        .collect()
}

/// Generate a data set.
pub fn generate(args: &Mnist1dArgs) -> Dataset {
    let templates: Vec<Vec<f64>> = TEMPLATES
        .iter()
        .map(|t| {
            let mean = t.iter().sum::<f64>() / 12.0;
            let std = (t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 12.0).sqrt();
            let z: Vec<f64> = t.iter().map(|v| (v - mean) / std).collect();
            z.iter().map(|v| (v - z[0]) / 6.0).collect()
        })
        .collect();
    let mut rng = LegacyRandom::new(args.seed);
    let per_label = args.num_samples / 10;
    let mut xs: Vec<Vec<f64>> = Vec::with_capacity(args.num_samples);
    let mut ys: Vec<u32> = Vec::with_capacity(args.num_samples);
    let span = (args.padding.1 - args.padding.0 + 1) as f64;
    for label in 0..10u32 {
        for _ in 0..per_label {
            let pad = args.padding.0 + (rng.rand() * span) as usize;
            let mut x: Vec<f64> = templates[label as usize].iter().map(|v| v + 1e-8).collect();
            x.extend(std::iter::repeat_n(0.0, pad));
            let mut x = interpolate(&x, 72);
            let scale = 1.0 + args.scale_coeff * (rng.rand() - 0.5);
            x.iter_mut().for_each(|v| *v *= scale);
            let k = rng.interval(args.max_translation as u32 - 1) as usize;
            x.rotate_right(k);
            let noise: Vec<f64> = (0..72).map(|_| args.corr_noise_scale * rng.randn()).collect();
            let c = gaussian_filter(&noise, 2.0);
            for (v, cv) in x.iter_mut().zip(&c) {
                if *v == 0.0 {
                    *v = *cv;
                }
            }
            for v in x.iter_mut() {
                *v += args.iid_noise_scale * rng.randn();
            }
            let shear = args.shear_scale * (rng.rand() - 0.5);
            for (v, s) in x.iter_mut().zip(linspace(-0.5, 0.5, 72)) {
                *v -= shear * s;
            }
            xs.push(interpolate(&x, args.final_seq_length));
            ys.push(label);
        }
    }
    let n = xs.len();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.interval(i as u32) as usize;
        order.swap(i, j);
    }
    let all: Vec<f64> = order.iter().flat_map(|&i| xs[i].iter().copied()).collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
    let len = args.final_seq_length;
    let n_train = (args.train_split * n as f64) as usize;
    let x32: Vec<f32> = all.iter().map(|v| ((v - mean) / std) as f32).collect();
    let y: Vec<u32> = order.iter().map(|&i| ys[i]).collect();
    Dataset {
        layout: Layout::Examples,
        example_shape: vec![len],
        num_classes: 10,
        train_x: x32[..n_train * len].to_vec(),
        train_y: y[..n_train].to_vec(),
        test_x: x32[n_train * len..].to_vec(),
        test_y: y[n_train..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_the_frozen_standard_set() {
        let frozen = super::super::mnist1d::load_frozen().unwrap();
        let made = generate(&Mnist1dArgs::default());
        assert_eq!(made.train_y, frozen.train_y, "train labels");
        assert_eq!(made.test_y, frozen.test_y, "test labels");
        let max_diff =
            made.train_x.iter().chain(&made.test_x).zip(frozen.train_x.iter().chain(&frozen.test_x)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("max |generated − frozen| = {max_diff:e}");
        assert!(max_diff <= 1e-5, "max |generated − frozen| = {max_diff}");
    }

    #[test]
    fn makes_larger_standardised_balanced_sets() {
        let d = generate(&Mnist1dArgs { num_samples: 20_000, ..Default::default() });
        assert_eq!((d.train_len(), d.test_len()), (16_000, 4_000));
        let mut counts = [0usize; 10];
        d.train_y.iter().chain(&d.test_y).for_each(|&y| counts[y as usize] += 1);
        assert_eq!(counts, [2000; 10]);
        let all: Vec<f64> = d.train_x.iter().chain(&d.test_x).map(|&v| f64::from(v)).collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "mean {mean}, var {var}");
    }
}
