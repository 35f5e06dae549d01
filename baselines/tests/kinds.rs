//! The one list of kinds: names unique and spec-shaped, defaults within their ranges, every kind
//! building on the host and (where it has one) on the device at its defaults, and kinds from
//! outside the crate registered by `register`.

use beatmatch_baselines::kind::{bound, Hparam, Kind, Range, Values};
use beatmatch_baselines::{find, kinds, register, KINDS};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;

fn params() -> Vec<ParamInfo> {
    vec![ParamInfo::new("b", vec![3]), ParamInfo::new("w", vec![3, 2])]
}

#[test]
fn every_kind_is_well_formed_and_builds_at_its_defaults() {
    let mut names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), KINDS.len(), "kind names are unique");
    for k in KINDS {
        assert!(OptimizerSpec::parse(k.name()).is_ok_and(|s| s.kind == k.name()), "{} is a spec's kind", k.name());
        for h in k.hparams() {
            assert!(h.range.accepts(h.default), "{}: default {} = {} is not {}", k.name(), h.name, h.default, h.range.describe());
            assert!(!h.doc.is_empty() && !h.doc.starts_with(' '), "{}: {} has a one-line doc", k.name(), h.name);
        }
        let spec = OptimizerSpec::new(k.name());
        let mut host = beatmatch_baselines::build(&spec, &params()).unwrap();
        let mut w: Vec<Vec<f32>> = params().iter().map(|p| vec![0.5; p.numel()]).collect();
        let g: Vec<Vec<f32>> = params().iter().map(|p| vec![0.1; p.numel()]).collect();
        // Two steps: SOAP's first only builds its preconditioner.
        for step in 0..2 {
            let ctx = StepContext { step, num_steps: 10, losses: &[1.0] };
            host.step(&mut w.iter_mut().map(|v| v.as_mut_slice()).collect::<Vec<_>>(), &g.iter().map(|v| v.as_slice()).collect::<Vec<_>>(), &ctx);
        }
        assert!(w.iter().flatten().any(|&v| v != 0.5), "{} at its defaults moved nothing in two steps", k.name());
        if let Err(e) = beatmatch_baselines::build_on(std::slice::from_ref(&spec), &params(), &Device::Cpu) {
            assert!(e.to_string().contains("has no device implementation"), "{}: {e}", k.name());
        }
    }
}

/// Plain SGD, as a program outside the crate would write it.
struct Plain(Vec<f32>);

impl UpdateRule for Plain {
    type State = ();
    fn name(&self) -> &'static str {
        "test_plain_sgd"
    }
    fn members(&self) -> usize {
        self.0.len()
    }
    fn init(&self, _: &[ParamInfo]) {}
    fn update(&self, _: &mut (), params: &mut [&mut [f32]], grads: &[&[f32]], _: &StepContext<'_>) {
        for (p, g) in params.iter_mut().zip(grads) {
            let n = g.len() / self.0.len();
            for (i, (p, g)) in p.iter_mut().zip(g.iter()).enumerate() {
                *p -= self.0[i / n] * g;
            }
        }
    }
}

struct PlainKind(&'static str, f64);

impl Kind for PlainKind {
    fn name(&self) -> &'static str {
        self.0
    }
    fn about(&self) -> &'static str {
        "plain SGD, registered by a test"
    }
    fn hparams(&self) -> &'static [Hparam] {
        const LR: &[Hparam] = &[Hparam { name: "lr", default: 0.5, range: Range::Positive, doc: "learning rate" }];
        const BAD: &[Hparam] = &[Hparam { name: "lr", default: -1.0, range: Range::Positive, doc: "learning rate" }];
        if self.1 > 0.0 {
            LR
        } else {
            BAD
        }
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Plain(members.iter().map(|m| m.get("lr") as f32).collect()), params)
    }
}

static PLAIN: PlainKind = PlainKind("test_plain_sgd", 1.0);
static CLASH: PlainKind = PlainKind("adam", 1.0);
static BAD_DEFAULT: PlainKind = PlainKind("test_bad_default", -1.0);

#[test]
fn a_kind_from_outside_registers_once_and_builds_like_a_built_in_one() {
    assert!(register(&CLASH).unwrap_err().to_string().contains("a kind of that name exists"));
    assert!(register(&BAD_DEFAULT).unwrap_err().to_string().contains("lr = -1 is not a finite number > 0"));
    register(&PLAIN).unwrap();
    assert!(register(&PLAIN).is_err(), "registered twice");
    assert!(find("test_plain_sgd").is_some() && kinds().len() == KINDS.len() + 1);
    let members = [OptimizerSpec::parse("test_plain_sgd:lr=0.25").unwrap(), OptimizerSpec::parse("test_plain_sgd").unwrap()];
    let infos = [ParamInfo::new("w", vec![2])];
    let mut opt = beatmatch_baselines::build_members(&members, &infos).unwrap();
    let mut w = vec![1.0f32, 1.0, 1.0, 1.0];
    opt.step(&mut [&mut w], &[&[1.0, 2.0, 1.0, 2.0]], &StepContext { step: 0, num_steps: 1, losses: &[0.0, 0.0] });
    assert_eq!(w, [0.75, 0.5, 0.5, 0.0]);
    let e = beatmatch_baselines::build(&OptimizerSpec::parse("test_plain_sgd:lr=0").unwrap(), &infos).err().unwrap().to_string();
    assert!(e.contains("lr must be a finite number > 0"), "{e}");
    let e = beatmatch_baselines::build_on(&members[..1], &infos, &Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("has no device implementation"), "{e}");
}
