#!/usr/bin/env bash
# Compile beatmatch's `cuda` feature (candle's CUDA backend) on a machine without a GPU.
#
#   bash ci/cuda-check.sh            # what .ci/run calls: steps 1-3
#   bash ci/cuda-check.sh --bundle   # and step 4, for a GPU machine
#
# 1. Installs the CUDA 13.0 toolchain from PyPI, pinned as one release
#    (cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2: the H200 machines this project can use
#    run driver 580 / CUDA 13.0, which rejects PTX from a newer nvcc, and nvcc 13.5 fails
#    cudarc 0.19's build script), into a venv under $HOME/.cache/beatmatch-cuda.
# 2. `cargo check --features cuda` of the suite (candle-kernels' PTX compiled by that nvcc).
# 3. Links the `suite` binary and the device tests against stub libcuda / libnvrtc / libcurand /
#    libcublas / libcublasLt generated from cudarc's own symbol lists (no PyPI wheel ships a
#    libcuda.so stub; the real libraries come with the driver on a GPU machine). Every stub
#    function returns 100 (CUDA_ERROR_NO_DEVICE), so with the stubs on the library path the
#    binary runs its CPU paths and `--device cuda` fails the way it does on a machine without
#    a GPU: with the driver's error, not a crash.
# 4. With --bundle, gathers what ci/gpu/verify.sh runs on a GPU machine — the suite binary and the
#    three test binaries it runs (the baselines' and the learned optimizers' fixture checks, the
#    tasks' CPU-vs-GPU checks), stripped and xz-compressed (under a device machine's 64 MiB
#    carry limit; never measured since the tests moved out of beatmatch-device) — into $HOME/.cache/beatmatch-cuda/bundle; copy that folder to gpu-bundle/
#    (git-ignored) to carry it.
#
# Separate from .ci/run (whose tests stay CPU-only and never need CUDA): it downloads ~300 MB.
# It shares .ci/run's target directory (the CPU build's dependencies are reused; only candle and
# what depends on it compile again with the feature) and copies the cuda binary to
# $HOME/.cache/beatmatch-cuda/suite, since the next CPU build relinks target/release/suite.
# Cold and warm times are in the README ("The GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
cache="$HOME/.cache/beatmatch-cuda"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/beatmatch-target}"
mkdir -p "$cache"

say() { echo "cuda-check: $*" >&2; }
bundle_too=0
case "${1:-}" in
    --bundle) bundle_too=1 ;;
    "") ;;
    *) say "usage: bash ci/cuda-check.sh [--bundle]"; exit 2 ;;
esac

if [ ! -x "$cache/venv/bin/python" ]; then
    say "creating a venv in $cache/venv"
    python3 -m venv "$cache/venv"
fi
if ! "$cache/venv/bin/python" -c 'import importlib.metadata as m; assert m.version("cuda-toolkit") == "13.0.2"' 2>/dev/null; then
    say "installing cuda-toolkit 13.0.2 from PyPI"
    "$cache/venv/bin/pip" install -q "cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2"
fi
site=$("$cache/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
toolkit="$site/nvidia/cu13"
[ -x "$toolkit/bin/nvcc" ] || { say "no nvcc at $toolkit/bin/nvcc after the install"; exit 1; }
# A CUDA_HOME laid out as cudarc's build script searches it: the wheel's bin, include and nvvm,
# and a lib64 holding the wheel's libraries and the stubs made below (so no RUSTFLAGS, which
# would rebuild every dependency in the shared target directory).
home="$cache/cuda-home"
mkdir -p "$home/lib64"
for d in bin include nvvm; do ln -sfn "$toolkit/$d" "$home/$d"; done
for f in "$toolkit"/lib/*; do ln -sf "$f" "$home/lib64/"; done
# The wheel ships libcudart.so.13 only; the link step asks for -lcudart.
ln -sf libcudart.so.13 "$home/lib64/libcudart.so"
export CUDA_HOME="$home"
export CUDA_PATH="$CUDA_HOME" PATH="$CUDA_HOME/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" # H200 (sm_90)
export CUDARC_CUDA_VERSION=13000
nvcc --version | tail -2 >&2

say "cargo check --features cuda"
start=$(date +%s)
cargo check --release -p beatmatch-suite -p beatmatch-device --features cuda
say "check took $(( $(date +%s) - start )) s"
# The fused optimizer kernels (device/kernels/rules.cu), compiled to PTX by device/build.rs.
ptx=$(ls -t "$CARGO_TARGET_DIR"/release/build/beatmatch-device-*/out/rules.ptx 2>/dev/null | head -1)
[ -n "$ptx" ] || { say "device/build.rs wrote no rules.ptx"; exit 1; }
# As many entries as device/kernels/rules.h's one list of rules (BM_RULES) names.
expected=$(grep -m1 '^#define BM_RULES(X)' device/kernels/rules.h | grep -oE 'X\([a-z0-9_]+,' | wc -l)
entries=$(grep -cE '^\.visible \.entry bm_[a-z0-9_]+_kernel' "$ptx" || true)
[ "$expected" -gt 0 ] && [ "$entries" = "$expected" ] || { say "$ptx has $entries fused kernels, rules.h lists $expected"; exit 1; }
if grep -qE '\bfma\.rn\.f32' "$ptx"; then say "$ptx contracts products into FMAs (--fmad=false lost)"; exit 1; fi
say "fused kernels: $entries entries in $ptx, no FMA contraction"
# The learned optimizers' fused steps (device/kernels/lopt.cu): two passes per BM_LOPT_RULES
# entry, pass 1's sums by warp shuffles and f64 atomics. Their FMAs are the explicit fmaf of
# the per-parameter MLP (as the host rules' mul_add), so they are not checked for.
lopt=$(dirname "$ptx")/lopt.ptx
[ -f "$lopt" ] || { say "device/build.rs wrote no lopt.ptx"; exit 1; }
expected=$(( 2 * $(grep -m1 '^#define BM_LOPT_RULES(X)' device/kernels/lopt.h | grep -oE 'X\([a-z0-9_]+,' | wc -l) ))
entries=$(grep -cE '^\.visible \.entry bm_[a-z0-9_]+_pass[12]' "$lopt" || true)
[ "$expected" -gt 0 ] && [ "$entries" = "$expected" ] || { say "$lopt has $entries kernels, lopt.h's rules need $expected"; exit 1; }
grep -q 'atom.global.add.f64' "$lopt" || { say "$lopt: pass 1 has no f64 atomic add"; exit 1; }
for k in bm_adafac_sums bm_adafac_stats bm_adafac_row_factors bm_velo_stats_phase bm_velo_stats_finish; do
    grep -qE "^\.visible \.entry $k\(" "$lopt" || { say "$lopt has no kernel $k (pass 0, VeLO's statistics)"; exit 1; }
