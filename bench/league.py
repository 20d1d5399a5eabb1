"""The few-step league: classical, learned and calibrated methods on one teacher, against the exact ODE solution.

For one task (the 64-d Gaussian-mixture benchmark ``gmm_vp_cosine``, or a shipped image teacher
with shipped ground truth: ``digits_vp``, ``fashion_vp``) and each NFE, every method's samples from
the same noises are scored by PSNR against the exact ODE solution (the mixture: Dopri8 rtol 1e-6 on
``--samples`` noises; a teacher: its shipped reference, ``jaxsample/assets/demo/NAME_reference.npz``)
and by a distribution score (the mixture: exact mean log-likelihood; a teacher: Frechet distance in
the shipped classifier's features, on the same samples). A class-conditional teacher (``fashion_flow``)
is sampled with the labels its ground truth was solved with. Methods:

- ``classical``: every deterministic baseline solver of the registry on each of ``--grids``, best by PSNR;
- ``unic``: UniPC's corrector plugged into DDIM / DPM-Solver++(3M) / DEIS-3 / iPNDM, best solver and grid;
- ``gits``: the GITS grid (iPNDM teacher of 60 steps, 256 trajectories, coeff 1.15) with the best of
  iPNDM, DPM-Solver++(3M), UniPC-3 (bh1), DEIS-3 and iPNDM+UniC on it;
- ``ld3``: LD3 grid for UniPC-3 bh1 (the official student), 50 + 50 teacher pairs (UniPC-3, NFE 20);
- ``deis_sn``: DEIS-SN (tAB 3) with the shipped statistic, best grid;
- ``dpm_solver_v3``: DPM-Solver-v3 with statistics calibrated here (when the module is present);
- ``bns``: the shipped BNS solver at this NFE (where one is shipped);
- ``amed``: AMED-Solver trained here with its official recipe (odd NFE, AFS), mixture only by default;
- ``adasde``: AdaSDE (gamma learned; same recipe as AMED's training loop but its own step), mixture only;
- ``progressive``: the progressive-distillation students of ``--progressive-results`` (read, not re-run);
- ``catch_up``: the catch-up students of ``--catch-up-results`` (experiments/catch_up with
  ``reference_nfes``: Euler on this teacher's shipped noises; the best CUD variant by PSNR per NFE).

Costs: learned parameters and the model evaluations spent to learn or calibrate them (0 for the
training-free rows), and the wall time of that on this machine.

    python bench/league.py --teacher gmm_vp_cosine --out bench/results/league_gmm_vp_cosine.json
    python bench/league.py --teacher fashion_vp --out bench/results/league_fashion_vp.json --no-train

Writes JSON rows (task, method, nfe, detail, psnr_db, score, params, cost_evals, seconds), a
markdown table beside it (``.md``) and a PNG of PSNR against NFE.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxsample as js  # noqa: E402
from jaxsample import compare, tasks  # noqa: E402
from jaxsample.distill._fit_solver import trainable_leaves  # noqa: E402
from jaxsample.grids import get_grid  # noqa: E402
from jaxsample.solvers import registry  # noqa: E402
from _common import environment, write_json  # noqa: E402
from distill_cost import progressive_costs  # noqa: E402

NFES = (3, 4, 5, 6, 8, 10, 16)
GRIDS = ("quadratic", "logsnr", "edm", "time_uniform")
UNIC = ("ddim_unic", "dpm_solver_pp_3m_unic", "deis_tab_3_unic", "ipndm_unic")
V3_SAMPLES, V3_LAMBDAS = 2048, 201  # DPM-Solver-v3's calibration: teacher samples, log-SNR points
GITS_SOLVERS = ("ipndm", "dpm_solver_pp_3m", "unipc_bh1_3", "deis_tab_3", "ipndm_unic")


class Context:
    """The task, its noises and exact solutions, and the caches the methods share."""

    def __init__(self, name, samples):
        self.task = tasks.load_task(name)
        self.model = self.task.model
        if self.task.mixture is None:
            from jaxsample import demo

            ref = demo.reference(name)
            n = min(samples, ref["noise"].shape[0])
            self.shipped_noises = int(ref["noise"].shape[0])
            self.noise, self.target = jnp.asarray(ref["noise"][:n]), np.asarray(ref["target"][:n])
            self.interval = {"t_start": float(ref["t_start"]), "t_end": float(ref["t_end"])}
            if "label" in ref:  # a class-conditional teacher: the labels its ground truth was solved with
                self.cond = {"label": jnp.asarray(ref["label"][:n])}
        else:
            self.interval = self.task.interval
            self.shipped_noises = None  # no shipped ground truth: the exact solutions are solved here
            self.noise = js.initial_noise(jax.random.key(2024), (samples, *self.task.sample_shape))
            self.target = np.asarray(js.reference_sample(self.model, self.noise, rtol=1e-6, atol=1e-6,
                                                         **self.interval))
        self.shape = tuple(self.task.sample_shape)
        self.cond = getattr(self, "cond", {})
        self.cache = {}

    def score(self, x):
        x = np.asarray(x)
        if not np.all(np.isfinite(x)):
            return float("nan"), float("nan")
        psnr = float(self.task.psnr(x, self.target))
        other = self.task.log_likelihood(x) if self.task.mixture is not None else self.task.frechet_distance(x)
        return psnr, float(other)

    def run(self, solver, ts, noise=None, cond=None):
        """Samples of ``solver`` on ``ts`` from the league's noises (or ``noise`` with ``cond``)."""
        key = jax.random.key(0) if solver.is_stochastic else None
        noise, cond = (self.noise, self.cond) if noise is None else (noise, cond or {})
        return js.sample(self.model, solver, ts, noise, key=key, cond=cond, check_finite=False)

    def conditioning(self, num, seed):
        """Labels for ``num`` training or calibration samples of a class-conditional teacher (else None)."""
        cond = self.task.conditioning(num, seed)
        return {k: jnp.asarray(v) for k, v in cond.items()} or None

    def fresh_fd(self, draw, num):
        """Frechet distance of ``num`` samples ``draw(noise, cond)`` from fresh noises (seed 4096, labels
        drawn uniformly), in batches of 256: the distribution score on more samples than have ground truth."""
        noise = js.initial_noise(jax.random.key(4096), (num, *self.shape))
        cond = self.conditioning(num, 4096) or {}
        xs = [np.asarray(draw(noise[i:i + 256], {k: v[i:i + 256] for k, v in cond.items()}))
              for i in range(0, num, 256)]
        x = np.concatenate(xs)
        return float(self.task.frechet_distance(x)) if np.all(np.isfinite(x)) else float("nan")


