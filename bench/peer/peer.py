"""The peer: the quick tier's MLP shapes and the cpu tier's ConvNet, LSTM and Transformer shapes
trained with Adam under JAX jit, one run at a time and vmapped over 30 members (15 learning
rates x 2 seeds), on the CPU, single-threaded. The models are beatmatch's (tasks/src/models/):
the same layers, initialisation scales and losses; the data random (a step's cost does not
depend on the values).

Prints one JSON object per shape: steps/s of a single run and run-steps/s of the population.
Run by bench/peer/run.sh, which installs jax==0.4.30, jaxlib==0.4.30, optax==0.2.3.
"""
import json
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

LRS = [1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]
ACT = {"relu": jax.nn.relu, "tanh": jnp.tanh, "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


def mlp_init(key, spec):
    dims = spec["dims"]
    params = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (fan_in, fan_out)) / jnp.sqrt(fan_in), jnp.zeros(fan_out)))
    return params


def mlp_loss(params, x, y, spec):
    act = ACT[spec["activation"]]
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i + 1 < len(params):
            h = act(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


def conv_geometry(spec):
    """Each block's (c_in, c_out, pools), and the head's input features."""
    c, h, w = spec["chw"]
    blocks = []
    for _ in range(spec["depth"]):
        pool = spec["pooling"] != "none" and h >= 2 and w >= 2
        blocks.append((c, spec["channels"], pool))
        c = spec["channels"]
        if pool:
            h, w = h // 2, w // 2
    return blocks, c * h * w


def conv_init(key, spec):
    blocks, features = conv_geometry(spec)
    params = []
    for c_in, c_out, _ in blocks:
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (c_out, c_in, 3, 3)) / jnp.sqrt(c_in * 9), jnp.zeros(c_out)))
    key, sub = jax.random.split(key)
    params.append((jax.random.normal(sub, (features, spec["classes"])) / jnp.sqrt(features), jnp.zeros(spec["classes"])))
    return params


def conv_loss(params, x, y, spec):
    blocks, _ = conv_geometry(spec)
    h = x.reshape((x.shape[0],) + tuple(spec["chw"]))
    for (w, b), (_, _, pool) in zip(params[:-1], blocks):
        h = jax.lax.conv_general_dilated(h, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        h = jax.nn.relu(h + b[None, :, None, None])
        if pool:
            n, c, hh, ww = h.shape
            h = h[:, :, : hh // 2 * 2, : ww // 2 * 2].reshape(n, c, hh // 2, 2, ww // 2, 2)
            h = h.max(axis=(3, 5)) if spec["pooling"] == "max" else h.mean(axis=(3, 5))
    w, b = params[-1]
    return optax.softmax_cross_entropy_with_integer_labels(h.reshape(h.shape[0], -1) @ w + b, y).mean()


def lstm_init(key, spec):
    v, hd = spec["vocab"], spec["hidden"]
    keys = jax.random.split(key, 2 + spec["layers"])
    layers = [(jax.random.normal(k, (2 * hd, 4 * hd)) / jnp.sqrt(2 * hd), jnp.zeros(4 * hd)) for k in keys[2:]]
    return {"embed": jax.random.normal(keys[0], (v, hd)), "head": (jax.random.normal(keys[1], (hd, v)) / jnp.sqrt(hd), jnp.zeros(v)), "layers": layers}


def lstm_loss(params, x, y, spec):
    hd = spec["hidden"]
    forget = jnp.zeros(4 * hd).at[hd : 2 * hd].set(1.0)
    seq = params["embed"][x]  # [batch, t, hd]
    for w, b in params["layers"]:

        def cell(carry, xt, w=w, b=b):
            h, c = carry
            z = jnp.concatenate([xt, h], axis=1) @ w + b + forget
            i, f, g, o = jnp.split(z, 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], hd))
        _, hs = jax.lax.scan(cell, (zeros, zeros), seq.transpose(1, 0, 2))
        seq = hs.transpose(1, 0, 2)
    w, b = params["head"]
    logits = seq @ w + b
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def layer_norm(x, g, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-5) * g + b


def transformer_init(key, spec):
    v, d, t, layers = spec["vocab"], spec["d_model"], spec["context"], spec["layers"]
    keys = iter(jax.random.split(key, 3 + 4 * layers))
    resid = 1.0 / jnp.sqrt(2.0 * max(layers, 1))
    normal = lambda shape, std: jax.random.normal(next(keys), shape) * std  # noqa: E731
    blocks = []
    for _ in range(layers):
        blocks.append({
            "ln1": (jnp.ones(d), jnp.zeros(d)), "qkv": normal((d, 3 * d), 1 / jnp.sqrt(d)), "out": normal((d, d), resid / jnp.sqrt(d)),
            "ln2": (jnp.ones(d), jnp.zeros(d)), "w1": normal((d, 4 * d), 1 / jnp.sqrt(d)), "b1": jnp.zeros(4 * d),
            "w2": normal((4 * d, d), resid / jnp.sqrt(4 * d)), "b2": jnp.zeros(d),
        })
    return {"tok": normal((v, d), 0.02), "pos": normal((t, d), 0.02), "blocks": blocks, "final": (jnp.ones(d), jnp.zeros(d)), "head": (normal((d, v), 1 / jnp.sqrt(d)), jnp.zeros(v))}


