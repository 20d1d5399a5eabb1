"""The README demo: classical solvers and shipped BNS solvers against ground truth.

Runs the exact model of a 64-dimensional, 8-component anisotropic Gaussian mixture
under two paths (VP cosine with an eps model; rectified flow with a velocity
model), samples with each solver at several NFE budgets from the same held-out
noise, and scores each result by PSNR against the adaptive Dopri8 solution of the
same ODE and by the exact log-likelihood of the samples. The BNS solvers were
distilled by ``experiments/bns`` (configs ``gmm.py`` and ``gmm_flow.py``) and ship
in ``jaxsample/assets/bns``. Prints markdown tables and writes ``results.json``
and ``psnr_vs_nfe.png`` to the output folder.
"""

from __future__ import annotations

import json
import os
import time

from jaxsample import compare

NFES = (4, 6, 8, 10, 16, 32)

SETTINGS = compare.BENCHMARK_SETTINGS


# A curated set of classical solvers for the demo (bench/solver_table.py runs them all), each on
# the quadratic grid, which suits every one of them on both paths.
DEMO_BASELINES = ("euler", "midpoint", "rk4", "ddim", "dpm_solver_pp_2m", "unipc_bh2_3", "deis_tab_3", "ipndm")

# Noise for the demo: disjoint from the seeds BNS was trained (0), validated (1) and tested (2) on.
DEMO_SEED = 2026


def baseline_solvers(path) -> dict:
    """name -> (solver, grid): the demo's classical solvers."""
    suite = compare.baseline_suite(path, grids=["quadratic"])
    return {name: suite[name] for name in DEMO_BASELINES}


def shipped_bns(setting: str) -> dict:
    """The BNS solvers shipped for a benchmark setting: NFE -> solver."""
    from jaxsample.distill.bns import BespokeNonStationary

    folder = os.path.join(os.path.dirname(__file__), "assets", "bns")
    out = {}
    for nfe in NFES:
        f = os.path.join(folder, f"gmm_{setting}_nfe{nfe}.npz")
        if os.path.exists(f):
            out[nfe] = BespokeNonStationary.load(f)
    return out


def run(out_dir: str = "out/demo", num_samples: int = 512, nfes=NFES, quiet: bool = False) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    gmm = compare.benchmark_mixture()
    t0 = time.perf_counter()
    panels, summary = {}, {}
    for name, (path, prediction, interval) in SETTINGS.items():
        rows = compare.compare_solvers(gmm, path, prediction, baseline_solvers(path), nfes,
                                       num_samples=num_samples, progress=not quiet, seed=DEMO_SEED, **interval)
        learned = shipped_bns(name)
        if learned:
            rows += compare.compare_learned(gmm, path, prediction, "BNS (learned)",
                                            {n: s for n, s in learned.items() if n in nfes},
                                            num_samples=num_samples, seed=DEMO_SEED, **interval)
        singular = sorted({r["solver"] for r in rows} - {r["solver"] for r in rows if r["psnr_db"] == r["psnr_db"]})
        rows = [r for r in rows if r["solver"] not in singular]
        for r in rows:
            r["path"] = name
        panels[f"{name} ({prediction} model)"] = rows
        best = compare.best_by_nfe(rows, exclude=["BNS (learned)"])
        summary[name] = {n: (b["solver"], round(b["psnr_db"], 2)) for n, b in best.items()}
        if not quiet:
            print(f"\n## {name}: PSNR (dB) against the reference ODE solution, higher is better\n")
            print(compare.markdown_table(rows))
            print(f"\n## {name}: exact mean log-likelihood of the samples\n")
            print(compare.markdown_table(rows, "loglik"))
            if singular:
                print(f"\n(not shown: {', '.join(singular)}: noise-prediction forms divide by alpha, which is 0 "
                      f"where this path starts)")
            print("\nbest classical solver per NFE: " +
                  ", ".join(f"{n}: {s} ({p} dB)" for n, (s, p) in summary[name].items()))
    plot = os.path.join(out_dir, "psnr_vs_nfe.png")
    compare.plot_psnr_vs_nfe(panels, plot, title=f"jaxsample solvers on a {gmm.dim}-d Gaussian mixture")
    results = {"rows": [r for rows in panels.values() for r in rows], "best": summary,
               "seconds": time.perf_counter() - t0, "num_samples": num_samples}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if not quiet:
        print(f"\nwrote {plot} and {os.path.join(out_dir, 'results.json')} in {results['seconds']:.0f} s")
    return results
