"""The AdaSDE study: distil AdaSDE at NFE 3, 5, 7, 9 and compare it with its deterministic
counterpart (gamma = 0), BNS and the best classical solver.

For each NFE (odd: n = (NFE + 1) / 2 AdaSDE steps with the analytic first step):

- the coarse grid is picked among ``config.grids`` by the validation loss of the initialisation
  (DPM-Solver-2 with AFS; ``config.select_on='init'``), or, with ``select_on='trained'``, one
  solver is TRAINED per candidate grid (and per ``config.gamma_maxes`` for AdaSDE) and the one with
  the best Frechet distance on validation noise is kept (AdaSDE and gamma = 0 separately);
- AdaSDE (gamma, r, a, c learned, gamma initialised as in the official code) and its deterministic
  counterpart (gamma = 0, r, a, c learned: the AMED-like solver, row ``adasde_gamma0``) are
  distilled on the same teacher trajectories (``config.teacher_kind``: DPM-Solver-2 on a grid M = 3
  times finer, the official teacher, or the exact ODE solution, from the same noise);
- optionally the plug-in form (gamma only, on ``config.plugin_bases`` at NFE steps);
- BNS at the same NFE (:mod:`jaxsample.distill.bns`, from the embedding of ``config.bns_init``),
  trained on the same noises with targets ``config.bns_target`` ('teacher': the final sample of
  the same teacher; 'reference': the adaptive ODE solution);
- every classical solver of ``config.baselines`` on each of ``config.baseline_grids``; the best one
  is picked on validation noise.

The official recipe (WLU-wry02/AdaSDE; ``configs/official.py`` turns all of it on) part by part,
each a config switch so that an ablation can measure it (defaults: the shared recipe):

- ``teacher_kind='official'`` (+ ``teacher_m``, ``teacher_substeps``): the official teacher;
- ``fresh_trajectories=True``: new noise and teacher trajectories every batch
  (``num_steps * batch_size`` in all) instead of ``num_train`` fixed pairs;
- ``loss='official'`` (+ ``feature_alpha``): sum of squares over dimensions / batch per step, the
  last step ``alpha * D * MSE`` of the features of the task's Frechet distance (digits and
  Fashion-MNIST classifiers; raw coordinates for the mixture);
- ``update_order='per_step'``, ``lr_schedule='official'`` and ``learning_rate_by_nfe``: Adam stepped after
  every coarse step, CosineAnnealing to the absolute floor 0.01, the official learning rates;
- ``official_gamma=True`` and ``init_noise=1.0``: the official gamma map (temperature 2, raw 0 at
  0.6 of the range) and the official N(0, 1) initialisation of the raw parameters;
- ``select_on='trained'`` (+ ``gamma_maxes``): grid and gamma_max chosen on the trained solver.

``*_by_nfe`` fields (pairs ``(nfe, value)``) override ``learning_rate``, ``gamma_max``,
``scale_dir``, ``teacher_m`` and ``feature_alpha`` per NFE.

Everything is scored on held-out noise: Frechet distance (digits classifier features for the
digits teacher; raw coordinates against exact samples for the mixture), exact mean
log-likelihood (mixture), and PSNR against the adaptive ODE solution (mixture). Distillation wall
times are recorded.
"""

from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp

from jaxsample._files import write_json, write_text
from jaxsample import compare, tasks
from jaxsample.distill import adasde, bns
from jaxsample.grids import get_grid
from jaxsample.sampling import initial_noise, reference_sample, sample

__all__ = ["train_and_evaluate"]


def _plugin_bases() -> dict:
    """The deterministic solvers the plug-in form (gamma only) can run on, by name."""
    from jaxsample import solvers as S

    return {"euler": S.euler(), "heun": S.heun(), "dpm_solver_2": S.dpm_solver(2), "ipndm": S.ipndm()}


def _save_solver(task, solver, filename: str, **metadata) -> None:
    """Write a learned solver (the one place this study saves one)."""
    from jaxsample.solvers import save_solver

    save_solver(filename, solver, path=task.model.path, teacher=task.name, **metadata)


