//! Compiles the fused kernels' C sources — the baselines' (kernels/rules.h) and the learned
//! optimizers' (kernels/lopt.h) — for the CPU always, and to PTX with nvcc when the `cuda`
//! feature is on; generates the Rust side of each one list of rules (`BM_RULES`,
//! `BM_LOPT_RULES`): the `Kernel` and `LoptKernel` enums and the tables of each instruction
//! set's host functions (`$OUT_DIR/kernels.rs` for `src/fused.rs`, `$OUT_DIR/lopt_kernels.rs`
//! for `src/lopt.rs`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    for f in ["kernels/rules.h", "kernels/host.c", "kernels/rules.cu", "kernels/lopt.h", "kernels/lopt_host.c", "kernels/lopt.cu"] {
        println!("cargo:rerun-if-changed={f}");
    }
    // One compilation per instruction set beatmatch_core::simd dispatches to; the crates build
    // for baseline x86-64, so the wider ones are asked for by flag and picked at run time.
    let x86 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    let sets: &[(&str, &[&str])] = if x86 { &[("baseline", &[]), ("avx2", &["-mavx2", "-mfma"]), ("avx512f", &["-mavx512f"])] } else { &[("baseline", &[])] };
    let rules = rules(&std::fs::read_to_string("kernels/rules.h").expect("reading kernels/rules.h"));
    let lopts = lopt_rules(&std::fs::read_to_string("kernels/lopt.h").expect("reading kernels/lopt.h"));
    let isas: Vec<&str> = sets.iter().map(|(isa, _)| *isa).collect();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("kernels.rs"), generate(&rules, &isas)).expect("writing kernels.rs");
    std::fs::write(out_dir.join("lopt_kernels.rs"), generate_lopt(&lopts, &isas)).expect("writing lopt_kernels.rs");
    for (isa, flags) in sets {
        for (source, lib) in [("kernels/host.c", "rules"), ("kernels/lopt_host.c", "lopt")] {
            let mut b = cc::Build::new();
            b.file(source)
                .std("c99")
                .opt_level(3)
                .define("BM_SUFFIX", format!("_{isa}").as_str())
                // A fused multiply-add rounds once where the host rules round twice (the
                // learned rules' explicit `fmaf`s stay fused).
                .flag("-ffp-contract=off")
                .flag("-fno-math-errno")
                .warnings_into_errors(true);
            for f in *flags {
                b.flag(f);
            }
            b.compile(&format!("beatmatch_{lib}_{isa}"));
        }
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        ptx("rules");
        ptx("lopt");
    }
}

/// The entries of a header's one-line list `#define LIST(X) X(name, n1, …) X(…) …`: each
/// name with its `N` numbers (`fields` names them, for the message).
fn list<const N: usize>(file: &str, header: &str, list: &str, fields: &str) -> Vec<(String, [usize; N])> {
    let prefix = format!("#define {list}(X)");
    let line = header.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("{file} defines {list}(X) on one line"));
    let entries: Vec<(String, [usize; N])> = line
        .split("X(")
        .skip(1)
        .map(|entry| {
            let inner = entry.split(')').next().unwrap_or_default();
            let bad = || panic!("{list} entry `X({inner})`: expected X(name, {fields}), numbers after the name");
            let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
            let [name, rest @ ..] = parts.as_slice() else { bad() };
            let nums: Vec<usize> = rest.iter().map(|p| p.parse().unwrap_or_else(|_| bad())).collect();
            (name.to_string(), nums.try_into().unwrap_or_else(|_| bad()))
        })
        .collect();
    assert!(!entries.is_empty(), "{file}: {list} lists no rule");
    entries
}

/// The `(name, slots)` entries of rules.h's `BM_RULES` list.
fn rules(header: &str) -> Vec<(String, usize)> {
    list::<1>("kernels/rules.h", header, "BM_RULES", "slots").into_iter().map(|(name, [slots])| (name, slots)).collect()
}

/// The `(name, [features, layers, chunk, factored])` entries of lopt.h's `BM_LOPT_RULES` list.
fn lopt_rules(header: &str) -> Vec<(String, [usize; 4])> {
    list("kernels/lopt.h", header, "BM_LOPT_RULES", "features, layers, chunk, factored")
}

/// The body of a table of host functions, one per rule and instruction set: the `extern` block
/// declaring `bm_<rule>_<infix>_<isa>(<sig>)` (`sig`: the parameters, then any `-> ret`) and the
/// `match isa` giving each instruction set's functions (as `fn_ty`) in list order, `None` for
/// others.
fn isa_table<'a>(s: &mut String, rules: impl Iterator<Item = &'a str> + Clone, isas: &[&str], infix: &str, sig: &str, fn_ty: &str) {
    *s += "    extern \"C\" {\n";
    for isa in isas {
        for name in rules.clone() {
            let _ = writeln!(s, "        fn bm_{name}_{infix}_{isa}({sig};");
        }
    }
    *s += "    }\n    match isa {\n";
    for isa in isas {
        let fns: Vec<String> = rules.clone().map(|r| format!("bm_{r}_{infix}_{isa} as {fn_ty}")).collect();
        let _ = writeln!(s, "        \"{isa}\" => Some([{}]),", fns.join(", "));
    }
    *s += "        _ => None,\n    }\n}\n";
}

