"""Adam as a plain numpy step function (optax.adam's arithmetic, float32)."""

import numpy as np


def make(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    state = {}

    def step(params, grads, t, loss):
        if not state:
            state["m"] = [np.zeros_like(p) for p in params]
            state["v"] = [np.zeros_like(p) for p in params]
        k = t + 1
        c1 = np.float32(1 - b1**k)
        c2 = np.float32(1 - b2**k)
        for p, g, m, v in zip(params, grads, state["m"], state["v"]):
            m[...] = np.float32(b1) * m + np.float32(1 - b1) * g
            v[...] = np.float32(b2) * v + np.float32(1 - b2) * g * g
            p -= np.float32(lr) * ((m / c1) / (np.sqrt(v / c2) + np.float32(eps)))

    return step
