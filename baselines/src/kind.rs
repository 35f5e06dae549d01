//! What a hand-designed optimizer kind is, as one descriptor: its name, its hyperparameters
//! (name, default, accepted range, one-line doc), its host rule, its device rule, whether one
//! run serves every budget, its legend and the reference configurations it answers. Each kind's
//! module holds one [`Kind`]; [`crate::KINDS`] lists them, and everything else — parsing
//! specs, building host or device optimizers, the CLI's help, the README's table — reads
//! that list (plus the kinds a program adds with [`crate::register`]).

use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo};
use candle_core::Device;

/// The values a hyperparameter accepts. NaN and infinities are outside every range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// A finite number > 0 (learning rates).
    Positive,
    /// > 0 (a denominator's epsilon).
    Epsilon,
    /// In [0, 1): an exponential decay or momentum.
    Decay,
    /// In [0, 1), or −1: unset, another hyperparameter's value is used (its doc says which).
    DecayOrUnset,
    /// ≥ 0, where 0 turns the term off (weight decay, clipping).
    Off,
    /// 0 or 1.
    Flag,
    /// In [0, 1]: a fraction of training or of the learning rate.
    Fraction,
    /// In (0, 1].
    OpenFraction,
    /// A whole number ≥ 1.
    Count,
    /// A whole number ≥ 0 (steps, where 0 turns the term off).
    Steps,
    /// Any finite number.
    Finite,
}

impl Range {
    /// Whether `value` lies in the range.
    pub fn accepts(self, value: f64) -> bool {
        value.is_finite()
            && match self {
                Range::Positive | Range::Epsilon => value > 0.0,
                Range::Decay => (0.0..1.0).contains(&value),
                Range::DecayOrUnset => value == -1.0 || (0.0..1.0).contains(&value),
                Range::Off => value >= 0.0,
                Range::Flag => value == 0.0 || value == 1.0,
                Range::Fraction => (0.0..=1.0).contains(&value),
                Range::OpenFraction => value > 0.0 && value <= 1.0,
                Range::Count => value >= 1.0 && value.fract() == 0.0,
                Range::Steps => value >= 0.0 && value.fract() == 0.0,
                Range::Finite => true,
            }
    }

    /// The range in words, for messages: `in [0, 1)`.
    pub fn describe(self) -> &'static str {
        match self {
            Range::Positive => "a finite number > 0",
            Range::Epsilon => "> 0",
            Range::Decay => "in [0, 1)",
            Range::DecayOrUnset => "in [0, 1), or -1 (unset)",
            Range::Off => "≥ 0 (0 turns it off)",
            Range::Flag => "0 or 1",
            Range::Fraction => "in [0, 1]",
            Range::OpenFraction => "in (0, 1]",
            Range::Count => "a whole number ≥ 1",
            Range::Steps => "a whole number ≥ 0 (0 turns it off)",
            Range::Finite => "finite",
        }
    }
}

/// One hyperparameter of a kind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hparam {
    /// Its name in specs, e.g. `lr`.
    pub name: &'static str,
    /// The value when a spec does not set it.
    pub default: f64,
    /// What it accepts.
    pub range: Range,
    /// One line: what it is, with its unit.
    pub doc: &'static str,
}

/// One member's hyperparameters: every one of its kind's, set or defaulted, range-checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Values {
    hparams: &'static [Hparam],
    values: Vec<f64>,
}

impl Values {
    /// The values `spec` sets over the defaults of `hparams` (already checked by the caller).
    pub(crate) fn of(hparams: &'static [Hparam], spec: &OptimizerSpec) -> Self {
        Self { hparams, values: hparams.iter().map(|h| spec.get(h.name, h.default)).collect() }
    }

    /// Hyperparameter `name`. A name the kind does not declare is a programming error.
    pub fn get(&self, name: &str) -> f64 {
        let i = self.hparams.iter().position(|h| h.name == name).unwrap_or_else(|| panic!("no hyperparameter `{name}` is declared"));
        self.values[i]
    }
}

/// A hyperparameter's value as its field type: numbers as they are, flags as `!= 0`, counts
/// as whole numbers (the range check has made them so).
pub trait FromValue {
    /// `v` as `Self`.
    fn from_value(v: f64) -> Self;
}