/// The Rust side of the learned rules: `LoptKernel` and `lopt_host_kernels`.
fn generate_lopt(rules: &[(String, [usize; 4])], isas: &[&str]) -> String {
    let n = rules.len();
    let mut s = String::from("// Generated by device/build.rs from kernels/lopt.h's BM_LOPT_RULES list; do not edit.\n\n");
    s += "/// A fused learned rule of `kernels/lopt.h`, in the order of its `BM_LOPT_RULES` list.\n#[derive(Clone, Copy, Debug, PartialEq, Eq)]\npub enum LoptKernel {\n";
    for (name, [features, layers, _, factored]) in rules {
        let fac = if *factored == 1 { ", factored statistics" } else { "" };
        let _ = writeln!(s, "    /// `{name}`: a {features}-feature network of {layers} layers{fac}.\n    {},", variant(name));
    }
    s += "}\n\nimpl LoptKernel {\n    /// `[features, layers, chunk, factored]`.\n    fn sizes(self) -> [usize; 4] {\n        match self {\n";
    for (name, sizes) in rules {
        let _ = writeln!(s, "            LoptKernel::{} => {sizes:?},", variant(name));
    }
    s += "        }\n    }\n\n    /// The rule's name in `kernels/lopt.h`.\n    pub fn name(self) -> &'static str {\n        match self {\n";
    for (name, _) in rules {
        let _ = writeln!(s, "            LoptKernel::{} => \"{name}\",", variant(name));
    }
    s += "        }\n    }\n}\n\n";
    let _ = writeln!(s, "/// The compilation of `kernels/lopt_host.c` for instruction set `isa`, its functions in\n/// [`LoptKernel`] order; `None` where this build has none.\nfn lopt_host_kernels(isa: &str) -> Option<[LoptHostFn; {n}]> {{");
    let params = "n: usize, w: *mut f32, g: *const f32, s: *const f32, out: *mut f32, net: *const f32, k: *const LoptConsts) -> i32";
    isa_table(&mut s, rules.iter().map(|(r, _)| r.as_str()), isas, "lopt_host", params, "LoptHostFn");
    s
}

/// `adamw` → `Adamw`.
fn variant(name: &str) -> String {
    name.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect()
}

/// The Rust side of the rules: `Kernel` and `host_kernels`.
fn generate(rules: &[(String, usize)], isas: &[&str]) -> String {
    let n = rules.len();
    let mut s = String::from("// Generated by device/build.rs from kernels/rules.h's BM_RULES list; do not edit.\n\n");
    s += "/// A fused kernel of `kernels/rules.h`, in the order of its `BM_RULES` list.\n#[derive(Clone, Copy, Debug, PartialEq, Eq)]\npub enum Kernel {\n";
    for (name, slots) in rules {
        let _ = writeln!(s, "    /// `bm_{name}` ({slots} state slots per parameter).\n    {},", variant(name));
    }
    s += "}\n\nimpl Kernel {\n    /// Every kernel, in `BM_RULES` order.\n";
    let _ =
        writeln!(s, "    pub const ALL: [Kernel; {n}] = [{}];\n", rules.iter().map(|(r, _)| format!("Kernel::{}", variant(r))).collect::<Vec<_>>().join(", "));
    s += "    /// State values per parameter.\n    pub fn slots(self) -> usize {\n        match self {\n";
    for (name, slots) in rules {
        let _ = writeln!(s, "            Kernel::{} => {slots},", variant(name));
    }
    s += "        }\n    }\n\n    /// The rule's name in `kernels/rules.h` (`bm_<name>`).\n    pub fn name(self) -> &'static str {\n        match self {\n";
    for (name, _) in rules {
        let _ = writeln!(s, "            Kernel::{} => \"{name}\",", variant(name));
    }
    s += "        }\n    }\n}\n\n";
    let _ = writeln!(s, "/// The compilation of `kernels/host.c` for instruction set `isa` (`avx512f`, `avx2`, `baseline`),\n/// its functions in [`Kernel`] order; `None` where this build has none (non-x86 targets have the\n/// baseline only).\npub fn host_kernels(isa: &str) -> Option<[HostFn; {n}]> {{");
    let params = "members: usize, n: usize, w: *mut f32, g: *const f32, s: *const f32, out: *mut f32, k: *const Consts)";
    isa_table(&mut s, rules.iter().map(|(r, _)| r.as_str()), isas, "host", params, "HostFn");
    s
}

/// nvcc: `kernels/NAME.cu` → `$OUT_DIR/NAME.ptx` for compute capability `CUDA_COMPUTE_CAP` (as
/// candle's kernels read it), or the first GPU's as nvidia-smi reports it.
fn ptx(name: &str) {
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
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(format!("{name}.ptx"));
    // --fmad=false for the same reason as -ffp-contract=off; division and sqrt stay IEEE
    // (nvcc's defaults without --use_fast_math).
    let status = Command::new(&nvcc)
        .args(["--ptx", "--fmad=false", &format!("-arch=compute_{cap}"), "-o"])
        .arg(&out)
        .arg(format!("kernels/{name}.cu"))
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", nvcc.display()));
    assert!(status.success(), "{} failed on kernels/{name}.cu ({status})", nvcc.display());
}
