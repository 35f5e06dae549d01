//! The optimizer interface and the textual specification that names an optimizer configuration.
//!
//! An optimizer is two things, kept apart as learned_optimization keeps them (`opt_fn(theta)` →
//! `init → state`, `update(state, grad, loss)`):
//! * an [`UpdateRule`]: what the optimizer *is* — hyperparameters, or a learned optimizer's
//!   meta-parameters already turned into its network — immutable and shared (`Arc`) by every
//!   run that uses it, so rebinding a new theta costs no re-parse of a checkpoint;
//! * its [`UpdateRule::State`]: what one run accumulates (moments, LSTM state, step counts),
//!   created by [`UpdateRule::init`], cloned to snapshot a run and cloned back to restore it.
//!
//! [`Bound`] joins the two into the object the training loop drives, [`Optimizer`], which
//! takes its tensors through [`Buffers`]: flat host slices today (one fused pass per tensor, no
//! per-op allocation), device tensors in a build that has a device path.
//!
//! **Members.** A rule may describe several *members* — a population sharing one model shape
//! (an LR grid, say), each with its own hyperparameters. Then every tensor's buffer holds all
//! members one after another (`members × numel`, member-major, as a `[K, …]` tensor lays them
//! out), each member is updated with its own hyperparameters and its own loss, and no member's
//! arithmetic depends on another's: a member of a population computes exactly what it computes
//! alone.

use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Name, shape and role of one parameter tensor, in the model's canonical (sorted-name) order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// `/`-joined path of the tensor in the model, e.g. `layer0/w`.
    pub name: String,
    /// Shape in elements per dimension (of one member); `[]` for a scalar.
    pub shape: Vec<usize>,
    /// What the tensor is in its model.
    #[serde(default)]
    pub role: Role,
}

/// What a tensor is in its model, for optimizers that treat tensors by role (Muon's practice
/// sends a model's input and output matrices to AdamW). The model declares it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Anything else: hidden weights, biases, gains.
    #[default]
    Hidden,
    /// The weights that read the input: the first layer, token and position embeddings.
    Input,
    /// The weights that write the output: the last layer, the output head.
    Output,
}

impl ParamInfo {
    /// A tensor of role [`Role::Hidden`].
    pub fn new(name: impl Into<String>, shape: Vec<usize>) -> Self {
        Self { name: name.into(), shape, role: Role::Hidden }
    }

    /// The same tensor with role `role`.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Number of elements of one member (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What an optimizer may know about the current step besides the gradients.
#[derive(Clone, Copy, Debug)]
pub struct StepContext<'a> {
    /// Zero-based index of the step being taken.
    pub step: u64,
    /// Training horizon in steps (learned optimizers and schedules read it; constant ones ignore it).
    pub num_steps: u64,
    /// Training loss of each member's mini-batch (nats), one per member.
    pub losses: &'a [f32],
}

impl StepContext<'_> {
    /// Member `k`'s mini-batch loss (nats); the last one given when fewer were passed.
    pub fn loss(&self, k: usize) -> f32 {
        self.losses.get(k).or(self.losses.last()).copied().unwrap_or(0.0)
    }
}

/// The tensors one update reads and writes.
pub enum Buffers<'a, 'b> {
    /// Flat row-major host buffers; `params[i]` and `grads[i]` hold tensor `i` for every member
    /// (`members × numel`, member-major).
    Host {
        /// Parameters, updated in place.
        params: &'a mut [&'b mut [f32]],
        /// Gradients, same layout.
        grads: &'a [&'a [f32]],
    },
    /// Tensors resident on a device, in the device runner's own type (kept opaque here so this
    /// crate links no tensor library). An optimizer without a device implementation answers
    /// [`UpdateError::NoDevicePath`].
    Device(&'a mut (dyn Any + Send)),
}

/// The parameters an optimizer reads to say where they are to be evaluated
/// ([`Optimizer::eval_point`]).
pub enum Params<'a> {
    /// Flat host buffers, member-major as [`Buffers::Host`]'s.
    Host(&'a [&'a [f32]]),
    /// The device runner's parameters (its `Vec` of candle variables), kept opaque here.
    Device(&'a (dyn Any + Send + Sync)),
}

