//! Muon on device tensors: the host rule's steps as candle operations — the momentum and
//! AdamW's moments elementwise, rounding where the host rule rounds (products as `affine`,
//! divisions by a 0-d tensor), Newton–Schulz as matrix products on the device.

use super::{Member, Plan, NAME};
use beatmatch_core::StepContext;
use beatmatch_device::{newton_schulz, scalar, times, value, DeviceRule};
use candle_core::{Tensor, Var};

/// Muon (one member): its constants and how it updates each tensor.
pub struct MuonOnDevice {
    pub(crate) member: Member,
    pub(crate) plans: Vec<Plan>,
}

/// The momentum per tensor, AdamW's second moment for the tensors that are not 2-D, and the
/// steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// Momentum per tensor.
    pub mu: Vec<Tensor>,
    /// Second moment per tensor (`None` for the 2-D tensors).
    pub nu: Vec<Option<Tensor>>,
    /// Steps taken.
    pub count: i32,
}

impl DeviceRule for MuonOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        NAME
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let mu = params.iter().map(|p| p.as_tensor().zeros_like()).collect::<candle_core::Result<_>>()?;
        let nu = params
            .iter()
            .zip(&self.plans)
            .map(|(p, plan)| if *plan == Plan::Adam { p.as_tensor().zeros_like().map(Some) } else { Ok(None) })
            .collect::<candle_core::Result<_>>()?;
        Ok(State { mu, nu, count: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        s.count += 1;
        let t = s.count;
        let c = &self.member;
        for (((w, g), (mu, nu)), plan) in params.iter().zip(grads).zip(s.mu.iter_mut().zip(s.nu.iter_mut())).zip(&self.plans) {
            let dev = w.device();
            let div = |x: &Tensor, d: f32| x.broadcast_div(&scalar(d, dev)?);
            let p = value(w);
            let step = match (nu, *plan) {
                (None, Plan::Matrix { rows, cols, scale }) => {
                    let (corr, corr_next) = Member::corrections(c.beta, t);
                    *mu = (times(g, c.one_minus_beta)? + times(mu, c.beta)?)?;
                    let estimate = if c.nesterov { (times(&div(mu, corr_next)?, c.beta)? + times(&div(g, corr)?, c.one_minus_beta)?)? } else { div(mu, corr)? };
                    let o = newton_schulz(&estimate, rows, cols, c.ns_steps, c.eps)?.reshape(w.shape())?;
                    times(&(times(&o, scale)? + times(&p, c.wd)?)?, -c.lr)?
                }
                (Some(v), _) => {
                    let m = c.adam;
                    let (c1, c2) = m.bias_corrections(t);
                    let c1_next = 1.0 - m.b1.powi(t + 1);
                    *mu = (times(g, m.one_minus_b1)? + times(mu, m.b1)?)?;
                    *v = (times(&g.sqr()?, m.one_minus_b2)? + times(v, m.b2)?)?;
                    let m_hat = if c.nesterov { (times(&div(mu, c1_next)?, m.b1)? + times(&div(g, c1)?, m.one_minus_b1)?)? } else { div(mu, c1)? };
                    let denom = div(v, c2)?.sqrt()?.affine(1.0, f64::from(m.eps))?;
                    let u = (m_hat.div(&denom)? + times(&p, c.adam_wd)?)?;
                    times(&u, -c.adam_lr)?
                }
                (None, Plan::Adam) => candle_core::bail!("{NAME}: no second moment for a tensor AdamW updates"),
            };
            w.set(&(p + step)?)?;
        }
        Ok(())
    }
}
