"""The peer: the quick tier's MLP shapes trained with Adam under JAX jit, one run at a time and
vmapped over 30 members (15 learning rates x 2 seeds), on the CPU, single-threaded.

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


def init(key, dims):
    params = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (fan_in, fan_out)) / jnp.sqrt(fan_in), jnp.zeros(fan_out)))
    return params


def loss_fn(params, x, y, act):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i + 1 < len(params):
            h = act(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


def measure(fn, *args, steps):
    out = fn(*args)  # compile
    jax.block_until_ready(out)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2.0:
        out = fn(*args)
        jax.block_until_ready(out)
        reps += 1
    return reps * steps / (time.perf_counter() - start)


def shape_bench(name, dims, batch, act_name, unroll):
    act = ACT[act_name]
    key = jax.random.PRNGKey(0)
    xs = jax.random.normal(key, (unroll, batch, dims[0]))
    ys = jax.random.randint(key, (unroll, batch), 0, dims[-1])

    def make_train(lr):
        opt = optax.adam(lr)

        def step(carry, xy):
            params, state = carry
            loss, g = jax.value_and_grad(loss_fn)(params, xy[0], xy[1], act)
            updates, state = opt.update(g, state, params)
            return (optax.apply_updates(params, updates), state), loss

        def run(params, state):
            return jax.lax.scan(step, (params, state), (xs, ys))

        return opt, run

    # Single run: Adam 1e-3, `unroll` steps per jitted call.
    opt, run = make_train(1e-3)
    p = init(key, dims)
    single = measure(jax.jit(run), p, opt.init(p), steps=unroll)

    # Population: 15 learning rates x 2 seeds, vmapped; the learning rate is a traced input.
    def pop_run(params, state, lr):
        opt = optax.inject_hyperparams(optax.adam)(learning_rate=lr)

        def step(carry, xy):
            params, state = carry
            loss, g = jax.value_and_grad(loss_fn)(params, xy[0], xy[1], act)
            updates, state = opt.update(g, state, params)
            return (optax.apply_updates(params, updates), state), loss

        return jax.lax.scan(step, (params, state), (xs, ys))

    lrs = jnp.array(LRS * 2)
    params = jax.vmap(lambda k: init(k, dims))(jnp.stack([jax.random.PRNGKey(s) for s in [0] * 15 + [1] * 15]))
    states = jax.vmap(lambda p, lr: optax.inject_hyperparams(optax.adam)(learning_rate=lr).init(p))(params, lrs)
    pop = measure(jax.jit(jax.vmap(pop_run)), params, states, lrs, steps=unroll) * 30
    return {"shape": name, "single_steps_per_s": single, "population_run_steps_per_s": pop}


def main():
    shapes = json.loads(sys.argv[1])
    for s in shapes:
        print(json.dumps(shape_bench(s["name"], s["dims"], s["batch"], s["activation"], s["unroll"])), flush=True)


if __name__ == "__main__":
    main()
