"""Bespoke Non-Stationary solvers (BNS): distil an NS solver for one model and one NFE.

Shaul et al., ICML 2024 (arXiv 2403.01329). A BNS solver is a
:class:`~jaxsample.solvers.nonstationary.NonStationary` solver whose times, ``a`` and ``b``
are learned: n times (as logits: t_i is the cumulative sum of their softmax), n values of
``a`` and the n (n + 1) / 2 lower-triangular entries of ``b``: n (n + 5) / 2 parameters.
It is trained to match ground-truth ODE solutions from the same noise, by minimising the
mean over samples of ``log ||x_n - x(t_end)||^2`` (which maximises the mean PSNR), by
backpropagating through the whole rollout, and is initialised from the exact embedding of
a classical solver.

Example:
    >>> import jax
    >>> import jaxsample as js
    >>> from jaxsample.distill import bns
    >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=3)
    >>> model = gmm.model(js.RectifiedFlow(), "velocity")
    >>> train = bns.make_pairs(model, 64, (4,), seed=0)
    >>> val = bns.make_pairs(model, 64, (4,), seed=1)
    >>> init = js.BespokeNonStationary.from_solver(js.euler(), model.path, js.uniform(model.path, 4))
    >>> solver, log = bns.distill(model, train, val, init, num_steps=40, eval_every=20,
    ...                           batch_size=32, learning_rate=1e-2, progress=False)
    >>> log["best_val_psnr_db"] > log["init_val_psnr_db"]
    True
    >>> x = js.sample(model, solver, solver.times, val["noise"])   # used like any other solver

The solver class, :class:`~jaxsample.solvers.BespokeNonStationary`, lives with the other NS solvers
in :mod:`jaxsample.solvers.nonstationary`; it is saved and loaded by
:func:`~jaxsample.solvers.save_solver` and :func:`~jaxsample.solvers.load_solver`.
"""

from __future__ import annotations

import os
import time
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample import parallel
from jaxsample.models import Model
from jaxsample.sampling import initial_noise, reference_sample, sample
from jaxsample.distill._fit_solver import fit_solver
from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers._io import load_solver
from jaxsample.solvers.nonstationary import BespokeNonStationary

__all__ = ["BespokeNonStationary", "make_pairs", "ground_truth_accuracy", "FIXED_GRID", "distill", "bns_loss",
           "evaluate_psnr", "shipped"]

def shipped(name: str, nfes=None) -> dict:
    """The BNS solvers shipped in ``jaxsample/assets/bns`` for a teacher or benchmark ``name``
    (``"digits_vp"``, ``"gmm_vp_cosine"``, ``"gmm_rectified_flow"``): ``{nfe: solver}``, sorted by
    NFE; only the NFEs in ``nfes`` when it is given. Empty when none is shipped for ``name``.

    Example:
        >>> from jaxsample.distill import bns
        >>> sorted(bns.shipped("digits_vp"))
        [4, 8, 16]
        >>> bns.shipped("digits_vp", nfes=[8])[8].num_parameters
        52
    """
    from jaxsample._assets import ASSETS_DIR

    folder = os.path.join(ASSETS_DIR, "bns")
    prefix = f"{name}_nfe"
    found = {}
    for f in os.listdir(folder) if os.path.isdir(folder) else []:
        if f.startswith(prefix) and f.endswith(".npz") and f[len(prefix):-4].isdigit():
            found[int(f[len(prefix):-4])] = os.path.join(folder, f)
    return {n: load_solver(found[n], expect=BespokeNonStationary) for n in sorted(found) if nfes is None or n in nfes}


#: The fixed-grid ground truth of :func:`make_pairs` (``method="fixed_grid"``): UniPC-3 on a
#: 128-step quadratic grid, batched. On the digits teacher it reproduces the adaptive Dopri8 solution
#: (rtol 1e-4) to about 70 dB at a fraction of the cost (``ground_truth_accuracy`` measures it).
FIXED_GRID = {"solver": "unipc_bh2_3", "grid": "quadratic", "steps": 128}


