//! The suite's side of one worker process: start it in its own process group with a
//! parent-death signal, map the shared tensor file, say hello, and run steps with a timeout.
//! Dropping a `Worker` sends `Q` and kills what is left of its group.

use super::frame::{read_frame, step_body, write_frame, Frame, FrameError};
use anyhow::{anyhow, bail, Context, Result};
use beatmatch_core::ParamInfo;
use memmap2::MmapMut;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// The protocol version this suite speaks.
pub const PROTOCOL: u32 = 1;

/// What a worker is started with.
pub struct Spec<'a> {
    /// The optimizer's file and factory (sent in the hello; the command decides how it is run).
    pub file: &'a Path,
    /// Factory name.
    pub factory: &'a str,
    /// Hyperparameters.
    pub hyperparameters: &'a BTreeMap<String, f64>,
    /// The training horizon (steps).
    pub horizon: u64,
    /// Members the worker updates.
    pub members: usize,
    /// The model's tensors.
    pub tensors: &'a [ParamInfo],
    /// Where the shared file goes (inside the study's directory).
    pub shm: PathBuf,
    /// Longest a step may take before the worker is stopped.
    pub timeout: Duration,
}

/// A running worker.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    frames: Receiver<Result<Option<Frame>, FrameError>>,
    map: MmapMut,
    params: Vec<Vec<usize>>,
    grads: Vec<Vec<usize>>,
    numel: Vec<usize>,
    timeout: Duration,
    shm: PathBuf,
    /// What the worker reported in its `R`eady frame (library versions).
    pub ready: serde_json::Value,
}

impl Worker {
    /// Start `cmd` as the worker for `spec`; fails with the worker's own message when it refuses.
    pub fn start(mut cmd: Command, spec: &Spec<'_>) -> Result<Self> {
        let numel: Vec<usize> = spec.tensors.iter().map(ParamInfo::numel).collect();
        let per_member: usize = numel.iter().sum::<usize>() * 4;
        let (mut params, mut grads, mut at) = (Vec::new(), Vec::new(), 0usize);
        for list in [&mut params, &mut grads] {
            for _ in 0..spec.members {
                let mut row = Vec::with_capacity(numel.len());
                for n in &numel {
                    row.push(at);
                    at += 4 * n;
                }
                list.push(row);
            }
        }
        debug_assert_eq!(at, 2 * spec.members * per_member);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&spec.shm)
            .with_context(|| format!("creating {}", spec.shm.display()))?;
        file.set_len(at.max(4) as u64)?;
        // SAFETY: the file was just created for this worker alone; the worker writes parameters
        // only between a step frame and its answer, while the suite waits.
        let map = unsafe { MmapMut::map_mut(&file)? };
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).process_group(0);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to signal the child when
        // the suite dies, so no worker outlives a suite killed with SIGKILL.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting the worker {cmd:?}"))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let (tx, frames) = channel();
        std::thread::spawn(move || loop {
            let f = read_frame(&mut stdout);
            let end = !matches!(f, Ok(Some(_)));
            if tx.send(f).is_err() || end {
                return;
            }
        });
        let hello = serde_json::json!({
            "protocol": PROTOCOL,
            "file": spec.file,
            "factory": spec.factory,
            "hyperparameters": spec.hyperparameters,
            "horizon": spec.horizon,
            "members": spec.members,
            "tensors": spec.tensors.iter().map(|t| serde_json::json!({"name": t.name, "shape": t.shape, "role": "tensor"})).collect::<Vec<_>>(),
            "shm": {"path": spec.shm, "bytes": at.max(4), "params": params, "grads": grads},
        });
        write_frame(&mut stdin, b'H', hello.to_string().as_bytes())?;
        let mut w = Self { child, stdin, frames, map, params, grads, numel, timeout: spec.timeout, shm: spec.shm.clone(), ready: serde_json::Value::Null };
        let ready = w.answer("hello")?;
        if ready.kind != b'R' {
            bail!("the worker answered the hello with `{}`: expected `R`", char::from(ready.kind));
        }
        w.ready = serde_json::from_slice(&ready.body).context("the worker's ready frame is not JSON")?;
        if w.ready.get("protocol").and_then(|v| v.as_u64()) != Some(u64::from(PROTOCOL)) {
            bail!("the worker speaks protocol {}; this suite speaks {PROTOCOL}", w.ready.get("protocol").unwrap_or(&serde_json::Value::Null));
        }
        Ok(w)
    }

    /// The next frame within the timeout; an `X` frame is the worker's error, as an error.
    fn answer(&mut self, what: &str) -> Result<Frame> {
        match self.frames.recv_timeout(self.timeout) {
            Ok(Ok(Some(f))) if f.kind == b'X' => Err(anyhow!("the worker failed at {what}: {}", String::from_utf8_lossy(&f.body).trim_end())),
            Ok(Ok(Some(f))) => Ok(f),
            Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(anyhow!("the worker exited at {what} ({status})"))
            }
            Ok(Err(e)) => Err(anyhow!("at {what}: {e}")),
            Err(RecvTimeoutError::Timeout) => Err(anyhow!("the worker did not answer {what} within {:?}", self.timeout)),
        }
    }

    fn slice(&mut self, offset: usize, n: usize) -> &mut [f32] {
        let bytes = &mut self.map[offset..offset + 4 * n];
        // SAFETY: offsets are multiples of 4 from a page-aligned map, and `n` floats fit.
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
        write_frame(&mut self.stdin, b'S', &step_body(step, losses))?;
        let f = self.answer(&format!("step {step}"))?;
        if f.kind != b'D' {
            bail!("the worker answered step {step} with `{}`: expected `D`", char::from(f.kind));
        }
        for (m, ps) in params.iter_mut().enumerate() {
            for (t, p) in ps.iter_mut().enumerate() {
                let (po, n) = (self.params[m][t], self.numel[t]);
                p.copy_from_slice(self.slice(po, n));
            }
        }
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = write_frame(&mut self.stdin, b'Q', &[]);
        let _ = self.stdin.flush();
        std::thread::sleep(Duration::from_millis(5));
        // SAFETY: kill(2) on the worker's own process group, which `process_group(0)` made.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.shm);
    }
}
