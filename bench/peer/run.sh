#!/usr/bin/env bash
# Head-to-head against the stack learned_optimization runs on: the quick tier's MLP shapes and
# the cpu tier's ConvNet, LSTM and Transformer shapes trained with Adam, one run (steps/s) and
# a 30-member sweep (15 LRs x 2 seeds; run-steps/s), by JAX 0.4.30 + optax 0.2.3 under jit
# (vmapped for the sweep) and by beatmatch (a population per seed), both pinned to one core, in
# one invocation; prints the two side by side as ratios, with the achieved GFLOP/s against this
# machine's single-thread sgemm peak.
#
#   bash bench/peer/run.sh [SHAPE_FILTER]      # venv cached in ~/.cache/beatmatch-peer-venv
set -euo pipefail
cd "$(dirname "$0")/../.."
filter="${1:-}"
venv="$HOME/.cache/beatmatch-peer-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'jax==0.4.30' 'jaxlib==0.4.30' 'optax==0.2.3'
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/beatmatch-target}"
out=$(mktemp -d)
cargo bench -q -p beatmatch-tasks --bench population --no-run >/dev/null 2>&1 || cargo bench -p beatmatch-tasks --bench population --no-run
echo "beatmatch (one core) ..." >&2
taskset -c 0 cargo bench -q -p beatmatch-tasks --bench population -- $filter > "$out/beatmatch.jsonl"
shapes=$(python3 - "$out/beatmatch.jsonl" <<'PY'
import json, sys
# The benchmark's shape names, e.g. mlp-w32-d1-relu.mnist1d.b128, conv-c8-d1-max.digits.b64,
# lstm-h32-l1-t32.moby_dick.b32, transformer-d32-l1-h2-t32.moby_dick.b32, as the peer's specs.
rows = [json.loads(l) for l in open(sys.argv[1]) if '"shape"' in l]
images = {"digits": [1, 8, 8], "mnist": [1, 28, 28], "fashion_mnist": [1, 28, 28]}
shapes = []
for r in rows:
    name = r["shape"]
    model, data, batch = name.split(".")
    spec = {"name": name, "batch": int(batch[1:]), "unroll": 100}
    parts = model.split("-")
    if parts[0] == "conv":
        spec.update(kind="conv", channels=int(parts[1][1:]), depth=int(parts[2][1:]), pooling=parts[3], chw=images[data], classes=10, unroll=20)
    elif parts[0] == "lstm":
        spec.update(kind="lstm", hidden=int(parts[1][1:]), layers=int(parts[2][1:]), context=int(parts[3][1:]), vocab=256, unroll=20)
    elif parts[0] == "transformer":
        spec.update(kind="transformer", d_model=int(parts[1][1:]), layers=int(parts[2][1:]), heads=int(parts[3][1:]), context=int(parts[4][1:]), vocab=256, unroll=20)
    else:
        dims = [784 if data == "fashion_mnist" else 40]
        act = "relu"
        if parts[0] == "mlp":
            _, w, d, act = parts
            dims += [int(w[1:])] * int(d[1:])
        dims.append(10)
        spec.update(kind="mlp", dims=dims, activation=act)
    shapes.append(spec)
print(json.dumps(shapes))
PY
)
echo "JAX $("$venv/bin/python" -c 'import jax; print(jax.__version__)') (one core) ..." >&2
taskset -c 0 "$venv/bin/python" bench/peer/peer.py "$shapes" > "$out/jax.jsonl"
python3 - "$out/beatmatch.jsonl" "$out/jax.jsonl" <<'PY'
import json, sys
bm = [json.loads(l) for l in open(sys.argv[1])]
peak = next(r for r in bm if "shape" not in r)
bm = {r["shape"]: r for r in bm if "shape" in r}
jx = {r["shape"]: r for r in map(json.loads, open(sys.argv[2]))}
print(f"CPU instruction set used by beatmatch: {peak['isa']}; single-thread sgemm peak {peak['sgemm_gflops']:.1f} GFLOP/s")
print(f"| shape | beatmatch single steps/s | JAX jit steps/s | ratio | beatmatch sweep run-steps/s | JAX vmap run-steps/s | ratio | beatmatch GFLOP/s single / sweep (% of peak) |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
for name, b in bm.items():
    j = jx[name]
    print(f"| {name} | {b['single_steps_per_s']:.0f} | {j['single_steps_per_s']:.0f} | {b['single_steps_per_s']/j['single_steps_per_s']:.2f} | "
          f"{b['population_run_steps_per_s']:.0f} | {j['population_run_steps_per_s']:.0f} | {b['population_run_steps_per_s']/j['population_run_steps_per_s']:.2f} | "
          f"{b['single_gflops']:.1f} / {b['population_gflops']:.1f} ({100*b['population_gflops']/peak['sgemm_gflops']:.0f}%) |")
PY
