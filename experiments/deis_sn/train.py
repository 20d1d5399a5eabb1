"""The DEIS-SN study: DEIS against score-normalised DEIS at several NFEs, orders and grids.

Calibrate ``r(t)`` once (:func:`jaxsample.distill.deis_sn.calibrate`, a 1000-step tAB-DEIS run on
calibration noise), then on separate test noise sample with DEIS and DEIS-SN (same kind, order,
grid and NFE) and score both against the ground truth of the same ODE from the same noise:

- the Gaussian-mixture benchmark (:func:`jaxsample.compare.benchmark_mixture`, VP cosine, exact eps
  model, EDM's interval): PSNR against the adaptive reference and the exact mean log-likelihood;
- a shipped digits teacher (:mod:`jaxsample.teachers`): Frechet distance on the digits classifier's
  features (:func:`jaxsample.features.digits_frechet_distance`) and PSNR against a high-NFE run.

Writes ``workdir/results.json`` (rows and the statistic), ``workdir/results.md`` (the table),
``workdir/r_stats.npz`` and ``workdir/r_of_t.png`` (r against t and against log-SNR, with the
sampling grids marked).
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample._files import save_figure, write_json, write_text
from jaxsample import solvers as S
from jaxsample import tasks
from jaxsample.distill import deis_sn as cal
from jaxsample.grids import get_grid
from jaxsample.sampling import reference_sample, sample

__all__ = ["train_and_evaluate", "plot_statistic", "step_variation", "markdown"]


def _save_stats(task, stats, filename: str, **metadata) -> None:
    """Write the calibrated statistic (the one place this study saves a learned artefact)."""
    S.save_solver(filename, stats, path=task.model.path, teacher=task.name, **metadata)


def step_variation(stats, path, ts) -> float:
    """The largest change of ``log r`` over one step of grid ``ts``: how far from constant ``r`` is
    within a step, i.e. how much room normalisation has to change the extrapolation there."""
    r = np.log(np.asarray(stats(jnp.asarray(ts))))
    return float(np.max(np.abs(np.diff(r))))


def plot_statistic(stats, path, filename, grids_to_mark=None, title=""):
    """r against t and against half log-SNR lambda; ``grids_to_mark``: name -> times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray(stats.times)
    r = np.asarray(stats.values)
    lam = np.asarray(path.lam(jnp.asarray(t)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    for ax, x, label in ((axes[0], t, "t"), (axes[1], lam, "half log-SNR  lambda = log(alpha / sigma)")):
        ax.plot(x, r, color="k", lw=1.5, label="r = mean |eps_hat|")
        ax.axhline(math.sqrt(2 / math.pi), color="gray", ls=":", lw=1, label="sqrt(2/pi)")
        if stats.num_clamped:
            ax.plot(x[:stats.num_clamped + 1], r[:stats.num_clamped + 1], color="tab:red", lw=3, label="clamped")
        for k, (name, ts) in enumerate((grids_to_mark or {}).items()):
            ts = np.asarray(ts)
            xs = ts if label == "t" else np.asarray(path.lam(jnp.asarray(ts)))
            ax.plot(xs, np.interp(ts, t, r), "o|"[k % 2], ms=6, mfc="none", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("r")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, filename)
    plt.close(fig)


def _solvers(config):
    """name, kind, order, base solver factory, normalised factory, model calls per step."""
    out = []
    for kind in config.kinds:
        for order in config.orders:
            out.append((f"deis_{kind}", kind, order, lambda o=order, k=kind: S.deis(o, k),
                        lambda st, o=order, k=kind: S.deis_sn(st, o, k), 1))
    if config.get("dpm_solver"):
        for order in (2, 3):
            out.append(("dpm_solver", "taylor", order, lambda o=order: S.dpm_solver(o),
                        lambda st, o=order: S.dpm_solver_sn(st, o), order))
    return out


def train_and_evaluate(config, workdir: str) -> list[dict]:
    """Run the study described by ``config``; write ``workdir/results.json`` and ``results.md``;
    return the rows. ``config.teacher``: a shipped teacher, or empty for the Gaussian mixture;
    both are sampled on EDM's interval."""
    os.makedirs(workdir, exist_ok=True)
    task = tasks.task_from_config(config, edm_interval=True)
    model, shape, t_start, t_end = task.model, task.sample_shape, task.t_start, task.t_end
    digits = task.mixture is None
    t0 = time.perf_counter()
    stats = cal.calibrate(model, shape, num_samples=config.calibration_samples,
                          batch_size=config.calibration_batch_size, num_steps=config.calibration_steps,
                          grid=config.calibration_grid, t_start=t_start, t_end=t_end,
                          num_clamped=config.num_clamped, seed=config.seed + 1000, progress=config.progress)
    calibration_seconds = time.perf_counter() - t0
    _save_stats(task, stats, os.path.join(workdir, "r_stats.npz"), calibration_steps=config.calibration_steps,
                calibration_samples=config.calibration_samples)
    print(f"calibrated r(t) in {calibration_seconds:.0f} s: r(t_start) = {float(stats(t_start)):.3f}, "
          f"r(t_end) = {float(stats(t_end)):.3f}", flush=True)

    noise = task.noise(jax.random.key(config.seed), config.num_samples)
    t0 = time.perf_counter()
    if config.reference_steps:
        ts_ref = get_grid("logsnr", model.path, config.reference_steps, t_start=t_start, t_end=t_end)
        ref = sample(model, S.deis(3), ts_ref, noise)
        reference = f"deis_tab_3[logsnr] x {config.reference_steps} steps"
    else:
        ref = reference_sample(model, noise, t_start=t_start, t_end=t_end, rtol=config.reference_rtol,
                               atol=config.reference_rtol)
        reference = f"dopri8 rtol {config.reference_rtol}"
    reference_seconds = time.perf_counter() - t0
    extra = {}
    if digits:
        extra["reference_fd"] = task.frechet_distance(ref)
    else:
        extra["reference_loglik"] = task.log_likelihood(ref)
        extra["data_loglik"] = task.log_likelihood(task.data_samples(jax.random.key(7), config.num_samples))

    def score(x):
        out = {"psnr_db": task.psnr(x, ref)}
        if digits:
            out["fd"] = task.frechet_distance(x)
        else:
            out["loglik"] = task.log_likelihood(x)
        return out

    rows = []
    variation = {}
    for grid in config.grids:
        for nfe in config.nfes:
            for name, kind, order, base, normalised, per_step in _solvers(config):
                if nfe % per_step:
                    continue
                steps = nfe // per_step
                ts = get_grid(grid, model.path, steps, t_start=t_start, t_end=t_end)
                variation[f"{grid}_{steps}"] = step_variation(stats, model.path, ts)
                t1 = time.perf_counter()
                x_base = sample(model, base(), ts, noise, check_finite=False)
                x_sn = sample(model, normalised(stats), ts, noise, check_finite=False)
                row = {"solver": name, "kind": kind, "order": order, "grid": grid, "nfe": nfe, "steps": steps,
                       "max_step_dlog_r": variation[f"{grid}_{steps}"]}
                for label, x in (("base", x_base), ("sn", x_sn)):
                    finite = bool(jnp.all(jnp.isfinite(x)))
                    for k, v in (score(x) if finite else {"psnr_db": float("nan")}).items():
                        row[f"{label}_{k}"] = v
                row["gain_psnr_db"] = row["sn_psnr_db"] - row["base_psnr_db"]
                if digits:
                    row["gain_fd"] = row["base_fd"] - row["sn_fd"]  # > 0: normalisation helps
                row["seconds"] = time.perf_counter() - t1
                rows.append(row)
                metric = (f"FD {row['base_fd']:.2f} -> {row['sn_fd']:.2f}" if digits else
                          f"loglik {row['base_loglik']:.1f} -> {row['sn_loglik']:.1f}")
                print(f"{grid:9s} NFE {nfe:2d} {name:11s} o{order}: PSNR {row['base_psnr_db']:6.2f} -> "
                      f"{row['sn_psnr_db']:6.2f} dB ({row['gain_psnr_db']:+.2f}) | {metric}", flush=True)

    mark = {f"{g}, {config.mark_steps} steps": get_grid(g, model.path, config.mark_steps, t_start=t_start, t_end=t_end)
            for g in config.grids}
    plot_statistic(stats, model.path, os.path.join(workdir, "r_of_t.png"), mark,
                   title=f"DEIS-SN statistic r(t): {config.get('teacher') or 'Gaussian mixture'}")
    idx = np.unique(np.linspace(0, stats.times.shape[0] - 1, 101).astype(int))
    summary = {"rows": rows, "config": config.to_dict(), "reference": reference,
               "calibration_seconds": calibration_seconds, "reference_seconds": reference_seconds,
               "statistic": {"times": np.asarray(stats.times)[idx].tolist(),
                             "values": np.asarray(stats.values)[idx].tolist(),
                             "lam": np.asarray(model.path.lam(stats.times))[idx].tolist(),
                             "num_clamped": stats.num_clamped},
               **extra}
    write_json(os.path.join(workdir, "results.json"), summary)
    table = markdown(json.loads(json.dumps(summary)))  # the table of what was written
    write_text(os.path.join(workdir, "results.md"), table + "\n")
    print(table)
    return rows


def markdown(results: dict) -> str:
    """The study's tables: one line per (grid, solver, order), NFE as columns, 'DEIS -> DEIS-SN',
    the better of the two in bold (lower FD, higher PSNR, log-likelihood closer to the reference's)."""
    rows = results["rows"]
    digits = "base_fd" in rows[0]
    ref_ll = results.get("reference_loglik")
    metrics = [("fd", f"FD (lower is better; the {results['reference']} reference itself: "
                      f"{results.get('reference_fd', float('nan')):.2f})", "{:.2f}"),
               ("psnr_db", f"PSNR dB against {results['reference']}", "{:.2f}")] if digits else \
        [("psnr_db", f"PSNR dB against {results['reference']}", "{:.2f}"),
         ("loglik", f"mean exact log-likelihood (reference samples {ref_ll:.1f}, data "
                    f"{results.get('data_loglik', float('nan')):.1f}; closer to the reference is better)", "{:.1f}")]
    nfes = sorted({r["nfe"] for r in rows})
    out = []
    for key, title, fmt in metrics:
        out.append(f"\n**{title}: DEIS -> DEIS-SN**\n")
        out.append("| grid | solver | order | " + " | ".join(f"NFE {n}" for n in nfes) + " |")
        out.append("|---|---|---:|" + "---:|" * len(nfes))
        seen = []
        for r in rows:
            line = (r["grid"], r["solver"], r["order"])
            if line not in seen:
                seen.append(line)
        for grid, solver, order in seen:
            cells = []
            for n in nfes:
                r = [x for x in rows if (x["grid"], x["solver"], x["order"], x["nfe"]) == (grid, solver, order, n)]
                if not r:
                    cells.append("-")
                    continue
                b, s = r[0][f"base_{key}"], r[0][f"sn_{key}"]
                if key == "loglik":
                    better = abs(s - ref_ll) < abs(b - ref_ll)
                else:
                    better = (s < b) if key == "fd" else (s > b)
                cells.append(f"{fmt.format(b)} -> " + ("**" + fmt.format(s) + "**" if better else fmt.format(s)))
            out.append(f"| {grid} | {solver} | {order} | " + " | ".join(cells) + " |")
    return "\n".join(out)