impl FromValue for f64 {
    fn from_value(v: f64) -> Self {
        v
    }
}

impl FromValue for bool {
    fn from_value(v: f64) -> Self {
        v != 0.0
    }
}

impl FromValue for usize {
    fn from_value(v: f64) -> Self {
        v as usize
    }
}

/// A hand-designed optimizer kind: the one descriptor everything about it is read from.
///
/// A kind written outside this crate plugs in with [`crate::register`]:
///
/// ```
/// use beatmatch_baselines::kind::{Hparam, Kind, Range, Values};
/// use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext, UpdateRule};
/// use std::sync::Arc;
///
/// /// Sign descent: `p ← p − lr·sign(g)`.
/// struct SignSgd(Vec<f32>);
///
/// impl UpdateRule for SignSgd {
///     type State = ();
///     fn name(&self) -> &'static str { "doc_signsgd" }
///     fn members(&self) -> usize { self.0.len() }
///     fn init(&self, _: &[ParamInfo]) {}
///     fn update(&self, _: &mut (), params: &mut [&mut [f32]], grads: &[&[f32]], _: &StepContext<'_>) {
///         for (p, g) in params.iter_mut().zip(grads) {
///             let n = g.len() / self.0.len();
///             for (i, (p, g)) in p.iter_mut().zip(g.iter()).enumerate() {
///                 *p -= self.0[i / n.max(1)] * g.signum();
///             }
///         }
///     }
/// }
///
/// struct SignSgdKind;
///
/// impl Kind for SignSgdKind {
///     fn name(&self) -> &'static str { "doc_signsgd" }
///     fn about(&self) -> &'static str { "sign descent" }
///     fn hparams(&self) -> &'static [Hparam] {
///         &[Hparam { name: "lr", default: 1e-3, range: Range::Positive, doc: "learning rate" }]
///     }
///     fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
///         let lr = members.iter().map(|m| m.get("lr") as f32).collect();
///         Box::new(Bound::new(Arc::new(SignSgd(lr)), params))
///     }
/// }
///
/// static SIGN_SGD: SignSgdKind = SignSgdKind;
/// beatmatch_baselines::register(&SIGN_SGD).unwrap();
/// let spec = beatmatch_core::OptimizerSpec::parse("doc_signsgd:lr=0.5").unwrap();
/// let params = [ParamInfo::new("w", vec![2])];
/// let mut opt = beatmatch_baselines::build(&spec, &params).unwrap();
/// let mut w = vec![1.0f32, 1.0];
/// opt.step(&mut [&mut w], &[&[3.0, -0.1]], &StepContext { step: 0, num_steps: 1, losses: &[0.0] });
/// assert_eq!(w, [0.5, 1.5]);
/// ```
pub trait Kind: Send + Sync {
    /// The name specs and the command line use, e.g. `adam`.
    fn name(&self) -> &'static str;

    /// One line: what the optimizer is and whose computation it reproduces.
    fn about(&self) -> &'static str;

    /// Its hyperparameters, in the order messages and tables list them.
    fn hparams(&self) -> &'static [Hparam];

    /// The host rule over `members` (one set of values each, member-major buffers), bound to
    /// fresh state for tensors `params`.
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer>;

    /// The device rule for one member, uploading host slices (when handed those) to `device`;
    /// `None` for a kind without one.
    fn device(&self, member: &Values, params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        self.device_members(std::slice::from_ref(member), params, device)
    }

    /// The device rule over several members at once (tensors `[members, …]`, one fused kernel
    /// launch per tensor for all of them), for a kind whose device rule is a fused kernel;
    /// `None` for the others, which step one member at a time.
    fn device_members(&self, _members: &[Values], _params: &[ParamInfo], _device: &Device) -> Option<Box<dyn Optimizer>> {
        None
    }

    /// Whether the rule ignores the training horizon, so one run to the longest budget can be
    /// read off at every shorter budget.
    fn is_horizon_free(&self, _member: &Values) -> bool {
        true
    }

    /// The legend of one configuration run as a candidate.
    fn legend(&self, spec: &OptimizerSpec) -> String {
        format!("{spec} (1 trial)")
    }

    /// The spec of a reference fixture's configuration (case `name`, sidecar `meta`) when it
    /// names this kind's reference optimizer; `None` when it names another. A reference
    /// argument the kind does not implement is an error naming it, never silently dropped.
    fn reference_spec(&self, _name: &str, _meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        None
    }
}

