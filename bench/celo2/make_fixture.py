"""Make the Celo2 reference fixture (`testdata/fixtures/celo2_case*.{json,safetensors}`).

Celo2 (Moudgil et al., arXiv 2602.19142) is published in two halves: its authors' JAX
reference, `celo/optimizers/celo2_optax.py` (`Celo2Transformation`, the learned update that
`celo/optimizers/celo2.py`'s `Celo2` delegates to) in github.com/amoudgl/celo, and its
meta-trained weights in PyTorch form only, `pylo/models/celo2_weights.pt` on the `celo2` branch
of github.com/Belilovsky-Lab/pylo (BSD-3-Clause), whose `Celo2_naive` says which tensors the
learned rule takes and which AdamW takes.

This script runs the JAX reference on those weights:
  * the `.pt` file is read without torch (a zip of a pickle and raw little-endian storages) and
    its per-group `[out, in]` matrices are transposed back into the haiku tree
    `{"ff_mod_stack": {"~": {w0__0..13, b0, w1, b1, w2, b2}}}` — the exact inverse of PyLO's
    `scripts/convert_celo2_checkpoint.py`;
  * tensors are routed as PyLO's `Celo2_naive._classify_params_list` routes them: rank <= 1,
    a name containing "embed", and the first and last tensor of rank >= 2 (in parameter order)
    take AdamW; every other tensor takes `Celo2Transformation` with celo/factory.py's "celo2"
    configuration;
  * a learned tensor moves as `celo2.Celo2.update`'s `apply_2d`: p - lr*step - wd*p*lr;
  * an AdamW tensor moves by `optax.adamw(lr, b1=0.9, b2=0.95, eps=1e-8, weight_decay=wd)`
    (Celo2_naive's AdamW: betas (0.9, 0.95), bias-corrected, decoupled decay).

Usage (needs `celo2_optax.py` from amoudgl/celo @ 66d9761 — fetched, not committed — and
jax 0.7.1, dm-haiku 0.0.14, flax 0.11.1, optax 0.2.5, the versions that repository's uv.lock
pins):

    python bench/celo2/make_fixture.py --celo2-optax PATH/celo2_optax.py \
        --weights learned/checkpoints/published/celo2/celo2_weights.pt --out testdata/fixtures
"""

import argparse
import hashlib
import importlib.util
import io
import json
import pickle
import sys
import zipfile

import numpy as np


def read_pt(path):
    """A PyTorch state dict of float32 tensors as numpy arrays, without torch."""
    z = zipfile.ZipFile(path)
    pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
    root = pkl[: -len("data.pkl")]

    class Storage:
        def __init__(self, key):
            self.key = key

    def rebuild(storage, offset, shape, stride, *_):
        raw = np.frombuffer(z.read(f"{root}data/{storage.key}"), dtype="<f4")
        n = int(np.prod(shape)) if shape else 1
        flat = raw[offset : offset + n]
        assert list(stride) == [int(np.prod(shape[i + 1 :])) for i in range(len(shape))], "not contiguous"
        return flat.reshape(shape).copy()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if (module, name) == ("torch", "FloatStorage"):
                return "float32"
            if (module, name) == ("collections", "OrderedDict"):
                import collections

                return collections.OrderedDict
            raise pickle.UnpicklingError(f"unexpected {module}.{name}")

        def persistent_load(self, pid):
            kind, storage_type, key, _location, _numel = pid
            assert kind == "storage" and storage_type == "float32", pid
            return Storage(key)

    return Unpickler(io.BytesIO(z.read(pkl))).load()


