//! The hand-designed optimizers on device-resident tensors: parameters, gradients and every
//! moment stay candle tensors on the run's device (the CPU or a CUDA GPU) for the whole run;
//! only the step's scalar constants (bias corrections, the schedule's learning rate) are
//! computed on the host.
//!
//! SGD (heavy-ball, Nesterov), Adam, AdamW, NAdamW, RMSProp and Lion are fused kernels
//! ([`fused`]): one kernel per parameter tensor and step, from one C source compiled for the
//! CPU and (with the `cuda` feature) to PTX. Adafactor and the learned optimizers' networks
//! are compositions of candle's ops (one kernel launch each), written so that every operation
//! rounds where the host rule rounds (products as `affine(c, 0)`, divisions by scalars as a
//! division by a 0-d tensor, the same association). Either way, on the CPU the device path
//! gives the host path's bits (`tests/equivalence.rs`), and it passes the same fixture checks
//! (`tests/conformance.rs`).
//!
//! [`OnDevice`] is the [`Optimizer`] the training loop drives. It takes
//! [`beatmatch_tasks::inner::DeviceTensors`] through [`Buffers::Device`]; handed host slices
//! (the fixture harness), it runs the same code on candle's CPU device and copies back.

pub mod adafactor;
pub mod adam;
pub mod fused;
pub mod lion;
pub mod lopt;
pub mod mlp_lopt;
pub mod nadamw;
pub mod rmsprop;
pub mod sgd;
pub mod small_fc;
pub mod velo;

use anyhow::{bail, Result};
use beatmatch_baselines::Config;
use beatmatch_core::{Buffers, Optimizer, OptimizerSpec, ParamInfo, Snapshot, StepContext, UpdateError};
use beatmatch_learned::checkpoint::Architecture;
use beatmatch_learned::theta::Theta;
use beatmatch_tasks::inner::DeviceTensors;
use candle_core::{Device, Tensor, Var};
use std::sync::Arc;

/// An update rule over device tensors: its hyperparameters; one run's state is
/// [`DeviceRule::State`], candle tensors on the run's device.
pub trait DeviceRule: Send + Sync + 'static {
    /// One run's accumulated state. Updates replace its tensors (never write them in place), so
    /// a clone is a snapshot.
    type State: Clone + Send + 'static;
    /// Short name, for messages.
    fn name(&self) -> &'static str;
    /// Fresh state for `params` (on their device, with their shapes).
    fn init(&self, params: &[Var]) -> candle_core::Result<Self::State>;
    /// One update of `params` in place.
    fn update(&self, state: &mut Self::State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()>;
}

/// A device rule bound to one run's state (created at the first update, on the parameters'
/// device).
pub struct OnDevice<R: DeviceRule> {
    rule: Arc<R>,
    infos: Vec<ParamInfo>,
    state: Option<R::State>,
    /// Where host slices are uploaded to when the caller hands those.
    host_device: Device,
}

impl<R: DeviceRule> OnDevice<R> {
    /// `rule` for tensors `params`.
    pub fn new(rule: R, params: &[ParamInfo]) -> Self {
        Self { rule: Arc::new(rule), infos: params.to_vec(), state: None, host_device: Device::Cpu }
    }

    /// Upload host slices to `device` (instead of candle's CPU device) when handed those.
    pub fn uploading_to(mut self, device: &Device) -> Self {
        self.host_device = device.clone();
        self
    }

    fn apply(&mut self, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        if self.state.is_none() {
            self.state = Some(self.rule.init(params)?);
        }
        let state = self.state.as_mut().expect("initialised above");
        let grads: Vec<Tensor> = grads.iter().map(Tensor::detach).collect();
        self.rule.update(state, params, &grads, ctx)
    }

