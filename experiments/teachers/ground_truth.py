"""Ship a teacher's ground truth for the demo: held-out noises and their ODE solutions.

    python experiments/teachers/ground_truth.py --teacher fashion_vp --out jaxsample/assets/demo

Draws ``--num`` noises with :func:`jaxsample.initial_noise` from ``jax.random.key(--seed)`` (seed 2:
the BNS study's test seed, never trained or validated on, so the study's ``test_pairs.npz`` share
this noise), solves the probability-flow ODE from each on EDM's interval (sigma / alpha from 80 to
0.002) with adaptive Dopri8 at ``--rtol`` (= atol), and writes ``OUT/<teacher>_reference.npz``:
``noise``, ``target``, ``t_start``, ``t_end``, ``rtol``, ``solver``, ``method`` and ``made_by``
(this command). A class-conditional teacher gets ``label`` too (uniform over the classes) and is
solved at ``--guidance``.

It also solves the same noises with the batched fixed-grid solver that the BNS study uses for its
training pairs (:data:`jaxsample.distill.bns.FIXED_GRID`) and prints and stores the PSNR between
the two (``fixed_grid_psnr_db``): the accuracy of that cheaper ground truth on this teacher.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

import jax
import numpy as np

from jaxsample import parallel, tasks
from jaxsample._files import atomic_write
from jaxsample.distill import bns
from jaxsample.metrics import psnr
from jaxsample.sampling import initial_noise, reference_sample


def make_reference(teacher: str, num: int = 256, seed: int = 2, rtol: float = 1e-5, guidance: float = 1.0,
                   batch_size: int = 128) -> dict:
    """The arrays of ``<teacher>_reference.npz`` (see the module docstring)."""
    task = tasks.load_task(teacher, guidance_scale=guidance, edm_interval=True)
    model, shape = task.model, task.sample_shape
    noise = initial_noise(jax.random.key(seed), (num, *shape))
    cond = task.conditioning(num, seed + 7919)  # the BNS study's labels for this seed
    t0 = time.perf_counter()
    targets = []
    for lo in range(0, num, batch_size):
        c = {k: v[lo:lo + batch_size] for k, v in cond.items()} or None
        targets.append(np.asarray(reference_sample(model, noise[lo:lo + batch_size], t_start=task.t_start,
                                                   t_end=task.t_end, cond=c, rtol=rtol, atol=rtol)))
        print(f"  dopri8: {lo + len(targets[-1])}/{num} in {time.perf_counter() - t0:.0f} s", flush=True)
    target = np.concatenate(targets)
    adaptive_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fixed = bns.make_pairs(model, num, shape, seed=seed, cond=cond or None, t_start=task.t_start, t_end=task.t_end,
                           method="fixed_grid", batch_size=batch_size)["target"]
    fixed_s = time.perf_counter() - t0
    fixed_psnr = float(psnr(np.asarray(fixed), target, task.data_range))
    print(f"dopri8 rtol {rtol}: {adaptive_s:.0f} s; fixed grid {bns.FIXED_GRID}: {fixed_s:.0f} s, "
          f"{fixed_psnr:.2f} dB against it", flush=True)
    return {"noise": np.asarray(noise), "target": target, "t_start": task.t_start, "t_end": task.t_end,
            "rtol": rtol, "solver": "dopri8", "method": f"adaptive Dopri8, rtol = atol = {rtol:g}",
            "guidance_scale": guidance, "fixed_grid_psnr_db": fixed_psnr, "fixed_grid": str(bns.FIXED_GRID),
            "adaptive_seconds": adaptive_s, "fixed_grid_seconds": fixed_s,
            **{k: np.asarray(v) for k, v in cond.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="a shipped generative teacher or a teacher card (.json)")
    parser.add_argument("--out", required=True, help="folder to write <teacher>_reference.npz to")
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    if args.num < 1 or args.batch_size < 1:
        parser.error(f"--num and --batch-size must be positive, got {args.num} and {args.batch_size}")
    if not parallel.is_main_process():
        raise SystemExit("run this on one host")
    arrays = make_reference(args.teacher, args.num, args.seed, args.rtol, args.guidance, args.batch_size)
    arrays["made_by"] = "python " + " ".join(shlex.quote(a) for a in ["experiments/teachers/ground_truth.py",
                                                                       *sys.argv[1:]])
    name = os.path.splitext(os.path.basename(args.teacher))[0]
    os.makedirs(args.out, exist_ok=True)
    filename = os.path.join(args.out, f"{name}_reference.npz")
    with atomic_write(filename) as f:
        np.savez_compressed(f, **arrays)
    print(f"wrote {filename} ({os.path.getsize(filename) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
