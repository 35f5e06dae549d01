#!/usr/bin/env bash
# One optimizer update on the tensors of an MLP 784-256-256-10, one core: beatmatch's host and
# device-on-CPU rules (`cargo bench --bench update_cost`) beside optax 0.2.8 under jit and
# PyTorch (Adam; SOAP when SOAP_PY names nikhilvyas/SOAP's soap.py, which is not vendored),
# each with its own forward+backward at batch 128, all pinned to core 0 in one invocation.
# Prints a markdown table of ms per update and ratios (beatmatch ÷ peer; < 1: beatmatch faster).
#
#   SOAP_PY=path/to/soap.py bash bench/peer/update_cost.sh   # venv cached in ~/.cache
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="$HOME/.cache/beatmatch-update-peer-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q jax 'optax==0.2.8' torch numpy
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/beatmatch-target}"
out=$(mktemp -d)
cargo bench -q --workspace --bench update_cost --no-run >/dev/null 2>&1 || cargo bench --workspace --bench update_cost --no-run
echo "beatmatch (one core) ..." >&2
taskset -c 0 cargo bench -q --workspace --bench update_cost > "$out/beatmatch.txt"
echo "optax and torch (one core) ..." >&2
taskset -c 0 "$venv/bin/python" bench/peer/update_cost.py 2>/dev/null > "$out/peers.jsonl"
python3 - "$out/beatmatch.txt" "$out/peers.jsonl" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
bm = {r["optimizer"]: r for r in (json.loads(l) for l in lines if l.startswith("{"))}
peers = [json.loads(l) for l in open(sys.argv[2])]
print(next(l for l in lines if l.startswith("MLP")))
fb = next(iter(bm.values()))["fwd_bwd_ms"]
print(f"forward+backward at batch 128: beatmatch {fb:.3f} ms; " + "; ".join(sorted({f"{p['peer']} {p['fwd_bwd_ms']:.3f} ms" for p in peers})))
print()
print("| optimizer | beatmatch host ms | population ÷ (members × host) | device-on-CPU ms | peer | peer ms | host ÷ peer | host ÷ own fwd+bwd | peer ÷ its fwd+bwd |")
print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
for name, b in bm.items():
    dev = "–" if b["device_cpu_ms"] is None else f"{b['device_cpu_ms']:.3f}"
    pop = f"{b['population_ms'] / (b['members'] * b['host_ms']):.2f} ({b['members']})"
    mine = [p for p in peers if p["optimizer"] == name] or [None]
    for p in mine:
        if p is None:
            print(f"| `{name}` | {b['host_ms']:.3f} | {pop} | {dev} | – | – | – | {b['host_ms']/fb:.2f} | – |")
        else:
            print(f"| `{name}` | {b['host_ms']:.3f} | {pop} | {dev} | {p['peer']} | {p['ms']:.3f} | {b['host_ms']/p['ms']:.2f} | {b['host_ms']/fb:.2f} | {p['ms']/p['fwd_bwd_ms']:.2f} |")
for l in lines:
    if l.startswith("muon:"):
        print("\n" + l)
PY
