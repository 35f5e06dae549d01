"""A beatmatch step-protocol worker (docs/step-protocol.md, version 1).

The suite sends frames on stdin and reads frames on stdout; tensors live in a file both sides
map. This module reads the hello, maps the file, builds the user's optimizer through one of
three adapters (a numpy step function, a torch.optim.Optimizer, an optax
GradientTransformation) and answers each step.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import sys
import traceback

import numpy as np

PROTOCOL = 1
MAX_FRAME = 1 << 20


class ProtocolError(Exception):
    """The other side sent something the protocol does not allow."""


class FactoryError(Exception):
    """The file, the factory or the hyperparameters are not what the candidate said: reported
    as one line, without a traceback."""


def read_frame(stream) -> tuple[bytes, bytes]:
    """One frame from `stream`: (kind, body). EOF before a frame starts gives (b"", b"")."""
    head = stream.read(4)
    if not head:
        return b"", b""
    if len(head) < 4:
        raise ProtocolError(f"frame length cut short after {len(head)} bytes")
    (n,) = struct.unpack("<I", head)
    if n == 0 or n > MAX_FRAME:
        raise ProtocolError(f"frame length {n}: expected 1..{MAX_FRAME}")
    body = stream.read(n)
    if len(body) < n:
        raise ProtocolError(f"frame cut short: {len(body)} of {n} bytes")
    return body[:1], body[1:]


def write_frame(stream, kind: bytes, body: bytes = b"") -> None:
    stream.write(struct.pack("<I", 1 + len(body)) + kind + body)
    stream.flush()


def load_factory(path: str, name: str):
    if not os.path.isfile(path):
        raise FactoryError(f"{path}: no such file (expected a Python file defining `{name}`)")
    spec = importlib.util.spec_from_file_location("beatmatch_user_optimizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory = getattr(module, name, None)
    if not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        raise FactoryError(f"no callable `{name}` in the file; callables defined there: {', '.join(found) or 'none'}")
    return factory


def check_hyperparameters(factory, name: str, hyper: dict, torch_style: bool) -> None:
    """Refuse hyperparameters the factory does not take, naming the ones it does."""
    import inspect

    sig = inspect.signature(factory)
    try:
        sig.bind(None, **hyper) if torch_style else sig.bind(**hyper)
    except TypeError as e:
        takes = [p for i, p in enumerate(sig.parameters) if not (torch_style and i == 0)]
        raise FactoryError(f"`{name}` cannot take {', '.join(sorted(hyper)) or 'no hyperparameters'} ({e}); its parameters: {', '.join(takes) or 'none'}") from None


class Shared:
    """The mapped file: per member, views of each tensor's parameters and gradients."""

    def __init__(self, hello: dict):
        shm = hello["shm"]
        self.mem = np.memmap(shm["path"], dtype=np.uint8, mode="r+", shape=(shm["bytes"],))
        shapes = [tuple(t["shape"]) for t in hello["tensors"]]

        def views(offsets):
            return [[self._view(o, s) for o, s in zip(member, shapes)] for member in offsets]

        self.params = views(shm["params"])
        self.grads = views(shm["grads"])
        self.eval = views(shm["eval"]) if shm.get("eval") else None

    def _view(self, offset: int, shape: tuple) -> np.ndarray:
        n = int(np.prod(shape, dtype=np.int64))
        if offset % 4 or offset + 4 * n > self.mem.shape[0]:
            raise ProtocolError(f"tensor at byte {offset} ({n} values) lies outside the {self.mem.shape[0]}-byte file or is misaligned")
        return self.mem[offset : offset + 4 * n].view(np.float32).reshape(shape)


class NumpyAdapter:
    """A step function (or an object with `step`), one instance per member.

    An object may also have `init(params)`, called once before the first step, and
    `eval_params(params)` returning the arrays to evaluate the model at (Schedule-Free's x).
    """

    def __init__(self, made, factory, hyper, members):
        self.rules = [made] + [factory(**hyper) for _ in range(members - 1)]
        self.eval_params = hasattr(made, "eval_params")

    def init(self, shared):
        for rule, params in zip(self.rules, shared.params):
            if hasattr(rule, "init"):
                rule.init(params)

    def step(self, shared, step, losses):
        for m, rule in enumerate(self.rules):
            fn = rule.step if hasattr(rule, "step") else rule
            fn(shared.params[m], shared.grads[m], step, float(losses[m]))

    def evaluate(self, shared):
        for m, rule in enumerate(self.rules):
            for dst, src in zip(shared.eval[m], rule.eval_params(shared.params[m])):
                put(dst, src)


class TorchAdapter:
    """`factory(params, **hyper)` returning a torch.optim.Optimizer, over views of the file.

    An optimizer with `eval()` and `train()` (schedulefree's) is evaluated where `eval()`
    moves its parameters, and moved back with `train()`.
    """

    def __init__(self, factory, hyper, shared):
        import torch

        self.torch = torch
        self.params = [[torch.from_numpy(p) for p in member] for member in shared.params]
        self.grads = [[torch.from_numpy(g) for g in member] for member in shared.grads]
        self.opts = [factory(ps, **hyper) for ps in self.params]
        self.eval_params = all(hasattr(o, "eval") and hasattr(o, "train") for o in self.opts)

    def init(self, shared):
        pass

    def step(self, shared, step, losses):
        with self.torch.no_grad():
            for ps, gs, opt in zip(self.params, self.grads, self.opts):
                for p, g in zip(ps, gs):
                    p.grad = g
                opt.step()

    def evaluate(self, shared):
        with self.torch.no_grad():
            for m, opt in enumerate(self.opts):
                opt.eval()
                for dst, src in zip(shared.eval[m], shared.params[m]):
                    put(dst, src)
                opt.train()


