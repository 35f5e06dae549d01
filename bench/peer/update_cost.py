"""The peers' update cost on the tensors of an MLP 784-256-256-10, one thread: optax 0.2.8 under
jax.jit (Adam, AdamW, Schedule-Free AdamW, AdEMAMix, Muon, AlgoPerf's NAdamW as
`scale_by_nadam` + warm-up/cosine) and PyTorch (torch.optim.Adam, nikhilvyas/SOAP's SOAP when
SOAP_PY names its soap.py), with each framework's forward+backward of the model at batch 128.
Prints one JSON object per row. Run by bench/peer/update_cost.sh.
"""
import importlib.util
import json
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
import numpy as np  # noqa: E402

DIMS = [784, 256, 256, 10]


def median_time(fn, min_s=2.0):
    fn()
    samples = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_s / 5 or n < 3:
            fn()
            n += 1
        samples.append((time.perf_counter() - start) / n)
    return sorted(samples)[2]


def jax_rows():
    import jax
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(0)
    params = {}
    for i, (a, b) in enumerate(zip(DIMS[:-1], DIMS[1:])):
        params[f"w{i}"] = jnp.asarray(rng.standard_normal((a, b)).astype(np.float32) * 0.02)
        params[f"b{i}"] = jnp.zeros((b,), jnp.float32)
    grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.standard_normal(p.shape).astype(np.float32) * 0.01), params)

    def algoperf_nadamw():
        # AlgoPerf's baseline: its own scale_by_nadam is optax's scale_by_nadam-like NAdam; the cost
        # is that of optax's nadamw with a schedule, which is what we time.
        sched = optax.warmup_cosine_decay_schedule(0.0, 1.7e-3, 2000, 100000)
        return optax.nadamw(sched, b1=0.93, b2=0.9955, weight_decay=0.08)

    opts = {
        "adam": optax.adam(1e-3),
        "adamw": optax.adamw(1e-3),
        "sfadamw": optax.contrib.schedule_free_adamw(2.5e-3),
        "ademamix": optax.contrib.ademamix(1e-3),
        "algoperf_nadamw": algoperf_nadamw(),
        "muon": optax.contrib.muon(0.02),
    }
    out = []
    for name, opt in opts.items():
        state = opt.init(params)

        @jax.jit
        def step(p, s, g, opt=opt):
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        holder = [params, state]

        def one():
            p, s = step(holder[0], holder[1], grads)
            jax.block_until_ready(p)
            holder[0], holder[1] = p, s

        out.append({"peer": "optax " + optax.__version__ + " (jit)", "optimizer": name, "ms": median_time(one) * 1e3})
    x = jnp.asarray(rng.standard_normal((128, 784)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, 128))

    def loss(p):
        h = x
        for i in range(3):
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            if i < 2:
                h = jax.nn.relu(h)
        return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()

    vg = jax.jit(jax.value_and_grad(loss))
    fb = median_time(lambda: jax.block_until_ready(vg(params)))
    for r in out:
        r["fwd_bwd_ms"] = fb * 1e3
    return out


def torch_rows():
    import torch

    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opts = {"adam": lambda ps: torch.optim.Adam(ps, lr=1e-3)}
    soap_py = os.environ.get("SOAP_PY")
    if soap_py:
        spec = importlib.util.spec_from_file_location("soap", soap_py)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        opts["soap"] = lambda ps: mod.SOAP(ps, lr=3e-3)
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))

    def fwd_bwd():
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()

    fb = median_time(fwd_bwd)
    out = []
    for name, make in opts.items():
        opt = make(model.parameters())
        for _ in range(3):  # SOAP's first step only builds its preconditioner
            opt.step()
        out.append({"peer": "torch " + torch.__version__, "optimizer": name, "ms": median_time(opt.step) * 1e3, "fwd_bwd_ms": fb * 1e3})
    return out


if __name__ == "__main__":
    which = sys.argv[1:] or ["jax", "torch"]
    rows = (jax_rows() if "jax" in which else []) + (torch_rows() if "torch" in which else [])
    for r in rows:
        print(json.dumps(r))
