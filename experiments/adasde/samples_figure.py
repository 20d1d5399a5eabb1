"""Samples of an AdaSDE study's methods side by side, from the same noise (a picture of what the
Frechet distances in ``results.json`` rank).

    python experiments/adasde/samples_figure.py --workdir /tmp/adasde_fashion --nfe 3 \\
        --out experiments/adasde/results/fashion_samples_nfe3.png

Rows: AdaSDE and its gamma = 0 counterpart (the study's saved solvers on their selected grids),
the best classical solver the study picked on validation, and the teacher's exact ODE solution
(adaptive Dopri8 at rtol 1e-4) of the same noise. Each row is labelled with the method's held-out
Frechet distance from ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re

import jax
import numpy as np


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="the study's workdir (results.json and the .npz solvers)")
    p.add_argument("--nfe", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=12)
    p.add_argument("--seed", type=int, default=99)
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxsample import compare, tasks
    from jaxsample._files import atomic_write
    from jaxsample.grids import get_grid
    from jaxsample.sampling import initial_noise, reference_sample, sample
    from jaxsample.solvers import load_solver

    with open(os.path.join(args.workdir, "results.json")) as f:
        results = json.load(f)
    rows = [r for r in results["rows"] if r["nfe"] == args.nfe]
    if not rows:
        raise SystemExit(f"--nfe {args.nfe}: results.json has NFE {[r['nfe'] for r in results['rows']]}")
    row, config = rows[0], results["config"]
    task = tasks.load_task(config["teacher"], edm_interval=True)
    model, n = task.model, row["adasde_steps"]
    noise = initial_noise(jax.random.key(args.seed), (args.num, *task.sample_shape))
    key = jax.random.key(args.seed + 1)

    def grid(name, steps):
        return get_grid(name, model.path, steps, t_start=task.t_start, t_end=task.t_end)

    panels = []
    for name in ("adasde", "adasde_gamma0"):
        solver = load_solver(os.path.join(args.workdir, f"{name}_nfe{args.nfe}.npz"), model=model)
        x = sample(model, solver, grid(row[name]["grid"], n), noise, key=key)
        panels.append((f"{name} [{row[name]['grid']}]: FD {row[name]['fd']:.1f}", x))
    base_name, base_grid = re.fullmatch(r"(.+)\[(.+)\]", row["best_baseline"]["solver"]).groups()
    base = compare.baseline_suite(model.path, stochastic=True)[base_name][0]
    x = sample(model, base, grid(base_grid, args.nfe // base.nfe(1)), noise, key=key if base.is_stochastic else None)
    panels.append((f"best classical {row['best_baseline']['solver']}: FD {row['best_baseline']['fd']:.1f}", x))
    x = reference_sample(model, noise, t_start=task.t_start, t_end=task.t_end, rtol=1e-4, atol=1e-4)
    panels.append(("exact ODE (Dopri8)", x))

    fig, axes = plt.subplots(len(panels), args.num, figsize=(args.num, 1.25 * len(panels)), squeeze=False)
    for i, (label, x) in enumerate(panels):
        x = np.asarray(x)
        for j in range(args.num):
            ax = axes[i, j]
            ax.imshow(np.clip(x[j, ..., 0], -1, 1), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[i, 0].set_title(label, fontsize=9, loc="left")
    fig.suptitle(f"{config['teacher']}, NFE {args.nfe}, seed {config['seed']} (same noise in every row)", fontsize=10)
    with atomic_write(args.out) as f:
        fig.savefig(f, format="png", dpi=80, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