def _best(ctx, candidates, nfe):
    """The best (name, solver, grid name, ts) by PSNR among ``candidates`` (name -> solver) and ``--grids``."""
    best = None
    for name, solver in candidates.items():
        if nfe % solver.nfe(1):
            continue
        for grid, ts in ctx.grids(nfe // solver.nfe(1)):
            try:
                psnr, other = ctx.score(ctx.run(solver, ts))
            except Exception:  # singular on this path
                continue
            if math.isfinite(psnr) and (best is None or psnr > best["psnr_db"]):
                best = {"detail": f"{name} [{grid}]", "psnr_db": psnr, "score": other,
                        "draw": _drawer(ctx, solver, ts)}
    return best


def _drawer(ctx, solver, ts):
    """``draw(noise, cond)``: samples of ``solver`` on ``ts`` (for the fresh-noise Frechet distance)."""
    return lambda noise, cond: ctx.run(solver, ts, noise, cond)


def classical(ctx, nfe):
    suite = {e.name: e.make() for e in registry.entries(baseline=True, learned=False, stochastic=False)}
    return _best(ctx, suite, nfe)


def unic(ctx, nfe):
    return _best(ctx, {n: registry.get(n).make() for n in UNIC}, nfe)


def gits(ctx, nfe):
    from jaxsample.distill import gits as G

    if "gits" not in ctx.cache:
        t0 = time.perf_counter()
        cond = {k: jnp.resize(v, (256,)) for k, v in ctx.cond.items()} or None
        ts, cost = G.cost_matrix(ctx.model, ctx.shape, teacher_steps=60, num_trajectories=256, cond=cond,
                                 **ctx.interval)
        ctx.cache["gits"] = (ts, cost, time.perf_counter() - t0)
    ts_t, cost, seconds = ctx.cache["gits"]
    best = None
    for name in GITS_SOLVERS:
        solver = registry.get(name).make()
        if nfe % solver.nfe(1):
            continue
        ts = ts_t[np.asarray(G.dynamic_programming(cost, nfe // solver.nfe(1)))]
        psnr, other = ctx.score(ctx.run(solver, ts))
        if math.isfinite(psnr) and (best is None or psnr > best["psnr_db"]):
            best = {"detail": f"{name} [gits]", "psnr_db": psnr, "score": other, "draw": _drawer(ctx, solver, ts)}
    if best:
        best.update(params=nfe - 1, cost_evals=256 * (60 + 61), seconds=seconds)
    return best


def ld3(ctx, nfe):
    from jaxsample.distill import ld3 as L

    if "ld3_pairs" not in ctx.cache:
        t0 = time.perf_counter()
        pairs = L.make_pairs(ctx.model, 100, ctx.shape, seed=77, cond=ctx.conditioning(100, 77), **ctx.interval)
        ctx.cache["ld3_pairs"] = (pairs, time.perf_counter() - t0)
    pairs, pair_seconds = ctx.cache["ld3_pairs"]
    train = {k: v[:50] for k, v in pairs.items()}
    val = {k: v[50:] for k, v in pairs.items()}
    solver = js.unipc(3, "bh1")
    t0 = time.perf_counter()
    grid = L.distill(ctx.model, solver, nfe, train, val, t_max=ctx.interval["t_start"], t_min=ctx.interval["t_end"],
                     progress=False)
    seconds = time.perf_counter() - t0 + pair_seconds
    psnr, other = ctx.score(grid.sample(ctx.model, solver, ctx.noise, cond=ctx.cond))
    # 100 teacher samples of 20 calls, then 7 rounds over 50 + 50 pairs (forward + backward ~ 3 calls a step)
    return {"detail": "unipc_bh1_3 [ld3]", "psnr_db": psnr, "score": other, "params": 2 * (nfe + 1),
            "cost_evals": 100 * 20 + 7 * 100 * 3 * nfe, "seconds": seconds,
            "draw": lambda noise, cond: grid.sample(ctx.model, solver, noise, cond=cond, check_finite=False)}


def deis_sn(ctx, nfe):
    from jaxsample._assets import ASSETS_DIR
    from jaxsample.solvers import ScoreNormStats, load_solver

    f = ASSETS_DIR / "deis_sn" / f"{ctx.task.name}.npz"
    if not f.exists():
        return None
    stats = load_solver(str(f), expect=ScoreNormStats)
    best = _best(ctx, {"deis_sn_3": js.deis_sn(stats, 3)}, nfe)
    if best:
        best.update(params=int(np.size(stats.values)), cost_evals=None, seconds=None)
    return best


def dpm_solver_v3(ctx, nfe):
    try:
        from jaxsample.distill import dpm_solver_v3 as V
        from jaxsample.solvers.dpm_solver_v3 import dpm_solver_v3 as make
    except ImportError:
        return None
    samples = ctx.v3_samples
    if ctx.cond:  # its calibration takes no conditioning
        return {"detail": "not run: DPM-Solver-v3's calibration here takes no class labels", "psnr_db": float("nan"),
                "score": float("nan")}
    if "v3" not in ctx.cache:
        t0 = time.perf_counter()
        ems = V.calibrate(ctx.model, ctx.shape, num_samples=samples, num_lambdas=V3_LAMBDAS, progress=False,
                          **ctx.interval)
        ctx.cache["v3"] = (ems, time.perf_counter() - t0)
    ems, seconds = ctx.cache["v3"]
    best = _best(ctx, {"dpm_solver_v3": make(ems, order=3)}, nfe)
    if best:
        # the reference solves of the samples (~100 calls each) and two passes of JVPs (~3 calls each) per point
        best.update(detail=f"{best['detail']}, {samples} samples", params=3 * int(np.size(ems.l)),
                    cost_evals=samples * (100 + 2 * 3 * V3_LAMBDAS), seconds=seconds)
    return best


def bns(ctx, nfe):
    from jaxsample.distill import bns as B

    shipped = B.shipped(ctx.task.name)
    if nfe not in shipped:
        return None
    solver = shipped[nfe]
    psnr, other = ctx.score(ctx.run(solver, jnp.asarray(solver.times)))
    # the float leaves of the file (the trained raw values; more than solver.num_parameters, which
    # counts the n (n + 5) / 2 free ones)
    leaves = trainable_leaves(solver)[0]
    return {"detail": "bns (shipped)", "psnr_db": psnr, "score": other,
            "draw": _drawer(ctx, solver, jnp.asarray(solver.times)),
            "params": int(sum(np.size(a) for a in leaves.values())), "cost_evals": None, "seconds": None}


def amed(ctx, nfe):
    from jaxsample.distill import amed as A

    if nfe % 2 == 0:
        return None
    points = (nfe + 1) // 2 + 1  # NFE = 2 (N - 1) - 1 with AFS
    t0 = time.perf_counter()
    cond_fn = (lambda num, step: ctx.conditioning(num, 50_000 + step)) if ctx.cond else None
    solver, _ = A.distill(ctx.model, ctx.shape, num_points=points, num_trajectories=4096, batch_size=128,
                          progress=False, grid_kwargs=ctx.interval, cond_fn=cond_fn,
                          val_cond=ctx.conditioning(512, 1) if ctx.cond else None)
    seconds = time.perf_counter() - t0
    psnr, other = ctx.score(ctx.run(solver, jnp.asarray(solver.times)))
    steps = points - 1
    return {"detail": "amed [time_uniform, AFS]", "psnr_db": psnr, "score": other, "params": 2 * steps,
            "cost_evals": 4096 * (4 * steps + 2 * steps), "seconds": seconds,
            "draw": _drawer(ctx, solver, jnp.asarray(solver.times))}


def adasde(ctx, nfe):
    from jaxsample.distill import adasde as D

    if nfe % 2 == 0:
        return None
    steps = (nfe + 1) // 2
    spec = D.Parameterisation(num_steps=steps, afs=True)
    ts = get_grid("time_uniform", ctx.model.path, steps, **ctx.interval)
    import functools

    cond_fn = (lambda num, step: ctx.conditioning(num, 60_000 + step)) if ctx.cond else None
    train = functools.partial(D.fresh_pairs, ctx.model, ts, 128, ctx.shape, seed=0, teacher="official",
                              grid="time_uniform", grid_kwargs=ctx.interval, cond_fn=cond_fn)
    val = D.make_pairs(ctx.model, ts, 256, ctx.shape, seed=1, teacher="official", grid="time_uniform",
                       grid_kwargs=ctx.interval, cond=ctx.conditioning(256, 1))
    t0 = time.perf_counter()
    solver, _ = D.distill(ctx.model, spec, ts, train, val, num_steps=32, batch_size=128, learning_rate=0.2,
                          update="per_step", schedule="official", loss="official", progress=False)
    seconds = time.perf_counter() - t0
    psnr, other = ctx.score(ctx.run(solver, ts))
    return {"detail": "adasde [time_uniform, AFS]", "psnr_db": psnr, "score": other, "params": 4 * steps,
            "cost_evals": 32 * 128 * (16 * steps + 2 * steps), "seconds": seconds, "draw": _drawer(ctx, solver, ts)}


def progressive(ctx, nfe):
    """The progressive-distillation student with ``nfe`` DDIM steps, read from the study's results
    (``--progressive-results``: experiments/progressive, run with the teacher's shipped ground-truth
    noise and interval, so its PSNR and FD are of these very noises); not re-trained here."""
    import json

    path = getattr(ctx, "progressive_results", None)
    if not path:
        return None
    with open(path) as f:
        res = json.load(f)
    if res["teacher"] != ctx.task.name or res.get("num_eval") != int(ctx.noise.shape[0]) \
            or res["config"].get("eval_seed") != 2 or not res["config"].get("edm_interval"):
        raise ValueError(f"{path}: not scored on {ctx.task.name}'s shipped ground-truth noises (eval_seed 2, "
                         f"EDM interval, {int(ctx.noise.shape[0])} samples)")
    cost = progressive_costs(res).get(nfe)
    if cost is None:
        return None
    return {"detail": f"progressive student (DDIM, {cost['optimizer_steps']} steps of batch "
                      f"{res['config']['batch_size']}; from {os.path.basename(path)})",
            "psnr_db": cost["psnr_db"], "score": cost["fd"], "params": None, "cost_evals": cost["model_evals"],
            "seconds": cost["seconds"]}


def catch_up(ctx, nfe):
    """The best catch-up student (CUD RK12 / RK23 / RK34, by PSNR) sampled with Euler at ``nfe``, read
    from the study's results (``--catch-up-results``: experiments/catch_up run with ``reference_nfes``,
    i.e. on this teacher's shipped ground-truth noises, labels and interval); not re-trained here."""
    import json

    path = getattr(ctx, "catch_up_results", None)
    if not path:
        return None
    with open(path) as f:
        res = json.load(f)
    if res.get("teacher") != ctx.task.name or int(ctx.noise.shape[0]) != ctx.shipped_noises:
        raise ValueError(f"{path}: catch-up students of {res.get('teacher')!r} scored on the shipped ground truth's "
                         f"{ctx.shipped_noises} noises; the league runs {ctx.task.name!r} on {int(ctx.noise.shape[0])}")
    rows = [r for r in res["rows"] if r["method"].startswith("rk") and str(nfe) in r.get("reference", {})]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["reference"][str(nfe)]["psnr_db"])
    score = best["reference"][str(nfe)]
    return {"detail": f"catch-up {best['name']} student (Euler; {best.get('num_steps', '?')} steps of batch "
                      f"{best.get('batch_size', '?')} from the teacher; from {os.path.basename(path)})",
            "psnr_db": score["psnr_db"], "score": score["fd"], "params": None, "cost_evals": best.get("model_evals"),
            "seconds": best["train_seconds"]}


METHODS = {"classical": classical, "unic": unic, "gits": gits, "ld3": ld3, "deis_sn": deis_sn,
           "dpm_solver_v3": dpm_solver_v3, "bns": bns, "amed": amed, "adasde": adasde, "progressive": progressive,
           "catch_up": catch_up}
TRAINED = ("ld3", "amed", "adasde")


def markdown(rows, nfes, value, fmt):
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["| method | " + " | ".join(f"NFE {n}" for n in nfes) + " |", "|---|" + "---|" * len(nfes)]
    for m in methods:
        cells = []
        for n in nfes:
            r = next((r for r in rows if r["method"] == m and r["nfe"] == n), None)
            v = None if r is None else r.get(value)
            cells.append("-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="gmm_vp_cosine")
    p.add_argument("--out", required=True)
    p.add_argument("--nfes", type=int, nargs="+", default=list(NFES))
    p.add_argument("--samples", type=int, default=512, help="noises scored (a teacher: at most its shipped 256)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--grids", nargs="+", default=list(GRIDS))
    p.add_argument("--no-train", action="store_true", help=f"skip the methods trained here ({', '.join(TRAINED)})")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows already in --out of other methods or other NFEs than this run's")
    p.add_argument("--v3-samples", type=int, default=V3_SAMPLES,
                   help=f"teacher samples of DPM-Solver-v3's calibration (default {V3_SAMPLES}; the official stats use 1024 or 4096)")
    p.add_argument("--progressive-results", default=None,
                   help="results JSON of experiments/progressive scored on this teacher's shipped noises (its students' rows)")
    p.add_argument("--fd-samples", type=int, default=0,
                   help="also score each image-teacher row's sampler by Frechet distance on this many fresh noises "
                        "(0: only on the ground truth's noises)")
    p.add_argument("--catch-up-results", default=None,
                   help="results JSON of experiments/catch_up run with reference_nfes on this teacher (its students' rows)")
    p.add_argument("--replot", action="store_true", help="only rewrite the table and plots of an existing --out")
    args = p.parse_args(argv)
    if args.replot:
        return replot(args.out)
    if args.v3_samples < 2:
        p.error("--v3-samples must be at least 2")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        p.error(f"--out {args.out!r}: its folder does not exist")
    if args.fd_samples < 0:
        p.error(f"--fd-samples must be >= 0, got {args.fd_samples}")
    t0 = time.perf_counter()
    ctx = Context(args.teacher, args.samples)
    ctx.v3_samples = args.v3_samples
    ctx.progressive_results = args.progressive_results
    ctx.catch_up_results = args.catch_up_results
    ctx.grids = lambda n: [(g, get_grid(g, ctx.model.path, n, **ctx.interval)) for g in args.grids]
    methods = [m for m in args.methods if not (args.no_train and m in TRAINED)]
    rows = []
    if args.merge and os.path.exists(args.out):
        import json

        with open(args.out) as f:
            rows = [{k: (float("nan") if v is None and k in ("psnr_db", "score") else v) for k, v in r.items()}
                    for r in json.load(f)["rows"] if r["method"] not in methods or r["nfe"] not in args.nfes]
    for nfe in args.nfes:
        for m in methods:
            t1 = time.perf_counter()
            try:
                row = METHODS[m](ctx, nfe)
            except Exception as err:  # noqa: BLE001 - a method that fails is reported, not fatal
                row = {"detail": f"failed: {type(err).__name__}: {err}"[:300], "psnr_db": float("nan"),
                       "score": float("nan")}
            if row is None:
                continue
            draw = row.pop("draw", None)
            if args.fd_samples and draw is not None and ctx.task.mixture is None and math.isfinite(row["psnr_db"]):
                row["fd_fresh"] = ctx.fresh_fd(draw, args.fd_samples)
            row = {"task": args.teacher, "method": m, "nfe": nfe, "params": 0, "cost_evals": 0,
                   "seconds": 0.0, **row, "wall_s": time.perf_counter() - t1}
            rows.append(row)
            print(f"{args.teacher} NFE {nfe:2d} {m:14s} {row['psnr_db']:7.2f} dB  score {row['score']:9.3f}  "
                  f"{row['detail']}", flush=True)
        write_json(args.out, {"benchmark": "league", "config": vars(args), "environment": environment(),
                              "num_samples": int(ctx.noise.shape[0]), "rows": rows, "partial": True})
    order = list(METHODS)
    rows.sort(key=lambda r: (order.index(r["method"]), r["nfe"]))
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    write_json(args.out, {"benchmark": "league", "config": vars(args), "environment": environment(),
                          "num_samples": int(ctx.noise.shape[0]), "seconds": time.perf_counter() - t0,
                          "rows": clean})
    write_outputs(args.out, args.teacher, rows, sorted({r["nfe"] for r in rows}), int(ctx.noise.shape[0]),
                  "log-likelihood" if ctx.task.mixture is not None else "Frechet distance")


def write_outputs(out, teacher, rows, nfes, num_samples, score_name):
    """The markdown table (``.md``), PSNR against NFE (``.png``) and PSNR against the cost of
    learning (``_cost.png``) beside ``out``."""
    from jaxsample._files import write_text

    order = list(METHODS)
    rows = sorted(rows, key=lambda r: (order.index(r["method"]), r["nfe"]))
    table = (f"## {teacher}: PSNR (dB) against the exact ODE solution, {num_samples} noises\n\n"
             + markdown(rows, nfes, "psnr_db", "{:.2f}")
             + f"\n## {teacher}: {score_name} of the same samples\n\n"
             + markdown(rows, nfes, "score", "{:.2f}"))
    fresh = [r for r in rows if r.get("fd_fresh") is not None]
    if fresh:
        table += (f"\n## {teacher}: Frechet distance on fresh noises (--fd-samples; the sampler each row "
                  "chose on the noises above)\n\n" + markdown(rows, nfes, "fd_fresh", "{:.2f}"))
    stem = os.path.splitext(out)[0]
    write_text(stem + ".md", table)
    panels = {m: [{"solver": m, "nfe": r["nfe"], "psnr_db": r["psnr_db"]} for r in rows if r["method"] == m]
              for m in dict.fromkeys(r["method"] for r in rows)}
    compare.plot_psnr_vs_nfe({teacher: [r for rs in panels.values() for r in rs]}, stem + ".png",
                             title=f"The few-step league on {teacher}")
    plot_cost(rows, stem + "_cost.png", teacher)
    print(table)


def plot_cost(rows, filename, teacher):
    """PSNR against the model evaluations spent learning or calibrating the method (0: training-free),
    one panel per NFE (at most four), one marker per method. Shipped solvers, whose cost this run did
    not measure, are left out (their cost is in their own studies' notes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxsample._files import save_figure

    known = [r for r in rows if r.get("cost_evals") is not None and r.get("psnr_db") is not None
             and math.isfinite(r["psnr_db"])]
    nfes = sorted({r["nfe"] for r in known})
    if len(nfes) > 4:
        nfes = [nfes[0], nfes[len(nfes) // 3], nfes[2 * len(nfes) // 3], nfes[-1]]
    if not nfes:
        return
    methods = list(dict.fromkeys(r["method"] for r in known))
    colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    fig, axes = plt.subplots(1, len(nfes), figsize=(4.2 * len(nfes), 4), squeeze=False, sharey=True)
    for ax, nfe in zip(axes[0], nfes):
        for r in (r for r in known if r["nfe"] == nfe):
            ax.scatter(max(r["cost_evals"], 0), r["psnr_db"], color=colours[r["method"]], s=60, label=r["method"],
                       zorder=3)
        ax.set_xscale("symlog", linthresh=1e3)
        top = max(3, math.ceil(math.log10(max(max(r["cost_evals"] for r in known), 1))))
        ax.set_xticks([0] + [10 ** k for k in range(3, top + 1)])
        ax.set_xlim(-300, 10 ** top * 1.5)
        ax.set_xlabel("model evaluations to learn (0: training-free)")
        ax.set_title(f"NFE {nfe}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR vs exact ODE solution (dB)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"Quality against the cost of learning, {teacher} (shipped solvers left out: cost not measured here)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    save_figure(fig, filename, dpi=110)
    plt.close(fig)


def replot(out):
    """Rewrite the table and plots of an existing league JSON (``--replot``)."""
    import json

    with open(out) as f:
        d = json.load(f)
    rows = [{k: (float("nan") if v is None and k in ("psnr_db", "score") else v) for k, v in r.items()}
            for r in d["rows"]]
    task = d["config"]["teacher"]
    write_outputs(out, task, rows, sorted({r["nfe"] for r in rows}), d["num_samples"],
                  "log-likelihood" if task.startswith("gmm") else "Frechet distance")


if __name__ == "__main__":
    main()