class _Scorer:
    """Held-out metrics of a batch of samples."""

    def __init__(self, config, task, ref):
        self.task, self.ref = task, ref
        self.truth = None
        if task.mixture is not None:
            self.truth = task.data_samples(jax.random.key(config.seed + 777), config.num_truth)

    def fd(self, x):
        return self.task.frechet_distance(x, reference=self.truth)

    def __call__(self, x):
        x = jnp.asarray(x)
        if not bool(jnp.all(jnp.isfinite(x))):
            return {"fd": float("nan")}
        out = {"fd": self.fd(x)}
        if self.task.mixture is not None:
            out["loglik"] = self.task.log_likelihood(x)
        if self.ref is not None:
            out["psnr_db"] = self.task.psnr(x, self.ref)
        return out


def _per_nfe(config, name: str, nfe: int):
    """``config.<name>``, or its value for ``nfe`` in ``config.<name>_by_nfe`` (pairs ``(nfe, value)``)."""
    return dict(config.get(f"{name}_by_nfe", ()) or ()).get(nfe, config[name])


def _feature_fn(task):
    """The differentiable feature map of the task's Frechet distance (the classifier's penultimate
    layer for digits and Fashion-MNIST), or None (raw coordinates) for the other tasks."""
    from jaxsample import teachers

    if task.dataset == "digits":
        module, params = teachers.load_digits_classifier()[:2]
    elif task.dataset == "fashion_mnist":
        module, params = teachers.load_classifier("fashion_classifier")[:2]
    else:
        return None
    return lambda x: module.apply({"params": params}, x, return_features=True)[1]


def _spec(config, nfe: int, n: int, gamma_max: float, learn_gamma: bool = True):
    """AdaSDE's parameterisation at ``nfe`` (AFS on); ``learn_gamma=False``: the gamma = 0 solver."""
    scale_dir = _per_nfe(config, "scale_dir", nfe)
    if not learn_gamma:
        return adasde.Parameterisation(n, afs=True, learn_gamma=False, scale_dir=scale_dir)
    gamma_min, frac = 2e-4, config.gamma_init_frac
    # The official map puts raw 0 at gamma_min + 0.6 (gamma_max - gamma_min); the shared recipe's
    # initialisation is frac * gamma_max (kept as it was).
    gamma_init = gamma_min + frac * (gamma_max - gamma_min) if config.official_gamma else frac * gamma_max
    return adasde.Parameterisation(n, afs=True, gamma_max=gamma_max, gamma_init=gamma_init,
                                   official_gamma=config.official_gamma, scale_dir=scale_dir)


def _run(model, solver, ts, noise, key):
    out = sample(model, solver, ts, noise, key=key if solver.is_stochastic else None, check_finite=False)
    return jax.block_until_ready(out)


