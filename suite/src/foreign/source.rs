//! What a foreign optimizer is, from `--candidate`: `python:PATH[:FACTORY][:KEY=VALUE,...]` (a
//! Python file run by the client in `python/`) or `exec:COMMAND[:KEY=VALUE,...]` (any program
//! that speaks the step protocol), and how its worker process is started.

use anyhow::{bail, Context, Result};
use beatmatch_core::OptimizerSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The spec kind of an optimizer run by the Python client.
pub const PYTHON: &str = "python";
/// The spec kind of an optimizer run by a program of the user's.
pub const EXEC: &str = "exec";

/// Whether `spec` is run by a worker process.
pub fn is_foreign(spec: &OptimizerSpec) -> bool {
    spec.kind == PYTHON || spec.kind == EXEC
}

/// A foreign optimizer's origin.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A Python file and the factory in it that builds the optimizer.
    Python {
        /// The file as given (read once, when parsed).
        file: PathBuf,
        /// Its bytes: the copy the worker is given lives in the study's directory.
        bytes: Vec<u8>,
        /// The factory's name (`make` unless given).
        factory: String,
    },
    /// A program and its arguments, split at spaces (no shell).
    Exec {
        /// The words of the command.
        argv: Vec<String>,
    },
}

/// The default factory name in a Python file.
pub const DEFAULT_FACTORY: &str = "make";

/// `KEY=VALUE,...` with numeric values, or `None` when `text` is not such a list.
fn hyperparameters(text: &str) -> Option<BTreeMap<String, f64>> {
    let spec = OptimizerSpec::parse(&format!("x:{text}")).ok()?;
    (!spec.hparams.is_empty()).then_some(spec.hparams)
}

impl Source {
    /// Parse `--candidate` text that starts with `python:` or `exec:`; `None` for any other.
    /// A Python file that cannot be read is an error naming it.
    pub fn parse(text: &str) -> Option<Result<(Source, BTreeMap<String, f64>)>> {
        let (kind, rest) = text.split_once(':')?;
        if kind != PYTHON && kind != EXEC {
            return None;
        }
        // A trailing `:KEY=VALUE,...` is the hyperparameters.
        let (body, hparams) = match rest.rsplit_once(':').and_then(|(b, h)| Some((b, hyperparameters(h)?))) {
            Some((b, h)) => (b, h),
            None => (rest, BTreeMap::new()),
        };
        Some(if kind == PYTHON { Self::python(body).map(|s| (s, hparams)) } else { Self::exec(body).map(|s| (s, hparams)) })
    }

    fn python(body: &str) -> Result<Source> {
        let (path, factory) = match body.rsplit_once(':') {
            Some((p, f)) if !f.is_empty() && f.chars().all(|c| c.is_alphanumeric() || c == '_') => (p, f),
            _ => (body, DEFAULT_FACTORY),
        };
        if path.is_empty() {
            bail!("python:{body}: expected python:PATH[:FACTORY][:KEY=VALUE,...], a Python file defining `{factory}`");
        }
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {path} (expected a Python file defining `{factory}`)"))?;
        Ok(Source::Python { file: PathBuf::from(path), bytes, factory: factory.to_string() })
    }

    fn exec(body: &str) -> Result<Source> {
        let argv: Vec<String> = body.split_whitespace().map(str::to_string).collect();
        if argv.is_empty() {
            bail!("exec: needs a command: exec:PROGRAM ARGS...[:KEY=VALUE,...]");
        }
        Ok(Source::Exec { argv })
    }