done
say "learned fused kernels: $entries entries in $lopt"

# Stub libraries: every function cudarc declares for each library, as an empty C function.
cudarc=$(cargo metadata --format-version 1 --features cuda --manifest-path suite/Cargo.toml \
    | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc").rsplit("/", 1)[0])')
stubs="$home/lib64"
for pair in driver:cuda nvrtc:nvrtc curand:curand cublas:cublas cublaslt:cublasLt; do
    dir=${pair%%:*}
    lib=${pair##*:}
    src="$cudarc/src/$dir/sys/mod.rs"
    [ -f "$src" ] || { say "cudarc has no $src"; exit 1; }
    grep -oE '^pub unsafe fn [A-Za-z_][A-Za-z0-9_]*' "$src" | awk '{print "int " $4 "(void) { return 100; }"}' | sort -u > "$stubs/$lib.c"
    [ -s "$stubs/$lib.c" ] || { say "no symbols found in $src"; exit 1; }
    # The sonames the real libraries carry, so the binary's NEEDED entries match them.
    case $lib in
        cuda) soname=libcuda.so.1 ;;
        nvrtc) soname=libnvrtc.so.13 ;;
        curand) soname=libcurand.so.10 ;;
        cublas) soname=libcublas.so.13 ;;
        cublasLt) soname=libcublasLt.so.13 ;;
    esac
    cc -shared -fPIC -w -o "$stubs/lib$lib.so" -Wl,-soname,"$soname" "$stubs/$lib.c"
    ln -sf "lib$lib.so" "$stubs/$soname"
    say "stub lib$lib.so: $(wc -l < "$stubs/$lib.c") symbols"
done

say "cargo build --features cuda --bin suite (linked against the stubs)"
start=$(date +%s)
cargo build --release -p beatmatch-suite --features cuda --bin suite
say "build took $(( $(date +%s) - start )) s"
bin="$cache/suite"
cp "$CARGO_TARGET_DIR/release/suite" "$bin"
ldd "$bin" | grep -E "libcuda|libnvrtc|libcublas|libcurand" >&2
LD_LIBRARY_PATH="$stubs" "$bin" --version
# The cuda build runs the CPU paths; --device cuda reaches the driver, which (stubbed) has no GPU.
out=$(LD_LIBRARY_PATH="$stubs" "$bin" plan --tier smoke --device cuda 2>&1 || true)
echo "$out" | grep -q "CUDA_ERROR_NO_DEVICE" || { say "unexpected answer to --device cuda without a GPU: $out"; exit 1; }
say "--device cuda without a GPU: $(echo "$out" | tail -1)"
LD_LIBRARY_PATH="$stubs" "$bin" plan --tier smoke > /dev/null
LD_LIBRARY_PATH="$stubs" "$bin" plan --tier smoke --device cpu-device > /dev/null

if [ "$bundle_too" = 1 ]; then
    say "cargo test --no-run --features cuda (the device tests, linked against the stubs)"
    start=$(date +%s)
    tests=$(cargo test --release -p beatmatch-baselines -p beatmatch-learned -p beatmatch-tasks --features cuda --no-run --message-format json 2>/dev/null \
        | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["manifest_path"].rsplit("/", 2)[-2] + "-" + m["target"]["name"], m["executable"])')
    say "test build took $(( $(date +%s) - start )) s"
    bundle="$cache/bundle"
    rm -rf "$bundle" && mkdir -p "$bundle"
    strip -o "$bundle/suite" "$bin"
    # The fixture checks of every device rule (baselines, learned) and the CPU-vs-GPU training
    # checks (tasks' gpu test).
    echo "$tests" | while read -r name exe; do
        case $name in baselines-conformance | learned-conformance | tasks-gpu) strip -o "$bundle/test-$name" "$exe" ;; esac
    done
    for t in baselines-conformance learned-conformance tasks-gpu; do
        [ -x "$bundle/test-$t" ] || { say "device test binary test-$t missing from $bundle: $(ls "$bundle")"; exit 1; }
    done
    # The device rules' fixture checks, run on the CPU by the cuda build.
    for t in baselines-conformance learned-conformance; do
        LD_LIBRARY_PATH="$stubs" BEATMATCH_FIXTURES="$PWD/testdata/fixtures" "$bundle/test-$t" -q device_path > /dev/null
    done
    xz -T0 -6 -f "$bundle"/suite "$bundle"/test-*
    say "bundle for ci/gpu/verify.sh: $(du -sh "$bundle" | cut -f1) in $bundle ($(cd "$bundle" && ls | tr '\n' ' '))"
fi
say "ok: the cuda feature compiles, links and runs its CPU paths; binary at $bin"
