//! UCI optdigits as shipped by scikit-learn (`load_digits`): 1,797 8×8 images, pixels 0..16,
//! 10 classes (CC BY 4.0 UCI; BSD-3 scikit-learn). Shipped in the binary
//! (`tasks/data/digits.csv.gz`, last column the label). Split 80/20 by a fixed seeded shuffle,
//! pixels scaled to [0, 1].

use super::{Dataset, Layout};
use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::io::Read;

static DIGITS: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Parse the CSV (64 pixel columns then the label); errors name the line.
pub fn parse(csv: &str) -> Result<(Vec<f32>, Vec<u32>)> {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, line) in csv.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let vals: Vec<f32> =
            line.split(',').map(|v| v.trim().parse::<f32>()).collect::<Result<_, _>>().with_context(|| format!("digits.csv line {}: not numbers", i + 1))?;
        if vals.len() != 65 {
            bail!("digits.csv line {}: {} columns, expected 65 (64 pixels and a label)", i + 1, vals.len());
        }
        if let Some(j) = vals[..64].iter().position(|p| !(0.0..=16.0).contains(p)) {
            bail!("digits.csv line {}: pixel {} is {}, expected a value in 0..=16", i + 1, j + 1, vals[j]);
        }
        let label = vals[64];
        if !(0.0..10.0).contains(&label) || label.fract() != 0.0 {
            bail!("digits.csv line {}: label {label} is not in 0..=9", i + 1);
        }
        x.extend(vals[..64].iter().map(|p| p / 16.0));
        y.push(label as u32);
    }
    Ok((x, y))
}

/// The shipped set, split 80/20 by a ChaCha8 shuffle with seed 0.
pub fn load() -> Result<Dataset> {
    let mut text = String::new();
    GzDecoder::new(DIGITS).read_to_string(&mut text).context("digits.csv.gz")?;
    let (x, y) = parse(&text)?;
    let n = y.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    let n_train = n * 4 / 5;
    let pick = |idx: &[usize]| -> (Vec<f32>, Vec<u32>) {
        (idx.iter().flat_map(|&i| x[i * 64..(i + 1) * 64].iter().copied()).collect(), idx.iter().map(|&i| y[i]).collect())
    };
    let (train_x, train_y) = pick(&order[..n_train]);
    let (test_x, test_y) = pick(&order[n_train..]);
    Ok(Dataset { layout: Layout::Examples, example_shape: vec![8, 8], num_classes: 10, train_x, train_y, test_x, test_y })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_set_loads_and_splits() {
        let d = load().unwrap();
        assert_eq!((d.train_len(), d.test_len(), d.example_len()), (1437, 360, 64));
        assert!(d.train_x.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let mut counts = [0usize; 10];
        d.train_y.iter().chain(&d.test_y).for_each(|&y| counts[y as usize] += 1);
        assert!(counts.iter().all(|&c| (170..=185).contains(&c)), "{counts:?}");
    }

    #[test]
    fn bad_rows_name_the_line() {
        let e = parse("1,2,3\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("expected 65"), "{e}");
        let row = vec!["0"; 64].join(",") + ",12\n";
        assert!(parse(&row).unwrap_err().to_string().contains("not in 0..=9"));
    }
}
