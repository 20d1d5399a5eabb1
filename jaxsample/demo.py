"""The README demo: classical solvers and shipped learned solvers against ground truth.

``run`` (the default of ``jaxsample demo``) samples a shipped image teacher (``--setting fashion``,
the default: ``fashion_vp``, a patch transformer on Fashion-MNIST 28x28; ``--setting digits``:
``digits_vp``, a U-Net on the 8x8 digits; both v prediction on the VP cosine path) with classical
solvers and with the shipped learned solvers (BNS, DEIS-SN) at NFE 4, 8 and 16, all from the same
held-out noise, and scores each by PSNR against the shipped ground truth (the adaptive Dopri8
solution of the same ODE from the same noise, ``experiments/teachers/ground_truth.py``) and by
Frechet distance to held-out images in the shipped classifier's features. Prints a markdown
table and writes ``results.json``, ``psnr_vs_nfe.png`` and ``samples.png`` (a grid: ground truth,
DDIM, best classical, learned, each with its magnified error beneath).

``run_mixture`` (``jaxsample demo --setting mixture``) is the same comparison on the exact model
of a 64-dimensional, 8-component anisotropic Gaussian mixture under two paths (VP cosine with an
eps model; rectified flow with a velocity model), with the samples' exact log-likelihood.
"""

from __future__ import annotations

import os
import time
from typing import Optional

from jaxsample import compare
from jaxsample._assets import ASSETS_DIR, asset_path
from jaxsample._files import save_figure, write_json
from jaxsample.distill import bns

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