def theta_from_pt(sd):
    """PyLO's `Celo2MLP` state dict (per-group or dense) → the haiku theta tree."""
    groups = [1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3]
    if "first_layer.weight" in sd:
        w = sd["first_layer.weight"]
        cuts = np.cumsum([0] + groups)
        per_group = [w[:, cuts[i] : cuts[i + 1]] for i in range(len(groups))]
        b0 = sd["first_layer.bias"]
    else:
        per_group = [sd[f"first_layer_weights.{i}"] for i in range(len(groups))]
        b0 = sd["first_layer_bias"]
    mod = {f"w0__{i}": np.ascontiguousarray(w.T) for i, w in enumerate(per_group)}
    mod.update(b0=b0, w1=np.ascontiguousarray(sd["hidden.weight"].T), b1=sd["hidden.bias"])
    mod.update(w2=np.ascontiguousarray(sd["output.weight"].T), b2=sd["output.bias"])
    return {"ff_mod_stack": {"~": mod}}


def adamw_tensor(name, shape, first_last):
    return len(shape) <= 1 or "embed" in name.lower() or name in first_last


CASES = {
    # Names sort in the order given (jax's leaf order). The first and last tensors of rank >= 2
    # take AdamW; the rank-3 and rank-4 ones exercise the per-matrix normalisers and the batched
    # Newton-Schulz over leading axes; `c_hidden` is tall (rows > cols, transposed in NS).
    "celo2_case1": dict(
        shapes={"a_in": [6, 5], "b_bias": [5], "c_hidden": [9, 4], "d_wide": [3, 7], "e_embed": [11, 3],
                "f_stack": [2, 4, 3], "g_conv": [3, 3, 2, 4], "h_scalar": [], "i_out": [4, 3]},
        lr=1e-3, wd=0.0, T=12, seed=21),
    "celo2_case2": dict(
        shapes={"a_in": [5, 4], "b_hidden": [8, 8], "c_tall": [12, 5], "d_col": [6, 1], "e_out": [3, 4]},
        lr=3e-3, wd=0.1, T=10, seed=22),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--celo2-optax", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import optax
    from safetensors.numpy import save_file

    spec = importlib.util.spec_from_file_location("celo2_optax", args.celo2_optax)
    c2 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(c2)

    weights = open(args.weights, "rb").read()
    theta = jax.tree_util.tree_map(jnp.asarray, theta_from_pt(read_pt(args.weights)))
    # celo/factory.py's "celo2" (the Celo2Transformation part; its 1-D settings are PyLO's here).
    config = dict(orthogonalize=True, initial_momentum_decays=(0.9, 0.99, 0.999), initial_rms_decays=(0.95,),
                  initial_adafactor_decays=(0.9, 0.99, 0.999), ns_coeffs=(3.4445, -4.7750, 2.0315), ns_iters=5,
                  ns_eps=1e-8, mlp_activation="relu", ff_hidden_size=8, normalize_input=True, normalize_output=True)
    learned = c2.scale_by_celo2(theta, **config)

    for case, c in CASES.items():
        rng = np.random.default_rng(c["seed"])
        names = sorted(c["shapes"])
        shapes = {n: tuple(c["shapes"][n]) for n in names}
        two_d = [n for n in names if len(shapes[n]) >= 2]
        first_last = {two_d[0], two_d[-1]}
        route = {n: ("adamw" if adamw_tensor(n, shapes[n], first_last) else "celo2") for n in names}
        params = {n: (rng.standard_normal(shapes[n]) * 0.5).astype(np.float32) for n in names}
        scales = {n: float(10.0 ** rng.integers(-3, 2)) for n in names}
        grads = [{n: (rng.standard_normal(shapes[n]) * scales[n]).astype(np.float32) for n in names} for _ in range(c["T"])]
        huge = c["T"] // 2
        for n in names[:2]:
            grads[huge][n] = grads[huge][n] * np.float32(3000.0)

        split = lambda tree, r: {n: tree[n] for n in names if route[n] == r}
        adamw = optax.adamw(c["lr"], b1=0.9, b2=0.95, eps=1e-8, weight_decay=c["wd"])
        p = {n: jnp.asarray(v) for n, v in params.items()}
        s_adam = adamw.init(split(p, "adamw"))
        s_learned = learned.init(split(p, "celo2"))

        @jax.jit
        def step(p, s_adam, s_learned, g):
            pa, pl = split(p, "adamw"), split(p, "celo2")
            ua, s_adam = adamw.update(split(g, "adamw"), s_adam, pa)
            ul, s_learned = learned.update(split(g, "celo2"), s_learned, pl)
            new = dict(optax.apply_updates(pa, ua))
            lr, wd = c["lr"], c["wd"]
            new.update({n: pl[n] - lr * ul[n] - wd * pl[n] * lr for n in pl})
            return new, s_adam, s_learned

        tensors = {f"params/init/{n}": params[n] for n in names}
        for t in range(c["T"]):
            for n in names:
                tensors[f"grads/{t}/{n}"] = grads[t][n]
            p, s_adam, s_learned = step(p, s_adam, s_learned, {n: jnp.asarray(v) for n, v in grads[t].items()})
            for n in names:
                tensors[f"params/after/{t}/{n}"] = np.asarray(p[n])
        theta_tensors = []
        for (path, leaf) in jax.tree_util.tree_flatten_with_path(theta)[0]:
            keys = [k.key for k in path]
            tensors["theta/" + "/".join(keys)] = np.asarray(leaf)
            theta_tensors.append({"name": "/".join(keys), "path": keys, "shape": list(leaf.shape)})
        open(f"{args.out}/{case}.theta.pt", "wb").write(weights)
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, f"{args.out}/{case}.safetensors")
        meta = {
            "case": case,
            "kind": "celo2",
            "optimizer": "celo.optimizers.celo2_optax.Celo2Transformation (learned tensors) + optax.adamw (the rest), routed as pylo Celo2_naive",
            "generator": "bench/celo2/make_fixture.py",
            "upstream": {"celo2_optax": "github.com/amoudgl/celo @ 66d976116f39da286951f0c5e0a18eee8d1fd66b celo/optimizers/celo2_optax.py",
                         "weights": "github.com/Belilovsky-Lab/pylo branch celo2 @ 78c0e00 pylo/models/celo2_weights.pt",
                         "routing": "pylo branch celo2 pylo/optim/Celo2_naive.py _classify_params_list"},
            "theta_file": {"file": f"{case}.theta.pt", "format": "PyTorch state dict (PyLO's celo2_weights.pt, verbatim)",
                           "sha256": hashlib.sha256(weights).hexdigest(), "bytes": len(weights)},
            "theta_tensors": theta_tensors,
            "versions": {"jax": jax.__version__, "optax": optax.__version__, "python": sys.version.split()[0],
                         "haiku": __import__("haiku").__version__, "flax": __import__("flax").__version__},
            "constructor_args": dict(config, lr=c["lr"], weight_decay=c["wd"], adamw_b1=0.9, adamw_b2=0.95, adamw_eps=1e-8,
                                     exp_mult=0.0, rmsmult=1.0, bias_correction=False, param_scale_mult=False),
            "update": "learned: p - lr*step - wd*p*lr (celo2.Celo2's apply_2d); adamw: optax.apply_updates(p, optax.adamw(...))",
            "route": route,
            "T": c["T"],
            "num_steps": c["T"],
            "param_order": names,
            "param_shapes": {n: list(shapes[n]) for n in names},
            "grad_tensor_scales": {n: scales[n] for n in names},
            "huge_grad_step": huge,
            "huge_grad_tensors": names[:2],
            "huge_grad_factor": 3000.0,
            "data_seed": c["seed"],
            "init": "standard normal x 0.5 from numpy default_rng(data_seed); then gradients from the same generator",
        }
        json.dump(meta, open(f"{args.out}/{case}.json", "w"), indent=1, sort_keys=True)
        print(case, "written:", {n: route[n] for n in names})


if __name__ == "__main__":
    main()
