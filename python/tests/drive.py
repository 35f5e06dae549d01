"""Drive a worker through the step protocol as the suite does, on a reference fixture.

    python tests/drive.py FIXTURE_DIR CASE EXAMPLE.py [MEMBERS]

Maps the fixture's initial parameters into a shared file, feeds its gradients step by step,
and compares the parameters after every step with the reference's (max relative error
printed; exit 1 above the tolerance). With MEMBERS > 1 every member gets the same gradients
and must end bit-identical to member 0 (a member in a population == the member alone).
"""

import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=np.float32).reshape(v["shape"])
    return out


def frame(kind, body=b""):
    return struct.pack("<I", 1 + len(body)) + kind + body


def read(stream):
    n = struct.unpack("<I", stream.read(4))[0]
    body = stream.read(n)
    return body[:1], body[1:]


def main():
    fixtures, case, example = sys.argv[1:4]
    members = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    side = json.load(open(os.path.join(fixtures, case + ".json")))
    t = read_safetensors(os.path.join(fixtures, case + ".safetensors"))
    names = side["param_order"]
    shapes = [list(t["params/init/" + n].shape) for n in names]
    sizes = [int(np.prod(s, dtype=np.int64)) * 4 for s in shapes]
    offsets, pos = [], 0
    for _ in range(2 * members):
        row = []
        for sz in sizes:
            row.append(pos)
            pos += sz
        offsets.append(row)
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "run.shm")
    mem = np.memmap(path, dtype=np.uint8, mode="w+", shape=(max(pos, 4),))

    def view(o, s):
        return mem[o : o + 4 * int(np.prod(s, dtype=np.int64))].view(np.float32).reshape(s)

    params = [[view(o, s) for o, s in zip(offsets[m], shapes)] for m in range(members)]
    grads = [[view(o, s) for o, s in zip(offsets[members + m], shapes)] for m in range(members)]
    for m in range(members):
        for p, n in zip(params[m], names):
            p[...] = t["params/init/" + n]
    hyper = dict(side.get("constructor_overrides") or {})
    if "learning_rate" in hyper:
        hyper["lr"] = hyper.pop("learning_rate")
    hello = {
        "protocol": 1,
        "file": os.path.abspath(example),
        "factory": "make",
        "hyperparameters": hyper,
        "horizon": side.get("num_steps") or side["T"],
        "members": members,
        "tensors": [{"name": n, "shape": s, "role": "tensor"} for n, s in zip(names, shapes)],
        "shm": {"path": path, "bytes": int(mem.shape[0]), "params": offsets[:members], "grads": offsets[members:]},
    }
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
    w = subprocess.Popen([sys.executable, "-m", "beatmatch_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    w.stdin.write(frame(b"H", json.dumps(hello).encode()))
    w.stdin.flush()
    kind, body = read(w.stdout)
    if kind != b"R":
        sys.exit(f"worker refused: {body.decode(errors='replace')}")
    ready = json.loads(body)
    worst = 0.0
    for step in range(side["T"]):
        for m in range(members):
            for g, n in zip(grads[m], names):
                g[...] = t[f"grads/{step}/{n}"]
        mem.flush()
        w.stdin.write(frame(b"S", struct.pack(f"<QI{members}f", step, members, *([1.0] * members))))
        w.stdin.flush()
        kind, body = read(w.stdout)
        if kind != b"D":
            sys.exit(f"step {step}: worker failed: {body.decode(errors='replace')}")
        for p, n in zip(params[0], names):
            ref = t[f"params/after/{step}/{n}"]
            # Relative to the tensor's scale, so an entry crossing zero is not an outlier.
            scale = max(float(np.max(np.abs(ref))), 1e-30) if ref.size else 1.0
            err = float(np.max(np.abs(p - ref))) / scale if ref.size else 0.0
            worst = max(worst, float(err))
        for m in range(1, members):
            for a, b in zip(params[0], params[m]):
                if a.tobytes() != b.tobytes():
                    sys.exit(f"step {step}: member {m} differs from member 0")
    w.stdin.write(frame(b"Q"))
    w.stdin.flush()
    w.wait(timeout=30)
    print(f"{case} through {os.path.basename(example)} ({members} member(s)): max relative error {worst:.3g}; worker versions {ready['versions']}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
