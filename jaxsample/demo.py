"""The README demo: every baseline solver against ground truth on a Gaussian mixture.

Runs the exact model of a 64-dimensional, 8-component anisotropic Gaussian mixture
under two paths (VP cosine with an eps model; rectified flow with a velocity
model), samples with each solver at several NFE budgets from the same noise,
and scores each result by PSNR against the adaptive Dopri8 solution of the same
ODE and by the exact log-likelihood of the samples. Prints markdown tables and
writes ``results.json`` and ``psnr_vs_nfe.png`` to the output folder.
"""

from __future__ import annotations

import json
import os
import time

from jaxsample import compare, paths, solvers

NFES = (4, 6, 8, 10, 16, 32)

# path name -> (path, prediction of its model, sampling interval). VP cosine runs on EDM's
# standard interval sigma / alpha in [0.002, 80]; rectified flow on its whole range t in [1, 0].
SETTINGS = {
    "vp_cosine": (paths.VPCosine(), "eps", compare.edm_interval(paths.VPCosine())),
    "rectified_flow": (paths.RectifiedFlow(), "velocity", {}),
}


def baseline_solvers(path_name: str) -> dict:
    """name -> (solver, grid) for the deterministic baselines, each on a grid that suits it."""
    # Rectified flow: RK in t on a uniform grid. VP: RK in EDM's (x / alpha, sigma / alpha) on EDM's grid.
    space, grid = ("t", "uniform") if path_name == "rectified_flow" else ("edm", "edm")
    return {name: (getattr(solvers, name)(space), grid) for name in ("euler", "heun", "midpoint", "kutta3", "rk4")}


def run(out_dir: str = "out/demo", num_samples: int = 512, nfes=NFES, quiet: bool = False) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    gmm = compare.benchmark_mixture()
    t0 = time.perf_counter()
    panels, summary = {}, {}
    for name, (path, prediction, interval) in SETTINGS.items():
        rows = compare.compare_solvers(gmm, path, prediction, baseline_solvers(name), nfes,
                                       num_samples=num_samples, progress=not quiet, **interval)
        for r in rows:
            r["path"] = name
        panels[f"{name} ({prediction} model)"] = rows
        best = compare.best_by_nfe(rows)
        summary[name] = {n: (b["solver"], round(b["psnr_db"], 2)) for n, b in best.items()}
        if not quiet:
            print(f"\n## {name}: PSNR (dB) against the reference ODE solution, higher is better\n")
            print(compare.markdown_table(rows))
            print(f"\n## {name}: exact mean log-likelihood of the samples\n")
            print(compare.markdown_table(rows, "loglik"))
            print("\nbest solver per NFE: " + ", ".join(f"{n}: {s} ({p} dB)" for n, (s, p) in summary[name].items()))
    plot = os.path.join(out_dir, "psnr_vs_nfe.png")
    compare.plot_psnr_vs_nfe(panels, plot, title=f"jaxsample solvers on a {gmm.dim}-d Gaussian mixture")
    results = {"rows": [r for rows in panels.values() for r in rows], "best": summary,
               "seconds": time.perf_counter() - t0, "num_samples": num_samples}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if not quiet:
        print(f"\nwrote {plot} and {os.path.join(out_dir, 'results.json')} in {results['seconds']:.0f} s")
    return results
