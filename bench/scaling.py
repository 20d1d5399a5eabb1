"""Data-parallel scaling: sampling and one BNS distillation step on 1, 2, 4 and 8 devices.

The model is the MLP velocity field of ``sampler_overhead.py`` (data dim 64, 3 hidden layers
of 256) on the rectified-flow path. For each device count ``n`` (those available of 1, 2, 4, 8),
in the same run, each the median of ``--repeats`` runs after warm-up:

- sampling: ``jaxsample.sample`` (DPM-Solver++(2M), 8 steps) of ``--batch`` samples with the
  batch split over an ``n``-device ``'data'`` mesh;
- distillation: one BNS training step (:func:`jaxsample.train.train_step` on the BNS loss, NFE 8)
  on a batch of ``--distill-batch`` (noise, target) pairs split over the same mesh.

Reports throughput, the speed-up against one device, and the max abs difference of the
results from the one-device results (the correctness check). On a CPU host the devices are
``--xla_force_host_platform_device_count=8`` slices of the same cores, so this measures the
overhead of sharding, not a speed-up; on a multi-GPU/TPU host it measures scaling.

    python bench/scaling.py --out scaling.json
"""

from __future__ import annotations

import argparse
import os
import sys

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # Only affects the CPU backend: with no accelerator, give ourselves 8 host devices.
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxsample as js  # noqa: E402
from _common import environment, time_call, write_json  # noqa: E402
from jaxsample.distill._fit_solver import trainable_leaves
from jaxsample.distill import bns  # noqa: E402
from sampler_overhead import init_mlp, mlp  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=8192, help="samples per sampling call")
    parser.add_argument("--distill-batch", type=int, default=1024, help="pairs per distillation step")
    parser.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    counts = [int(n) for n in args.devices.split(",") if int(n) <= jax.device_count()]
    if 1 not in counts:
        parser.error("--devices must include 1 (the baseline)")
    for name, b in (("--batch", args.batch), ("--distill-batch", args.distill_batch)):
        if b % max(counts):
            parser.error(f"{name} must be divisible by every device count, got {b}")

    model = js.Model(jax.tree_util.Partial(mlp, init_mlp(jax.random.key(0))), js.RectifiedFlow(), "velocity")
    solver, ts = js.dpm_solver_pp_2m(), js.uniform(model.path, 8)
    noise = js.initial_noise(jax.random.key(1), (args.batch, 64))

    bns_init = bns.BespokeNonStationary.from_solver(js.euler(), model.path, js.uniform(model.path, 8))
    pairs = {"noise": noise[:args.distill_batch],
             "target": js.sample(model, js.rk4(), js.uniform(model.path, 32), noise[:args.distill_batch])}

    params0, rebuild = trainable_leaves(bns_init)

    def loss_fn(params, batch, key):
        return bns.bns_loss(model, rebuild(params), batch)

    state0 = js.TrainState.create(params0, optax.adam(1e-3), seed=0)

    rows, ref = [], {}
    for n in counts:
        mesh = js.parallel.make_mesh(n)
        x = js.parallel.shard_batch(noise, mesh)
        run_sample = lambda x: js.sample(model, solver, ts, x, mesh=mesh)  # noqa: E731
        t_sample, all_sample = time_call(run_sample, x, repeats=args.repeats)
        out = np.asarray(run_sample(x))

        state = js.parallel.replicate(state0, mesh)
        batch = js.parallel.shard_batch(pairs, mesh)
        step = lambda s, b: js.train_step(s, b, loss_fn)  # noqa: E731
        t_step, all_step = time_call(step, state, batch, repeats=args.repeats)
        new_params = np.asarray(jax.flatten_util.ravel_pytree(step(state, batch)[0].params)[0])

        if n == 1:
            ref = {"sample": out, "params": new_params, "t_sample": t_sample, "t_step": t_step}
        rows.append({
            "devices": n,
            "sample_s": t_sample, "sample_all_s": all_sample,
            "samples_per_s": args.batch / t_sample,
            "sample_speedup_vs_1": ref["t_sample"] / t_sample,
            "sample_max_abs_diff_vs_1": float(np.abs(out - ref["sample"]).max()),
            "distill_step_s": t_step, "distill_step_all_s": all_step,
            "distill_step_speedup_vs_1": ref["t_step"] / t_step,
            "distill_params_max_abs_diff_vs_1": float(np.abs(new_params - ref["params"]).max()),
        })
        r = rows[-1]
        print(f"{n} devices: sample {t_sample * 1e3:8.1f} ms ({r['sample_speedup_vs_1']:.2f}x, diff "
              f"{r['sample_max_abs_diff_vs_1']:.1e}) | distill step {t_step * 1e3:8.1f} ms "
              f"({r['distill_step_speedup_vs_1']:.2f}x, diff {r['distill_params_max_abs_diff_vs_1']:.1e})", flush=True)

    write_json(args.out, {
        "benchmark": "scaling", "batch": args.batch, "distill_batch": args.distill_batch, "repeats": args.repeats,
        "sampler": "dpm_solver_pp_2m, 8 steps", "distill": "BNS train_step, NFE 8 (Euler init)",
        "model": "MLP velocity 64-256x3-64, rectified flow", "rows": rows, "environment": environment(),
        "note": "on host CPU devices the devices share the same cores: overhead and correctness, not speed-up",
    })


if __name__ == "__main__":
    main()
