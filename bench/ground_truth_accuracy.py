"""How accurate is a cheap batched ground truth? Fixed-grid solvers against a tight adaptive solve.

    python bench/ground_truth_accuracy.py --teacher fashion_vp --out bench/results/ground_truth_accuracy_fashion_vp.json

On ``--num`` noises (seed 2, the study's test seed; a class-conditional teacher gets the study's
labels and ``--guidance``), the reference is adaptive Dopri8 at ``--rtol`` (= atol) on EDM's
interval. Against it, every (solver, grid, steps) of ``--solvers`` x ``--grids`` x ``--steps`` is
run batched on the same noises, and so is Dopri8 at the looser ``--check-rtols`` (the tolerance the
shipped ground truths use is 1e-5: how far is it from the reference?). Each row: PSNR (data range
2) and max |difference| against the reference, model calls a sample, and the wall time a sample at
batch ``--num`` (steady state, compile excluded: the median of ``--repeats`` runs).

The BNS study's pairs use :data:`jaxsample.distill.bns.FIXED_GRID`; the issue asks that it reach
65 dB on every image teacher at the least cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import environment, time_call, write_json  # noqa: E402

from jaxsample import tasks  # noqa: E402
from jaxsample.grids import get_grid  # noqa: E402
from jaxsample.metrics import psnr  # noqa: E402
from jaxsample.sampling import initial_noise, reference_sample, sample  # noqa: E402
from jaxsample.solvers import registry  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=32)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--guidance", type=float, default=1.0)
    p.add_argument("--rtol", type=float, default=1e-6, help="the reference's tolerance")
    p.add_argument("--check-rtols", type=float, nargs="*", default=[1e-5, 1e-4])
    p.add_argument("--solvers", nargs="+", default=["unipc_bh2_3", "dpm_solver_pp_3m", "ipndm"])
    p.add_argument("--grids", nargs="+", default=["quadratic", "edm", "time_uniform", "logsnr"])
    p.add_argument("--steps", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.num < 1 or args.repeats < 1:
        p.error(f"--num and --repeats must be positive, got {args.num} and {args.repeats}")

    task = tasks.load_task(args.teacher, guidance_scale=args.guidance, edm_interval=True)
    model = task.model
    noise = initial_noise(jax.random.key(args.seed), (args.num, *task.sample_shape))
    cond = {k: jnp.asarray(v) for k, v in task.conditioning(args.num, args.seed + 7919).items()}
    t0 = time.perf_counter()
    ref = np.asarray(jax.block_until_ready(reference_sample(model, noise, t_start=task.t_start, t_end=task.t_end,
                                                            cond=cond or None, rtol=args.rtol, atol=args.rtol)))
    ref_s = time.perf_counter() - t0
    print(f"reference Dopri8 rtol {args.rtol:g}: {ref_s:.0f} s", flush=True)

    def score(x):
        x = np.asarray(x)
        return {"psnr_db": float(psnr(x, ref, task.data_range)), "max_abs": float(np.max(np.abs(x - ref)))}

    rows = []
    for rtol in args.check_rtols:
        t0 = time.perf_counter()
        x = jax.block_until_ready(reference_sample(model, noise, t_start=task.t_start, t_end=task.t_end,
                                                   cond=cond or None, rtol=rtol, atol=rtol))
        rows.append({"method": f"dopri8 rtol {rtol:g}", "solver": "dopri8", "rtol": rtol, **score(x),
                     "seconds_per_sample_with_compile": (time.perf_counter() - t0) / args.num})
        print(rows[-1], flush=True)
    for name in args.solvers:
        solver = registry.get(name).make()
        for grid in args.grids:
            for steps in args.steps:
                ts = get_grid(grid, model.path, steps, t_start=task.t_start, t_end=task.t_end)

                def run(ts=ts, solver=solver):
                    return sample(model, solver, ts, noise, cond=cond or None)

                x = jax.block_until_ready(run())
                med, times = time_call(run, repeats=args.repeats, warmup=0)
                rows.append({"method": f"{name}[{grid}] x{steps}", "solver": name, "grid": grid, "steps": steps,
                             "model_calls": int(solver.nfe(steps)), **score(x),
                             "seconds_per_sample": med / args.num, "times": times})
                print(f"{rows[-1]['method']:40s} {rows[-1]['psnr_db']:6.2f} dB  {rows[-1]['model_calls']} calls  "
                      f"{1e3 * med / args.num:.1f} ms/sample", flush=True)
    write_json(args.out, {"teacher": args.teacher, "guidance": args.guidance, "num": args.num, "seed": args.seed,
                          "reference": {"solver": "dopri8", "rtol": args.rtol, "seconds": ref_s},
                          "rows": rows, "environment": environment(),
                          "command": "python bench/ground_truth_accuracy.py " + " ".join(sys.argv[1:] if argv is None
                                                                                         else argv)})


if __name__ == "__main__":
    main()
