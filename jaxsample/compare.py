"""Solver comparisons against ground truth: tables and plots for the demo and the benchmarks.

Example:
    >>> import jax
    >>> from jaxsample import compare, paths, solvers
    >>> gmm = compare.benchmark_mixture(dim=8, num_components=3)
    >>> rows = compare.compare_solvers(gmm, paths.RectifiedFlow(), "velocity",
    ...                                {"euler": (solvers.euler(), "uniform")}, nfes=[4, 8],
    ...                                num_samples=16)
    >>> [(r["solver"], r["nfe"]) for r in rows]
    [('euler', 4), ('euler', 8)]
    >>> rows[1]["psnr_db"] > rows[0]["psnr_db"]
    True
"""

from __future__ import annotations

import math
import time
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample._files import save_figure
from jaxsample.grids import get_grid
from jaxsample.metrics import psnr
from jaxsample.models import GaussianMixture
from jaxsample.paths import AbstractPath
from jaxsample.sampling import initial_noise, reference_sample, sample

__all__ = ["compare_learned", "baseline_suite", "best_baseline", "BENCHMARK_SETTINGS", "edm_interval", "benchmark_mixture", "compare_solvers", "markdown_table", "plot_psnr_vs_nfe", "best_by_nfe"]


def edm_interval(path: AbstractPath, sigma_min: float = 0.002, sigma_max: float = 80.0) -> dict:
    """EDM's standard sampling interval, sigma / alpha in [0.002, 80], as t_start and t_end on ``path``."""
    return {"t_start": float(path.t_from_lam(-math.log(sigma_max))),
            "t_end": float(path.t_from_lam(-math.log(sigma_min)))}


def baseline_suite(path: AbstractPath, *, stochastic: bool = False, grids=None) -> dict:
    """Every classical solver of the registry's baseline set, each with the grids to try:
    name -> (solver, grids).

    Deterministic by default; ``stochastic=True`` adds the SDE samplers (whose samples are not
    meant to match the ODE's, so they are scored by log-likelihood, not PSNR).
    """
    from jaxsample.paths import RectifiedFlow
    from jaxsample.solvers import registry

    flow = isinstance(path, RectifiedFlow)
    if grids is None:
        grids = ["uniform", "quadratic", "logsnr", "edm", "time_uniform"] if flow else \
            ["quadratic", "logsnr", "edm", "time_uniform"]
    chosen = registry.entries(baseline=True, learned=False, **({} if stochastic else {"stochastic": False}))
    suite = {e.name: e.make() for e in chosen if e.on_flow or not flow}
    return {name: (solver, grids) for name, solver in suite.items()}


def best_baseline(suite: Mapping, path: AbstractPath, nfe: int, score, *, maximize: bool, t_start=None,
                  t_end=None):
    """The best (solver, grid) of ``suite`` (as from :func:`baseline_suite`) at ``nfe`` model calls.

    Every solver whose calls per step divide ``nfe`` is scored on each of its grids by
    ``score(solver, ts)``; a solver that raises on this path (e.g. noise prediction at alpha = 0)
    or scores a non-finite value is skipped, and the first best wins ties.

    Returns:
        ``{"solver": name, "grid": grid, "score": value, "obj": solver, "ts": ts}``, or None when
        no solver fits ``nfe``.
    """
    best = None
    for name, (solver, grids) in suite.items():
        if nfe % solver.nfe(1):
            continue
        for grid in grids:
            ts = get_grid(grid, path, nfe // solver.nfe(1), t_start=t_start, t_end=t_end)
            try:
                value = float(score(solver, ts))
            except Exception:  # singular on this path
                continue
            if math.isfinite(value) and (best is None or (value > best["score"] if maximize else value < best["score"])):
                best = {"solver": name, "grid": grid, "score": value, "obj": solver, "ts": ts}
    return best


def benchmark_mixture(dim: int = 64, num_components: int = 8, seed: int = 0) -> GaussianMixture:
    """The fixed Gaussian-mixture benchmark: data mostly inside [-1, 1] like images.

    Means uniform in [-0.6, 0.6]^d, per-dimension stds log-uniform in [0.02, 0.25]
    (anisotropic), weights uniform in [0.5, 1.5] before normalisation.
    """
    km, ks, kw = jax.random.split(jax.random.key(seed), 3)
    means = jax.random.uniform(km, (num_components, dim), minval=-0.6, maxval=0.6)
    stds = jnp.exp(jax.random.uniform(ks, (num_components, dim), minval=math.log(0.02), maxval=math.log(0.25)))
    weights = jax.random.uniform(kw, (num_components,), minval=0.5, maxval=1.5)
    return GaussianMixture(means, stds, weights)


def _benchmark_settings():
    from jaxsample.paths import RectifiedFlow, VPCosine

    return {
        # name -> (path, prediction of the model, sampling interval)
        "vp_cosine": (VPCosine(), "eps", edm_interval(VPCosine())),
        "rectified_flow": (RectifiedFlow(), "velocity", {}),
    }


class _Lazy(Mapping):
    """A mapping built on first use, so that importing jaxsample runs no JAX computation (a
    multi-host program must call ``jax.distributed.initialize`` before any)."""

    def __init__(self, make):
        self._make, self._value = make, None

    def _get(self) -> dict:
        if self._value is None:
            self._value = self._make()
        return self._value

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())

    def __repr__(self):
        return repr(self._get())