    /// The spec kind ([`PYTHON`] or [`EXEC`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Python { .. } => PYTHON,
            Source::Exec { .. } => EXEC,
        }
    }

    /// What names the optimizer in its runs' keys (the spec's `checkpoint`): the file's SHA-256
    /// and the factory, or the command's SHA-256.
    pub fn key(&self) -> String {
        match self {
            Source::Python { bytes, factory, .. } => format!("{}:{factory}", beatmatch_learned::checkpoint::sha256(bytes)),
            Source::Exec { argv } => beatmatch_learned::checkpoint::sha256(argv.join(" ").as_bytes()),
        }
    }

    /// How people wrote it: `python:FILE:FACTORY` or `exec:COMMAND`.
    pub fn label(&self) -> String {
        match self {
            Source::Python { file, factory, .. } => {
                let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
                format!("python:{name}:{factory}")
            }
            Source::Exec { argv } => format!("exec:{}", argv.join(" ")),
        }
    }

    /// The file given to the worker: the Python file's copy in `dir` (written once, named by
    /// its content), or none for a command.
    pub fn place(&self, dir: &Path) -> Result<Option<PathBuf>> {
        let Source::Python { bytes, .. } = self else { return Ok(None) };
        let sha = beatmatch_learned::checkpoint::sha256(bytes);
        let path = dir.join(format!("{}.py", &sha[..16]));
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            let tmp = dir.join(format!(".{}.py.{}", &sha[..16], std::process::id()));
            std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(Some(path))
    }

    /// The command that starts a worker: the Python client under `BEATMATCH_PYTHON` (else
    /// `python3`), with `python_dir` (the client's package) on its path; or the user's program.
    pub fn command(&self, python_dir: &Path) -> Command {
        match self {
            Source::Python { .. } => {
                let python = std::env::var("BEATMATCH_PYTHON").unwrap_or_else(|_| "python3".into());
                let mut cmd = Command::new(python);
                let path = match std::env::var_os("PYTHONPATH") {
                    Some(p) if !p.is_empty() => {
                        let mut v = python_dir.as_os_str().to_owned();
                        v.push(":");
                        v.push(p);
                        v
                    }
                    _ => python_dir.as_os_str().to_owned(),
                };
                cmd.args(["-m", "beatmatch_worker"]).env("PYTHONPATH", path);
                cmd
            }
            Source::Exec { argv } => {
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                cmd
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_name_a_file_a_factory_and_hyperparameters() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("opt.py");
        std::fs::write(&file, "def make(lr=1e-3): ...\n").unwrap();
        let f = file.display();
        let parse = |t: String| Source::parse(&t).unwrap().unwrap();
        let (s, h) = parse(format!("python:{f}"));
        assert!(matches!(&s, Source::Python { factory, .. } if factory == "make") && h.is_empty());
        let (s, h) = parse(format!("python:{f}:build:lr=3e-3,b1=0.8"));
        assert!(matches!(&s, Source::Python { factory, .. } if factory == "build"));
        assert_eq!(h, [("b1".to_string(), 0.8), ("lr".to_string(), 3e-3)].into());
        let (_, h) = parse(format!("python:{f}:lr=1e-2"));
        assert_eq!(h["lr"], 1e-2);
        assert_eq!(s.key().len(), 64 + ":build".len());
        assert_eq!(s.label(), "python:opt.py:build");

        let (s, h) = parse("exec:./my-worker --fast:lr=1".into());
        assert_eq!((s, h["lr"]), (Source::Exec { argv: vec!["./my-worker".into(), "--fast".into()] }, 1.0));
        assert!(Source::parse("adam:lr=1").is_none());
        let e = format!("{:#}", Source::parse("python:/no/such.py:make").unwrap().unwrap_err());
        assert!(e.contains("/no/such.py") && e.contains("defining `make`"), "{e}");
        assert!(Source::parse("exec:").unwrap().is_err());
    }

    #[test]
    fn the_worker_is_given_a_copy_inside_the_study() {
        let dir = tempfile::tempdir().unwrap();
        let src = Source::Python { file: "/elsewhere/opt.py".into(), bytes: b"def make(): ...\n".to_vec(), factory: "make".into() };
        let placed = src.place(dir.path()).unwrap().unwrap();
        assert!(placed.starts_with(dir.path()));
        assert_eq!(std::fs::read(&placed).unwrap(), b"def make(): ...\n");
        assert_eq!(src.place(dir.path()).unwrap(), Some(placed));
    }
}
