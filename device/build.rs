//! Compiles the fused kernels' one C source (kernels/rules.h) for the CPU always, and to PTX
//! with nvcc when the `cuda` feature is on.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    for f in ["kernels/rules.h", "kernels/host.c", "kernels/rules.cu"] {
        println!("cargo:rerun-if-changed={f}");
    }
    // One compilation per instruction set beatmatch_core::simd dispatches to; the crates build
    // for baseline x86-64, so the wider ones are asked for by flag and picked at run time.
    let x86 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    let sets: &[(&str, &[&str])] = if x86 { &[("baseline", &[]), ("avx2", &["-mavx2", "-mfma"]), ("avx512f", &["-mavx512f"])] } else { &[("baseline", &[])] };
    for (isa, flags) in sets {
        let mut b = cc::Build::new();
        b.file("kernels/host.c")
            .std("c99")
            .opt_level(3)
            .define("BM_SUFFIX", format!("_{isa}").as_str())
            // A fused multiply-add rounds once where the host rules round twice.
            .flag("-ffp-contract=off")
            .flag("-fno-math-errno")
            .warnings_into_errors(true);
        for f in *flags {
            b.flag(f);
        }
        b.compile(&format!("beatmatch_rules_{isa}"));
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        ptx();
    }
}

/// nvcc → `$OUT_DIR/rules.ptx` for compute capability `CUDA_COMPUTE_CAP` (as candle's kernels
/// read it), or the first GPU's as nvidia-smi reports it.
fn ptx() {
    for v in ["CUDA_COMPUTE_CAP", "CUDA_HOME", "CUDA_PATH"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let cap = match std::env::var("CUDA_COMPUTE_CAP") {
        Ok(c) => c.replace('.', ""),
        Err(_) => Command::new("nvidia-smi")
            .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(|l| l.trim().replace('.', "")))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| panic!("the cuda feature needs CUDA_COMPUTE_CAP (e.g. 90 for an H100/H200) or nvidia-smi to report one")),
    };
    let nvcc =
        std::env::var_os("CUDA_HOME").or_else(|| std::env::var_os("CUDA_PATH")).map(|h| PathBuf::from(h).join("bin/nvcc")).unwrap_or_else(|| "nvcc".into());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("rules.ptx");
    // --fmad=false for the same reason as -ffp-contract=off; division and sqrt stay IEEE
    // (nvcc's defaults without --use_fast_math).
    let status = Command::new(&nvcc)
        .args(["--ptx", "--fmad=false", &format!("-arch=compute_{cap}"), "-o"])
        .arg(&out)
        .arg("kernels/rules.cu")
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
    assert!(status.success(), "{} failed on kernels/rules.cu ({status})", nvcc.display());
}
