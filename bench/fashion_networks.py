"""Which network for the Fashion-MNIST teachers on a CPU? Train-step and forward time per candidate.

For each candidate (a small U-Net and matmul-heavy patch transformers), on 28x28x1 images: one
training step of the teacher loss (VP cosine, v-prediction, Adam, as ``experiments/teachers``)
at batch 128 and one forward pass at batch 64, each the median of ``--repeats`` calls made
round-robin over the candidates (interleaved, so machine noise hits all alike); plus parameter
counts, the float16 weights size, and the training steps that fit in ``--budget-min`` minutes.

    python bench/fashion_networks.py --out bench/results/fashion_networks.json
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

from _common import environment, write_json  # noqa: E402
from jaxsample import objectives, paths, teachers, train  # noqa: E402

CANDIDATES = {
    "unet_c32_122": ("UNet", dict(channels=32, channel_mults=(1, 2, 2), num_res_blocks=1)),
    "unet_c48_122": ("UNet", dict(channels=48, channel_mults=(1, 2, 2), num_res_blocks=1)),
    "dit_p4_d128_l4": ("PatchTransformer", dict(patch=4, dim=128, depth=4, heads=4)),
    "dit_p4_d192_l6": ("PatchTransformer", dict(patch=4, dim=192, depth=6, heads=6)),
    "dit_p2_d128_l4": ("PatchTransformer", dict(patch=2, dim=128, depth=4, heads=4)),
}


def build(name, batch_train, batch_fwd):
    module_name, kwargs = CANDIDATES[name]
    module = teachers.build_module(module_name, kwargs)
    x = jnp.zeros((1, 28, 28, 1))
    params = module.init(jax.random.key(0, impl="rbg"), x, jnp.zeros((1,)))["params"]
    loss_fn = objectives.diffusion_loss(module.apply, paths.VPCosine(), "v", "none")
    state = train.TrainState.create(params, train.make_optimizer(1e-3, warmup_steps=10), seed=0, ema_decay=0.999)
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.uniform(-1, 1, (batch_train, 28, 28, 1)), jnp.float32)}
    xf = jnp.asarray(rng.standard_normal((batch_fwd, 28, 28, 1)), jnp.float32)
    tf = jnp.full((batch_fwd,), 0.5)
    fwd = jax.jit(lambda p, x, t: module.apply({"params": p}, x, t))
    step = lambda s: train.train_step(s, batch, loss_fn)[0]  # noqa: E731
    n = int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))
    return {"step": lambda: step(state).params, "forward": lambda: fwd(params, xf, tf), "params": n}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--budget-min", type=float, default=60.0)
    args = p.parse_args(argv)
    names = args.candidates.split(",")
    built, compile_s = {}, {}
    for name in names:
        t0 = time.perf_counter()
        built[name] = build(name, 128, 64)
        for kind in ("step", "forward"):
            jax.block_until_ready(built[name][kind]())  # compile and warm up
        compile_s[name] = time.perf_counter() - t0
        print(f"{name}: {built[name]['params']:,} parameters, compiled in {compile_s[name]:.0f} s", flush=True)
    times = {name: {"step": [], "forward": []} for name in names}
    for _ in range(args.repeats):  # interleaved
        for name in names:
            for kind in ("step", "forward"):
                t0 = time.perf_counter()
                jax.block_until_ready(built[name][kind]())
                times[name][kind].append(time.perf_counter() - t0)
    rows = []
    base = statistics.median(times[names[0]]["step"])
    for name in names:
        step, fwd = statistics.median(times[name]["step"]), statistics.median(times[name]["forward"])
        rows.append({"name": name, "module": CANDIDATES[name][0], "net": CANDIDATES[name][1],
                     "params": built[name]["params"], "weights_mb_float16": 2 * built[name]["params"] / 2**20,
                     "train_step_ms_b128": 1e3 * step, "train_step_min_max_ms": [1e3 * min(times[name]["step"]),
                                                                                 1e3 * max(times[name]["step"])],
                     "forward_ms_b64": 1e3 * fwd, "step_ratio_to_first": step / base,
                     "steps_in_budget": int(60 * args.budget_min / step), "compile_s": compile_s[name]})
        r = rows[-1]
        print(f"{name:16s} {r['params']:>9,} params {r['weights_mb_float16']:.2f} MB | train step b128 "
              f"{r['train_step_ms_b128']:.0f} ms ({r['step_ratio_to_first']:.2f}x) | "
              f"forward b64 {r['forward_ms_b64']:.1f} ms"
              f" | {r['steps_in_budget']} steps in {args.budget_min:.0f} min", flush=True)
    write_json(args.out, {"benchmark": "fashion_networks", "environment": environment(), "args": vars(args),
                          "rows": rows})


if __name__ == "__main__":
    main()
