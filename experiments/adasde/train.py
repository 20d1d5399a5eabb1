"""The AdaSDE study: distil AdaSDE at NFE 3, 5, 7, 9 and compare it with its deterministic
counterpart (gamma = 0), BNS and the best classical solver.

For each NFE (odd: n = (NFE + 1) / 2 AdaSDE steps with the analytic first step):

- the coarse grid is picked among ``config.grids`` by the validation loss of the initialisation
  (DPM-Solver-2 with AFS);
- AdaSDE (gamma, r, a, c learned, gamma initialised as in the official code) and its deterministic
  counterpart (gamma = 0, r, a, c learned: the AMED-like solver) are distilled on the same teacher
  trajectories (DPM-Solver-2 on a grid M = 3 times finer, from the same noise);
- optionally the plug-in form (gamma only, on ``config.plugin_bases`` at NFE steps);
- BNS at the same NFE (:mod:`jaxsample.distill.bns`, from the embedding of ``config.bns_init``),
  trained on the same noises with targets ``config.bns_target`` ('teacher': the final sample of
  the same teacher; 'reference': the adaptive ODE solution);
- every classical solver of ``config.baselines`` on each of ``config.baseline_grids``; the best one
  is picked on validation noise.

Everything is scored on held-out noise: Frechet distance (digits classifier features for the
digits teacher; raw coordinates against exact samples for the mixture), exact mean
log-likelihood (mixture), and PSNR against the adaptive ODE solution (mixture). Distillation wall
times are recorded.
"""

from __future__ import annotations

import math
import os
import time

import jax
import jax.numpy as jnp

from jaxsample._files import write_json, write_text
from jaxsample import compare, tasks
from jaxsample.distill import adasde, bns
from jaxsample.grids import get_grid
from jaxsample.sampling import reference_sample, sample

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
    test_noise = None
    scorer = None
    rows = []
    t_all = time.perf_counter()
    for nfe in config.nfes:
        if nfe % 2 == 0:
            raise ValueError(f"config.nfes must be odd (AdaSDE with AFS uses 2n - 1 calls), got {nfe}")
        n = (nfe + 1) // 2
        t_nfe = time.perf_counter()
        pair_kw = dict(teacher=config.get("teacher_kind", "dpm_solver_2"), m=config.teacher_m)
        # Grid: the best initialisation on validation noise.
        best_grid = None
        for grid in config.grids:
            ts = get_grid(grid, model.path, n, t_start=t_start, t_end=t_end)
            val = adasde.make_pairs(model, ts, config.num_val, shape, seed=config.seed * 3 + 1, **pair_kw)
            init_loss = adasde.evaluate(model, adasde.Parameterisation(n, afs=True).solver(
                adasde.Parameterisation(n, afs=True).init_params()), ts, val)["loss"]
            if best_grid is None or init_loss < best_grid[1]:
                best_grid = (grid, init_loss, ts, val)
        grid, _, ts, val = best_grid
        train = adasde.make_pairs(model, ts, config.num_train, shape, seed=config.seed * 3, **pair_kw)
        test = adasde.make_pairs(model, ts, config.num_test, shape, seed=config.seed * 3 + 2, **pair_kw)
        if test_noise is None:
            test_noise = test["noise"]
            ref = None
            if task.mixture is not None:
                ref = reference_sample(model, test_noise, t_start=t_start, t_end=t_end)
            scorer = _Scorer(config, task, ref)
            reference_scores = scorer(ref) if ref is not None else None
            teacher_scores = {}
        teacher_scores[nfe] = scorer(test["traj"][:, -1])
        row = {"nfe": nfe, "adasde_steps": n, "grid": grid, "teacher_fine_grid_scores": teacher_scores[nfe]}

        # AdaSDE, its deterministic counterpart, and the plug-in forms.
        specs = {
            "adasde": adasde.Parameterisation(n, afs=True, gamma_max=config.gamma_max,
                                              gamma_init=config.gamma_init_frac * config.gamma_max),
            "adasde_gamma0": adasde.Parameterisation(n, afs=True, learn_gamma=False),
        }
        for base_name in config.plugin_bases:
            base = _plugin_bases()[base_name]
            if nfe % base.nfe(1):
                continue
            specs[f"{base_name}+gamma"] = adasde.Parameterisation(
                nfe // base.nfe(1), base=base, gamma_max=config.gamma_max,
                gamma_init=config.gamma_init_frac * config.gamma_max)
        init = adasde.Parameterisation(n, afs=True).solver(adasde.Parameterisation(n, afs=True).init_params())
        row["dpm_solver_2_afs_init"] = scorer(_run(model, init, ts, test["noise"], test_key))
        for name, spec in specs.items():
            if spec.base is None:
                s_ts, s_train, s_val = ts, train, val
            else:  # the plug-in form runs the base on its own grid of nfe steps
                s_ts = get_grid(config.plugin_grid, model.path, spec.num_steps, t_start=t_start, t_end=t_end)
                s_train = adasde.make_pairs(model, s_ts, config.num_train, shape, seed=config.seed * 3, **pair_kw)
                s_val = adasde.make_pairs(model, s_ts, config.num_val, shape, seed=config.seed * 3 + 1, **pair_kw)
            solver, log = adasde.distill(model, spec, s_ts, s_train, s_val, num_steps=config.num_steps,
                                         batch_size=config.batch_size, learning_rate=config.learning_rate,
                                         eval_every=config.eval_every, seed=config.seed,
                                         workdir=os.path.join(workdir, f"nfe{nfe}_{name}"), progress=config.progress)
            _save_solver(task, solver, os.path.join(workdir, f"{name.replace('+', '_')}_nfe{nfe}.npz"), nfe=nfe,
                         grid=grid if spec.base is None else config.plugin_grid)
            entry = {**scorer(_run(model, solver, s_ts, test["noise"], test_key)),
                     "distill_seconds": log["seconds"], "init_val_loss": log["init_val_loss"],
                     "best_val_loss": log["best_val_loss"], "gamma": [float(g) for g in solver.gamma]}
            if spec.base is not None:
                zero = spec.solver({"gamma": jnp.full((spec.num_steps,), -30.0)})
                entry["gamma0_scores"] = scorer(_run(model, zero, s_ts, test["noise"], test_key))
            else:
                entry.update(r=[float(v) for v in solver.r], a=[float(v) for v in solver.a],
                             c=[float(v) for v in solver.c])
            if teacher_seconds:
                entry["distill_fraction_of_teacher_training"] = log["seconds"] / teacher_seconds
            row[name] = entry

        # BNS at the same NFE, on the same noises.
        if config.bns:
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
