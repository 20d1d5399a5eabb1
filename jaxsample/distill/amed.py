"""AMED-Solver: learned intermediate times and direction scales of a two-call step, as its authors train it.

Zhou et al., "Fast ODE-based Sampling for Diffusion Models in Around 5 Steps", CVPR 2024
(arXiv 2312.00094); code zju-pi/diff-sampler ``amed-solver-main`` (``training/networks.py``
``AMED_predictor``, ``training/loss.py`` ``AMED_loss``, ``training/training_loop.py``,
``launch.sh``). The AMED step from ``t_c`` to ``t_n`` is::

    d = (x~ - D(x~, t_c)) / t_c          (the analytic first step AFS: x~ / sqrt(1 + t_c^2))
    t_m = t_n^r t_c^(1 - r);  x~_m = x~ + (t_m - t_c) d
    x~' = x~ + c (t_n - t_c) (x~_m - D(x~_m, a t_m)) / t_m

in EDM's variables (``x~ = x / alpha``, ``t = sigma / alpha``): AdaSDE's step with its noise
``gamma`` fixed to 0 (:class:`~jaxsample.solvers.adasde.LearnedAdaSDE`), so the solver is that
class; with ``r = 1/2`` and ``c = a = 1`` it is EDM's DPM-Solver-2 step. The recipe
(:func:`distill`): ``launch.sh``'s ``N = 4`` coarse points with AFS (NFE 5), ``scale_dir = 0.01``,
``scale_time = 0`` (``a = 1``), a Heun teacher on the same grid family with ``M = 1`` extra point
per interval, fresh teacher trajectories every batch (10k in all; batch 128 on CIFAR-10), the
per-step loss ``sum (x~_S - x~_T)^2 / B``, Adam (lr 5e-3, constant) stepped after every coarse step,
and every step starting from the TEACHER's state (the official choice for single-step students).

Departures: the official predictor is a small network whose input includes the channel means of
the U-Net's bottleneck (``8x8_block3``); jaxsample's teachers expose no bottleneck, so ``r`` and
``c`` are free per-step scalars (the predictor with its feature input held at zero). The student's
grid is any :mod:`jaxsample.grids` name (official and default: ``time_uniform``, rho = 1).

Measured (``tests/test_amed.py``): on the 64-d VP mixture benchmark with 4096 trajectories, AMED
gains about 2 dB over its DPM-Solver-2 start at NFE 3, 5 and 7 (-8.2 -> -6.3, 3.7 -> 5.9,
10.6 -> 12.8 dB against the exact solution) but stays far below iPNDM on the same grid (22.1 dB
at NFE 5): with ``c`` confined to 1 +- 0.01 and no image features, the learned midpoints alone
cannot repair DPM-Solver-2 on that grid.

Example:
    >>> import jaxsample as js
    >>> from jaxsample.distill import amed
    >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=3)
    >>> model = gmm.model(js.VPCosine(), "eps")
    >>> solver, log = amed.distill(model, (4,), num_points=3, num_trajectories=256, batch_size=64,
    ...                            progress=False, grid_kwargs=js.compare.edm_interval(model.path))
    >>> solver.nfe(2), len(solver.times)
    (3, 3)
"""

from __future__ import annotations

import functools
from typing import Optional

import jax.numpy as jnp

from jaxsample.distill import adasde
from jaxsample.grids import get_grid
from jaxsample.models import Model

__all__ = ["parameterisation", "distill"]


def parameterisation(num_steps: int, *, afs: bool = True, scale_dir: float = 0.01,
                     scale_time: float = 0.0) -> adasde.Parameterisation:
    """AMED's learned values over ``num_steps`` coarse steps: ``r`` and ``c`` (and ``a`` when
    ``scale_time > 0``), no noise (``gamma = 0``); NFE ``2 num_steps - 1`` with AFS."""
    return adasde.Parameterisation(num_steps=num_steps, afs=afs, learn_gamma=False, learn_steps=True,
                                   scale_time=scale_time, scale_dir=scale_dir)


def distill(model: Model, sample_shape, *, num_points: int = 4, grid: str = "time_uniform", afs: bool = True,
            m: int = 1, num_trajectories: int = 10_000, batch_size: int = 128, learning_rate: float = 5e-3,
            scale_dir: float = 0.01, scale_time: float = 0.0, num_val: int = 512, seed: int = 0,
            grid_kwargs: Optional[dict] = None, cond_fn=None, val_cond: Optional[dict] = None,
            workdir: Optional[str] = None, progress: bool = True):
    """Train an AMED-Solver with the official recipe (see the module doc).

    Args:
        model: the teacher.
        sample_shape: shape of one sample.
        num_points: the student's grid points N (``N - 1`` coarse steps; NFE ``2(N - 1) - 1`` with AFS).
        grid: the student's grid (a :func:`~jaxsample.grids.get_grid` name; official ``time_uniform``).
        afs: the analytic first step.
        m: extra teacher points per coarse interval (official 1).
        num_trajectories: fresh teacher trajectories in all (official 10k); ``num_trajectories //
            batch_size`` batches.
        batch_size, learning_rate, scale_dir, scale_time: as the official ``launch.sh``.
        num_val: held-out trajectories for the reported validation loss.
        grid_kwargs: e.g. ``t_start``, ``t_end`` for the grid.
        cond_fn, val_cond: conditioning (see :func:`~jaxsample.distill.adasde.fresh_pairs`).

    Returns:
        ``(solver, log)`` as :func:`jaxsample.distill.adasde.distill` (``solver.times`` is its grid).
    """
    for name, value, low in [("num_points", num_points, 2), ("num_trajectories", num_trajectories, 1),
                             ("batch_size", batch_size, 1), ("num_val", num_val, 1)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    n = num_points - 1
    ts = jnp.asarray(get_grid(grid, model.path, n, **dict(grid_kwargs or {})), jnp.float32)
    spec = parameterisation(n, afs=afs, scale_dir=scale_dir, scale_time=scale_time)
    pairs = dict(teacher="heun", m=m, grid=grid, grid_kwargs=grid_kwargs)
    train = functools.partial(adasde.fresh_pairs, model, ts, batch_size, tuple(sample_shape), seed=seed,
                              cond_fn=cond_fn, **pairs)
    val = adasde.make_pairs(model, ts, num_val, tuple(sample_shape), seed=seed + 1, cond=val_cond, **pairs)
    return adasde.distill(model, spec, ts, train, val, num_steps=max(1, num_trajectories // batch_size),
                          batch_size=batch_size, learning_rate=learning_rate, update="per_step_teacher",
                          schedule="constant", loss="official", seed=seed, workdir=workdir, progress=progress)