def train_and_evaluate(config, workdir: str) -> list[dict]:
    """Run the study described by ``config``; write ``workdir/results.json`` and ``summary.md``;
    return the rows. ``config.teacher``: a shipped teacher, or empty for the Gaussian mixture;
    both are sampled on EDM's interval."""
    os.makedirs(workdir, exist_ok=True)
    task = tasks.task_from_config(config, edm_interval=True)
    model, shape, teacher_seconds = task.model, task.sample_shape, task.teacher_train_seconds
    t_start, t_end = task.t_start, task.t_end
    test_key = jax.random.key(config.seed + 4242)  # the student noise at test time: never seen in training
    val_key = jax.random.key(config.seed + 4243)
    suite = compare.baseline_suite(model.path, stochastic=True, grids=list(config.baseline_grids))
    suite = {k: v for k, v in suite.items() if k in config.baselines}
    features = _feature_fn(task) if config.loss == "official" else None
    test_noise = None
    scorer = None
    rows = []
    t_all = time.perf_counter()
    for nfe in config.nfes:
        if nfe % 2 == 0:
            raise ValueError(f"config.nfes must be odd (AdaSDE with AFS uses 2n - 1 calls), got {nfe}")
        n = (nfe + 1) // 2
        t_nfe = time.perf_counter()
        teacher_kind = config.get("teacher_kind", "dpm_solver_2")
        base_kw = dict(teacher=teacher_kind, m=_per_nfe(config, "teacher_m", nfe))
        if teacher_kind == "official":
            base_kw.update(substeps=config.teacher_substeps, grid_kwargs=dict(t_start=t_start, t_end=t_end))

        def pair_kw(grid):
            return {**base_kw, "grid": grid} if teacher_kind == "official" else base_kw

        def pairs(grid, g_ts, num, seed):
            return adasde.make_pairs(model, g_ts, num, shape, seed=seed, **pair_kw(grid))

        fixed_sets = {}

        def train_source(grid, g_ts):  # fresh trajectories every batch, or a fixed training set
            if config.fresh_trajectories:
                return functools.partial(adasde.fresh_pairs, model, g_ts, config.batch_size, shape,
                                         seed=config.seed * 3, **pair_kw(grid))
            key = (grid, int(g_ts.shape[0]))
            if key not in fixed_sets:
                fixed_sets[key] = pairs(grid, g_ts, config.num_train, config.seed * 3)
            return fixed_sets[key]

        distill_kw = dict(num_steps=config.num_steps, batch_size=config.batch_size,
                          learning_rate=_per_nfe(config, "learning_rate", nfe), eval_every=config.eval_every,
                          seed=config.seed, progress=config.progress, update=config.update_order,
                          schedule=config.lr_schedule, loss=config.loss, features=features,
                          alpha=_per_nfe(config, "feature_alpha", nfe), init_noise=config.init_noise)
        gamma_maxes = tuple(config.gamma_maxes) or (_per_nfe(config, "gamma_max", nfe),)
        grid_ts = {g: get_grid(g, model.path, n, t_start=t_start, t_end=t_end) for g in config.grids}
        val_by_grid = {g: pairs(g, grid_ts[g], config.num_val, config.seed * 3 + 1) for g in config.grids}
        init_spec = adasde.Parameterisation(n, afs=True)
        init_solver = init_spec.solver(init_spec.init_params())

        def val_fd(solver, g_ts):
            return scorer.fd(_run(model, solver, g_ts, val_noise, val_key))

        if test_noise is None:
            test_noise = initial_noise(jax.random.key(config.seed * 3 + 2), (config.num_test, *shape))
            ref = None
            if task.mixture is not None:
                ref = reference_sample(model, test_noise, t_start=t_start, t_end=t_end)
            scorer = _Scorer(config, task, ref)
            reference_scores = scorer(ref) if ref is not None else None
            teacher_scores = {}
        val_noise = val_by_grid[config.grids[0]]["noise"]  # the same validation noise on every grid

        def train_one(name, spec, grid, workdir_name):
            g_ts = grid_ts[grid]
            solver, log = adasde.distill(model, spec, g_ts, train_source(grid, g_ts), val_by_grid[grid],
                                         workdir=os.path.join(workdir, workdir_name), **distill_kw)
            return {"solver": solver, "log": log, "grid": grid, "ts": g_ts,
                    "gamma_max": spec.gamma_max if spec.learn_gamma else 0.0}

        # AdaSDE and its gamma = 0 counterpart: the grid (and gamma_max) by the init or by the trained solver.
        trained = {}
        if config.select_on == "init":
            init_losses = {g: adasde.evaluate(model, init_solver, grid_ts[g], val_by_grid[g])["loss"]
                           for g in config.grids}
            grid = min(config.grids, key=lambda g: init_losses[g])
            trained["adasde"] = train_one("adasde", _spec(config, nfe, n, gamma_maxes[0]), grid, f"nfe{nfe}_adasde")
            trained["adasde_gamma0"] = train_one("adasde_gamma0", _spec(config, nfe, n, 0.02, learn_gamma=False),
                                                 grid, f"nfe{nfe}_adasde_gamma0")
        elif config.select_on == "trained":
            for name, candidates in [
                    ("adasde", [(g, gm) for g in config.grids for gm in gamma_maxes]),
                    ("adasde_gamma0", [(g, None) for g in config.grids])]:
                runs = []
                for g, gm in candidates:
                    spec = _spec(config, nfe, n, gm, learn_gamma=False) if gm is None else _spec(config, nfe, n, gm)
                    run = train_one(name, spec, g, f"nfe{nfe}_{name}_{g}" + ("" if gm is None else f"_gmax{gm:g}"))
                    run["val_fd"] = val_fd(run["solver"], run["ts"])
                    runs.append(run)
                best = min(runs, key=lambda r: r["val_fd"] if math.isfinite(r["val_fd"]) else math.inf)
                best["candidates"] = {f"{r['grid']}" + ("" if gm is None else f"/gmax={r['gamma_max']:g}"): r["val_fd"]
                                      for r, (_, gm) in zip(runs, candidates)}
                trained[name] = best
        else:
            raise ValueError(f"config.select_on must be 'init' or 'trained', got {config.select_on!r}")
        grid, ts = trained["adasde"]["grid"], trained["adasde"]["ts"]
        val = val_by_grid[grid]
        test = pairs(grid, ts, config.num_test, config.seed * 3 + 2)
        teacher_scores[nfe] = scorer(test["traj"][:, -1])
        row = {"nfe": nfe, "adasde_steps": n, "grid": grid, "teacher_fine_grid_scores": teacher_scores[nfe]}
        row["dpm_solver_2_afs_init"] = scorer(_run(model, init_solver, ts, test["noise"], test_key))

        # The plug-in forms (gamma only, on a deterministic base with NFE steps).
        specs = {}
        for base_name in config.plugin_bases:
            base = _plugin_bases()[base_name]
            if nfe % base.nfe(1):
                continue
            specs[f"{base_name}+gamma"] = adasde.Parameterisation(
                nfe // base.nfe(1), base=base, gamma_max=gamma_maxes[0],
                gamma_init=config.gamma_init_frac * gamma_maxes[0])
        for name, spec in specs.items():  # the plug-in form runs the base on its own grid of nfe steps
            s_ts = get_grid(config.plugin_grid, model.path, spec.num_steps, t_start=t_start, t_end=t_end)
            s_val = pairs(config.plugin_grid, s_ts, config.num_val, config.seed * 3 + 1)
            solver, log = adasde.distill(model, spec, s_ts, train_source(config.plugin_grid, s_ts), s_val,
                                         workdir=os.path.join(workdir, f"nfe{nfe}_{name}"), **distill_kw)
            trained[name] = {"solver": solver, "log": log, "grid": config.plugin_grid, "ts": s_ts,
                             "gamma_max": spec.gamma_max}
        for name, run in trained.items():
            solver, log, s_ts = run["solver"], run["log"], run["ts"]
            _save_solver(task, solver, os.path.join(workdir, f"{name.replace('+', '_')}_nfe{nfe}.npz"), nfe=nfe,
                         grid=run["grid"])
            entry = {**scorer(_run(model, solver, s_ts, test["noise"], test_key)),
                     "distill_seconds": log["seconds"], "init_val_loss": log["init_val_loss"],
                     "val_loss": log["val_loss"], "grid": run["grid"], "gamma": [float(g) for g in solver.gamma]}
            if "best_val_loss" in log:
                entry["best_val_loss"] = log["best_val_loss"]
            if "val_fd" in run:
                entry.update(val_fd=run["val_fd"], candidates_val_fd=run["candidates"])
            if solver.base is not None:
                zero = specs[name].solver({"gamma": jnp.full((specs[name].num_steps,), -30.0)})
                entry["gamma0_scores"] = scorer(_run(model, zero, s_ts, test["noise"], test_key))
            else:
                entry.update(gamma_max=run["gamma_max"], r=[float(v) for v in solver.r],
                             a=[float(v) for v in solver.a], c=[float(v) for v in solver.c])
            if teacher_seconds:
                entry["distill_fraction_of_teacher_training"] = log["seconds"] / teacher_seconds
            row[name] = entry

        # BNS at the same NFE, on the same noises.
        if config.bns:
            train = train_source(grid, ts) if not config.fresh_trajectories else pairs(
                grid, ts, config.num_train, config.seed * 3)
            def targets(pairs, seed):
                if config.bns_target == "teacher":
                    return {"noise": pairs["noise"], "target": pairs["traj"][:, -1]}
                return bns.make_pairs(model, pairs["noise"].shape[0], shape, seed=seed, t_start=t_start,
                                      t_end=t_end)
            b_train, b_val = targets(train, config.seed * 3), targets(val, config.seed * 3 + 1)
            init_solver = suite[config.bns_init][0] if config.bns_init in suite else compare.baseline_suite(
                model.path)[config.bns_init][0]
            b_ts = get_grid(config.bns_init_grid, model.path, nfe, t_start=t_start, t_end=t_end)
            b_init = bns.BespokeNonStationary.from_solver(init_solver, model.path, b_ts, field="x0")
            b_solver, b_log = bns.distill(model, b_train, b_val, b_init, num_steps=config.num_steps,
                                          batch_size=config.batch_size, learning_rate=config.bns_learning_rate,
                                          eval_every=config.eval_every, seed=config.seed,
                                          workdir=os.path.join(workdir, f"nfe{nfe}_bns"), progress=config.progress)
            _save_solver(task, b_solver, os.path.join(workdir, f"bns_nfe{nfe}.npz"), nfe=nfe)
            row["bns"] = {**scorer(_run(model, b_solver, b_solver.times, test["noise"], None)),
                          "distill_seconds": b_log["seconds"], "init": f"{config.bns_init}[{config.bns_init_grid}]",
                          "targets": config.bns_target}

        # The best classical solver, picked on validation noise by FD.
        best = compare.best_baseline(suite, model.path, nfe,
                                     lambda s, b_ts: scorer.fd(_run(model, s, b_ts, val["noise"], val_key)),
                                     maximize=False, t_start=t_start, t_end=t_end)
        row["best_baseline"] = {"solver": f"{best['solver']}[{best['grid']}]", "val_fd": best["score"],
                                **scorer(_run(model, best["obj"], best["ts"], test["noise"], test_key))}
        row["seconds"] = time.perf_counter() - t_nfe
        rows.append(row)
        summary = " | ".join(f"{k} FD {row[k]['fd']:.4g}" for k in ("adasde", "adasde_gamma0", "bns", "best_baseline")
                             if k in row)
        print(f"NFE {nfe}: {summary} | {row['seconds']:.0f} s", flush=True)
        write_json(os.path.join(workdir, "results.json"),
                   {"rows": rows, "config": config.to_dict(), "reference_scores": reference_scores,
                    "num_test": config.num_test, "teacher_train_seconds": teacher_seconds,
                    "total_seconds": time.perf_counter() - t_all})
    _write_summary(workdir, rows, reference_scores, config)
    return rows