class OptaxAdapter:
    """An optax GradientTransformation: state kept here, parameters copied back to the file.

    With `eval_fn(state, params)` (the factory returned `(tx, eval_fn)`, e.g.
    `optax.contrib.schedule_free_eval_params`) the model is evaluated where it says.
    """

    def __init__(self, tx, shared, eval_fn=None):
        self.eval_fn = eval_fn
        self.eval_params = eval_fn is not None
        import jax
        import jax.numpy as jnp
        import optax

        self.jnp = jnp
        self.tx = tx

        @jax.jit
        def update(params, grads, state):
            u, state = tx.update(grads, state, params)
            return optax.apply_updates(params, u), state

        self.update = update
        self.states = None

    def arrays(self, views):
        # Copies: on the CPU JAX may alias a numpy buffer, and the state (Schedule-Free's z
        # starts as the parameters themselves) must not change when the file does.
        return [self.jnp.array(v, copy=True) for v in views]

    def init(self, shared):
        self.states = [self.tx.init(self.arrays(member)) for member in shared.params]

    def step(self, shared, step, losses):
        for m, member in enumerate(shared.params):
            params = self.arrays(member)
            grads = self.arrays(shared.grads[m])
            new, self.states[m] = self.update(params, grads, self.states[m])
            for dst, src in zip(member, new):
                put(dst, src)

    def evaluate(self, shared):
        for m, member in enumerate(shared.params):
            for dst, src in zip(shared.eval[m], self.eval_fn(self.states[m], self.arrays(member))):
                put(dst, src)


def put(dst: np.ndarray, src) -> None:
    """Copy `src` into the shared array `dst`; a wrong shape is an error, never a broadcast."""
    src = np.asarray(src)
    if src.shape != dst.shape:
        raise ValueError(f"the optimizer returned shape {src.shape} for a tensor of shape {dst.shape}")
    dst[...] = src


def adapter_for(factory, hyper, shared, members, name="make"):
    """Call the factory the way it asks to be called; return the adapter.

    A factory whose first parameter is named `params` is a PyTorch one: it receives the
    member's parameters (torch views of the file) and returns a torch.optim.Optimizer. Any
    other is called with the hyperparameters alone and returns an optax GradientTransformation
    (a tuple with `init` and `update`) or `(transformation, eval_fn)`, a step function, or an
    object with `step`.
    """
    import inspect

    first = next(iter(inspect.signature(factory).parameters), None)
    check_hyperparameters(factory, name, hyper, first == "params")
    if first == "params":
        return TorchAdapter(factory, hyper, shared)
    made = factory(**hyper)
    if isinstance(made, tuple) and hasattr(made, "init") and hasattr(made, "update"):
        return OptaxAdapter(made, shared)
    if isinstance(made, tuple) and len(made) == 2 and hasattr(made[0], "update") and callable(made[1]):
        return OptaxAdapter(made[0], shared, eval_fn=made[1])
    if callable(made) or hasattr(made, "step"):
        return NumpyAdapter(made, factory, hyper, members)
    raise TypeError(f"the factory returned {type(made).__name__}: expected a step function, an object with `step`, or an optax GradientTransformation")


def versions() -> dict:
    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for name in ("torch", "jax", "optax"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    return out


def last_lines() -> bytes:
    return "".join(traceback.format_exc().splitlines(True)[-12:]).encode()


def serve(inp, out) -> int:
    kind, body = read_frame(inp)
    if kind != b"H":
        raise ProtocolError(f"expected a hello frame `H` first, got {kind!r}")
    hello = json.loads(body)
    if hello.get("protocol") != PROTOCOL:
        write_frame(out, b"X", f"this worker speaks step protocol {PROTOCOL}; the suite asked for {hello.get('protocol')}".encode())
        return 2
    try:
        shared = Shared(hello)
        name = hello.get("factory") or "make"
        factory = load_factory(hello["file"], name)
        adapter = adapter_for(factory, hello.get("hyperparameters", {}), shared, hello["members"], name)
        adapter.init(shared)
    except FactoryError as e:
        write_frame(out, b"X", str(e).encode())
        return 1
    except Exception:
        write_frame(out, b"X", last_lines())
        return 1
    ready = {"protocol": PROTOCOL, "versions": versions(), "eval_params": bool(adapter.eval_params)}
    write_frame(out, b"R", json.dumps(ready).encode())
    while True:
        kind, body = read_frame(inp)
        if kind in (b"", b"Q"):
            return 0
        try:
            if kind == b"S":
                step, k = struct.unpack_from("<QI", body)
                if len(body) != 12 + 4 * k or k != len(shared.params):
                    raise ProtocolError(f"step frame of {len(body)} bytes for {k} losses and {len(shared.params)} members")
                adapter.step(shared, step, struct.unpack_from(f"<{k}f", body, 12))
            elif kind == b"V" and shared.eval is not None:
                adapter.evaluate(shared)
            else:
                raise ProtocolError(f"expected a step `S`, evaluation `V` or quit `Q` frame, got {kind!r}")
        except Exception:
            write_frame(out, b"X", last_lines())
            return 1
        write_frame(out, b"D")


def main() -> int:
    # Frames own the real stdout; anything the user's code prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    try:
        return serve(inp, out)
    except ProtocolError as e:
        print(f"beatmatch worker: protocol error: {e}", file=sys.stderr)
        return 2
