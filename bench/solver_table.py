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

With ``--teacher NAME`` (a shipped image teacher with shipped demo ground truth: ``fashion_vp``,
``digits_vp``) the same table for that network instead: every deterministic solver on each of
``--grids`` at each NFE, keeping its best grid per NFE by PSNR against the shipped ODE solution
(``jaxsample/assets/demo/NAME_reference.npz``; a class-conditional teacher, ``fashion_flow``, with the
labels of that reference), with the Frechet distance of the samples in the
shipped classifier's features in place of the log-likelihood:

    python bench/solver_table.py --teacher fashion_vp --out bench/results/solver_table_fashion_vp.json
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
    parser.add_argument("--teacher", default=None, help="a shipped image teacher with shipped ground truth "
                                                        "(fashion_vp, digits_vp) instead of the mixture")
    parser.add_argument("--grids", nargs="+", default=["quadratic", "time_uniform", "logsnr", "edm"],
                        help="grids tried per solver with --teacher (default: quadratic time_uniform logsnr edm)")
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be at least 2")
    if args.teacher:
        return teacher_table(args)

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


def teacher_table(args) -> None:
    """The ``--teacher`` table (see the module docstring)."""
    import jax
    import numpy as np

    from jaxsample import demo
    from jaxsample.grids import get_grid
    from jaxsample.sampling import sample

    t0 = time.perf_counter()
    ref = demo.reference(args.teacher)
    n = min(args.samples, ref["noise"].shape[0])
    noise, target = jnp.asarray(ref["noise"][:n]), np.asarray(ref["target"][:n])
    interval = {"t_start": float(ref["t_start"]), "t_end": float(ref["t_end"])}
    # a class-conditional teacher is sampled with the labels its ground truth was solved with
    cond = {"label": jnp.asarray(ref["label"][:n])} if "label" in ref else None
    task = tasks.load_task(args.teacher)
    model = task.model
    suite = compare.baseline_suite(model.path)
    items = [(name, nfe) for name in suite for nfe in args.nfes if nfe % suite[name][0].nfe(1) == 0]
    from tqdm.auto import tqdm

    rows = []
    for name, nfe in tqdm(items, desc=f"solvers on {args.teacher}", dynamic_ncols=True):
        solver = suite[name][0]
        best = None
        for grid in args.grids:
            ts = get_grid(grid, model.path, nfe // solver.nfe(1), **interval)
            t1 = time.perf_counter()
            x = np.asarray(jax.block_until_ready(sample(model, solver, ts, noise, cond=cond, check_finite=False)))
            score = task.psnr(x, target) if np.all(np.isfinite(x)) else float("nan")
            if best is None or score > best["psnr_db"] or math.isnan(best["psnr_db"]):
                best = {"solver": name, "nfe": nfe, "steps": nfe // solver.nfe(1), "grid": grid, "psnr_db": score,
                        "stochastic": False, "seconds": time.perf_counter() - t1, "x": x}
        x = best.pop("x")
        best["fd"] = task.frechet_distance(x) if np.all(np.isfinite(x)) else float("nan")
        rows.append(best)
    reference_fd = task.frechet_distance(target)
    best_by_nfe = {nfe: {"solver": b["solver"], "grid": b["grid"], "psnr_db": b["psnr_db"], "fd": b["fd"]}
                   for nfe, b in compare.best_by_nfe(rows).items()}
    print(f"\n## {args.teacher} ({n} shipped noises): PSNR (dB) against the ODE solution ({ref.get('method', '')}); "
          f"each solver on its best grid of {', '.join(args.grids)}\n")
    print(compare.markdown_table(rows))
    print(f"\n## Frechet distance (classifier features); the ODE solution itself: {reference_fd:.2f}\n")
    print(compare.markdown_table(rows, "fd"))
    print("\nbest per NFE: " + ", ".join(f"{k}: {b['solver']} [{b['grid']}] {b['psnr_db']:.2f} dB, FD {b['fd']:.1f}"
                                          for k, b in best_by_nfe.items()))
    plot = args.plot or os.path.splitext(args.out)[0] + ".png"
    compare.plot_psnr_vs_nfe({args.teacher: rows}, plot, title=f"PSNR against the ODE solution, {args.teacher}")
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    write_json(args.out, {"benchmark": "solver_table", "teacher": args.teacher, "config": vars(args),
                          "environment": environment(), "num_samples": n, "reference_fd": reference_fd,
                          "seconds": time.perf_counter() - t0, "best_baseline": best_by_nfe, "rows": clean})
    print(f"wrote {plot}")


if __name__ == "__main__":
    main()