def run_mixture(out_dir: str = "out/demo_mixture", num_samples: int = 512, nfes=NFES,
                quiet: bool = False) -> dict:
    """The mixture demo (see the module docstring); returns what it writes to results.json."""
    os.makedirs(out_dir, exist_ok=True)
    gmm = compare.benchmark_mixture()
    t0 = time.perf_counter()
    panels, summary = {}, {}
    for name, (path, prediction, interval) in SETTINGS.items():
        rows = compare.compare_solvers(gmm, path, prediction, baseline_solvers(path), nfes,
                                       num_samples=num_samples, progress=not quiet, seed=DEMO_SEED, **interval)
        learned = bns.shipped(f"gmm_{name}", nfes)
        if learned:
            rows += compare.compare_learned(gmm, path, prediction, "BNS (learned)", learned,
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
    write_json(os.path.join(out_dir, "results.json"), results)
    if not quiet:
        print(f"\nwrote {plot} and {os.path.join(out_dir, 'results.json')} in {results['seconds']:.0f} s")
    return results


# ----------------------------------------------------------------------------- the image demos

#: The image teachers the demo runs on (``jaxsample demo --setting fashion|digits``): teacher name,
#: how its network is described in the figure title, and the grid the classical solvers and DEIS-SN
#: use: the grid of the best classical solver in the BNS study's search over the quadratic and
#: time-uniform grids (``experiments/bns/results``).
IMAGE_TEACHERS = {
    "fashion": ("fashion_vp", "patch transformer, v prediction, VP cosine", "time_uniform"),
    "digits": ("digits_vp", "U-Net, v prediction, VP cosine", "quadratic"),
}
DIGITS_TEACHER = "digits_vp"
DIGITS_NFES = (4, 8, 16)
DIGITS_BASELINES = ("euler", "heun", "ddim", "dpm_solver_pp_2m", "unipc_bh2_3", "deis_tab_3", "ipndm")


def reference(teacher: str = DIGITS_TEACHER) -> dict:
    """The shipped ground truth for the demo on ``teacher``: ``noise``, ``target`` (the ODE
    solution from that noise over ``t_start`` -> ``t_end``, EDM's sigma / alpha in [80, 0.002]),
    and, where stated, how it was computed (``method``)."""
    import numpy as np

    with np.load(asset_path("demo", f"{teacher}_reference.npz")) as f:
        return {k: f[k] for k in f.files}


def digits_reference() -> dict:
    """:func:`reference` of the digits teacher (the adaptive Dopri8 solution, rtol 1e-4)."""
    return reference(DIGITS_TEACHER)


def learned_solvers(teacher: str, nfes=DIGITS_NFES, t_start=None, t_end=None, grid: str = "quadratic") -> dict:
    """name -> {nfe: (solver, ts)}: the learned (or calibrated) solvers shipped for ``teacher``:
    BNS solvers, and DEIS-SN (tAB order 3 on ``grid`` from ``t_start`` to ``t_end``) with the
    shipped score-norm statistic."""
    from jaxsample.grids import get_grid
    from jaxsample.paths import VPCosine
    from jaxsample.solvers import ScoreNormStats, deis_sn, load_solver

    out = {}
    stats_file = ASSETS_DIR / "deis_sn" / f"{teacher}.npz"
    if stats_file.exists() and t_start is not None:
        solver = deis_sn(load_solver(str(stats_file), expect=ScoreNormStats, teacher=teacher), order=3)
        out["DEIS-SN (calibrated)"] = {n: (solver, get_grid(grid, VPCosine(), n, t_start=t_start, t_end=t_end))
                                       for n in nfes}
    learned = bns.shipped(teacher, nfes)
    if learned:
        out["BNS (learned)"] = {n: (s, s.times) for n, s in learned.items()}
    return out


def learned_digits_solvers(nfes=DIGITS_NFES, t_start=None, t_end=None) -> dict:
    """:func:`learned_solvers` of the digits teacher."""
    return learned_solvers(DIGITS_TEACHER, nfes, t_start, t_end)


#: How much the error rows of the demo's sample grid magnify ``|x - exact|``.
ERROR_MAGNIFY = 4


def _save_sample_grid(rows: dict, filename: str, num: int = 12, errors: Optional[dict] = None) -> None:
    """One row of ``num`` images per entry of ``rows`` (label -> images in [-1, 1]), labelled on the
    left. ``errors`` (label -> images): the row of ``rows`` with that label is followed by a row of
    ``ERROR_MAGNIFY * |images - rows[first label]|`` in a heat map (white: no error, black: an error
    of 2 / ERROR_MAGNIFY or more), so that differences too small to see in the samples show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    exact = np.asarray(next(iter(rows.values())))[:num]
    strips = []  # (label, strip, cmap)
    for label, images in rows.items():
        imgs = np.asarray(images[:num])[..., 0]
        strips.append((label, np.clip((imgs + 1) / 2, 0, 1), "gray"))
        if errors and label in errors:
            err = np.abs(np.asarray(errors[label][:num]) - exact)[..., 0]
            strips.append((f"|x - exact| x{ERROR_MAGNIFY}", np.clip(ERROR_MAGNIFY * err / 2, 0, 1), "gray_r"))
    size = exact.shape[1]
    cell = 0.55 * max(1.0, size / 14)  # inches per image: 8x8 digits small, 28x28 images larger
    fig, axes = plt.subplots(len(strips), 1, figsize=(num * cell + 2.4, len(strips) * (cell + 0.07) + 0.2),
                             squeeze=False)
    for ax, (label, imgs, cmap) in zip(axes[:, 0], strips):
        pad = 1.0 if cmap == "gray" else 0.0
        strip = np.concatenate([np.pad(im, ((1, 1), (1, 1)), constant_values=pad) for im in imgs], axis=1)
        ax.imshow(strip, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8,
                      color="black" if cmap == "gray" else "dimgray")
    fig.subplots_adjust(left=2.3 / (num * cell + 2.4), right=0.99, top=0.99, bottom=0.01, hspace=0.08)
    save_figure(fig, filename, dpi=110)
    plt.close(fig)


def run(out_dir: str = "out/demo", num_samples: Optional[int] = None, nfes=DIGITS_NFES, quiet: bool = False,
        setting: str = "fashion") -> dict:
    """The image demo on ``setting``'s teacher (a key of :data:`IMAGE_TEACHERS`: ``'fashion'``, the
    default, or ``'digits'``; see the module docstring); returns what it writes to results.json.

    ``num_samples`` (default: all the shipped ground truth, 256) held-out noises are used.
    """
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    from jaxsample import tasks
    from jaxsample.grids import get_grid
    from jaxsample.metrics import psnr
    from jaxsample.sampling import sample

    if setting not in IMAGE_TEACHERS:
        raise ValueError(f"setting must be one of {sorted(IMAGE_TEACHERS)} (or use run_mixture), got {setting!r}")
    teacher, network, grid = IMAGE_TEACHERS[setting]
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    ref = reference(teacher)
    n = ref["noise"].shape[0] if num_samples is None else int(num_samples)
    if not 1 <= n <= ref["noise"].shape[0]:
        raise ValueError(f"num_samples must be in [1, {ref['noise'].shape[0]}] (the shipped ground truth), got {n}")
    noise, target = jax.numpy.asarray(ref["noise"][:n]), np.asarray(ref["target"][:n])
    t_start, t_end = float(ref["t_start"]), float(ref["t_end"])
    task = tasks.load_task(teacher)
    model = task.model
    fd = lambda x: task.frechet_distance(np.asarray(x))  # noqa: E731

    suite = compare.baseline_suite(model.path, grids=[grid])
    runs = []  # (name, nfe, solver, ts, grid)
    for name in DIGITS_BASELINES:
        solver = suite[name][0]
        for nfe in nfes:
            if nfe % solver.nfe(1) == 0:
                runs.append((name, nfe, solver, get_grid(grid, model.path, nfe // solver.nfe(1),
                                                         t_start=t_start, t_end=t_end), grid))
    learned = learned_solvers(teacher, nfes, t_start, t_end, grid)
    for name, by_nfe in learned.items():
        for nfe, (solver, ts) in sorted(by_nfe.items()):
            runs.append((name, nfe, solver, ts, "learned"))

    rows, samples = [], {}
    for name, nfe, solver, ts, grid in tqdm(runs, desc="demo", disable=quiet, dynamic_ncols=True):
        t1 = time.perf_counter()
        x = np.asarray(sample(model, solver, ts, noise))
        samples[name, nfe] = x
        rows.append({"solver": name, "nfe": nfe, "grid": grid, "stochastic": False,
                     "psnr_db": float(psnr(x, target)), "fd": fd(x), "seconds": time.perf_counter() - t1})
    reference_fd = fd(target)
    best = compare.best_by_nfe(rows, exclude=list(learned))
    what = "digits" if setting == "digits" else "Fashion-MNIST test images"
    method = str(ref["method"]) if "method" in ref else "adaptive Dopri8"
    if not quiet:
        print(f"\n## {teacher} ({n} held-out noises): PSNR (dB) against the ODE solution ({method}), higher is "
              f"better\n")
        print(compare.markdown_table(rows))
        print(f"\n## Frechet distance to held-out {what} (classifier features), lower is better; the ODE "
              f"solution itself: {reference_fd:.2f}\n")
        print(compare.markdown_table(rows, "fd"))
    plot = os.path.join(out_dir, "psnr_vs_nfe.png")
    compare.plot_psnr_vs_nfe({f"{teacher} ({network})": rows}, plot,
                             title=f"jaxsample on the shipped {teacher} teacher:\nclassical vs learned solvers")
    grid_rows = {"exact ODE solution": target}
    for nfe in nfes[:2]:  # beyond NFE 8 the rows look alike
        for name in ["ddim", best[nfe]["solver"] if nfe in best else None, *learned]:
            if (name, nfe) in samples:
                grid_rows[f"{name.split(' ')[0]}, NFE {nfe}"] = samples[name, nfe]
    grid_png = os.path.join(out_dir, "samples.png")
    _save_sample_grid(grid_rows, grid_png, errors={k: v for k, v in grid_rows.items() if k != "exact ODE solution"})
    results = {"teacher": teacher, "num_samples": n, "rows": rows, "reference_fd": reference_fd,
               "reference_method": method,
               "best_classical": {k: (v["solver"], round(v["psnr_db"], 2)) for k, v in best.items()},
               "seconds": time.perf_counter() - t0}
    write_json(os.path.join(out_dir, "results.json"), results)
    if not quiet:
        print(f"\nwrote {plot}, {grid_png} and {os.path.join(out_dir, 'results.json')} in "
              f"{results['seconds']:.0f} s")
    return results
