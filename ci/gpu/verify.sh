#!/usr/bin/env bash
# The GPU verification, for a machine with an NVIDIA GPU (driver 580 / CUDA 13.0 or newer):
#
#   bash ci/gpu/verify.sh [BUNDLE]
#
# BUNDLE is the folder ci/cuda-check.sh fills with the cuda build's `suite` and the test
# binaries below, xz-compressed (gpu-bundle/ in the repository when present — the git-ignored place
# to carry a copy to a GPU machine — else $HOME/.cache/beatmatch-cuda/bundle; a `data/` folder
# in it is used as $BEATMATCH_DATA). Everything is written under $OUT (default
# ci/gpu/out): facts.txt; fixtures.txt and fixtures-learned.txt (every baseline and learned
# fixture through the device rules on the GPU: VeLO's, Celo's, small_fc's and MLP-LOpt's through
# the fused learned kernels, device/kernels/lopt.cu); agreement.txt (MLP and Transformer
# forward+backward and 50 training steps, CPU vs GPU; a device population of 3, CPU vs GPU;
# the baselines' fused kernels bit for bit and the fused learned updates to 1e-4, TF32 off);
# smoke-{cpu,cuda}/ (and each with --population 1) and quick-cuda/ result folders with their reports (quick-cpu/
# too with VERIFY_QUICK_CPU=1); plan-cuda.txt (per-step time and memory of a 1e8- and a
# 1e9-parameter task, measured on the GPU); and throughput.md, the table the README quotes.
#
# Each step has its own timeout; a step that fails or times out is recorded as such and the
# script goes on (a tier cut short still counts the runs it finished). The timeouts sum to
# about 10 minutes (13 with VERIFY_QUICK_CPU=1). The CPU columns are this machine's CPU pinned
# to two cores (taskset -c 0,1, --jobs 2): the 2-core machine the tiers are sized for.
set -uo pipefail
cd "$(dirname "$0")/../.."
default_bundle=$HOME/.cache/beatmatch-cuda/bundle
[ -d gpu-bundle ] && default_bundle=gpu-bundle
bundle="${1:-$default_bundle}"
out="${OUT:-ci/gpu/out}"
mkdir -p "$out/bin"
for f in suite test-baselines-conformance test-learned-conformance test-tasks-gpu; do
    if [ -f "$bundle/$f.xz" ]; then
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$bundle/$f.xz" "$out/bin/$f"
    elif [ -f "$bundle/$f" ]; then
        cp "$bundle/$f" "$out/bin/$f"
    else
        echo "verify: no $bundle/$f(.xz) (run ci/cuda-check.sh and carry its bundle)" >&2
        exit 2
    fi
    chmod +x "$out/bin/$f"
done
suite="$out/bin/suite"
[ -d "$bundle/data" ] && export BEATMATCH_DATA="$bundle/data"
export BEATMATCH_FIXTURES="$PWD/testdata/fixtures"
status=0
: > "$out/log.txt"
say() { echo "verify: $*" | tee -a "$out/log.txt" >&2; }
# step NAME SECONDS CMD...: run with a timeout, output to $out/NAME.txt, seconds to NAME.seconds.
step() {
    local name=$1 secs=$2
    shift 2
    local t0 rc took
    t0=$(date +%s.%N)
    timeout "$secs" "$@" > "$out/$name.txt" 2>&1
    rc=$?
    took=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')")
    echo "$took" > "$out/$name.seconds"
    case $rc in
        0) say "$name: ok in $took s" ;;
        124) say "$name: TIMED OUT after $secs s (partial results kept)"; status=1 ;;
        *) say "$name: FAILED (exit $rc) after $took s; see $out/$name.txt"; status=1 ;;
    esac
}
runs_in() { find "$1/runs" -name '*.json' ! -name '*.timing.json' 2>/dev/null | wc -l; }

