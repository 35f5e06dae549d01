//! The suite's side of one worker process: start it in its own process group with a
//! parent-death signal, map the shared tensor file, say hello, and run steps with a timeout.
//! The worker's stderr goes to a log file beside the shared file, and its last lines into the
//! error of a worker that fails. Dropping a `Worker` sends `Q` and kills what is left of its
//! process group.

use anyhow::{anyhow, bail, Context, Result};
use beatmatch_core::step_protocol::{kind, read_frame, step_body, write_frame, Frame, FrameError, Ready};
use beatmatch_core::ParamInfo;
use memmap2::MmapMut;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Lines of a worker's stderr kept for the error of a worker that fails.
const TAIL_LINES: usize = 12;

/// How long a worker may take (see [`Timeouts::from_env`]).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// To answer the hello and the first step (imports, JIT compilation).
    pub start: Duration,
    /// To answer any later step or evaluation request.
    pub step: Duration,
}

impl Timeouts {
    /// `BEATMATCH_STEP_TIMEOUT` seconds per step (default 60); the hello and the first step
    /// get at least 300 s.
    pub fn from_env() -> Result<Self> {
        let step = match std::env::var("BEATMATCH_STEP_TIMEOUT") {
            Ok(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .with_context(|| format!("BEATMATCH_STEP_TIMEOUT={s}: expected seconds, a positive number"))?,
            Err(_) => 60.0,
        };
        let step = Duration::from_secs_f64(step);
        Ok(Self { start: step.max(Duration::from_secs(300)), step })
    }
}

/// What a worker is started with.
pub struct Spec<'a> {
    /// The optimizer's file, for a Python worker (sent in the hello; inside `dir`).
    pub file: Option<&'a Path>,
    /// The factory's name, for a Python worker.
    pub factory: Option<&'a str>,
    /// Hyperparameters.
    pub hyperparameters: &'a BTreeMap<String, f64>,
    /// The training horizon (steps).
    pub horizon: u64,
    /// Members the worker updates.
    pub members: usize,
    /// The model's tensors (one member's).
    pub tensors: &'a [ParamInfo],
    /// The directory of the shared file and the log (the study's `workers/`).
    pub dir: &'a Path,
    /// Name of the log file in `dir` the worker's stderr is appended to.
    pub log: &'a str,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Each member's initial parameters (tensor by tensor), in the shared file before the
    /// hello: an optimizer's `init` may read them (Schedule-Free's z starts there). `None` (a
    /// probe): zeros.
    pub initial: Option<&'a [Vec<&'a mut [f32]>]>,
}

/// Offsets (bytes) of each member's tensors in the shared file, member-major.
type Layout = Vec<Vec<usize>>;

/// A running worker.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    frames: Receiver<Result<Option<Frame>, FrameError>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr: Option<JoinHandle<()>>,
    map: MmapMut,
    params: Layout,
    grads: Layout,
    eval: Option<Layout>,
    numel: Vec<usize>,
    timeouts: Timeouts,
    started: bool,
    shm: PathBuf,
    /// What the worker reported in its ready frame.
    pub ready: Ready,
}

fn layout(members: usize, numel: &[usize], at: &mut usize) -> Layout {
    (0..members)
        .map(|_| {
            numel
                .iter()
                .map(|n| {
                    let o = *at;
                    *at += 4 * n;
                    o
                })
                .collect()
        })
        .collect()
}