def make_pairs(model: Model, num: int, sample_shape, *, seed: int, t_start=None, t_end=None,
               cond: Optional[Mapping] = None, batch_size: int = 1024, mesh=None, method: str = "adaptive",
               fixed_grid: Optional[Mapping] = None, **reference_kwargs) -> dict:
    """Training or validation pairs: ``noise`` and the ``target`` ODE solution from it.

    Noise is drawn per sample (:func:`~jaxsample.sampling.initial_noise`); ``cond`` holds per-sample
    arrays (e.g. labels) that are passed to the model and kept in the pairs. The target is

    - ``method="adaptive"``: :func:`~jaxsample.sampling.reference_sample` from ``t_start`` to
      ``t_end`` (adaptive Dopri8, ``reference_kwargs`` its tolerances), each sample on its own;
    - ``method="fixed_grid"``: a high-order solver on a fine fixed grid (:data:`FIXED_GRID`, or the
      ``{"solver", "grid", "steps"}`` of ``fixed_grid``), batched: every batch of ``batch_size`` runs
      the same compiled program (the last one padded), so it costs a fixed number of model calls a
      batch instead of the slowest sample's adaptive steps. Check its accuracy against the adaptive
      solve with :func:`ground_truth_accuracy`.

    With a ``mesh`` the solves are split over its devices (and hosts; every host then holds all
    the pairs).
    """
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if method not in ("adaptive", "fixed_grid"):
        raise ValueError(f"method must be 'adaptive' or 'fixed_grid', got {method!r}")
    noise = initial_noise(jax.random.key(seed), (num, *sample_shape))
    cond = {} if cond is None else {k: jnp.asarray(v) for k, v in cond.items()}
    if method == "fixed_grid":
        if reference_kwargs:
            raise ValueError(f"{sorted(reference_kwargs)} are options of method='adaptive'")
        spec = {**FIXED_GRID, **(fixed_grid or {})}
        from jaxsample.grids import get_grid
        from jaxsample.solvers import registry

        ts = get_grid(spec["grid"], model.path, spec["steps"], t_start=t_start, t_end=t_end)
        solver = registry.get(spec["solver"]).make()
        size = min(batch_size, num)
        targets = []
        for lo in range(0, num, size):
            # the last batch padded to the same size: one compiled program for every batch
            (n_lo, c), real = parallel.pad_batch((noise[lo:lo + size], {k: v[lo:lo + size] for k, v in cond.items()}),
                                                 size)
            x = parallel.gather(sample(model, solver, ts, n_lo, cond=c, mesh=mesh))
            targets.append(np.asarray(x)[:real])
        return {"noise": noise, "target": jnp.asarray(np.concatenate(targets)), **cond}
    targets = []
    for lo in range(0, num, batch_size):
        c = {k: v[lo:lo + batch_size] for k, v in cond.items()}
        targets.append(parallel.gather(reference_sample(model, noise[lo:lo + batch_size], t_start=t_start,
                                                        t_end=t_end, cond=c, mesh=mesh, **reference_kwargs)))
    return {"noise": noise, "target": jnp.asarray(np.concatenate(targets)), **cond}


def ground_truth_accuracy(model: Model, num: int, sample_shape, *, seed: int = 0, t_start=None, t_end=None,
                          cond: Optional[Mapping] = None, fixed_grid: Optional[Mapping] = None, rtol: float = 1e-6,
                          atol: Optional[float] = None, data_range: float = 2.0) -> dict:
    """How close the fixed-grid ground truth is to a tight adaptive solve, on ``num`` noises:
    ``{"psnr_db", "max_abs", "fixed_grid_s", "adaptive_s", "fixed_grid", "rtol"}`` (PSNR of the
    fixed-grid targets against Dopri8 at ``rtol``, and the wall time of each, compile included)."""
    from jaxsample.metrics import psnr

    kw = dict(seed=seed, t_start=t_start, t_end=t_end, cond=cond, batch_size=num)
    t0 = time.perf_counter()
    fixed = make_pairs(model, num, sample_shape, method="fixed_grid", fixed_grid=fixed_grid, **kw)["target"]
    jax.block_until_ready(fixed)
    t1 = time.perf_counter()
    exact = make_pairs(model, num, sample_shape, rtol=rtol, atol=rtol if atol is None else atol, **kw)["target"]
    jax.block_until_ready(exact)
    t2 = time.perf_counter()
    return {"psnr_db": float(psnr(fixed, exact, data_range=data_range)),
            "max_abs": float(jnp.max(jnp.abs(fixed - exact))), "fixed_grid_s": t1 - t0, "adaptive_s": t2 - t1,
            "fixed_grid": {**FIXED_GRID, **(fixed_grid or {})}, "rtol": rtol, "num": num}