/// Where an optimizer that trains at one point and is evaluated at another (Schedule-Free)
/// asks its parameters to be evaluated.
pub enum EvalAt {
    /// Host buffers, member-major as the parameters are.
    Host(Vec<Vec<f32>>),
    /// Device tensors, in the device runner's own type.
    Device(Box<dyn Any + Send>),
}

/// Why an update or a restore could not be done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpdateError {
    /// The optimizer has no implementation for device-resident tensors.
    #[error("optimizer `{0}` has no device implementation (host buffers only)")]
    NoDevicePath(&'static str),
    /// The device implementation failed (a tensor library error, or buffers of the wrong type).
    #[error("device update of `{0}` failed: {1}")]
    Device(&'static str, String),
    /// A snapshot of another optimizer's state was given to `restore`.
    #[error("snapshot does not hold `{0}` state")]
    WrongSnapshot(&'static str),
    /// An optimizer in another process (the step protocol) failed, timed out or exited.
    #[error("{0}")]
    Worker(String),
}

/// One optimizer's state, taken by [`Optimizer::snapshot`] and given back to
/// [`Optimizer::restore`] (the state is cloned both ways, so a snapshot can be restored twice).
pub struct Snapshot(Box<dyn Any + Send>);

impl Snapshot {
    /// A snapshot holding `state` (for optimizers that are not a [`Bound`] rule).
    pub fn new<T: Any + Send>(state: T) -> Self {
        Self(Box::new(state))
    }

    /// The state held, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
}

/// What an optimizer is: its hyperparameters or bound meta-parameters, shared by every run.
pub trait UpdateRule: Send + Sync + 'static {
    /// One run's (or one population's) accumulated state.
    type State: Clone + Send + 'static;
    /// Short name, for messages.
    fn name(&self) -> &'static str;
    /// Members this rule describes (each tensor buffer holds that many, member-major).
    fn members(&self) -> usize {
        1
    }
    /// Fresh state for tensors `params` (shapes of one member).
    fn init(&self, params: &[ParamInfo]) -> Self::State;
    /// One update of host buffers in place.
    fn update(&self, state: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>);

    /// Whether the rule is evaluated somewhere other than at its parameters
    /// ([`UpdateRule::eval_params`]).
    fn evaluates_elsewhere(&self) -> bool {
        false
    }

    /// The values to evaluate `params` at (every member, member-major), for a rule that trains
    /// one point and is evaluated at another; `None` (the default): the parameters themselves.
    fn eval_params(&self, _state: &Self::State, _params: &[&[f32]]) -> Option<Vec<Vec<f32>>> {
        None
    }
}

/// An optimizer the training loop drives: a rule bound to one run's state.
pub trait Optimizer: Send {
    /// Members updated together.
    fn members(&self) -> usize;
    /// Apply one update to `bufs`.
    fn update(&mut self, bufs: Buffers<'_, '_>, ctx: &StepContext<'_>) -> Result<(), UpdateError>;
    /// A copy of the current state.
    fn snapshot(&self) -> Snapshot;
    /// Put back a state taken by [`Optimizer::snapshot`] of an optimizer of the same rule type.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), UpdateError>;

    /// Whether this optimizer wants [`Buffers::Device`] even where host slices could be had (a
    /// device implementation run on the CPU, to check it there): the training loop then hands
    /// it the tensors themselves.
    fn wants_device_tensors(&self) -> bool {
        false
    }

    /// Whether the optimizer is evaluated somewhere other than at its parameters (Schedule-Free
    /// trains `y` and is evaluated at `x`): then every measurement of a run is taken at
    /// [`Optimizer::eval_point`].
    fn evaluates_elsewhere(&self) -> bool {
        false
    }

    /// Where the parameters `params` are to be evaluated; `None` (the default): at themselves.
    fn eval_point(&self, _params: Params<'_>) -> Result<Option<EvalAt>, UpdateError> {
        Ok(None)
    }

    /// [`Optimizer::update`] on host buffers, which every optimizer supports.
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) {
        self.update(Buffers::Host { params, grads }, ctx).expect("every optimizer updates host buffers")
    }
}

/// A rule bound to one run's state.
pub struct Bound<R: UpdateRule> {
    rule: Arc<R>,
    state: R::State,
}

impl<R: UpdateRule> Bound<R> {
    /// Fresh state of `rule` for tensors `params`.
    pub fn new(rule: Arc<R>, params: &[ParamInfo]) -> Self {
        let state = rule.init(params);
        Self { rule, state }
    }

    /// The rule.
    pub fn rule(&self) -> &Arc<R> {
        &self.rule
    }

    /// The state.
    pub fn state(&self) -> &R::State {
        &self.state
    }

    /// The state, mutably.
    pub fn state_mut(&mut self) -> &mut R::State {
        &mut self.state
    }

    /// Swap in another rule of the same type (a perturbed theta, say) and keep the state, as
    /// truncated meta-training does across outer steps.
    pub fn rebind(&mut self, rule: Arc<R>) {
        self.rule = rule;
    }
}

impl<R: UpdateRule> Optimizer for Bound<R> {
    fn members(&self) -> usize {
        self.rule.members()
    }

    fn update(&mut self, bufs: Buffers<'_, '_>, ctx: &StepContext<'_>) -> Result<(), UpdateError> {
        match bufs {
            Buffers::Host { params, grads } => {
                self.rule.update(&mut self.state, params, grads, ctx);
                Ok(())
            }
            Buffers::Device(_) => Err(UpdateError::NoDevicePath(self.rule.name())),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot(Box::new(self.state.clone()))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), UpdateError> {
        let s = snapshot.0.downcast_ref::<R::State>().ok_or(UpdateError::WrongSnapshot(self.rule.name()))?;
        self.state = s.clone();
        Ok(())
    }

    fn evaluates_elsewhere(&self) -> bool {
        self.rule.evaluates_elsewhere()
    }

    fn eval_point(&self, params: Params<'_>) -> Result<Option<EvalAt>, UpdateError> {
        match params {
            Params::Host(p) => Ok(self.rule.eval_params(&self.state, p).map(EvalAt::Host)),
            Params::Device(_) if self.rule.evaluates_elsewhere() => Err(UpdateError::NoDevicePath(self.rule.name())),
            Params::Device(_) => Ok(None),
        }
    }
}

/// Member `k`'s part of a member-major buffer of `members` members (`len / members` values).
#[inline]
pub fn member(buf: &[f32], members: usize, k: usize) -> &[f32] {
    let n = buf.len() / members.max(1);
    &buf[k * n..(k + 1) * n]
}

/// Member `k`'s part of a member-major buffer, mutably.
#[inline]
pub fn member_mut(buf: &mut [f32], members: usize, k: usize) -> &mut [f32] {
    let n = buf.len() / members.max(1);
    &mut buf[k * n..(k + 1) * n]
}

/// A textual optimizer configuration: `kind:key=value,key=value`, e.g. `adam:lr=1e-3`.
///
/// Values are numbers; they are stored as `f64` so `1e-3` and `0.001` name the same configuration
/// (and hash the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerSpec {
    /// Optimizer family, e.g. `adam`, `sgdm`.
    pub kind: String,
    /// Hyperparameters by name; unspecified ones take the optimizer's defaults.
    #[serde(default)]
    pub hparams: BTreeMap<String, f64>,
    /// SHA-256 (hex) of the checkpoint a learned optimizer is loaded from: the content, not the
    /// path, names the optimizer, so a moved file keeps its cached runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// A malformed optimizer specification.
#[derive(Debug, thiserror::Error)]
#[error("bad optimizer spec `{spec}`: {reason} (expected `kind:key=value,...`, e.g. `adam:lr=1e-3`)")]
pub struct SpecError {
    /// The text that failed to parse.
    pub spec: String,
    /// What was wrong with it.
    pub reason: String,
}

impl OptimizerSpec {
    /// A spec with no hyperparameters set.
    pub fn new(kind: &str) -> Self {
        Self { kind: kind.to_string(), hparams: BTreeMap::new(), checkpoint: None }
    }

    /// Builder: set one hyperparameter.
    pub fn with(mut self, key: &str, value: f64) -> Self {
        self.hparams.insert(key.to_string(), value);
        self
    }

    /// Parse `kind:key=value,...`.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let err = |reason: String| SpecError { spec: text.to_string(), reason };
        let (kind, rest) = match text.split_once(':') {
            Some((k, r)) => (k.trim(), r.trim()),
            None => (text.trim(), ""),
        };
        if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(err(format!("optimizer kind `{kind}` must be a non-empty name")));
        }
        let mut spec = Self::new(kind);
        for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| err(format!("`{pair}` is not `key=value`")))?;
            let value: f64 = v.trim().parse().map_err(|_| err(format!("value of `{}` is `{}`, not a number", k.trim(), v.trim())))?;
            if spec.hparams.insert(k.trim().to_string(), value).is_some() {
                return Err(err(format!("`{}` given twice", k.trim())));
            }
        }
        Ok(spec)
    }

    /// Hyperparameter `key`, or `default` when unset.
    pub fn get(&self, key: &str, default: f64) -> f64 {
        self.hparams.get(key).copied().unwrap_or(default)
    }
}

