"""The same network written in Flax NNX and in linen, sampled by jaxsample: identical samples, and
the time of each (``js.sample``, DPM-Solver++ 2M, 16 steps, an MLP 64 -> 3x256 -> 64 on rectified
flow), interleaved repeats, medians, the NNX / linen ratio.

    python bench/nnx_vs_linen.py --out nnx_vs_linen.json

With ``--teacher NAME`` the shipped teacher instead, in linen and as the NNX module of
``js.load_teacher(NAME, nnx=True)`` (its linen network bridged by ``flax.nnx.bridge.ToNNX``):

    python bench/nnx_vs_linen.py --teacher fashion_vp --batch 64 --repeats 11 --out nnx_vs_linen_fashion_vp.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

import jaxsample as js  # noqa: E402
from _common import environment, write_json  # noqa: E402

DIM, WIDTH = 64, 256


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x, t):
        h = jnp.concatenate([x, jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None]], -1)
        for _ in range(3):
            h = jax.nn.silu(nn.Dense(WIDTH)(h))
        return nn.Dense(DIM)(h)


class NNXMLP(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Linear(DIM + 1 if i == 0 else WIDTH, WIDTH, rngs=rngs) for i in range(3)])
        self.out = nnx.Linear(WIDTH, DIM, rngs=rngs)

    def __call__(self, x, t):
        h = jnp.concatenate([x, jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None]], -1)
        for layer in self.layers:
            h = jax.nn.silu(layer(h))
        return self.out(h)


def mlp_models():
    """The MLP in linen and in NNX with the same weights, as rectified-flow velocity models."""
    linen = LinenMLP()
    params = linen.init(jax.random.key(0), jnp.zeros((1, DIM)), jnp.zeros((1,)))["params"]
    net = NNXMLP(nnx.Rngs(0))
    dense = [params[f"Dense_{i}"] for i in range(4)]
    for layer, w in zip([*net.layers, net.out], dense):
        layer.kernel.value, layer.bias.value = w["kernel"], w["bias"]
    path = js.RectifiedFlow()
    return {"linen": js.nets.network_model(linen, params, path, "velocity"),
            "nnx": js.nets.network_model(net, path=path, prediction="velocity")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--teacher", help="a shipped generative teacher instead of the MLP")
    args = p.parse_args(argv)
    if args.teacher:
        models = {"linen": js.load_teacher(args.teacher), "nnx": js.load_teacher(args.teacher, nnx=True)}
        shape = js.teachers.sample_shape(args.teacher)
    else:
        models, shape = mlp_models(), (DIM,)
    ts = js.uniform(models["linen"].path, 16)
    noise = js.initial_noise(jax.random.key(1), (args.batch, *shape))
    solver = js.dpm_solver_pp_2m()
    out = {k: np.asarray(js.sample(m, solver, ts, noise)) for k, m in models.items()}
    times = {k: [] for k in models}
    for _ in range(args.repeats):
        for k, m in models.items():
            t0 = time.perf_counter()
            jax.block_until_ready(js.sample(m, solver, ts, noise))
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"benchmark": "nnx_vs_linen", "environment": environment(), "args": vars(args),
              "median_s": med, "min_max_s": {k: [min(v), max(v)] for k, v in times.items()},
              "nnx_over_linen": med["nnx"] / med["linen"],
              "max_abs_difference": float(np.abs(out["nnx"] - out["linen"]).max())}
    print(f"linen {1e3 * med['linen']:.2f} ms, nnx {1e3 * med['nnx']:.2f} ms, ratio {result['nnx_over_linen']:.3f}, "
          f"max |difference| {result['max_abs_difference']:.2e}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
