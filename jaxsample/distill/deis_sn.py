"""DEIS-SN calibration: measure the score-normalisation statistic ``r(t)`` of a model.

``r(t_k)`` is the mean of ``|eps_hat(x_{t_k}, t_k)|`` over a batch of samples and all their
dimensions, at every step ``k`` of one high-NFE sampling run (default: 1000 steps of tAB-DEIS of
order 3, uniform in t), as in mtkresearch/Diffusion-DEIS-SN (``deisabode_pipeline.py`` records
``mean|score| * sigma`` at each step of a 1000-step run; ``DEISABSNODEScheduler`` then clamps the
``clip_normalizer_steps`` entries at the smallest t to the next value: 5 for CIFAR-10, 1 for
LSUN-Church). The result is a :class:`~jaxsample.solvers.score_norm.ScoreNormStats` (times,
values, num_clamped), saved by :func:`~jaxsample.solvers.save_solver` like every learned solver; use it with
:func:`~jaxsample.solvers.score_norm.deis_sn` or :func:`~jaxsample.solvers.score_norm.score_normalise`.

Calibration is one jitted ``lax.scan`` per batch (eps_hat at each step's starting point is the
one the solver computes, read from DEIS's history; other solvers cost one extra call a step), batched with a tqdm bar; sample ``k`` draws its noise
from ``fold_in(key(seed), k)`` (:func:`jaxsample.sampling.initial_noise`), so the statistic does
not depend on the batch size or on the number of devices (``mesh``).

Example:
    >>> import jax
    >>> import jaxsample as js
    >>> from jaxsample.distill import deis_sn
    >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=3)
    >>> model = gmm.model(js.VPCosine(), "eps")
    >>> stats = deis_sn.calibrate(model, (4,), num_samples=64, num_steps=50, progress=False,
    ...                           t_start=0.99, t_end=0.01, num_clamped=1)
    >>> stats.times.shape, round(float(stats(0.99)), 1)     # r ~ sqrt(2 / pi) at high noise
    ((50,), 0.8)
    >>> x = js.sample(model, js.deis_sn(stats, 3), js.power(model.path, 6, t_start=0.99,
    ...               t_end=0.01), jax.random.normal(jax.random.key(1), (8, 4)))
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.grids import get_grid
from jaxsample.models import Model
from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers.score_norm import DEISSN, ScoreNormStats
from jaxsample.solvers.deis import DEIS, deis
from jaxsample.distill._checks import check_int as _check_int, check_model_and_shape

__all__ = ["ScoreNormStats", "calibrate"]


def _keeps_eps(solver) -> bool:
    return isinstance(solver, (DEIS, DEISSN)) and solver.solver_order >= 2


@eqx.filter_jit
def _abs_sums(model, solver, ts, noise, mask, cond):
    """Per step k: sum over valid rows and all dims of |eps_hat(x_k, t_k)| along the solver's run."""
    x = model.path.prior_scale(ts[0]) * noise
    state = solver.init(model, ts, x, cond)
    w = mask.reshape((-1,) + (1,) * (noise.ndim - 1)).astype(noise.dtype)

    def body(state, i):
        if _keeps_eps(solver):  # DEIS keeps the eps of ts[i] in its history: no extra model call
            state = solver.step(model, ts, i, state, cond, None)
            eps = state.history[0]
            if isinstance(solver, DEISSN):
                eps = eps * solver.stats(ts[i]).astype(eps.dtype)
        else:
            eps = model.eps(state.x, ts[i], **cond)
            state = solver.step(model, ts, i, state, cond, None)
        return state, jnp.sum(jnp.abs(eps) * w)

    _, sums = jax.lax.scan(body, state, jnp.arange(ts.shape[0] - 1))
    return sums


