"""Every solver against ground truth on the Gaussian-mixture benchmark.

The exact model of a 64-d, 8-component anisotropic Gaussian mixture (``compare.benchmark_mixture``)
under VP cosine (eps model, sigma / alpha in [0.002, 80]) and rectified flow (velocity model,
t in [1, 0]). Each solver runs at NFE 4, 6, 8, 10, 16 and 32 from the same noise on each of
several grids, keeping its best grid per NFE; scored by PSNR (data range 2) against the adaptive
Dopri8 solution of the same ODE and by the exact mean log-likelihood of the samples. Stochastic
samplers are scored by log-likelihood only (their samples are not meant to match the ODE's).

    python bench/solver_table.py --out solver_table.json [--plot solver_table.png]

Writes one JSON row per (path, solver, nfe) with fields path, solver, nfe, psnr_db, loglik
(plus grid, steps, stochastic, seconds), prints markdown tables and the best baseline per NFE.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax.numpy as jnp  # noqa: E402

from jaxsample import compare, tasks  # noqa: E402
from _common import environment, write_json  # noqa: E402

NFES = (4, 6, 8, 10, 16, 32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--plot", default=None, help="PNG of PSNR against NFE (default: next to --out)")
    parser.add_argument("--samples", type=int, default=512, help="samples per run (default 512)")
    parser.add_argument("--nfes", type=int, nargs="+", default=list(NFES))
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be at least 2")

    t0 = time.perf_counter()
    rows, panels, best = [], {}, {}
    for name in compare.BENCHMARK_SETTINGS:
        task = tasks.load_task("gmm", setting=name)  # the 64-d, 8-component mixture, its path and interval
        gmm, path, prediction = task.mixture, task.model.path, task.model.prediction
        suite = compare.baseline_suite(path, stochastic=True)
        part = compare.compare_solvers(gmm, path, prediction, suite, args.nfes, num_samples=args.samples,
                                       progress=True, **task.interval)
        for r in part:
            r["path"] = name
            if r["stochastic"]:
                r["psnr_db"] = float("nan")
        rows += part
        panels[f"{name} ({prediction} model)"] = [r for r in part if not r["stochastic"]]
        best[name] = {n: {"solver": b["solver"], "grid": b["grid"], "psnr_db": b["psnr_db"]}
                      for n, b in compare.best_by_nfe(part).items()}
        print(f"\n## {name}: PSNR (dB) against the reference ODE solution (nan: singular on this path)\n")
        print(compare.markdown_table([r for r in part if not r["stochastic"]]))
        print(f"\n## {name}: exact mean log-likelihood of the samples (data: "
              f"{float(jnp.mean(gmm.log_prob(gmm.sample(__import__('jax').random.key(0), 4096)))):.2f})\n")
        print(compare.markdown_table(part, "loglik"))
        print("\nbest deterministic baseline per NFE: " +
              ", ".join(f"{n}: {b['solver']} [{b['grid']}] {b['psnr_db']:.2f} dB" for n, b in best[name].items()))
    plot = args.plot or os.path.splitext(args.out)[0] + ".png"
    compare.plot_psnr_vs_nfe(panels, plot, title="PSNR against the reference ODE solution, 64-d Gaussian mixture")
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    write_json(args.out, {"benchmark": "solver_table", "config": vars(args), "environment": environment(),
                          "seconds": time.perf_counter() - t0, "best_baseline": best, "rows": clean})
    print(f"wrote {plot}")


if __name__ == "__main__":
    main()
