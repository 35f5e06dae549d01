//! `suite lopt`: inspect and convert learned-optimizer checkpoints.

use anyhow::{bail, Result};
use beatmatch_learned::checkpoint::{self, msgpack, native};
use beatmatch_learned::Architecture;
use std::path::Path;
use std::process::ExitCode;

fn arch(name: Option<&str>) -> Result<Option<Architecture>> {
    name.map(|a| Architecture::parse(a).ok_or_else(|| anyhow::anyhow!("unknown architecture `{a}`; expected one of: {}", Architecture::names()))).transpose()
}

/// `suite lopt inspect FILE`: architecture, meta-parameter count, SHA-256 and a full shape
/// check (exit 1 when a tensor is missing or mis-shaped). `arch` names the architecture when
/// the file's tensors do not say.
pub fn inspect(file: &Path, arch_name: Option<&str>) -> Result<ExitCode> {
    let c = checkpoint::load(file, arch(arch_name)?)?;
    // Building for a one-tensor problem checks every meta-parameter's presence and shape.
    let probe = [beatmatch_core::ParamInfo::new("probe", vec![2, 2])];
    let valid = match beatmatch_learned::build(&c, &probe) {
        Ok(_) => "complete (every tensor present with the expected shape)".to_string(),
        Err(e) => format!("INVALID: {e}"),
    };
    println!("file:            {}", file.display());
    println!("format:          {}", c.format.describe());
    println!("architecture:    {}", c.arch.as_str());
    if !c.hyperparameters.is_empty() {
        println!("hyperparameters: {:?}", c.hyperparameters);
    }
    println!("meta-parameters: {}", c.theta.count());
    println!("tensors:         {}", c.theta.tensors.len());
    println!("sha256:          {}", c.sha256);
    println!("check:           {valid}");
    Ok(if valid.starts_with("INVALID") { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `suite lopt convert IN OUT`: an output ending in `.safetensors` is native (with a `.yaml`
/// sidecar), anything else learned_optimization's msgpack.
pub fn convert(input: &Path, output: &Path, arch_name: Option<&str>) -> Result<ExitCode> {
    let c = checkpoint::load(input, arch(arch_name)?)?;
    if input == output {
        bail!("input and output are the same file");
    }
    if output.extension().is_some_and(|e| e == "safetensors") {
        let side = native::Sidecar {
            architecture: c.arch,
            hyperparameters: c.hyperparameters.clone(),
            source: format!("{} ({}, sha256 {})", input.display(), c.format.describe(), c.sha256),
            meta_training: None,
        };
        native::write(output, &c.theta, &side)?;
        eprintln!("wrote {} and {}", output.display(), native::sidecar_path(output).display());
    } else {
        if !c.hyperparameters.is_empty() {
            bail!(
                "{}: learned_optimization's msgpack holds no hyperparameters ({:?}); convert to a .safetensors output instead",
                input.display(),
                c.hyperparameters
            );
        }
        std::fs::write(output, msgpack::write(&c.theta))?;
        eprintln!("wrote {}", output.display());
    }
    Ok(ExitCode::SUCCESS)
}