def _fmt(v, key):
    if v is None or key not in v or not math.isfinite(v[key]):
        return "-"
    return f"{v[key]:.2f}" if key in ("psnr_db", "loglik") else f"{v[key]:.4g}"


def _write_summary(workdir, rows, reference_scores, config):
    """A markdown table per metric: methods as rows, NFE as columns."""
    keys = ["fd"] + (["loglik", "psnr_db"] if reference_scores is not None else [])
    methods = ["adasde", "adasde_gamma0", "dpm_solver_2_afs_init"]
    methods += sorted({k for r in rows for k in r if k.endswith("+gamma")})
    methods += ["bns", "best_baseline", "teacher_fine_grid_scores"]
    lines = [f"# AdaSDE study: {config.get('teacher') or 'Gaussian mixture ' + config.setting}", ""]
    for key in keys:
        lines += [f"## {key} (held-out noise, {config.num_test} samples)", "",
                  "| method | " + " | ".join(f"NFE {r['nfe']}" for r in rows) + " |",
                  "|---|" + "---:|" * len(rows)]
        for m in methods:
            if not any(m in r for r in rows):
                continue
            label = f"teacher ({config.get('teacher_kind', 'dpm_solver_2')})" if m == "teacher_fine_grid_scores" else m
            lines.append(f"| {label} | " + " | ".join(_fmt(r.get(m), key) for r in rows) + " |")
            if m.endswith("+gamma"):
                lines.append(f"| {m} at gamma = 0 | " + " | ".join(
                    _fmt(r.get(m, {}).get("gamma0_scores"), key) for r in rows) + " |")
        if reference_scores is not None:
            lines.append(f"| exact ODE solution | " + " | ".join(_fmt(reference_scores, key) for _ in rows) + " |")
        lines.append("")
    lines += ["## details", "", "| NFE | grid | best baseline | AdaSDE s | gamma=0 s | BNS s | learned gammas |",
              "|---:|---|---|---:|---:|---:|---|"]
    for r in rows:
        bns_s = f"{r['bns']['distill_seconds']:.0f}" if "bns" in r else "-"
        gammas = ", ".join(f"{g:.4f}" for g in r["adasde"]["gamma"])
        lines.append(f"| {r['nfe']} | {r['grid']} | {r['best_baseline']['solver']} | "
                     f"{r['adasde']['distill_seconds']:.0f} | {r['adasde_gamma0']['distill_seconds']:.0f} | "
                     f"{bns_s} | {gammas} |")
    write_text(os.path.join(workdir, "summary.md"), "\n".join(lines) + "\n")
