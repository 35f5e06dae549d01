"""Seeds of the learned_theta fuzz target: Celo-, Celo-Adam- and Celo2-shaped thetas with hidden
width 2 (small enough for libFuzzer's input limit), msgpack-encoded by hand (no msgpack package).
Run from the repository root: python3 fuzz/seeds/learned_theta.py"""
import struct, random
random.seed(0)
def pack(v):
    if isinstance(v, dict):
        out = bytes([0x80 | len(v)]) if len(v) < 16 else b'\xde' + struct.pack('>H', len(v))
        for k, x in v.items(): out += pack(k) + pack(x)
        return out
    if isinstance(v, str):
        b = v.encode(); return bytes([0xa0 | len(b)]) + b if len(b) < 32 else b'\xd9' + bytes([len(b)]) + b
    if isinstance(v, int): return bytes([v]) if v < 128 else b'\xcd' + struct.pack('>H', v)
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b''.join(pack(x) for x in v)
    if isinstance(v, bytes):
        return (b'\xc4' + bytes([len(v)]) if len(v) < 256 else b'\xc5' + struct.pack('>H', len(v))) + v
    raise TypeError(v)
def arr(*shape):
    n = 1
    for d in shape: n *= d
    payload = pack([list(shape), "float32", struct.pack('<%df' % n, *[random.gauss(0, 0.3) for _ in range(n)])])
    return b'\xc7' + bytes([len(payload)]) + b'\x01' + payload if len(payload) < 256 else b'\xc8' + struct.pack('>H', len(payload)) + b'\x01' + payload
class Raw(bytes): pass
def packv(v):
    if isinstance(v, Raw): return bytes(v)
    if isinstance(v, dict):
        out = bytes([0x80 | len(v)]) if len(v) < 16 else b'\xde' + struct.pack('>H', len(v))
        for k, x in v.items(): out += pack(k) + packv(x)
        return out
    return pack(v)
H = 2
def lin(i, o): return {"w": Raw(arr(i, o)), "b": Raw(arr(o))}
sched = {"linear": lin(18, H), "linear_1": lin(18, H), "linear_2": lin(18, H), "rnn/linear": lin(2*H, 4*H), "step_size": lin(H, 1)}
init = {"hidden": Raw(arr(1, H)), "cell": Raw(arr(1, H))}
groups = [1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3]
ff = {f"w0__{i}": Raw(arr(1, g, 4)) for i, g in enumerate(groups)}
ff.update({"b0": Raw(arr(1, 4)), "w1": Raw(arr(1, 4, 4)), "b1": Raw(arr(1, 4)), "w2": Raw(arr(1, 4, 3)), "b2": Raw(arr(1, 3))})
celo = {"ff_mod_stack": {"~": ff}, "lstm_init_state": init, "rnn_params": dict(sched, rnn_to_controls=lin(H, 1))}
celo_adam = {"lstm_init_state": init, "rnn_params": sched}
open("fuzz/corpus/learned_theta/celo_h2", "wb").write(packv(celo))
open("fuzz/corpus/learned_theta/celo_adam_h2", "wb").write(packv(celo_adam))
ff2 = {f"w0__{i}": Raw(arr(g, H)) for i, g in enumerate(groups)}
ff2.update({"b0": Raw(arr(H)), "w1": Raw(arr(H, H)), "b1": Raw(arr(H)), "w2": Raw(arr(H, 3)), "b2": Raw(arr(3))})
open("fuzz/corpus/learned_theta/celo2_h2", "wb").write(packv({"ff_mod_stack": {"~": ff2}}))