/// Declares a kind's hyperparameters once: a struct with one public field per hyperparameter,
/// its [`Hparam`] table (`HPARAMS`, from the fields' names, defaults, ranges and doc comments)
/// and `from_values`, which reads a member's checked [`Values`] into it.
///
/// ```
/// beatmatch_baselines::hyperparameters! {
///     /// A toy kind's hyperparameters.
///     pub struct ToyHp {
///         /// Learning rate.
///         lr: f64 = 1e-3, Positive;
///         /// Use the heavy ball (0 or 1).
///         heavy: bool = 0.0, Flag;
///     }
/// }
/// assert_eq!(ToyHp::HPARAMS[1].name, "heavy");
/// assert_eq!(ToyHp::HPARAMS[0].doc, "Learning rate.");
/// ```
#[macro_export]
macro_rules! hyperparameters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( #[doc = $doc:literal] $field:ident : $ty:ty = $default:expr, $range:ident; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        $vis struct $name {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        impl $name {
            /// The hyperparameters: name, default, range and doc, in declaration order.
            pub const HPARAMS: &'static [$crate::kind::Hparam] = &[
                $( $crate::kind::Hparam { name: stringify!($field), default: $default, range: $crate::kind::Range::$range, doc: $crate::kind::trim_doc($doc) }, )*
            ];

            /// One member's checked values as this struct.
            pub fn from_values(values: &$crate::kind::Values) -> Self {
                Self { $( $field: $crate::kind::FromValue::from_value(values.get(stringify!($field))), )* }
            }
        }
    };
}

/// A doc comment's text without the space `///` leaves in front (for [`hyperparameters!`]).
pub const fn trim_doc(doc: &'static str) -> &'static str {
    match doc.as_bytes() {
        [b' ', ..] => doc.split_at(1).1,
        _ => doc,
    }
}

/// `rule` bound to fresh state for `params`, as the optimizer the training loop drives.
pub fn bound<R: beatmatch_core::UpdateRule>(rule: R, params: &[ParamInfo]) -> Box<dyn Optimizer> {
    Box::new(beatmatch_core::Bound::new(std::sync::Arc::new(rule), params))
}

/// The fixture sidecar's `constructor_args` reader shared by the kinds' [`Kind::reference_spec`]:
/// numbers, flags and the arguments a kind requires to be at their defaults.
pub struct ReferenceArgs<'a> {
    /// The case, for messages.
    pub name: &'a str,
    /// `meta["constructor_args"]`.
    pub args: &'a serde_json::Value,
}

impl<'a> ReferenceArgs<'a> {
    /// The constructor arguments of case `name`.
    pub fn of(name: &'a str, meta: &'a serde_json::Value) -> Self {
        Self { name, args: &meta["constructor_args"] }
    }

    /// Argument `k` as a number.
    pub fn num(&self, k: &str) -> Result<f64> {
        self.args[k].as_f64().ok_or_else(|| anyhow::anyhow!("{}: constructor_args.{k} is not a number", self.name))
    }

    /// Argument `k` as a number, `default` when absent or null.
    pub fn num_or(&self, k: &str, default: f64) -> f64 {
        self.args[k].as_f64().unwrap_or(default)
    }

    /// Argument `k` as a flag: 1 when `true`, else 0.
    pub fn flag(&self, k: &str) -> f64 {
        if self.args[k] == serde_json::Value::Bool(true) {
            1.0
        } else {
            0.0
        }
    }

    /// Refuse unless argument `k` passes `ok` (the reference option is one this kind implements).
    pub fn require(&self, k: &str, ok: impl Fn(&serde_json::Value) -> bool) -> Result<()> {
        if !ok(&self.args[k]) {
            anyhow::bail!("{}: unsupported {k} = {}", self.name, self.args[k]);
        }
        Ok(())
    }

    /// Refuse unless argument `k` is null (an option left off).
    pub fn require_null(&self, k: &str) -> Result<()> {
        self.require(k, serde_json::Value::is_null)
    }

    /// Refuse unless argument `k` is `false`.
    pub fn require_false(&self, k: &str) -> Result<()> {
        self.require(k, |v| v == &serde_json::Value::Bool(false))
    }
}