#: The two benchmark settings: VP cosine (eps model) on EDM's interval sigma / alpha in
#: [0.002, 80], and rectified flow (velocity model) on its whole range t in [1, 0].
BENCHMARK_SETTINGS = _Lazy(_benchmark_settings)


def compare_solvers(gmm: GaussianMixture, path: AbstractPath, prediction: str,
                    solvers: Mapping[str, tuple], nfes: Sequence[int], *, num_samples: int = 512,
                    seed: int = 1, data_range: float = 2.0, key=None, progress: bool = False,
                    t_start=None, t_end=None) -> list[dict]:
    """PSNR (dB) against the adaptive reference and exact mean log-likelihood, per (solver, NFE).

    Args:
        gmm: the data distribution; its exact model under ``path`` is sampled.
        solvers: name -> (solver, grids) or (solver, grids, grid kwargs), where ``grids`` is a grid
            name or a list of them; with several, each (solver, NFE) keeps its best grid.
        nfes: budgets; a solver runs ``nfe / solver.nfe(1)`` steps, and is skipped when
            that is not a whole number.
        data_range: the PSNR's data range (2 for data in [-1, 1]).
        key: for stochastic solvers.
        t_start, t_end: the sampling interval (default: the path's whole range).

    Returns one dict per (solver, NFE): solver, nfe, steps, grid, psnr_db, loglik, seconds.
    A run whose samples are not finite (a solver singular on this path) scores NaN.
    """
    model = gmm.model(path, prediction)
    noise = initial_noise(jax.random.key(seed), (num_samples, gmm.dim))
    ref = reference_sample(model, noise, t_start=t_start, t_end=t_end)
    key = jax.random.key(seed + 1) if key is None else key
    rows = []
    items = [(name, spec, nfe) for name, spec in solvers.items() for nfe in nfes]
    if progress:
        from tqdm.auto import tqdm
        items = tqdm(items, desc=f"solvers on {type(path).__name__}", leave=False)
    for name, spec, nfe in items:
        solver, grids = spec[0], spec[1]
        grids = [grids] if isinstance(grids, str) else list(grids)
        grid_kwargs = spec[2] if len(spec) > 2 else {}
        per_step = solver.nfe(1)
        if nfe % per_step:
            continue
        steps = nfe // per_step
        best = None
        for grid in grids:
            ts = get_grid(grid, path, steps, t_start=t_start, t_end=t_end, **grid_kwargs)
            t0 = time.perf_counter()
            x = jax.block_until_ready(sample(model, solver, ts, noise, key=key, check_finite=False))
            finite = bool(jnp.all(jnp.isfinite(x)))
            row = {"solver": name, "nfe": nfe, "steps": steps, "grid": grid, "stochastic": solver.is_stochastic,
                   "psnr_db": float(psnr(x, ref, data_range)) if finite else float("nan"),
                   "loglik": float(jnp.mean(gmm.log_prob(x))) if finite else float("nan"),
                   "seconds": time.perf_counter() - t0}
            if best is None or (finite and not row["psnr_db"] <= best["psnr_db"]):
                best = row
        rows.append(best)
    return rows


