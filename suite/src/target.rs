//! Where a study trains, from the `--device` name: its [`Engine`] (the host path or a candle
//! device) and the device class that goes into every run key (so results of different
//! hardware never share a record).
//!
//! * `cpu`: the host path — every family on the native engine, as populations, the host
//!   optimizers on the parameters' own storage.
//! * `cpu-device`: candle's CPU device through the device path — what a GPU run executes,
//!   checked on the CPU (`beatmatch-device`'s optimizers, the candle models, device populations
//!   where the family batches members).
//! * `cuda`, `cuda:N` (builds with the `cuda` feature): GPU `N` through the device path; the
//!   key names the GPU, `cuda/<name>`.

use crate::engine::Engine;
use anyhow::{bail, Result};
use candle_core::Device;

/// A resolved `--device`.
#[derive(Clone, Debug)]
pub struct Target {
    /// Where and how runs train.
    pub engine: Engine,
    /// The device class recorded in run keys: `cpu`, `cpu-device`, `cuda/<GPU name>`.
    pub key: String,
}

impl Target {
    /// The host CPU path.
    pub fn cpu() -> Self {
        Self { engine: Engine::Host, key: "cpu".into() }
    }

    /// Resolve a `--device` name.
    pub fn resolve(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(Self::cpu()),
            "cpu-device" => Ok(Self { engine: Engine::Device(Device::Cpu), key: "cpu-device".into() }),
            _ if name == "cuda" || name.starts_with("cuda:") => cuda(name),
            _ => bail!("unknown device `{name}`: expected cpu, cpu-device (the device path on the CPU), cuda or cuda:N"),
        }
    }

    /// The device tensors live on.
    pub fn device(&self) -> &Device {
        self.engine.device()
    }

    /// Whether the target is a GPU.
    pub fn is_gpu(&self) -> bool {
        !self.device().is_cpu()
    }

    /// Free memory on a GPU target, in bytes (None on the CPU, where tasks are not sized).
    pub fn free_memory(&self) -> Result<Option<u64>> {
        free_memory(self.device())
    }
}

/// How many runs of `problem` fit in half of `device`'s free memory by the study's estimate (at
/// least 1; the other half is the estimate's margin), when it is a GPU (None on the CPU): what a
/// device population may hold.
pub fn members_that_fit(problem: &beatmatch_tasks::Problem, device: &Device) -> Result<Option<usize>> {
    let need = beatmatch_tasks::memory::estimate(problem, 2.0).total().max(1);
    Ok(free_memory(device)?.map(|free| ((free / 2) / need).max(1) as usize))
}

/// Free memory of `device` in bytes, when it is a GPU (None on the CPU).
#[cfg(feature = "cuda")]
pub fn free_memory(device: &Device) -> Result<Option<u64>> {
    match device {
        Device::Cuda(d) => Ok(Some(d.cuda_stream().context().mem_get_info()?.0 as u64)),
        _ => Ok(None),
    }
}

/// Free memory of `device` in bytes, when it is a GPU (None on the CPU).
#[cfg(not(feature = "cuda"))]
pub fn free_memory(_device: &Device) -> Result<Option<u64>> {
    Ok(None)
}

#[cfg(feature = "cuda")]
fn cuda(name: &str) -> Result<Target> {
    use anyhow::Context;
    // candle's errors carry a backtrace in their message; the first line is the driver's word.
    let device = beatmatch_device::parse_device(name).map_err(|e| {
        let msg = format!("{e:#}");
        anyhow::anyhow!("cannot open device `{name}`: {}", msg.lines().next().unwrap_or_default())
    })?;
    let Device::Cuda(d) = &device else { unreachable!("parse_device gives a CUDA device for `{name}`") };
    let gpu = d.cuda_stream().context().name().with_context(|| format!("reading the name of {name}"))?;
    Ok(Target { key: format!("cuda/{gpu}"), engine: Engine::Device(device) })
}

#[cfg(not(feature = "cuda"))]
fn cuda(name: &str) -> Result<Target> {
    bail!("device `{name}` is not available: this build has no CUDA backend; build with `cargo build --release --features cuda` (ci/cuda-check.sh shows how without a GPU)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_or_say_what_is_accepted() {
        let t = Target::resolve("cpu").unwrap();
        assert!(!t.engine.is_device() && t.key == "cpu");
        let t = Target::resolve("cpu-device").unwrap();
        assert!(t.engine.is_device() && t.key == "cpu-device" && !t.is_gpu());
        let e = Target::resolve("tpu").unwrap_err().to_string();
        assert!(e.contains("expected cpu, cpu-device"), "{e}");
        if cfg!(not(feature = "cuda")) {
            let e = Target::resolve("cuda:1").unwrap_err().to_string();
            assert!(e.contains("no CUDA backend") && e.contains("--features cuda"), "{e}");
        }
    }
}
