"""Fixed cost per call of ``js.sample`` at small batches, against the same Euler loop hand-written in
one ``jax.jit`` (the MLP of ``sampler_overhead.py``, rectified flow, 16 steps), and against ``sample``
with its model check re-run on every call (as before the check was cached per signature).
Interleaved repeats, medians in ms, ratios to the hand-written loop, and the fixed cost
(median of ``sample`` minus median of the hand-written loop) per batch size.

    python bench/small_batch_overhead.py --out bench/results/small_batch_overhead_cpu.json
"""
import argparse
import statistics
import sys
import time

sys.path.insert(0, "bench")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxsample as js  # noqa: E402
from jaxsample import sampling  # noqa: E402
from _common import environment, write_json  # noqa: E402
from sampler_overhead import init_mlp, mlp  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256, 4096])
    parser.add_argument("--repeats", type=int, default=200, help="interleaved repeats per batch size")
    parser.add_argument("--out", default=None, help="JSON output")
    args = parser.parse_args(argv)

    params = init_mlp(jax.random.key(0))
    model = js.Model(jax.tree_util.Partial(mlp, params), js.RectifiedFlow(), "velocity")
    ts = js.uniform(model.path, 16)
    solver = js.euler()

    @jax.jit
    def hand(params, x):
        def body(x, i):
            t, tn = ts[i], ts[i + 1]
            return x + (tn - t) * mlp(params, x, t), None
        return jax.lax.scan(body, x, jnp.arange(16))[0]

    rows = []
    for b in args.batches:
        x = jax.random.normal(jax.random.key(1), (b, 64))
        cases = {"hand": lambda: hand(params, x), "sample": lambda: js.sample(model, solver, ts, x),
                 "sample_uncached_check": lambda: (sampling._CHECKED.clear(), js.sample(model, solver, ts, x))[1]}
        diff = float(jnp.max(jnp.abs(cases["hand"]() - cases["sample"]())))
        for f in cases.values():
            jax.block_until_ready(f()), jax.block_until_ready(f())
        times = {k: [] for k in cases}
        repeats = max(5, args.repeats if b <= 256 else args.repeats // 20)
        for _ in range(repeats):
            for k, f in cases.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f())
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        row = {"batch": b, "repeats": repeats, "median_ms": med,
               "min_ms": {k: min(v) * 1e3 for k, v in times.items()},
               "ratio_sample_to_hand": med["sample"] / med["hand"],
               "ratio_uncached_to_hand": med["sample_uncached_check"] / med["hand"],
               "fixed_cost_ms": med["sample"] - med["hand"], "max_abs_diff": diff}
        rows.append(row)
        print(f"batch {b}: hand {med['hand']:.3f} ms, sample {med['sample']:.3f} ms "
              f"({row['ratio_sample_to_hand']:.2f}x, fixed cost {row['fixed_cost_ms']:.3f} ms), "
              f"uncached check {med['sample_uncached_check']:.3f} ms; max |diff| {diff:.1e}")
    if args.out:
        write_json(args.out, {"benchmark": "small_batch_overhead", "environment": environment(),
                              "solver": "euler", "nfe": 16, "network": "MLP 64 -> 3x256 -> 64", "rows": rows})


if __name__ == "__main__":
    main()
