//! Optimizers through the step protocol, against the reference fixtures and as untrusted
//! processes: numpy, optax and torch Adams through the Python client pass the `optax_adam`
//! checks; every optax fixture case whose constructor takes plain values passes through the
//! optax adapter; members of a population get what they get alone; a worker that raises,
//! dies, hangs, speaks another version or writes to stdout is a clear error.
//!
//! The interpreter is `BEATMATCH_PYTHON` (else `python3`). A test whose modules it cannot
//! import says SKIPPED and checks nothing, unless `BEATMATCH_PYTHON_REQUIRE` names them
//! (`.ci/run` sets `numpy,jax,optax`): then it fails.

use beatmatch_core::{Buffers, Optimizer, ParamInfo, StepContext};
use beatmatch_suite::factory::OptimizerFactory;
use beatmatch_testkit::{cases, fixtures_dir, Case};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The interpreter, if it imports `modules`; panics when a missing one is required.
fn python(modules: &[&str]) -> Option<String> {
    let py = std::env::var("BEATMATCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let imports = |m: &str| Command::new(&py).args(["-c", &format!("import {m}")]).output().is_ok_and(|o| o.status.success());
    let missing: Vec<&str> = modules.iter().copied().filter(|m| !imports(m)).collect();
    let required = std::env::var("BEATMATCH_PYTHON_REQUIRE").unwrap_or_default();
    if let Some(m) = missing.iter().find(|m| required.split(',').any(|r| r.trim() == **m)) {
        panic!("{py} cannot import {m}, which BEATMATCH_PYTHON_REQUIRE={required} requires");
    }
    std::env::set_var("BEATMATCH_PYTHON", &py);
    if missing.is_empty() {
        Some(py)
    } else {
        eprintln!("SKIPPED: {py} cannot import {missing:?} (set BEATMATCH_PYTHON)");
        None
    }
}

/// A factory whose workers live in `dir`.
fn factory(dir: &Path) -> OptimizerFactory {
    let mut f = OptimizerFactory::default();
    f.worker_dir = Some(dir.to_path_buf());
    f
}

/// Build `candidate` for `members` members of the case's tensors, started through a probe as
/// a study would.
fn foreign(dir: &Path, candidate: &str, members: usize, infos: &[ParamInfo]) -> anyhow::Result<Box<dyn Optimizer>> {
    let mut f = factory(dir);
    let spec = f.parse_candidate(candidate)?;
    f.check(&spec, infos)?;
    f.build_members(&vec![spec; members], infos)
}

fn example(name: &str) -> String {
    format!("python:{}", root().join("python/examples").join(name).display())
}

#[test]
fn numpy_optax_and_torch_adams_through_the_protocol_pass_the_optax_adam_checks() {
    let case = Case::load(&fixtures_dir(), "optax_adam");
    let tmp = tempfile::tempdir().unwrap();
    let mut ran = Vec::new();
    for (file, modules) in [("adam_numpy.py", &["numpy"][..]), ("adam_optax.py", &["numpy", "jax", "optax"]), ("adam_torch.py", &["numpy", "torch"])] {
        if python(modules).is_none() {
            continue;
        }
        let mut opt = foreign(tmp.path(), &example(file), 1, &case.params()).unwrap();
        let dev = beatmatch_testkit::run(&case, opt.as_mut(), |_, _, _| {});
        assert!(dev.passes(), "{file}: {dev:?}");
        ran.push(file);
    }
    eprintln!("passed optax_adam through: {ran:?}");
}

/// Every optax case of the fixtures whose constructor takes plain values (no schedules, no
/// dtypes), written as a two-line Python file and run through the optax adapter.
#[test]
fn every_plain_optax_case_passes_through_the_optax_adapter() {
    if python(&["numpy", "jax", "optax"]).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut ran = Vec::new();
    for case in cases(&fixtures_dir()) {
        let Some(name) = case.optimizer().strip_prefix("optax.") else { continue };
        let args = &case.meta["constructor_args"];
        let plain = args.as_object().is_some_and(|o| o.values().all(|v| v.is_number() || v.is_boolean() || v.is_null()));
        if !plain {
            continue;
        }
        let file = tmp.path().join(format!("{}.py", case.name));
        let code = format!("import json\nimport optax\n\n\ndef make():\n    return optax.{name}(**json.loads({:?}))\n", args.to_string());
        std::fs::write(&file, code).unwrap();
        let mut opt = foreign(tmp.path(), &format!("python:{}", file.display()), 1, &case.params()).unwrap();
        let dev = beatmatch_testkit::run(&case, opt.as_mut(), |_, _, _| {});
        assert!(dev.passes(), "{}: {dev:?}", case.name);
        ran.push(case.name.clone());
    }
    eprintln!("passed through the optax adapter: {ran:?}");
    assert!(ran.iter().any(|n| n == "optax_adam"), "optax_adam was not among {ran:?}");
}

/// Each member's own gradients: the case's, shifted per member (Adam would not tell a scaled
/// gradient from the original).
fn member_grads(case: &Case, t: usize, m: usize) -> Vec<Vec<f32>> {
    case.params().iter().map(|p| case.tensor(&format!("grads/{t}/{}", p.name)).iter().map(|g| g + m as f32 * 0.25).collect()).collect()
}

/// Steps `opt` (of `members` members, member-major buffers) through the case; the last
/// parameters, member-major per tensor.
fn trajectory(case: &Case, opt: &mut dyn Optimizer, members: &[usize]) -> Vec<Vec<f32>> {
    let infos = case.params();
    let mut params: Vec<Vec<f32>> = infos.iter().map(|p| case.tensor(&format!("params/init/{}", p.name)).repeat(members.len())).collect();
    for t in 0..case.steps() {
        let per: Vec<Vec<Vec<f32>>> = members.iter().map(|&m| member_grads(case, t, m)).collect();
        let grads: Vec<Vec<f32>> = (0..infos.len()).map(|i| per.iter().flat_map(|g| g[i].clone()).collect()).collect();
        let g: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        let mut p: Vec<&mut [f32]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        let losses: Vec<f32> = members.iter().map(|&m| 1.0 + m as f32).collect();
        opt.update(Buffers::Host { params: &mut p, grads: &g }, &StepContext { step: t as u64, num_steps: case.num_steps(), losses: &losses }).unwrap();
    }
    params
}

#[test]
fn a_member_of_a_population_of_three_gets_what_it_gets_alone() {
    if python(&["numpy"]).is_none() {
        return;
    }
    let case = Case::load(&fixtures_dir(), "optax_adam");
    let tmp = tempfile::tempdir().unwrap();
    let infos = case.params();
    let mut three = foreign(tmp.path(), &example("adam_numpy.py"), 3, &infos).unwrap();
    let together = trajectory(&case, three.as_mut(), &[0, 1, 2]);
    for m in 0..3 {
        let mut one = foreign(tmp.path(), &example("adam_numpy.py"), 1, &infos).unwrap();
        let alone = trajectory(&case, one.as_mut(), &[m]);
        for (i, p) in infos.iter().enumerate() {
            let n = p.numel();
            assert_eq!(&together[i][m * n..(m + 1) * n], alone[i].as_slice(), "member {m}, {}", p.name);
        }
    }
    assert_ne!(together[0][..infos[0].numel()], together[0][infos[0].numel()..2 * infos[0].numel()], "the members' gradients differ");
}

/// A worker written for the test: `body` is the step function's body (`p`, `g`, `t` given).
fn worker_file(dir: &Path, name: &str, body: &str) -> String {
    let file = dir.join(format!("{name}.py"));
    let code = format!("import os, sys, time\nimport numpy as np\n\n\ndef make():\n    def step(p, g, t, loss):\n        {body}\n\n    return step\n");
    std::fs::write(&file, code).unwrap();
    format!("python:{}", file.display())
}

fn one_tensor() -> Vec<ParamInfo> {
    vec![ParamInfo::new("w", vec![2, 2])]
}

/// Steps of a 2×2 tensor until one fails; that failure's message.
fn failure(opt: &mut dyn Optimizer) -> String {
    let mut w = vec![1.0f32; 4];
    for t in 0..10 {
        let mut p: Vec<&mut [f32]> = vec![&mut w];
        if let Err(e) = opt.update(Buffers::Host { params: &mut p, grads: &[&[0.5; 4]] }, &StepContext { step: t, num_steps: 10, losses: &[1.0] }) {
            return e.to_string();
        }
    }
    panic!("no step failed");
}

#[test]
fn a_worker_that_raises_dies_or_hangs_is_an_error_that_says_what_happened() {
    if python(&["numpy"]).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let raises = worker_file(tmp.path(), "raises", "if t == 2:\n            1 / 0");
    let e = failure(foreign(tmp.path(), &raises, 1, &one_tensor()).unwrap().as_mut());
    assert!(e.contains("failed at step 2") && e.contains("ZeroDivisionError"), "{e}");

    let dies = worker_file(tmp.path(), "dies", "if t == 1:\n            print('about to go', file=sys.stderr); os._exit(3)");
    let e = failure(foreign(tmp.path(), &dies, 1, &one_tensor()).unwrap().as_mut());
    assert!(e.contains("exited at step 1") && e.contains("exit status: 3") && e.contains("about to go"), "{e}");

    std::env::set_var("BEATMATCH_STEP_TIMEOUT", "1");
    let hangs = worker_file(tmp.path(), "hangs", "if t == 3:\n            time.sleep(60)");
    let started = std::time::Instant::now();
    let e = failure(foreign(tmp.path(), &hangs, 1, &one_tensor()).unwrap().as_mut());
    assert!(e.contains("did not answer step 3 within 1 s"), "{e}");
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    std::env::remove_var("BEATMATCH_STEP_TIMEOUT");

    // Whatever was printed went to the worker's log in its directory, not to the frames.
    let logs: String = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(logs.contains("about to go"), "{logs}");
    // No shared file is left behind.
    assert!(!std::fs::read_dir(tmp.path()).unwrap().any(|e| e.unwrap().path().extension().is_some_and(|x| x == "shm")));
}

#[test]
fn bad_input_is_refused_before_training_with_what_was_expected() {
    if python(&["numpy"]).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let infos = one_tensor();
    let err = |candidate: &str| format!("{:#}", foreign(tmp.path(), candidate, 1, &infos).err().expect("refused"));

    let e = err("python:/no/such/file.py");
    assert!(e.contains("/no/such/file.py") && e.contains("defining `make`"), "{e}");
    let e = err(&format!("{}:build", example("adam_numpy.py")));
    assert!(e.contains("adam_numpy.py") && e.contains("no callable `build` in the file; callables defined there: make"), "{e}");
    assert!(!e.contains("Traceback"), "a missing factory is one line: {e}");
    let e = err(&format!("{}:lr=1e-3,beta=0.5", example("adam_numpy.py")));
    assert!(e.contains("`make` cannot take beta, lr") && e.contains("its parameters: lr, b1, b2, eps"), "{e}");
    let e = err(&format!("{}:lr=1e-3,beta=0.5", example("adam_torch.py")));
    assert!(!e.contains("cannot take") || e.contains("its parameters: lr"), "{e}");
    // A worker of another protocol version.
    let other = tmp.path().join("v2.py");
    std::fs::write(
        &other,
        "import json, struct, sys\nb = json.dumps({'protocol': 2}).encode()\nsys.stdout.buffer.write(struct.pack('<I', 1 + len(b)) + b'R' + b)\nsys.stdout.flush()\nsys.stdin.read()\n",
    )
    .unwrap();
    let py = std::env::var("BEATMATCH_PYTHON").unwrap();
    let e = err(&format!("exec:{py} {}", other.display()));
    assert!(e.contains("speaks step protocol 2; this suite speaks 1"), "{e}");
    // A program that writes text to stdout.
    let e = err("exec:echo hello");
    assert!(e.contains("stdout") && e.contains("hell"), "{e}");
    // A program that is not there.
    let e = err("exec:/no/such/worker");
    assert!(e.contains("/no/such/worker"), "{e}");
}

#[test]
fn a_worker_may_evaluate_elsewhere_and_a_wrong_shape_is_an_error() {
    if python(&["numpy"]).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("halves.py");
    std::fs::write(
        &file,
        "import numpy as np\n\n\nclass Halves:\n    def __init__(self, shape_bug=0):\n        self.bug = shape_bug\n\n    def step(self, p, g, t, loss):\n        for x, y in zip(p, g):\n            x -= 0.1 * y\n\n    def eval_params(self, p):\n        return [np.zeros(3) if self.bug else x / 2 for x in p]\n\n\ndef make(shape_bug=0):\n    return Halves(shape_bug)\n",
    )
    .unwrap();
    let infos = one_tensor();
    let mut opt = foreign(tmp.path(), &format!("python:{}", file.display()), 2, &infos).unwrap();
    assert!(opt.evaluates_elsewhere());
    let mut w = vec![1.0f32; 8];
    let at = |opt: &dyn Optimizer, w: &[f32]| match opt.eval_point(beatmatch_core::Params::Host(&[w])).unwrap() {
        Some(beatmatch_core::EvalAt::Host(v)) => Some(v),
        _ => None,
    };
    assert!(at(opt.as_ref(), &w).is_none(), "before the first step: the parameters themselves");
    let mut p: Vec<&mut [f32]> = vec![&mut w];
    opt.update(Buffers::Host { params: &mut p, grads: &[&[1.0; 8]] }, &StepContext { step: 0, num_steps: 5, losses: &[1.0, 1.0] }).unwrap();
    assert_eq!(w, vec![0.9; 8]);
    assert_eq!(at(opt.as_ref(), &w).unwrap(), vec![vec![0.45; 8]]);

    let mut bad = foreign(tmp.path(), &format!("python:{}:shape_bug=1", file.display()), 1, &infos).unwrap();
    let mut w = vec![1.0f32; 4];
    let mut p: Vec<&mut [f32]> = vec![&mut w];
    bad.update(Buffers::Host { params: &mut p, grads: &[&[1.0; 4]] }, &StepContext { step: 0, num_steps: 5, losses: &[1.0] }).unwrap();
    let Err(e) = bad.eval_point(beatmatch_core::Params::Host(&[&w])) else { panic!("a wrong shape was accepted") };
    let e = e.to_string();
    assert!(e.contains("shape (3,) for a tensor of shape (2, 2)"), "{e}");
}

/// optax's Schedule-Free AdamW through `python/examples/schedule_free_optax.py`: its training
/// iterate y passes the fixture's checks, and the evaluation point the worker writes is the
/// fixture's x (`debug/eval_params/<t>`, schedule_free_eval_params) at every step.
#[test]
fn optax_schedule_free_through_the_protocol_is_evaluated_at_its_average() {
    if python(&["numpy", "jax", "optax"]).is_none() {
        return;
    }
    let case = Case::load(&fixtures_dir(), "optax_schedule_free_adamw");
    let args = &case.meta["constructor_args"];
    let hp = |k: &str| args[k].as_f64().unwrap();
    let candidate = format!(
        "{}:lr={},warmup_steps={},b1={},b2={},eps={},wd={},weight_lr_power={}",
        example("schedule_free_optax.py"),
        hp("learning_rate"),
        hp("warmup_steps"),
        hp("b1"),
        hp("b2"),
        hp("eps"),
        hp("weight_decay"),
        hp("weight_lr_power")
    );
    let tmp = tempfile::tempdir().unwrap();
    let infos = case.params();
    let mut opt = foreign(tmp.path(), &candidate, 1, &infos).unwrap();
    assert!(opt.evaluates_elsewhere());
    let mut worst = 0f32;
    let dev = beatmatch_testkit::run(&case, opt.as_mut(), |t, opt, ours| {
        let slices: Vec<&[f32]> = ours.iter().map(Vec::as_slice).collect();
        let Some(beatmatch_core::EvalAt::Host(x)) = opt.eval_point(beatmatch_core::Params::Host(&slices)).unwrap() else {
            panic!("no evaluation point at step {t}")
        };
        for (p, got) in infos.iter().zip(&x) {
            let want = case.tensor(&format!("debug/eval_params/{t}/{}", p.name));
            let scale = want.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
            worst = worst.max(got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale);
        }
    });
    assert!(dev.passes(), "{dev:?}");
    assert!(worst <= 1e-5, "evaluation point off by {worst} of the tensor's scale");
}
