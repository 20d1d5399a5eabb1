"""Per-call overhead of ``js.sample`` at small batches, against the same Euler loop hand-written in
one ``jax.jit`` (the MLP of ``sampler_overhead.py``, rectified flow, 16 steps), and against ``sample``
with its model check re-run on every call (as before the check was cached per signature).
Interleaved repeats, medians in ms, ratios to the hand-written loop.

    python bench/small_batch_overhead.py
"""
import time, statistics, sys
sys.path.insert(0, "bench")
import jax, jax.numpy as jnp
import jaxsample as js
from jaxsample import sampling
from sampler_overhead import init_mlp, mlp
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
res = {}
for b in (1, 16, 256):
    x = jax.random.normal(jax.random.key(1), (b, 64))
    cases = {"hand": lambda: hand(params, x), "sample": lambda: js.sample(model, solver, ts, x),
             "sample_uncached_check": lambda: (sampling._CHECKED.clear(), js.sample(model, solver, ts, x))[1]}
    for f in cases.values(): jax.block_until_ready(f()); jax.block_until_ready(f())
    t = {k: [] for k in cases}
    for _ in range(30):
        for k, f in cases.items():
            t0 = time.perf_counter(); jax.block_until_ready(f()); t[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in t.items()}
    print(b, {k: round(v, 3) for k, v in med.items()}, "ratio sample/hand", round(med["sample"] / med["hand"], 2),
          "uncached/hand", round(med["sample_uncached_check"] / med["hand"], 2))
