"""How much does the sampler cost beyond the model's own evaluations?

An MLP velocity model (data dim 64, 3 hidden layers of 256, batch 4096) on the
rectified-flow path. Three timings in the same run, each the median of
``--repeats`` runs after warm-up:

- baseline: 16 bare model evaluations chained in one jitted ``lax.scan``;
- jaxsample: ``jaxsample.sample`` with Euler at 16 steps (as a user calls it);
- diffrax: ``diffrax.diffeqsolve(Euler(), StepTo)`` on the same grid, jitted.

Writes ``jaxsample_ratio`` and ``diffrax_ratio`` (time / baseline time) to JSON.

    python bench/sampler_overhead.py --out overhead.json
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import diffrax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxsample as js  # noqa: E402
from _common import environment, time_call, write_json  # noqa: E402


def init_mlp(key, dim=64, width=256, depth=3):
    sizes = [dim + 1] + [width] * depth + [dim]
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (a, b)) / jnp.sqrt(a), jnp.zeros(b)) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp(params, x, t):
    t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None]
    h = jnp.concatenate([x, t], axis=-1)
    for w, b in params[:-1]:
        h = jax.nn.silu(h @ w + b)
    w, b = params[-1]
    return h @ w + b


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")

    params = init_mlp(jax.random.key(0))
    fn = jax.tree_util.Partial(mlp, params)
    path = js.RectifiedFlow()
    model = js.Model(fn, path, "velocity")
    ts = js.uniform(path, args.steps)
    noise = jax.random.normal(jax.random.key(1), (args.batch, 64))

    @jax.jit
    def bare(x):
        def body(x, t):
            return fn(x, t), None
        return jax.lax.scan(body, x, ts[:-1])[0]

    solver = js.euler()

    def ours(x):
        return js.sample(model, solver, ts, x)

    term = diffrax.ODETerm(lambda t, y, a: fn(y, t))

    @jax.jit
    def via_diffrax(x):
        return diffrax.diffeqsolve(term, diffrax.Euler(), ts[0], ts[-1], None, x,
                                   stepsize_controller=diffrax.StepTo(ts), saveat=diffrax.SaveAt(t1=True)).ys[0]

    results = {}
    # Interleave repeats of the three so slow drifts of the machine hit all alike.
    import statistics
    samples = {"baseline": [], "jaxsample": [], "diffrax": []}
    fns = {"baseline": bare, "jaxsample": ours, "diffrax": via_diffrax}
    for name, f in fns.items():
        time_call(f, noise, repeats=1, warmup=2)
    for _ in range(args.repeats):
        for name, f in fns.items():
            _, t = time_call(f, noise, repeats=1, warmup=0)
            samples[name] += t
    for name in fns:
        results[f"{name}_median_s"] = statistics.median(samples[name])
        results[f"{name}_times_s"] = samples[name]
    results["jaxsample_ratio"] = results["jaxsample_median_s"] / results["baseline_median_s"]
    results["diffrax_ratio"] = results["diffrax_median_s"] / results["baseline_median_s"]
    err = float(jnp.max(jnp.abs(ours(noise) - via_diffrax(noise))))
    results["max_abs_diff_jaxsample_vs_diffrax"] = err
    payload = {"benchmark": "sampler_overhead", "config": vars(args) | {"dim": 64, "hidden": [256] * 3},
               "environment": environment(), "results": results}
    print(f"baseline {results['baseline_median_s']*1e3:.1f} ms | jaxsample {results['jaxsample_median_s']*1e3:.1f} ms "
          f"(ratio {results['jaxsample_ratio']:.3f}) | diffrax {results['diffrax_median_s']*1e3:.1f} ms "
          f"(ratio {results['diffrax_ratio']:.3f}) | max |diff| {err:.1e}")
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
