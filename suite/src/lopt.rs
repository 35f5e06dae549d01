//! `suite lopt`: inspect and convert learned-optimizer checkpoints.

use anyhow::{bail, Result};
use beatmatch_learned::checkpoint::{self, msgpack, native, Architecture};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

/// Checkpoint commands.
#[derive(Subcommand)]
pub enum LoptCommand {
    /// Print a checkpoint's architecture, meta-parameter count and SHA-256.
    Inspect {
        /// learned_optimization checkpoint (msgpack, e.g. VeLO's `params`) or native `.safetensors`.
        file: PathBuf,
        /// Architecture, when the file's tensors do not say (velo, small_fc, mlp_lopt).
        #[arg(long)]
        arch: Option<String>,
    },
    /// Convert between learned_optimization's msgpack and beatmatch's native format (an
    /// output ending in `.safetensors` is native, with a `.yaml` sidecar; anything else msgpack).
    Convert {
        /// Input checkpoint.
        input: PathBuf,
        /// Output path.
        output: PathBuf,
        /// Architecture, when the input's tensors do not say.
        #[arg(long)]
        arch: Option<String>,
    },
}

fn arch(name: &Option<String>) -> Result<Option<Architecture>> {
    name.as_deref()
        .map(|a| Architecture::parse(a).ok_or_else(|| anyhow::anyhow!("unknown architecture `{a}`; expected velo, small_fc or mlp_lopt")))
        .transpose()
}

/// Run a checkpoint command.
pub fn run(cmd: LoptCommand) -> Result<ExitCode> {
    match cmd {
        LoptCommand::Inspect { file, arch: a } => {
            let c = checkpoint::load(&file, arch(&a)?)?;
            // Building for a one-tensor problem checks every meta-parameter's presence and shape.
            let probe = [beatmatch_core::ParamInfo { name: "probe".into(), shape: vec![2, 2] }];
            let valid = match beatmatch_learned::build(&c, &probe) {
                Ok(_) => "complete (every tensor present with the expected shape)".to_string(),
                Err(e) => format!("INVALID: {e}"),
            };
            println!("file:            {}", file.display());
            println!("architecture:    {}", c.arch.as_str());
            println!("meta-parameters: {}", c.theta.count());
            println!("tensors:         {}", c.theta.tensors.len());
            println!("sha256:          {}", c.sha256);
            println!("check:           {valid}");
            Ok(if valid.starts_with("INVALID") { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        LoptCommand::Convert { input, output, arch: a } => {
            let c = checkpoint::load(&input, arch(&a)?)?;
            if input == output {
                bail!("input and output are the same file");
            }
            if output.extension().is_some_and(|e| e == "safetensors") {
                let side =
                    native::Sidecar { architecture: c.arch, hyperparameters: Default::default(), source: format!("{} (sha256 {})", input.display(), c.sha256) };
                native::write(&output, &c.theta, &side)?;
                eprintln!("wrote {} and {}", output.display(), native::sidecar_path(&output).display());
            } else {
                std::fs::write(&output, msgpack::write(&c.theta))?;
                eprintln!("wrote {}", output.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