impl fmt::Display for OptimizerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(sha) = &self.checkpoint {
            write!(f, "@{}", &sha[..sha.len().min(12)])?;
        }
        for (i, (k, v)) in self.hparams.iter().enumerate() {
            write!(f, "{}{k}={v:e}", if i == 0 { ':' } else { ',' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let s = OptimizerSpec::parse("toy:lr=0.001, b1=0.8").unwrap();
        assert_eq!(s.kind, "toy");
        assert_eq!(s.get("lr", 0.0), 1e-3);
        assert_eq!(s.get("b2", 0.999), 0.999);
        assert_eq!(s.to_string(), "toy:b1=8e-1,lr=1e-3");
        assert_eq!(OptimizerSpec::parse(&s.to_string()).unwrap(), s);
        assert_eq!(OptimizerSpec::parse("toy_2").unwrap(), OptimizerSpec::new("toy_2"));
    }

    #[test]
    fn parse_rejects_garbage_with_reason() {
        let e = OptimizerSpec::parse("adam:lr=fast").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        assert!(OptimizerSpec::parse("adam:lr").is_err());
        assert!(OptimizerSpec::parse(":lr=1").is_err());
        assert!(OptimizerSpec::parse("adam:lr=1,lr=2").is_err());
    }

    /// A toy rule: p ← p − lr_k · g, counting steps in its state.
    struct Toy {
        lr: Vec<f32>,
    }

    impl UpdateRule for Toy {
        type State = u32;
        fn name(&self) -> &'static str {
            "toy"
        }
        fn members(&self) -> usize {
            self.lr.len()
        }
        fn init(&self, _: &[ParamInfo]) -> u32 {
            0
        }
        fn update(&self, state: &mut u32, params: &mut [&mut [f32]], grads: &[&[f32]], _: &StepContext<'_>) {
            *state += 1;
            for (p, g) in params.iter_mut().zip(grads) {
                for k in 0..self.lr.len() {
                    let g = member(g, self.lr.len(), k);
                    for (p, g) in member_mut(p, self.lr.len(), k).iter_mut().zip(g) {
                        *p -= self.lr[k] * g;
                    }
                }
            }
        }
    }

    #[test]
    fn bound_snapshots_restores_and_refuses_device_buffers() {
        let infos = [ParamInfo::new("w", vec![2])];
        let mut opt = Bound::new(Arc::new(Toy { lr: vec![0.5, 1.0] }), &infos);
        let mut p = vec![1.0f32, 1.0, 1.0, 1.0];
        let g = vec![1.0f32, 2.0, 3.0, 4.0];
        let ctx = StepContext { step: 0, num_steps: 1, losses: &[0.0, 0.0] };
        opt.step(&mut [&mut p], &[&g], &ctx);
        assert_eq!(p, [0.5, 0.0, -2.0, -3.0]);
        let snap = opt.snapshot();
        opt.step(&mut [&mut p], &[&g], &ctx);
        assert_eq!(*opt.state(), 2);
        opt.restore(&snap).unwrap();
        assert_eq!(*opt.state(), 1);
        opt.restore(&snap).unwrap();
        assert_eq!(*opt.state(), 1);
        assert_eq!(opt.restore(&Snapshot(Box::new(1.5f64))), Err(UpdateError::WrongSnapshot("toy")));
        let mut dev = 0u8;
        assert_eq!(opt.update(Buffers::Device(&mut dev), &ctx), Err(UpdateError::NoDevicePath("toy")));
        assert_eq!(ctx.loss(5), 0.0);
    }
}