    fn on_host(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let dev = self.host_device.clone();
        let vars = params.iter().zip(&self.infos).map(|(p, i)| Var::from_slice(p, i.shape.clone(), &dev)).collect::<candle_core::Result<Vec<_>>>()?;
        let gs = grads.iter().zip(&self.infos).map(|(g, i)| Tensor::from_slice(g, i.shape.clone(), &dev)).collect::<candle_core::Result<Vec<_>>>()?;
        self.apply(&vars, &gs, ctx)?;
        for (p, v) in params.iter_mut().zip(&vars) {
            p.copy_from_slice(&v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }
}

impl<R: DeviceRule> Optimizer for OnDevice<R> {
    fn members(&self) -> usize {
        1
    }

    fn update(&mut self, bufs: Buffers<'_, '_>, ctx: &StepContext<'_>) -> Result<(), UpdateError> {
        let name = self.rule.name();
        let result = match bufs {
            Buffers::Device(any) => {
                let Some(t) = any.downcast_mut::<DeviceTensors>() else {
                    return Err(UpdateError::Device(name, "device buffers are not beatmatch_tasks::inner::DeviceTensors".into()));
                };
                self.apply(&t.params, &t.grads, ctx)
            }
            Buffers::Host { params, grads } => self.on_host(params, grads, ctx),
        };
        result.map_err(|e| UpdateError::Device(name, e.to_string()))
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.state.clone())
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), UpdateError> {
        let s = snapshot.get::<Option<R::State>>().ok_or(UpdateError::WrongSnapshot(self.rule.name()))?;
        self.state = s.clone();
        Ok(())
    }

    fn wants_device_tensors(&self) -> bool {
        true
    }
}

/// The device implementation of the hand-designed optimizer `spec` names (one member; specs
/// are parsed and checked exactly as [`beatmatch_baselines::build`] parses them).
pub fn build(spec: &OptimizerSpec, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
    build_members(std::slice::from_ref(spec), params)
}

/// [`build`] for several members: refused beyond one, since populations on the device are not
/// built yet (the population engine is the CPU's).
pub fn build_members(specs: &[OptimizerSpec], params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
    build_on(specs, params, &Device::Cpu)
}

/// [`build_members`], uploading host slices (when handed those) to `device`: how the fixture
/// checks run the device code on a GPU.
pub fn build_on(specs: &[OptimizerSpec], params: &[ParamInfo], device: &Device) -> Result<Box<dyn Optimizer>> {
    let config = beatmatch_baselines::configure(specs)?;
    if config.members() != 1 {
        bail!("the device path trains one member at a time; {} members of `{}` were asked for", config.members(), specs[0].kind);
    }
    fn on<R: DeviceRule>(rule: R, params: &[ParamInfo], device: &Device) -> Box<dyn Optimizer> {
        Box::new(OnDevice::new(rule, params).uploading_to(device))
    }
    use fused::Fused;
    Ok(match config {
        Config::Adam(hp) => on(Fused(adam::Adam::new(hp[0])), params, device),
        Config::AdamW(hp) => on(Fused(adam::AdamW::new(hp[0])), params, device),
        Config::Sgd(hp) => on(Fused(sgd::Sgd(hp[0])), params, device),
        Config::NAdamW(hp) => on(Fused(nadamw::NAdamW(hp[0])), params, device),
        Config::RmsProp(hp) => on(Fused(rmsprop::RmsProp::new(hp[0])), params, device),
        Config::Adafactor(hp) => on(adafactor::Adafactor(hp[0]), params, device),
        Config::Lion(hp) => on(Fused(lion::Lion(hp[0])), params, device),
    })
}

/// The device implementation of learned optimizer `arch` bound to `theta` (one member). Host
/// slices, when handed those, are uploaded to `device`.
pub fn build_learned(
    arch: Architecture,
    theta: &Theta,
    hyper: &beatmatch_learned::Hyperparameters,
    members: usize,
    params: &[ParamInfo],
    device: &Device,
) -> Result<Box<dyn Optimizer>> {
    if members != 1 {
        bail!("the device path trains one member at a time; {members} members of `{}` were asked for", arch.as_str());
    }
    Ok(match arch {
        Architecture::MlpLopt => Box::new(OnDevice::new(mlp_lopt::MlpLopt(beatmatch_learned::bind_mlp_lopt(theta, hyper)?), params).uploading_to(device)),
        Architecture::SmallFc => Box::new(OnDevice::new(small_fc::SmallFc(beatmatch_learned::bind_small_fc(theta, hyper)?), params).uploading_to(device)),
        Architecture::Velo => Box::new(
            OnDevice::new(velo::Velo(beatmatch_learned::velo::VeloNet::bind(theta, beatmatch_learned::velo::VeloConfig::default())?), params)
                .uploading_to(device),
        ),
    })
}

/// The candle device `name` names: `cpu`, `cuda` (GPU 0) or `cuda:N`.
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Device::new_cuda(n)?),
            _ => bail!("unknown device `{name}`: expected cpu, cuda or cuda:N"),
        },
    }
}

/// A 0-d f32 tensor on `dev`, to divide by exactly (candle's `x / c` multiplies by `1 / c`,
/// which rounds differently from the host rule's division).
pub(crate) fn scalar(x: f32, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::new(x, dev)
}

/// `x · c`, rounded once as the host rule's product is.
pub(crate) fn times(x: &Tensor, c: f32) -> candle_core::Result<Tensor> {
    x.affine(f64::from(c), 0.0)
}

/// The variable's current value, detached so the update builds no autograd graph (state
/// tensors derived from it would otherwise chain every past step).
pub(crate) fn value(w: &Var) -> Tensor {
    w.as_tensor().detach()
}
