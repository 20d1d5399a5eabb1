"""The BNS study: distil BNS at several NFEs and compare with the best classical solver.

For each NFE: every deterministic baseline is tried on each of its grids and the best
(solver, grid) is picked on the validation pairs; BNS is initialised from the exact
embedding of that best baseline (or of ``config.init``), distilled on the training pairs
with best-iterate selection on the validation pairs, and both are scored on held-out test
pairs that neither saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample import compare, parallel, tasks
from jaxsample._files import atomic_write, write_json
from jaxsample.distill import bns
from jaxsample.grids import get_grid
from jaxsample.models import change_path, equivalent_time
from jaxsample.paths import NoiseScaled

__all__ = ["train_and_evaluate"]

# The config entries that determine the (noise, ground truth) pairs: pairs cached in the workdir
# are reused only when all of these (and the number and seed) match.
_PAIR_KEYS = ("setting", "teacher", "guidance_scale", "reference_rtol", "dim", "num_components", "data_seed",
              "edm_interval")


def _cached_pairs(directory, key: dict, make) -> dict:
    """``make()``'s pairs, saved under ``directory`` and read back by a later run with the same
    ``key``: ground truth through a U-Net costs minutes, so an interrupted or re-tuned run does
    not pay for it twice. Multi-host runs skip the cache (the hosts must all join each solve)."""
    name = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    filename = os.path.join(directory, f"{name}.npz")
    if jax.process_count() > 1:
        return make()
    if os.path.exists(filename):
        with np.load(filename) as z:
            return {k: jnp.asarray(z[k]) for k in z.files if k != "key"}
    out = make()
    os.makedirs(directory, exist_ok=True)
    with atomic_write(filename) as f:
        np.savez(f, key=np.frombuffer(json.dumps(key, sort_keys=True).encode(), np.uint8),
                 **{k: np.asarray(v) for k, v in out.items()})
    return out


def _save_solver(task, solver, path, filename: str, **metadata) -> None:
    """Write a learned BNS solver, learned on ``path`` (the one place this study saves one)."""
    from jaxsample.solvers import save_solver

    save_solver(filename, solver, path=path, teacher=task.name, **metadata)


def train_and_evaluate(config, workdir: str) -> list[dict]:
    """Run the study described by ``config``; write ``workdir/results.json``; return its rows.

    ``config.teacher`` is a shipped teacher's name, the ``.json`` card of one you trained with
    ``experiments/teachers/main.py``, or empty for the Gaussian-mixture benchmark
    (:func:`jaxsample.tasks.task_from_config`). Runs data-parallel over ``config.num_devices``
    devices, by default all devices of all hosts on an accelerator (see
    :func:`jaxsample.parallel.auto_mesh`); the results do not depend on their number.
    """
    learning_rates = tuple(config.get("learning_rates") or ()) or (config.learning_rate,) * len(config.nfes)
    if len(learning_rates) != len(config.nfes):
        raise ValueError(f"config.learning_rates must have one entry per NFE in config.nfes {tuple(config.nfes)}, "
                         f"got {learning_rates}")
    os.makedirs(workdir, exist_ok=True)
    mesh = parallel.auto_mesh(config.get("num_devices", 0))
    num_devices = 1 if mesh is None else parallel.num_shards(mesh)
    main = parallel.is_main_process()
    task = tasks.task_from_config(config)
    model, sample_shape, teacher_seconds = task.model, task.sample_shape, task.teacher_train_seconds
    t_start, t_end = task.t_start, task.t_end
    fixed_grid = {**bns.FIXED_GRID, **dict(config.get("fixed_grid") or {})}
    if config.get("ground_truth", "adaptive") == "fixed_grid":  # batched high-order solver on a fine grid
        kw = dict(t_start=t_start, t_end=t_end, method="fixed_grid", batch_size=config.get("pair_batch_size", 256),
                  fixed_grid=fixed_grid)
    else:  # adaptive Dopri8, each sample on its own
        kw = dict(t_start=t_start, t_end=t_end, rtol=config.get("reference_rtol", 1e-7),
                  atol=config.get("reference_rtol", 1e-7))
    t0 = time.perf_counter()

    cache_key = {k: config.get(k) for k in _PAIR_KEYS}
    if config.get("ground_truth", "adaptive") != "adaptive":  # (adaptive pairs keep their old cache names)
        cache_key["ground_truth"] = {"method": config.ground_truth, **fixed_grid}
    generated = []  # how many pairs this run computed (the rest came from the workdir's cache)

    def pairs(num, seed):
        def make():
            generated.append(num)
            cond = task.conditioning(num, seed + 7919) or None
            return bns.make_pairs(model, num, sample_shape, seed=seed, cond=cond, mesh=mesh, **kw)
        return _cached_pairs(os.path.join(workdir, "pairs"), {**cache_key, "num": num, "seed": seed}, make)

    train = pairs(config.num_train, config.seed * 3 + 0)
    val = pairs(config.num_val, config.seed * 3 + 1)
    test = pairs(config.num_test, config.seed * 3 + 2)
    image_fd = task.has_image_features  # a Frechet distance in classifier features
    if main and config.get("save_test_pairs"):  # e.g. to ship as the demo's ground truth
        with atomic_write(os.path.join(workdir, "test_pairs.npz")) as f:
            np.savez_compressed(f, **{k: np.asarray(v) for k, v in test.items()})
    reference_fd = task.frechet_distance(test["target"]) if image_fd else None
    pairs_seconds = time.perf_counter() - t0
    classical = compare.baseline_suite(model.path, grids=config.get("baseline_grids") or None)
    suite = {name: classical[name] for name in config.get("baselines") or classical}  # the baselines to try

    rows = []
    for nfe, learning_rate in zip(config.nfes, learning_rates):
        t0 = time.perf_counter()
        base = compare.best_baseline(
            suite, model.path, nfe, lambda s, ts: bns.evaluate_psnr(model, s, val, ts, data_range=task.data_range,
                                                                    mesh=mesh),
            maximize=True, t_start=t_start, t_end=t_end)
        base_test = bns.evaluate_psnr(model, base["obj"], test, base["ts"], data_range=task.data_range, mesh=mesh)
        # The NS family is built on the (optionally noise-scaled) path; samples map back exactly.
        bns_model, r_start, r_end = model, t_start, t_end
        if config.sigma0 != 1.0:
            new = NoiseScaled(model.path, config.sigma0)
            bns_model = change_path(model, new)
            r_start, r_end = (float(equivalent_time(model.path, new, t)) for t in (t_start, t_end))
        solver, log, init_name = None, None, None
        for k, init_kind in enumerate(config.init.split(",")):  # several inits: keep the best on validation
            init_kind = init_kind.strip()
            if init_kind == "best_baseline":  # its exact embedding (on the noise-scaled path if sigma0 != 1)
                name = f"{base['solver']}[{base['grid']}]"
                init = bns.BespokeNonStationary.from_solver(base["obj"], model.path, base["ts"], field=config.field,
                                                            ns_path=None if bns_model is model else bns_model.path)
            else:
                init_solver = classical[init_kind][0]
                init_ts = get_grid(config.init_grid, bns_model.path, nfe // init_solver.nfe(1),
                                   t_start=r_start, t_end=r_end)
                name = f"{init_kind}[{config.init_grid}]"
                init = bns.BespokeNonStationary.from_solver(init_solver, bns_model.path, init_ts, field=config.field)
            cand, cand_log = bns.distill(bns_model, train, val, init, num_steps=config.num_steps,
                                         batch_size=config.batch_size, learning_rate=learning_rate,
                                         eval_every=config.eval_every, seed=config.seed,
                                         workdir=os.path.join(workdir, f"nfe{nfe}_init{k}"),
                                         data_range=task.data_range, progress=config.progress, mesh=mesh,
                                         patience=config.get("patience", 0) or None)
            if log is None or cand_log["best_val_psnr_db"] > log["best_val_psnr_db"]:
                solver, log, init_name = cand, cand_log, name
        bns_test = bns.evaluate_psnr(bns_model, solver, test, data_range=task.data_range, mesh=mesh)
        fds = {}
        if image_fd:
            from jaxsample.sampling import sample

            cond = {k: v for k, v in test.items() if k not in ("noise", "target")}
            x_bns = parallel.gather(sample(bns_model, solver, solver.times, test["noise"], cond=cond, mesh=mesh))
            if config.sigma0 != 1.0:  # back from the noise-scaled path
                x_bns = x_bns / (bns_model.path.alpha(r_end) / model.path.alpha(t_end))
            x_base = parallel.gather(sample(model, base["obj"], base["ts"], test["noise"], cond=cond, mesh=mesh))
            fds = {"bns_fd": task.frechet_distance(x_bns), "best_baseline_fd": task.frechet_distance(x_base),
                   "reference_fd": reference_fd}
        if main:
            _save_solver(task, solver, bns_model.path, os.path.join(workdir, f"bns_nfe{nfe}.npz"), nfe=nfe,
                         init=init_name, sigma0=config.sigma0)
        row = {"nfe": nfe, "bns_psnr_db": bns_test, "best_baseline": f"{base['solver']}[{base['grid']}]",
               "best_baseline_psnr_db": base_test, "gain_db": bns_test - base_test,
               "best_baseline_val_psnr_db": base["score"], "init": init_name,
               "init_val_psnr_db": log["init_val_psnr_db"], "bns_val_psnr_db": log["best_val_psnr_db"],
               "best_step": log["best_step"], "stopped_at": log["stopped_at"],
               "validation": log["validation"], "learning_rate": learning_rate, "num_parameters": solver.num_parameters,
               "seconds": time.perf_counter() - t0, "distill_seconds": log["seconds"], **fds}
        if teacher_seconds:
            row["distill_fraction_of_teacher_training"] = log["seconds"] / teacher_seconds
        rows.append(row)
        fd_text = f" | FD BNS {fds['bns_fd']:.2f} vs {fds['best_baseline_fd']:.2f}" if fds else ""
        if main:
            print(f"NFE {nfe:3d}: BNS {bns_test:6.2f} dB | best baseline {row['best_baseline']} {base_test:6.2f} dB "
                  f"| gain {row['gain_db']:+.2f} dB{fd_text} | {row['seconds']:.0f} s", flush=True)
            # after every NFE: a run stopped later keeps the rows it finished
            write_json(os.path.join(workdir, "results.json"),
                       {"rows": rows, "config": config.to_dict(), "pairs_seconds": pairs_seconds,
                        "pairs_generated": sum(generated),
                        "num_test": config.num_test, "teacher_train_seconds": teacher_seconds,
                        "num_devices": num_devices, "reference_fd": reference_fd})
    return rows