/// A name no other worker of this process uses.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Worker {
    /// Start `cmd` as the worker for `spec`, its evaluation parameters laid out when `eval` is
    /// `Some(true)` (and its ready frame checked to say so); `None` for a probe, which lays out
    /// none and checks nothing. Fails with the worker's own message when it refuses.
    pub fn start(mut cmd: Command, spec: &Spec<'_>, eval: Option<bool>) -> Result<Self> {
        let numel: Vec<usize> = spec.tensors.iter().map(ParamInfo::numel).collect();
        let mut at = 0usize;
        let params = layout(spec.members, &numel, &mut at);
        let grads = layout(spec.members, &numel, &mut at);
        let eval_layout = (eval == Some(true)).then(|| layout(spec.members, &numel, &mut at));
        std::fs::create_dir_all(spec.dir).with_context(|| format!("creating {}", spec.dir.display()))?;
        let shm = spec.dir.join(format!("{}.shm", unique()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&shm).with_context(|| format!("creating {}", shm.display()))?;
        let bytes = at.max(4);
        file.set_len(bytes as u64)?;
        // SAFETY: the file was just created for this worker alone; the worker writes the
        // parameters only between a step frame and its answer, while the suite waits.
        let map = unsafe { MmapMut::map_mut(&file)? };
        let log_path = spec.dir.join(spec.log);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).with_context(|| format!("opening {}", log_path.display()))?;
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when
        // the suite's thread that started it dies, so no worker outlives a suite killed with
        // SIGKILL (and the process group lets the suite kill the worker's own children).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let program = format!("{:?}", cmd.get_program());
        let hint = if spec.file.is_some() { " (BEATMATCH_PYTHON names the Python interpreter)" } else { "" };
        let mut child = cmd.spawn().with_context(|| format!("starting the worker {program}{hint}"))?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (tx, frames) = channel();
        std::thread::spawn(move || loop {
            let f = read_frame(&mut stdout);
            let end = !matches!(f, Ok(Some(_)));
            if tx.send(f).is_err() || end {
                return;
            }
        });
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = Some(spawn_stderr(stderr, log, tail.clone()));
        let hello = serde_json::json!({
            "protocol": beatmatch_core::step_protocol::PROTOCOL,
            "file": spec.file,
            "factory": spec.factory,
            "hyperparameters": spec.hyperparameters,
            "horizon": spec.horizon,
            "members": spec.members,
            "tensors": spec.tensors.iter().map(|t| serde_json::json!({"name": t.name, "shape": t.shape, "role": t.role})).collect::<Vec<_>>(),
            "shm": {"path": shm, "bytes": bytes, "params": params, "grads": grads, "eval": eval_layout},
        });
        let mut w = Self {
            child,
            stdin,
            frames,
            tail,
            stderr,
            map,
            params,
            grads,
            eval: eval_layout,
            numel,
            timeouts: spec.timeouts,
            started: false,
            shm,
            ready: Ready::default(),
        };
        for (m, member) in spec.initial.unwrap_or_default().iter().enumerate() {
            for (t, p) in member.iter().enumerate() {
                let (o, n) = (w.params[m][t], w.numel[t]);
                w.slice(o, n).copy_from_slice(p);
            }
        }
        w.send(kind::HELLO, hello.to_string().as_bytes(), "the hello")?;
        let ready = w.answer("the hello")?;
        if ready.kind != kind::READY {
            bail!("the worker answered the hello with `{}`: expected `R` (ready)", char::from(ready.kind).escape_default());
        }
        w.ready = Ready::parse(&ready.body)?;
        if eval.is_some_and(|e| e != w.ready.eval_params) {
            bail!(
                "the worker says eval_params={}, but its probe said {}: a worker must decide it from its factory alone",
                w.ready.eval_params,
                !w.ready.eval_params
            );
        }
        Ok(w)
    }

    fn send(&mut self, k: u8, body: &[u8], what: &str) -> Result<()> {
        if write_frame(&mut self.stdin, k, body).is_err() {
            return Err(self.gone(what));
        }
        Ok(())
    }

    /// The error of a worker that exited or closed its stdout, with its last stderr lines.
    fn gone(&mut self, what: &str) -> anyhow::Error {
        // What it wrote before it went says why, when it wrote anything: an error frame, or
        // text on stdout (a write to a worker that has exited fails before its output is read).
        let said = match self.frames.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Some(f))) if f.kind == kind::ERROR => Some(format!("the worker failed: {}", String::from_utf8_lossy(&f.body).trim_end())),
            Ok(Err(e)) => Some(e.to_string()),
            _ => None,
        };
        let until = Instant::now() + Duration::from_secs(1);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s.to_string(),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    self.kill();
                    break "closed its stdout; stopped".to_string();
                }
            }
        };
        match said {
            Some(said) => anyhow!("at {what}: {said} (the worker exited: {status}){}", self.last_lines()),
            None => anyhow!("the worker exited at {what} ({status}){}", self.last_lines()),
        }
    }

    /// The worker's last lines of stderr, once its stderr has closed (or after 0.5 s).
    fn last_lines(&mut self) -> String {
        let until = Instant::now() + Duration::from_millis(500);
        while self.stderr.as_ref().is_some_and(|h| !h.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let tail = self.tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its last lines of stderr:\n{tail}")
        }
    }

    /// The next frame within the time allowed; an `X` frame is the worker's error, as an error.
    fn answer(&mut self, what: &str) -> Result<Frame> {
        let limit = if self.started { self.timeouts.step } else { self.timeouts.start };
        match self.frames.recv_timeout(limit) {
            Ok(Ok(Some(f))) if f.kind == kind::ERROR => Err(anyhow!("the worker failed at {what}:\n{}", String::from_utf8_lossy(&f.body).trim_end())),
            Ok(Ok(Some(f))) => Ok(f),
            Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => Err(self.gone(what)),
            Ok(Err(e)) => {
                self.kill();
                Err(anyhow!("at {what}: {e}{}", self.last_lines()))
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill();
                Err(anyhow!("the worker did not answer {what} within {:.0} s (BEATMATCH_STEP_TIMEOUT); stopped{}", limit.as_secs_f64(), self.last_lines()))
            }
        }
    }

    fn kill(&mut self) {
        // SAFETY: kill(2) on the worker's own process group, which `process_group(0)` made.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    fn slice(&mut self, offset: usize, n: usize) -> &mut [f32] {
        let bytes = &mut self.map[offset..offset + 4 * n];
        // SAFETY: offsets are multiples of 4 into a page-aligned map, and `n` floats fit.
        unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<f32>(), n) }
    }

    /// One step: member `m`'s parameters and gradients are `params[m]`, `grads[m]` (tensor by
    /// tensor); the worker's updated parameters are copied back into `params`.
    pub fn step(&mut self, step: u64, losses: &[f32], params: &mut [Vec<&mut [f32]>], grads: &[Vec<&[f32]>]) -> Result<()> {
        for (m, (ps, gs)) in params.iter().zip(grads).enumerate() {
            for (t, (p, g)) in ps.iter().zip(gs).enumerate() {
                let (po, go, n) = (self.params[m][t], self.grads[m][t], self.numel[t]);
                self.slice(po, n).copy_from_slice(p);
                self.slice(go, n).copy_from_slice(g);
            }
        }
        let what = format!("step {step}");
        self.send(kind::STEP, &step_body(step, losses), &what)?;
        let f = self.answer(&what)?;
        self.started = true;
        if f.kind != kind::DONE {
            bail!("the worker answered step {step} with `{}`: expected `D` (done)", char::from(f.kind).escape_default());
        }
        for (m, ps) in params.iter_mut().enumerate() {
            for (t, p) in ps.iter_mut().enumerate() {
                let (po, n) = (self.params[m][t], self.numel[t]);
                p.copy_from_slice(self.slice(po, n));
            }
        }
        Ok(())
    }

    /// The evaluation parameters of every member (one member-major buffer per tensor), from a
    /// worker that declared them.
    pub fn eval_params(&mut self) -> Result<Vec<Vec<f32>>> {
        let Some(eval) = self.eval.clone() else { bail!("the worker declared no evaluation parameters") };
        self.send(kind::EVAL, &[], "an evaluation request")?;
        let f = self.answer("an evaluation request")?;
        if f.kind != kind::DONE {
            bail!("the worker answered an evaluation request with `{}`: expected `D` (done)", char::from(f.kind).escape_default());
        }
        let numel = self.numel.clone();
        Ok((0..numel.len()).map(|t| eval.iter().flat_map(|member| self.slice(member[t], numel[t]).to_vec()).collect()).collect())
    }
}

/// Copy the worker's stderr into `log`, keeping its last lines in `tail`.
fn spawn_stderr(stderr: std::process::ChildStderr, mut log: std::fs::File, tail: Arc<Mutex<VecDeque<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { return };
            let _ = log.write_all(&line).and_then(|()| log.write_all(b"\n"));
            if let Ok(mut t) = tail.lock() {
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(String::from_utf8_lossy(&line).into_owned());
            }
        }
    })
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = write_frame(&mut self.stdin, kind::QUIT, &[]);
        // A well-behaved worker exits on `Q` at once; what is left of its group is killed.
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.kill();
        let _ = std::fs::remove_file(&self.shm);
    }
}