def _split(batch):
    cond = {k: v for k, v in batch.items() if k not in ("noise", "target")}
    return batch["noise"], batch["target"], cond


def _per_sample_mse(x, target):
    return jnp.mean(((x - target) ** 2).reshape(x.shape[0], -1), axis=1)


def bns_loss(model: Model, solver: BespokeNonStationary, batch, data_range: float = 2.0, checkpoint: bool = True):
    """Mean over samples of log MSE to the target (BNS's PSNR loss), and the batch PSNR.
    ``checkpoint``: rematerialise each solver step in the backward pass (see :func:`~jaxsample.sample`)."""
    noise, target, cond = _split(batch)
    x = sample(model, solver, solver.times, noise, cond=cond, checkpoint=checkpoint, check_finite=False)
    mse = _per_sample_mse(x, target)
    loss = jnp.mean(jnp.log(mse + 1e-20))
    psnr = jnp.mean(10 * jnp.log10(data_range**2 / (mse + 1e-20)))
    return loss, {"psnr_db": psnr}


def evaluate_psnr(model: Model, solver: AbstractSolver, pairs: Mapping, ts=None, *, batch_size: int = 512,
                  data_range: float = 2.0, mesh=None) -> float:
    """Mean PSNR (dB) of ``solver``'s samples against the pairs' targets, in batches (split
    over ``mesh``'s devices if given)."""
    ts = solver.times if ts is None else ts
    total, count = 0.0, 0
    n = pairs["noise"].shape[0]
    for lo in range(0, n, batch_size):
        noise, target, cond = _split({k: v[lo:lo + batch_size] for k, v in pairs.items()})
        x = parallel.gather(sample(model, solver, ts, noise, cond=cond, mesh=mesh))
        mse = _per_sample_mse(x, target)
        total += float(jnp.sum(10 * jnp.log10(data_range**2 / (mse + 1e-20))))
        count += noise.shape[0]
    return total / count


def distill(model: Model, train_pairs: Mapping, val_pairs: Mapping, init: BespokeNonStationary, *,
            num_steps: int = 2000, batch_size: int = 64, learning_rate: float = 5e-3,
            eval_every: int = 100, seed: int = 0, workdir: Optional[str] = None, data_range: float = 2.0,
            progress: bool = True, mesh=None, patience: Optional[int] = None):
    """Distil a BNS solver with Adam (cosine decay) through the shared training loop.

    Every ``eval_every`` steps the solver is scored on ``val_pairs``; the best iterate on
    validation is returned (BNS reports the best validation iterate). With ``patience``, training
    stops after that many evaluations in a row without a better validation PSNR. With a ``workdir``,
    the run checkpoints with orbax at each evaluation and resumes exactly where it stopped;
    the validation log is ``workdir/validation.jsonl``. With a ``mesh`` each batch (and each
    validation pass) is split over its devices; the result does not depend on their number.

    Returns:
        ``(solver, log)``: the best solver, and a dict with the initial and best validation
        PSNR, the validation history, the best step and the wall time.
    """
    if not isinstance(init, BespokeNonStationary):
        raise ValueError(f"init must be a BespokeNonStationary, got {type(init).__name__}")
    for name, pairs in [("train_pairs", train_pairs), ("val_pairs", val_pairs)]:
        if "noise" not in pairs or "target" not in pairs:
            raise ValueError(f"{name} must hold 'noise' and 'target' arrays (see make_pairs)")
    t0 = time.perf_counter()
    solver, val = fit_solver(
        init, lambda solver, batch, key: bns_loss(model, solver, batch, data_range),
        lambda solver: evaluate_psnr(model, solver, val_pairs, data_range=data_range, mesh=mesh), train_pairs,
        num_steps=num_steps, batch_size=batch_size, learning_rate=learning_rate, eval_every=eval_every, seed=seed,
        key="val_psnr_db", maximize=True, workdir=workdir, mesh=mesh, progress=progress,
        desc=f"BNS n={init.num_steps}", config={"method": "bns", "nfe": init.num_steps}, patience=patience)
    log = {"init_val_psnr_db": val["init"], "best_val_psnr_db": val["best"], "best_step": val["best_step"],
           "stopped_at": val["stopped_at"],
           "validation": val["validation"], "seconds": time.perf_counter() - t0,
           "num_parameters": init.num_parameters}
    return solver, log
