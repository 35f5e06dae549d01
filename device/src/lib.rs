//! Device-resident optimizer steps: the machinery every optimizer's device rule is written
//! with. Parameters, gradients and every moment stay candle tensors on the run's device (the
//! CPU or a CUDA GPU) for the whole run; only a step's scalar constants (bias corrections, a
//! schedule's learning rate) are computed on the host.
//!
//! * [`DeviceRule`]: an update rule over device tensors, bound to one run's state by
//!   [`OnDevice`], the [`Optimizer`] the training loop drives. It takes [`DeviceTensors`]
//!   through [`Buffers::Device`]; handed host slices (the fixture harness), it runs the same
//!   code on candle's CPU device (or the device given) and copies back.
//! * [`fused`]: one kernel per parameter tensor and step from one C source
//!   (`kernels/rules.h`), compiled for the CPU and (with the `cuda` feature) to PTX.
//! * [`lopt`]: the learned optimizers' fused steps, PyLO's two passes per tensor from one C
//!   source (`kernels/lopt.h`), compiled the same two ways.
//! * [`scalar`], [`times`], [`value`]: the candle operations that round where the host rules
//!   round, for rules written as compositions of candle ops.
//!
//! The optimizers themselves live with their host rules — the hand-designed kinds in
//! `beatmatch-baselines`, the learned architectures in `beatmatch-learned` — each one module
//! holding both. On the CPU a device rule gives its host rule's bits, and it passes the same
//! fixture checks.

pub mod fused;
pub mod lopt;

use anyhow::{bail, Result};
use beatmatch_core::{Buffers, EvalAt, Optimizer, ParamInfo, Params, Snapshot, StepContext, UpdateError};
use candle_core::{DType, Device, Tensor, Var};
use std::sync::Arc;

/// The tensors a device-resident optimizer receives through [`Buffers::Device`].
pub struct DeviceTensors {
    /// The parameters, updated in place.
    pub params: Vec<Var>,
    /// Their gradients.
    pub grads: Vec<Tensor>,
}