def compare_learned(gmm: GaussianMixture, path: AbstractPath, prediction: str, name: str,
                    solvers_by_nfe: Mapping[int, object], *, num_samples: int = 512, seed: int = 1,
                    data_range: float = 2.0, t_start=None, t_end=None) -> list[dict]:
    """Like :func:`compare_solvers` for learned solvers that own their times (``solver.times``)."""
    model = gmm.model(path, prediction)
    noise = initial_noise(jax.random.key(seed), (num_samples, gmm.dim))
    ref = reference_sample(model, noise, t_start=t_start, t_end=t_end)
    rows = []
    for nfe, solver in sorted(solvers_by_nfe.items()):
        t0 = time.perf_counter()
        x = jax.block_until_ready(sample(model, solver, solver.times, noise))
        rows.append({"solver": name, "nfe": nfe, "steps": nfe, "grid": "learned", "stochastic": False,
                     "psnr_db": float(psnr(x, ref, data_range)), "loglik": float(jnp.mean(gmm.log_prob(x))),
                     "seconds": time.perf_counter() - t0})
    return rows


def best_by_nfe(rows: Sequence[dict], exclude: Sequence[str] = ()) -> dict[int, dict]:
    """The deterministic row with the highest PSNR at each NFE."""
    best: dict[int, dict] = {}
    for r in rows:
        if r["solver"] in exclude or r.get("stochastic") or not math.isfinite(r["psnr_db"]):
            continue
        if r["nfe"] not in best or r["psnr_db"] > best[r["nfe"]]["psnr_db"]:
            best[r["nfe"]] = r
    return dict(sorted(best.items()))


def markdown_table(rows: Sequence[dict], value: str = "psnr_db", fmt: str = "{:.2f}") -> str:
    """Solvers as rows, NFE as columns; '-' where a solver cannot spend that budget."""
    nfes = sorted({r["nfe"] for r in rows})
    names = list(dict.fromkeys(r["solver"] for r in rows))
    cell = {(r["solver"], r["nfe"]): r[value] for r in rows}
    lines = ["| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---:|" * len(nfes)]
    for name in names:
        vals = [fmt.format(cell[name, n]) if (name, n) in cell else "-" for n in nfes]
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def plot_psnr_vs_nfe(panels: Mapping[str, Sequence[dict]], filename: str, title: str = "") -> None:
    """One panel per entry of ``panels`` (e.g. per path): PSNR against NFE, a line per solver."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    many = max(len({r["solver"] for r in rows}) for rows in panels.values()) > 10
    width = 6 * len(panels) + (2.5 if many else 0)  # many solvers: the legend beside the last panel
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.5), squeeze=False)
    for ax, (panel, rows) in zip(axes[0], panels.items()):
        learned_styles = iter([("-", "*", 13), ("--", "D", 7), (":", "s", 7), ("-.", "^", 8)] * 4)
        colours = plt.get_cmap("tab20").colors
        for k, name in enumerate(dict.fromkeys(r["solver"] for r in rows)):
            pts = sorted((r["nfe"], r["psnr_db"]) for r in rows if r["solver"] == name)
            learned = any(r.get("grid") == "learned" for r in rows if r["solver"] == name)
            if learned:  # black, one line style and marker each
                ls, marker, ms = next(learned_styles)
                style = dict(color="black", lw=2.5, ls=ls, marker=marker, ms=ms, zorder=5)
            else:  # tab20's colours, then other line styles and markers (20+ solvers stay apart)
                style = dict(marker="osv^"[k // 20 % 4], lw=1.3, color=colours[k % 20],
                             ls=("-", "--", ":", "-.")[k // 20 % 4])
            ax.plot(*np.array(pts).T, label=name, **style)
        ax.set_xscale("log", base=2)
        nfes = sorted({r["nfe"] for r in rows})
        ax.set_xticks(nfes, [str(n) for n in nfes])
        ax.set_xlabel("NFE (model evaluations)")
        ax.set_ylabel("PSNR vs reference ODE solution (dB)")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        if not many:
            ax.legend(fontsize=8, ncol=2)
    if many:
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, filename, dpi=120)
    plt.close(fig)
