"""Generate the `soap_pinned_*` fixtures: trajectories of the SOAP reference (nikhilvyas/SOAP
`soap.py`, commit a1e5535, under PyTorch on the CPU, one thread) that also record the eigenbases
the reference chose at its first step and at every refresh (`debug/q/<t>/<name>/<axis>`).

Why: at the first step a factor GG = (1-beta)·outer(g) is rank-deficient whenever a dimension is
wider than the product of the others (or a 1-D tensor is preconditioned). Inside that null space
any orthonormal basis is an eigenbasis; LAPACK's `eigh` (MKL in torch's wheels) picks one from
rounding noise, and SOAP's later updates depend on the pick. torch itself picks differently under
`MKL_CBWR=AUTO` (run this script with `--self-check` to see by how much). The same holds for a
QR refresh while a factor is still rank-deficient (QR orthonormalises noise columns). With the
reference's picks recorded, a port can take them and must then follow the reference exactly:
every other part of SOAP (projections, Adam in the basis, the refreshes' sorting and permuting,
merge_dims, precondition_1d, normalize_grads, correct_bias) is determined.

Usage (soap.py is not vendored; fetch it from github.com/nikhilvyas/SOAP at a1e5535):
    pip install torch numpy safetensors
    python testdata/generators/soap_pinned.py --soap path/to/soap.py --out testdata/fixtures
"""

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys

import numpy as np

SHAPES = {
    "a_bias": [7],
    "b_dense": [5, 6],
    "c_conv": [8, 3, 3, 3],
    "e_embed": [11, 3],
    "g_wide": [24, 40],
    "h_tall": [40, 24],
    "k_square": [16, 16],
}
SCALES = {"a_bias": 10.0, "b_dense": 0.1, "c_conv": 0.01, "e_embed": 10.0, "g_wide": 1.0, "h_tall": 0.01, "k_square": 0.3}
CASES = {
    # Defaults but a short refresh period: two QR refreshes inside T.
    "soap_pinned_case1": dict(T=16, seed=611, args=dict(lr=3e-3, betas=(0.95, 0.95), weight_decay=0.01, precondition_frequency=5)),
    # Every option away from its default.
    "soap_pinned_case2": dict(
        T=14,
        seed=612,
        args=dict(
            lr=1e-3,
            betas=(0.9, 0.99),
            shampoo_beta=0.8,
            eps=1e-7,
            weight_decay=0.0,
            precondition_frequency=4,
            max_precond_dim=32,
            merge_dims=True,
            precondition_1d=True,
            normalize_grads=True,
            correct_bias=False,
        ),
    ),
}
LARGE_STEP, LARGE_FACTOR, LARGE_TENSORS = 6, 300.0, ["a_bias", "b_dense"]


def load_soap(path):
    spec = importlib.util.spec_from_file_location("soap", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SOAP


def trajectory(SOAP, case):
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(case["seed"])
    names = sorted(SHAPES)
    init = {n: (rng.standard_normal(SHAPES[n]) * 0.5).astype(np.float32) for n in names}
    grads = []
    for t in range(case["T"]):
        g = {n: (rng.standard_normal(SHAPES[n]) * SCALES[n]).astype(np.float32) for n in names}
        if t == LARGE_STEP:
            for n in LARGE_TENSORS:
                g[n] *= np.float32(LARGE_FACTOR)
        grads.append(g)
    params = [torch.nn.Parameter(torch.tensor(init[n])) for n in names]
    opt = SOAP(params, **case["args"])
    out = {f"params/init/{n}": init[n] for n in names}
    for t, g in enumerate(grads):
        for p, n in zip(params, names):
            p.grad = torch.tensor(g[n])
            out[f"grads/{t}/{n}"] = g[n]
        opt.step()
        for p, n in zip(params, names):
            out[f"params/after/{t}/{n}"] = p.detach().numpy().copy()
            if t % case["args"]["precondition_frequency"] == 0:
                for axis, q in enumerate(opt.state[p]["Q"]):
                    if len(q) > 0:
                        out[f"debug/q/{t}/{n}/{axis}"] = q.numpy().copy()
    return names, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--soap", required=True, help="path to nikhilvyas/SOAP's soap.py (commit a1e5535)")
    ap.add_argument("--out", default="testdata/fixtures")
    ap.add_argument("--self-check", action="store_true", help="compare with a run under MKL_CBWR=AUTO and exit")
    ap.add_argument("--emit", help=argparse.SUPPRESS)
    a = ap.parse_args()
    import torch
    from safetensors.numpy import load_file, save_file

    SOAP = load_soap(a.soap)
    if a.emit:
        name = os.path.basename(a.emit).removesuffix(".safetensors")
        save_file(trajectory(SOAP, CASES[name])[1], a.emit)
        return
    if a.self_check:
        for name, case in CASES.items():
            names, ours = trajectory(SOAP, case)
            tmp = f"/tmp/{name}.safetensors"
            env = dict(os.environ, MKL_CBWR="AUTO")
            subprocess.run([sys.executable, __file__, "--soap", a.soap, "--emit", tmp], env=env, check=True)
            other = load_file(tmp)
            for n in names:
                worst = 0.0
                for t in range(1, case["T"]):
                    before = ours[f"params/after/{t-1}/{n}"]
                    du = ours[f"params/after/{t}/{n}"] - before
                    dv = other[f"params/after/{t}/{n}"] - before
                    scale = np.max(np.abs(du))
                    if scale > 0:
                        worst = max(worst, float(np.max(np.abs(du - dv)) / scale))
                print(f"{name} {n:10s} worst update difference under MKL_CBWR=AUTO / max update: {worst:.2e}")
        return
    for name, case in CASES.items():
        names, tensors = trajectory(SOAP, case)
        args = dict(case["args"])
        args["betas"] = list(args["betas"])
        meta = {
            "case": name,
            "kind": "soap",
            "optimizer": "soap.SOAP",
            "constructor_args": args,
            "T": case["T"],
            "data_seed": case["seed"],
            "param_order": names,
            "param_shapes": SHAPES,
            "grad_tensor_scales": SCALES,
            "large_grad_step": LARGE_STEP,
            "large_grad_factor": LARGE_FACTOR,
            "large_grad_tensors": LARGE_TENSORS,
            "init": "standard normal x 0.5 from numpy default_rng(data_seed), then grads from the same generator",
            "update_call": "p.grad = g for every tensor; opt.step() (torch.no_grad, float32, one thread)",
            "debug_tensors": "debug/q/<t>/<name>/<axis>: state['Q'][axis] after step t, for t = 0 (the eigenbasis eigh chose) and every step that refreshes it (power iteration + QR)",
            "upstream": {"repo": "nikhilvyas/SOAP", "commit": "a1e553530fde97d0e6b307d7c82ac6d38b072340", "file": "soap.py"},
            "generator": "testdata/generators/soap_pinned.py",
            "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        }
        save_file(tensors, os.path.join(a.out, f"{name}.safetensors"))
        with open(os.path.join(a.out, f"{name}.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote", name)


if __name__ == "__main__":
    main()