def transformer_loss(params, x, y, spec):
    d, heads = spec["d_model"], spec["heads"]
    n, t = x.shape
    dh = d // heads
    h = params["tok"][x] + params["pos"][:t]
    mask = jnp.where(jnp.arange(t)[None, :] > jnp.arange(t)[:, None], -1e9, 0.0)
    for blk in params["blocks"]:
        a = layer_norm(h, *blk["ln1"])
        q, k, v = jnp.split((a @ blk["qkv"]).reshape(n, t, 3, heads, dh), 3, axis=2)
        q, k, v = (z[:, :, 0].transpose(0, 2, 1, 3) for z in (q, k, v))
        att = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / jnp.sqrt(dh) + mask, axis=-1)
        h = h + (att @ v).transpose(0, 2, 1, 3).reshape(n, t, d) @ blk["out"]
        m = layer_norm(h, *blk["ln2"])
        h = h + jax.nn.gelu(m @ blk["w1"] + blk["b1"], approximate=False) @ blk["w2"] + blk["b2"]
    w, b = params["head"]
    logits = layer_norm(h, *params["final"]) @ w + b
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def data(key, unroll, spec):
    """`unroll` batches of inputs and labels (targets) of the right kinds."""
    b = spec["batch"]
    if spec["kind"] in ("lstm", "transformer"):
        toks = jax.random.randint(key, (unroll, b, spec["context"] + 1), 0, spec["vocab"])
        return toks[:, :, :-1], toks[:, :, 1:]
    width = spec["dims"][0] if spec["kind"] == "mlp" else spec["chw"][0] * spec["chw"][1] * spec["chw"][2]
    classes = spec["dims"][-1] if spec["kind"] == "mlp" else spec["classes"]
    return jax.random.normal(key, (unroll, b, width)), jax.random.randint(key, (unroll, b), 0, classes)


MODELS = {"mlp": (mlp_init, mlp_loss), "conv": (conv_init, conv_loss), "lstm": (lstm_init, lstm_loss), "transformer": (transformer_init, transformer_loss)}


def measure(fn, *args, steps):
    out = fn(*args)  # compile
    jax.block_until_ready(out)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        out = fn(*args)
        jax.block_until_ready(out)
        reps += 1
    return reps * steps / (time.perf_counter() - start)


def shape_bench(spec):
    init, loss_of = MODELS[spec["kind"]]
    unroll = spec["unroll"]
    key = jax.random.PRNGKey(0)
    xs, ys = data(key, unroll, spec)

    def loss_fn(params, x, y):
        return loss_of(params, x, y, spec)

    def make_train(lr):
        opt = optax.adam(lr)

        def step(carry, xy):
            params, state = carry
            loss, g = jax.value_and_grad(loss_fn)(params, xy[0], xy[1])
            updates, state = opt.update(g, state, params)
            return (optax.apply_updates(params, updates), state), loss

        def run(params, state):
            return jax.lax.scan(step, (params, state), (xs, ys))

        return opt, run

    # Single run: Adam 1e-3, `unroll` steps per jitted call.
    opt, run = make_train(1e-3)
    p = init(key, spec)
    single = measure(jax.jit(run), p, opt.init(p), steps=unroll)

    # Population: 15 learning rates x 2 seeds, vmapped; the learning rate is a traced input.
    def pop_run(params, state, lr):
        opt = optax.inject_hyperparams(optax.adam)(learning_rate=lr)

        def step(carry, xy):
            params, state = carry
            loss, g = jax.value_and_grad(loss_fn)(params, xy[0], xy[1])
            updates, state = opt.update(g, state, params)
            return (optax.apply_updates(params, updates), state), loss

        return jax.lax.scan(step, (params, state), (xs, ys))

    lrs = jnp.array(LRS * 2)
    params = jax.vmap(lambda k: init(k, spec))(jnp.stack([jax.random.PRNGKey(s) for s in [0] * 15 + [1] * 15]))
    states = jax.vmap(lambda p, lr: optax.inject_hyperparams(optax.adam)(learning_rate=lr).init(p))(params, lrs)
    pop = measure(jax.jit(jax.vmap(pop_run)), params, states, lrs, steps=unroll) * 30
    return {"shape": spec["name"], "single_steps_per_s": single, "population_run_steps_per_s": pop}


def main():
    shapes = json.loads(sys.argv[1])
    for s in shapes:
        print(json.dumps(shape_bench(s)), flush=True)


if __name__ == "__main__":
    main()
