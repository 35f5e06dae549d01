//! MNIST-1D (Greydanus 2020; Apache-2.0): 40-sample 1-D signals of the ten digit templates,
//! the standard frozen set of 4000 train / 1000 test examples, already standardised.
//!
//! The set ships inside the binary (`tasks/data/mnist1d.safetensors`, see `tasks/data/README.md`
//! for provenance), so it is always available.

use super::{Dataset, Layout};
use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};

static FROZEN: &[u8] = include_bytes!("../../data/mnist1d.safetensors");

/// The frozen standard set.
pub fn load_frozen() -> Result<Dataset> {
    let tensors = candle_core::safetensors::load_buffer(FROZEN, &Device::Cpu).context("mnist1d.safetensors")?;
    let get = |k: &str| tensors.get(k).with_context(|| format!("mnist1d.safetensors lacks `{k}`"));
    let xs = |k: &str| -> Result<Vec<f32>> { Ok(get(k)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?) };
    let ys = |k: &str| -> Result<Vec<u32>> { Ok(get(k)?.to_dtype(DType::I64)?.to_vec1::<i64>()?.into_iter().map(|v| v as u32).collect()) };
    let d = Dataset {
        layout: Layout::Examples,
        example_shape: vec![40],
        num_classes: 10,
        train_x: xs("x")?,
        train_y: ys("y")?,
        test_x: xs("x_test")?,
        test_y: ys("y_test")?,
    };
    ensure!(d.train_x.len() == 4000 * 40 && d.train_len() == 4000, "mnist1d train split must be 4000×40");
    ensure!(d.test_x.len() == 1000 * 40 && d.test_len() == 1000, "mnist1d test split must be 1000×40");
    Ok(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn frozen_set_has_balanced_labels() {
        let d = super::load_frozen().unwrap();
        let mut counts = [0usize; 10];
        for &y in d.train_y.iter().chain(&d.test_y) {
            counts[y as usize] += 1;
        }
        // 500 of each digit before the train/test split (the recipe draws 500 per label).
        assert_eq!(counts, [500; 10]);
    }
}
