#!/usr/bin/env bash
# Compile beatmatch's `cuda` feature (candle's CUDA backend) on a machine without a GPU.
#
#   bash ci/cuda-check.sh
#
# 1. Installs the CUDA 13.0 toolchain from PyPI, pinned as one release
#    (cuda-toolkit[nvcc,cudart,cccl,crt,nvvm]==13.0.2: the H200 machines this project can use
#    run driver 580 / CUDA 13.0, which rejects PTX from a newer nvcc, and nvcc 13.5 fails
#    cudarc 0.19's build script), into a venv under $HOME/.cache/beatmatch-cuda.
# 2. `cargo check --features cuda` of the suite (candle-kernels' PTX compiled by that nvcc).
# 3. Links the `suite` binary against stub libcuda / libnvrtc / libcurand / libcublas /
#    libcublasLt generated from cudarc's own symbol lists (no PyPI wheel ships a libcuda.so
#    stub; the real libraries come with the driver on a GPU machine), and runs it on the CPU
#    with the stubs on the library path.
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
cargo check --release -p beatmatch-suite --features cuda
say "check took $(( $(date +%s) - start )) s"

# Stub libraries: every function cudarc declares for each library, as an empty C function.
cudarc=$(cargo metadata --format-version 1 --features cuda --manifest-path suite/Cargo.toml \
    | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc").rsplit("/", 1)[0])')
stubs="$home/lib64"
for pair in driver:cuda nvrtc:nvrtc curand:curand cublas:cublas cublaslt:cublasLt; do
    dir=${pair%%:*}
    lib=${pair##*:}
    src="$cudarc/src/$dir/sys/mod.rs"
    [ -f "$src" ] || { say "cudarc has no $src"; exit 1; }
    grep -oE '^pub unsafe fn [A-Za-z_][A-Za-z0-9_]*' "$src" | awk '{print "void " $4 "(void) {}"}' | sort -u > "$stubs/$lib.c"
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
# The cuda build runs the CPU path, and refuses --device cuda with the reason.
out=$(LD_LIBRARY_PATH="$stubs" "$bin" plan --tier smoke --device cuda 2>&1 || true)
echo "$out" | grep -q "no beatmatch training path runs on a GPU yet" || { say "unexpected answer to --device cuda: $out"; exit 1; }
LD_LIBRARY_PATH="$stubs" "$bin" plan --tier smoke > /dev/null
say "ok: the cuda feature compiles, links and runs its CPU path; binary at $bin"