def calibrate(model: Model, sample_shape, *, num_samples: int = 256, batch_size: int = 256,
              num_steps: int = 1000, grid: str = "uniform", ts=None, solver: Optional[AbstractSolver] = None,
              t_start=None, t_end=None, num_clamped: int = 5, seed: int = 0, cond: Optional[Mapping] = None,
              mesh=None, progress: bool = True, dtype=jnp.float32) -> ScoreNormStats:
    """Measure ``r(t) = mean |eps_hat|`` along a high-NFE sampling run of ``model``.

    Args:
        model: the model to calibrate (any prediction type; its eps is used).
        sample_shape: the shape of one sample, e.g. ``(8, 8, 1)``.
        num_samples: trajectories in total; ``batch_size`` of them per jitted call.
        num_steps, grid, t_start, t_end: the run's grid (``grids.get_grid(grid, ...)``), unless
            ``ts`` (strictly decreasing times) is given. Use the interval you will sample on.
        solver: a deterministic solver (default: ``deis(3, 'tab')``, the authors' degree-2 tAB-DEIS).
        num_clamped: entries at the smallest times set to the next value (the authors: 5 of 1000).
        seed: sample ``k`` starts from ``initial_noise(key(seed), ...)[k]``.
        cond: per-sample model keyword arrays (leading axis ``num_samples``), e.g. labels.
        mesh: a 1-D ``('data',)`` mesh (:func:`jaxsample.train.make_mesh`) to split each batch over.
        progress: show a tqdm bar over batches.

    Returns:
        A :class:`~jaxsample.solvers.score_norm.ScoreNormStats` at the run's ``num_steps`` step
        times ``ts[:-1]`` (the final time is never evaluated by a sampler).

    Raises:
        ValueError: naming the bad argument.
    """
    from tqdm.auto import tqdm

    from jaxsample import train
    from jaxsample.grids import check_grid

    sample_shape = check_model_and_shape(model, sample_shape)
    num_samples = _check_int("num_samples", num_samples, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    if solver is None:
        solver = deis(3, "tab")
    if not isinstance(solver, AbstractSolver) or solver.is_stochastic:
        raise ValueError(f"solver must be a deterministic jaxsample solver, got {type(solver).__name__}")
    if ts is None:
        num_steps = _check_int("num_steps", num_steps, 2)
        ts = get_grid(grid, model.path, num_steps, t_start=t_start, t_end=t_end)
    ts = jnp.asarray(ts, dtype)
    check_grid(model.path, ts, name="ts")
    n = int(ts.shape[0]) - 1
    if n < 2:
        raise ValueError(f"ts must have at least 3 times (2 steps), got {ts.shape[0]}")
    num_clamped = _check_int("num_clamped", num_clamped, 0)
    if num_clamped >= n:
        raise ValueError(f"num_clamped must be smaller than the number of steps {n}, got {num_clamped}")
    cond = {} if cond is None else dict(cond)
    for k, v in cond.items():
        if np.shape(v)[:1] != (num_samples,):
            raise ValueError(f"cond[{k!r}] must have leading axis num_samples={num_samples}, got shape {np.shape(v)}")

    key = jax.random.key(seed)
    devices = 1 if mesh is None else int(mesh.shape["data"])
    total = np.zeros((n,), np.float64)
    starts = range(0, num_samples, batch_size)
    for start in tqdm(starts, desc="DEIS-SN calibration", disable=not progress, leave=False):
        stop = min(start + batch_size, num_samples)
        padded = stop - start + (-(stop - start)) % devices
        idx = start + jnp.arange(padded)
        # the keys of sampling.initial_noise(key, (num_samples, ...)), row for row (padding repeats the last)
        keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.minimum(idx, num_samples - 1))
        noise = jax.vmap(lambda k: jax.random.normal(k, sample_shape, dtype))(keys)
        mask = idx < stop
        rows = np.minimum(np.arange(start, start + padded), num_samples - 1)
        batch = {"noise": noise, "mask": mask, "cond": {k: jnp.asarray(np.asarray(v)[rows]) for k, v in cond.items()}}
        if mesh is not None:
            batch = train.shard_batch(batch, mesh)
        sums = _abs_sums(model, solver, ts, batch["noise"], batch["mask"], batch["cond"])
        total += np.asarray(jax.device_get(sums), np.float64)
    values = total / (num_samples * math.prod(sample_shape))
    if not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ValueError("calibration produced non-finite or zero values of mean |eps_hat|: is the model finite "
                         "on the whole grid (noise-prediction models divide by sigma near t = 0)?")
    return ScoreNormStats.from_measurements(np.asarray(ts[:-1]), values, num_clamped)
