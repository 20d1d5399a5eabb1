"""The limit: ``js.sample`` against the same update written by hand in one jitted ``lax.scan``.

The MLP velocity model of ``sampler_overhead.py`` (data dim 64, 3 hidden layers of 256) on the
rectified-flow path, 16 steps on the uniform grid from t = 0.99 to 0.01 (the exponential integrators
need alpha > 0 and sigma > 0 at both ends). For Euler, Heun, DDIM and DPM-Solver++(2M) the hand
loop is the textbook update in a few lines (below); its output is checked against ``js.sample``
(max abs difference, reported) before timing. Interleaved repeats (every case once per round),
medians and min-max in ms, ratio ``sample / hand`` per solver and batch; also 16 bare model calls
in one scan (the floor for one-call-per-step solvers). Two more columns say where the rest goes:
``js.sample(..., check_finite=False)`` (no NaN check: the check is an in-graph ``cond`` with a host
callback) and ``js.sample`` inside the caller's own ``jax.jit`` (no Python dispatch per call). UniPC, DEIS and the NS/BNS solvers have no
hand loop here (their coefficient tables make a hand-written version a re-implementation).

    python bench/hand_written.py --out bench/results/hand_written_cpu.json
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

import jaxsample as js  # noqa: E402
from _common import environment, write_json  # noqa: E402
from sampler_overhead import init_mlp, mlp  # noqa: E402

STEPS = 16


def hand_loops(ts):
    """name -> jitted fn(params, noise) -> samples: the hand-written updates on rectified flow
    (alpha = 1 - t, sigma = t, velocity v = eps - x0)."""
    n = len(ts) - 1
    idx = jnp.arange(n)

    def scan(body, carry):
        return jax.lax.scan(body, carry, idx)[0]

    def x0_of(params, x, t):  # x = (1 - t) x0 + t eps, v = eps - x0  =>  x0 = x - t v
        return x - t * mlp(params, x, t)

    @jax.jit
    def euler(params, noise):
        def body(x, i):
            return x + (ts[i + 1] - ts[i]) * mlp(params, x, ts[i]), None
        return scan(body, ts[0] * noise)

    @jax.jit
    def heun(params, noise):
        def body(x, i):
            h = ts[i + 1] - ts[i]
            k1 = mlp(params, x, ts[i])
            k2 = mlp(params, x + h * k1, ts[i + 1])
            return x + 0.5 * h * (k1 + k2), None
        return scan(body, ts[0] * noise)

    @jax.jit
    def ddim(params, noise):
        def body(x, i):
            t, s = ts[i], ts[i + 1]
            x0 = x0_of(params, x, t)
            return (s / t) * x + ((1 - s) - (1 - t) * s / t) * x0, None
        return scan(body, ts[0] * noise)

    lam = jnp.log((1 - ts) / ts)

    @jax.jit
    def dpmpp_2m(params, noise):
        def body(carry, i):
            x, prev = carry
            t, s = ts[i], ts[i + 1]
            x0 = x0_of(params, x, t)
            h = lam[i + 1] - lam[i]
            r = jnp.where(i > 0, (lam[i] - lam[jnp.maximum(i - 1, 0)]) / h, 1.0)
            d = jnp.where(i > 0, (1 + 0.5 / r) * x0 - (0.5 / r) * prev, x0)
            return ((s / t) * x - (1 - s) * jnp.expm1(-h) * d, x0), None
        x = ts[0] * noise
        return scan(body, (x, jnp.zeros_like(x)))[0]

    @jax.jit
    def bare(params, noise):
        def body(x, i):
            return mlp(params, x, ts[i]), None
        return scan(body, noise)

    return {"euler": euler, "heun": heun, "ddim": ddim, "dpm_solver_pp_2m": dpmpp_2m}, bare


SOLVERS = {"euler": lambda: js.euler(), "heun": lambda: js.heun(), "ddim": lambda: js.ddim(),
           "dpm_solver_pp_2m": lambda: js.dpm_solver_pp_2m(lower_order_final=False)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--batches", default="1,16,256,4096")
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    args = p.parse_args(argv)
    params = init_mlp(jax.random.key(0))
    model = js.Model(jax.tree_util.Partial(mlp, params), js.RectifiedFlow(), "velocity")
    ts = js.uniform(model.path, STEPS, t_start=0.99, t_end=0.01)
    hands, bare = hand_loops(ts)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        noise = jax.random.normal(jax.random.key(1), (batch, 64))
        cases = {"bare_16_calls": lambda: bare(params, noise)}
        agreement = {}
        for name, make in SOLVERS.items():
            solver = make()
            cases[f"{name}/hand"] = (lambda f: lambda: f(params, noise))(hands[name])
            cases[f"{name}/sample"] = (lambda s: lambda: js.sample(model, s, ts, noise))(solver)
            # where the rest goes: the NaN check (an in-graph cond and host callback) and Python dispatch
            cases[f"{name}/sample_no_check"] = (lambda s: lambda: js.sample(model, s, ts, noise,
                                                                            check_finite=False))(solver)
            jitted = jax.jit(lambda n, s=solver: js.sample(model, s, ts, n))
            cases[f"{name}/sample_in_jit"] = (lambda f: lambda: f(noise))(jitted)
            agreement[name] = float(jnp.max(jnp.abs(cases[f"{name}/hand"]() - cases[f"{name}/sample"]())))
        for f in cases.values():  # warm-up: compile, then once more
            jax.block_until_ready(f())
            jax.block_until_ready(f())
        times = {k: [] for k in cases}
        for _ in range(args.repeats):
            for k, f in cases.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f())
                times[k].append((time.perf_counter() - t0) * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        for name in SOLVERS:
            row = {"batch": batch, "solver": name, "hand_ms": med[f"{name}/hand"], "sample_ms": med[f"{name}/sample"],
                   "ratio": med[f"{name}/sample"] / med[f"{name}/hand"],
                   "overhead_ms": med[f"{name}/sample"] - med[f"{name}/hand"],
                   "hand_min_max_ms": [min(times[f"{name}/hand"]), max(times[f"{name}/hand"])],
                   "sample_min_max_ms": [min(times[f"{name}/sample"]), max(times[f"{name}/sample"])],
                   "bare_16_calls_ms": med["bare_16_calls"], "max_abs_difference": agreement[name],
                   "sample_no_check_ms": med[f"{name}/sample_no_check"],
                   "sample_in_jit_ms": med[f"{name}/sample_in_jit"]}
            rows.append(row)
            print(f"batch {batch:5d} {name:18s} hand {row['hand_ms']:8.3f} ms  sample {row['sample_ms']:8.3f} ms  "
                  f"ratio {row['ratio']:.3f}  (+{row['overhead_ms']:.3f} ms)  no check {row['sample_no_check_ms']:8.3f} ms  "
                  f"in jit {row['sample_in_jit_ms']:8.3f} ms  |diff| {agreement[name]:.1e}", flush=True)
    write_json(args.out, {"benchmark": "hand_written", "steps": STEPS, "repeats": args.repeats,
                          "environment": environment(), "rows": rows})


if __name__ == "__main__":
    main()
