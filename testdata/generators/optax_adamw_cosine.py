"""Generate the `optax_adamw_cosine` fixture: optax 0.2.8's `adamw` with the learning rate
`warmup_cosine_decay_schedule(0, lr, warmup_steps, decay_steps=T, end_value=0)` — AdamW with a
linear warm-up from 0 and a half cosine to 0 at the budget, what papers train with — under jax
jit on the CPU, float32, fed fixed gradients for T steps. beatmatch's `adamw` with
`warmup_fraction` and `cosine=1` must follow it (baselines/tests/conformance.rs).

    pip install jax optax==0.2.8 numpy safetensors
    python testdata/generators/optax_adamw_cosine.py --out testdata/fixtures
"""
import argparse
import json
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
import optax
from safetensors.numpy import save_file

SHAPES = {"a_bias": [7], "b_dense": [5, 6], "c_conv": [3, 3, 2, 4], "d_scalar": [], "e_embed": [11, 3], "f_col": [4, 1]}
SCALES = {"a_bias": 0.1, "b_dense": 0.001, "c_conv": 10.0, "d_scalar": 0.001, "e_embed": 0.01, "f_col": 1.0}
T, LR, WARMUP, WD, SEED = 20, 3e-3, 4, 0.05, 131


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="testdata/fixtures")
    a = ap.parse_args()
    rng = np.random.default_rng(SEED)
    names = sorted(SHAPES)
    params = {n: np.array(rng.standard_normal(SHAPES[n]) * 0.5, np.float32).reshape(SHAPES[n]) for n in names}
    grads = [{n: np.array(rng.standard_normal(SHAPES[n]) * SCALES[n], np.float32).reshape(SHAPES[n]) for n in names} for _ in range(T)]
    schedule = optax.warmup_cosine_decay_schedule(0.0, LR, WARMUP, T, 0.0)
    opt = optax.adamw(schedule, weight_decay=WD)
    state = opt.init(jax.tree_util.tree_map(jnp.asarray, params))

    @jax.jit
    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    out = {f"params/init/{n}": params[n] for n in names}
    p = jax.tree_util.tree_map(jnp.asarray, params)
    for t, g in enumerate(grads):
        p, state = step(p, state, jax.tree_util.tree_map(jnp.asarray, g))
        for n in names:
            out[f"grads/{t}/{n}"] = g[n]
            out[f"params/after/{t}/{n}"] = np.array(p[n], np.float32).reshape(SHAPES[n])
    out["debug/lr"] = np.array([schedule(t) for t in range(T)], np.float32)
    meta = {
        "case": "optax_adamw_cosine",
        "kind": "optax",
        "optimizer": "optax.adamw",
        "constructor_args": {
            "learning_rate": {"schedule": "warmup_cosine_decay_schedule", "init_value": 0.0, "peak_value": LR, "warmup_steps": WARMUP, "decay_steps": T, "end_value": 0.0},
            "b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "weight_decay": WD, "mask": None, "mu_dtype": None, "nesterov": False,
        },
        "T": T,
        "num_steps": T,
        "data_seed": SEED,
        "param_order": names,
        "param_shapes": SHAPES,
        "grad_tensor_scales": SCALES,
        "debug_tensors": "debug/lr: [T] the scheduled learning rate at each step",
        "generator": "testdata/generators/optax_adamw_cosine.py",
        "versions": {"python": platform.python_version(), "jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__},
    }
    save_file(out, os.path.join(a.out, "optax_adamw_cosine.safetensors"))
    with open(os.path.join(a.out, "optax_adamw_cosine.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote optax_adamw_cosine")


if __name__ == "__main__":
    main()