/// An update rule over device tensors: its hyperparameters; one run's state is
/// [`DeviceRule::State`], candle tensors on the run's device.
pub trait DeviceRule: Send + Sync + 'static {
    /// One run's accumulated state. Updates replace its tensors (never write them in place), so
    /// a clone is a snapshot.
    type State: Clone + Send + 'static;
    /// Short name, for messages.
    fn name(&self) -> &'static str;
    /// Members updated together: each parameter tensor is then `[members, …]`, member-major
    /// (one member's tensors keep their own shapes).
    fn members(&self) -> usize {
        1
    }
    /// Fresh state for `params` (on their device, with their shapes).
    fn init(&self, params: &[Var]) -> candle_core::Result<Self::State>;
    /// One update of `params` in place.
    fn update(&self, state: &mut Self::State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()>;

    /// Whether the rule is evaluated somewhere other than at its parameters.
    fn evaluates_elsewhere(&self) -> bool {
        false
    }

    /// The tensors to evaluate `params` at, for a rule that trains one point and is evaluated
    /// at another; `None` (the default): the parameters themselves.
    fn eval_params(&self, _state: &Self::State, _params: &[Var]) -> candle_core::Result<Option<Vec<Tensor>>> {
        Ok(None)
    }
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

    /// Tensor `i`'s shape as the rule takes it: its own for one member, `[members, …]` for more.
    fn shape(&self, i: usize) -> Vec<usize> {
        let own = &self.infos[i].shape;
        match self.rule.members() {
            1 => own.clone(),
            m => std::iter::once(m).chain(own.iter().copied()).collect(),
        }
    }

    fn on_host(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let dev = self.host_device.clone();
        let vars = params.iter().enumerate().map(|(i, p)| Var::from_slice(p, self.shape(i), &dev)).collect::<candle_core::Result<Vec<_>>>()?;
        let gs = grads.iter().enumerate().map(|(i, g)| Tensor::from_slice(g, self.shape(i), &dev)).collect::<candle_core::Result<Vec<_>>>()?;
        self.apply(&vars, &gs, ctx)?;
        for (p, v) in params.iter_mut().zip(&vars) {
            p.copy_from_slice(&v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }
}

impl<R: DeviceRule> Optimizer for OnDevice<R> {
    fn members(&self) -> usize {
        self.rule.members()
    }

    fn update(&mut self, bufs: Buffers<'_, '_>, ctx: &StepContext<'_>) -> Result<(), UpdateError> {
        let name = self.rule.name();
        let result = match bufs {
            Buffers::Device(any) => {
                let Some(t) = any.downcast_mut::<DeviceTensors>() else {
                    return Err(UpdateError::Device(name, "device buffers are not beatmatch_device::DeviceTensors".into()));
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

    fn evaluates_elsewhere(&self) -> bool {
        self.rule.evaluates_elsewhere()
    }

    /// On the device: the rule's tensors for the device runner's `Vec<Var>`. Handed host
    /// slices (the fixture harness), the same code on the upload device, copied back.
    fn eval_point(&self, params: Params<'_>) -> Result<Option<EvalAt>, UpdateError> {
        let name = self.rule.name();
        let Some(state) = &self.state else { return Ok(None) };
        let fail = |e: candle_core::Error| UpdateError::Device(name, e.to_string());
        match params {
            Params::Device(any) => {
                let Some(vars) = any.downcast_ref::<Vec<Var>>() else {
                    return Err(UpdateError::Device(name, "device parameters are not a Vec<candle_core::Var>".into()));
                };
                Ok(self.rule.eval_params(state, vars).map_err(fail)?.map(|t| EvalAt::Device(Box::new(t))))
            }
            Params::Host(slices) => {
                let dev = self.host_device.clone();
                let vars =
                    slices.iter().enumerate().map(|(i, p)| Var::from_slice(p, self.shape(i), &dev)).collect::<candle_core::Result<Vec<_>>>().map_err(fail)?;
                let Some(tensors) = self.rule.eval_params(state, &vars).map_err(fail)? else { return Ok(None) };
                let values = tensors.iter().map(|t| t.flatten_all()?.to_vec1::<f32>()).collect::<candle_core::Result<_>>().map_err(fail)?;
                Ok(Some(EvalAt::Host(values)))
            }
        }
    }
}

/// `rule` bound to fresh state for tensors `params` (shapes of one member; the rule's members
/// each have them), uploading host slices (when handed those) to `device`.
pub fn on<R: DeviceRule>(rule: R, params: &[ParamInfo], device: &Device) -> Box<dyn Optimizer> {
    Box::new(OnDevice::new(rule, params).uploading_to(device))
}

/// Refuse more than one member for a rule that steps one member at a time on a device (only
/// the fused kernels step several). `name` is the optimizer's, for the message.
pub fn one_member(members: usize, name: &str) -> Result<()> {
    if members != 1 {
        bail!("`{name}` steps one member at a time on a device; {members} members were asked for");
    }
    Ok(())
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
pub fn scalar(x: f32, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::new(x, dev)
}

/// `x · c`, rounded once as the host rule's product is.
pub fn times(x: &Tensor, c: f32) -> candle_core::Result<Tensor> {
    x.affine(f64::from(c), 0.0)
}

/// The variable's current value, detached so the update builds no autograd graph (state
/// tensors derived from it would otherwise chain every past step).
pub fn value(w: &Var) -> Tensor {
    w.as_tensor().detach()
}

/// Orthogonalise `g` as the `rows × cols` matrix its values are, as `beatmatch_core::newton_schulz`
/// does on the host; the result has `g`'s shape.
pub fn newton_schulz(g: &Tensor, rows: usize, cols: usize, steps: usize, eps: f32) -> candle_core::Result<Tensor> {
    let g = g.reshape((rows, cols))?;
    let mut x = if rows > cols { g.t()?.contiguous()? } else { g.clone() };
    let norm = x.to_dtype(DType::F64)?.sqr()?.sum_all()?.sqrt()?.to_dtype(DType::F32)?;
    x = x.broadcast_div(&(norm + f64::from(eps))?)?;
    let [ca, cb, cc] = beatmatch_core::newton_schulz::NS_COEFFS;
    for _ in 0..steps {
        let a = x.matmul(&x.t()?)?;
        let b = (times(&a, cc)?.matmul(&a)? + times(&a, cb)?)?;
        x = (times(&x, ca)? + b.matmul(&x)?)?;
    }
    if rows > cols {
        x = x.t()?.contiguous()?;
    }
    Ok(x)
}