isa=baseline
grep -q -w avx2 /proc/cpuinfo && isa=avx2
grep -q -w avx512f /proc/cpuinfo && isa=avx512f
host="$(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $isa"
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | head -1)
{
    echo "gpu: $gpu"
    echo "host: $host"
    nvidia-smi 2>&1
} > "$out/facts.txt"
say "device: $gpu; host: $host"

step fixtures 45 env BEATMATCH_TEST_DEVICE=cuda "$out/bin/test-baselines-conformance" device_path --nocapture --test-threads 1
step fixtures-learned 45 env BEATMATCH_TEST_DEVICE=cuda "$out/bin/test-learned-conformance" device_path --nocapture --test-threads 1
step agreement 60 env BEATMATCH_TEST_DEVICE=cuda "$out/bin/test-tasks-gpu" --ignored --nocapture --test-threads 1
cpu2=(taskset -c 0,1 "$suite" run --jobs 2 -q --device cpu)
rm -rf "$out"/smoke-* "$out"/quick-*
step smoke-cpu 45 "${cpu2[@]}" --tier smoke --out "$out/smoke-cpu"
step smoke-cpu-k1 45 "${cpu2[@]}" --tier smoke --population 1 --no-report --out "$out/smoke-cpu-k1"
step smoke-cuda 60 "$suite" run -q --device cuda --tier smoke --out "$out/smoke-cuda"
step smoke-cuda-k1 60 "$suite" run -q --device cuda --tier smoke --population 1 --no-report --out "$out/smoke-cuda-k1"
step quick-cuda 180 "$suite" run -q --device cuda --tier quick --out "$out/quick-cuda"
if [ "${VERIFY_QUICK_CPU:-0}" = 1 ]; then
    step quick-cpu 180 "${cpu2[@]}" --tier quick --out "$out/quick-cpu"
fi
step plan-cuda 90 "$suite" plan --tier full --device cuda --candidate adam:lr=1e-4 --baselines adam-lr15 \
    --only '^transformer-d(1024-l8|2048-l20)-h16-t256\.moby_dick\.b64\.s100000$'

# The table. Runs/s = runs finished / wall seconds of that step.
rate() { python3 -c "import sys; r, s = int('$1'), float('$2'); print(f'{r / s:.2f}' if s > 0 else '-')"; }
row() { # tier device dir step
    local n s
    n=$(runs_in "$3")
    s=$(cat "$out/$4.seconds" 2>/dev/null || echo 0)
    echo "| $1 | $2 | $n | $s | $(rate "$n" "$s") |"
}
{
    echo "GPU verification, $(date -u +%Y-%m-%d): GPU $gpu; host $host"
    echo
    echo "| tier | device | runs finished | wall s | runs/s |"
    echo "|---|---|---|---|---|"
    row smoke "cpu, 2 cores (population)" "$out/smoke-cpu" smoke-cpu
    row smoke "cpu, 2 cores (population 1, K=1)" "$out/smoke-cpu-k1" smoke-cpu-k1
    row smoke "cuda (device populations)" "$out/smoke-cuda" smoke-cuda
    row smoke "cuda (population 1, K=1)" "$out/smoke-cuda-k1" smoke-cuda-k1
    row quick "cuda (device populations)" "$out/quick-cuda" quick-cuda
    [ -d "$out/quick-cpu" ] && row quick "cpu, 2 cores (population)" "$out/quick-cpu" quick-cpu
    echo
    echo "Device populations batch the forward and backward passes of every family (a ConvNet's convolutions still one launch per member: candle's grouped convolution); the baselines' fused kernels step a group's members in one launch, the other rules member by member."
    echo
    echo "Per-step cost on the GPU (suite plan --device cuda; measured memory is the driver's high-water mark during a step):"
    echo
    echo '```'
    grep -E "^  (problem|transformer)" "$out/plan-cuda.txt" || echo "(plan-cuda did not finish: see plan-cuda.txt)"
    echo '```'
    echo
    echo "Step outcomes:"
    echo
    sed 's/^verify: /- /' "$out/log.txt"
} > "$out/throughput.md"
say "table in $out/throughput.md"
exit $status
