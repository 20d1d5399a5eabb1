"""GITS: a time grid chosen by dynamic programming on one teacher trajectory's cost matrix.

Chen et al., "On the Trajectory Regularity of ODE-based Diffusion Sampling", ICML 2024
(arXiv 2405.11326); code zju-pi/diff-sampler ``gits-main/gits_utils.py`` (``get_dp_list``, ``dp``,
``cal_deviation``), run as its ``launch.sh`` does: ``--metric=dev --coeff=1.15 --num_steps_tea=61``
with an iPNDM (order 4) teacher on EDM's polynomial (rho = 7) grid and 256 warm-up trajectories.

The recipe, as the official code does it:

1. Teacher trajectories ``x_0 .. x_{T-1}`` on a fine grid of ``T`` points, with the model's noise
   prediction ``eps_i`` at each point (EDM's ``d_cur = (x - D(x)) / sigma``).
2. Cost ``C[i, j]`` (``i < j``) of one Euler step from teacher point ``i`` to time ``j``, in EDM's
   coordinates ``x / alpha`` against ``sigma / alpha`` (where Euler on eps is exactly DDIM):
   ``x^ = x_i + (s_j - s_i) eps_i``; metric ``'dev'`` (default) is the batch mean of the signed
   deviation ``dev(x^) - dev(x_j)``, with ``dev(y)`` the distance of ``y`` from the straight line
   through the trajectory's start and end; ``'l2'`` / ``'l1'`` the mean norm of ``x^ - x_j``.
3. ``V[i, 1] = C[i, T-1]``, ``V[j, k] = min_{j < i < T-1} C[j, i] + coeff V[i, k-1]``; the grid is
   the teacher times on the path from 0 found by backtracking (the first minimiser on ties).

Departures: the AFS variant (``--afs``, off in the launch script) is not implemented; ground truth
and grids use jaxsample's paths, so on a VP path the "EDM coordinates" are ``x / alpha`` and
``sigma / alpha`` (identical to EDM's on the EDM path).

Example:
    >>> import jax
    >>> import jaxsample as js
    >>> from jaxsample.distill import gits
    >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=3)
    >>> model = gmm.model(js.VPCosine(), "eps")
    >>> ts = gits.grid(model, (4,), num_steps=5, teacher_steps=21, num_trajectories=32)
    >>> ts.shape, bool(ts[0] > ts[1] > ts[-1])
    ((6,), True)
"""

from __future__ import annotations

import itertools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample import grids
from jaxsample.models import Model, expand_to
from jaxsample.sampling import initial_noise, sample
from jaxsample.solvers.ipndm import ipndm
from jaxsample.distill._checks import check_int as _check_int

__all__ = ["cost_matrix", "dynamic_programming", "brute_force", "grid"]

METRICS = ("dev", "l2", "l1")


def _deviation(points, start, end):
    """Distance of each of ``points`` (shape (m, batch, d)) from the line through ``start`` and
    ``end`` (each (batch, d)), per sample: ``cal_deviation``."""
    ac = end[None] - points
    unit = (end - start) / jnp.linalg.norm(end - start, axis=-1, keepdims=True)
    proj = jnp.sum(ac * unit[None], axis=-1, keepdims=True) * unit[None]
    return jnp.linalg.norm(ac - proj, axis=-1)


@jax.jit
def _costs(xs, eps, s):
    """The (T, T) cost matrices of one batch for every metric: ``xs``, ``eps`` of shape
    (T, batch, d) in EDM coordinates, ``s`` = sigma / alpha at the T teacher times."""
    T = xs.shape[0]
    dev_tea = jnp.concatenate([_deviation(xs[1:-1], xs[0], xs[-1]), jnp.zeros((1, xs.shape[1]))])  # points 1..T-1

    def row(i):
        x_hat = xs[i][None] + (s[:, None, None] - s[i]) * eps[i][None]  # (T, batch, d): Euler to every j
        dev = jnp.mean(_deviation(x_hat, xs[0], xs[-1]) - dev_tea[jnp.maximum(jnp.arange(T) - 1, 0)], axis=1)
        l2 = jnp.mean(jnp.linalg.norm(x_hat - xs, axis=-1), axis=1)
        l1 = jnp.mean(jnp.sum(jnp.abs(x_hat - xs), axis=-1), axis=1)
        return jnp.stack([dev, l2, l1])

    return jax.lax.map(row, jnp.arange(T))  # (T, 3, T): [i, metric, j]


def cost_matrix(model: Model, sample_shape, *, teacher_steps: int = 60, num_trajectories: int = 256,
                metric: str = "dev", seed: int = 0, batch_size: int = 256, t_start=None, t_end=None,
                cond: Optional[dict] = None):
    """The teacher grid (``teacher_steps + 1`` times, EDM rho = 7) and the GITS cost matrix on it.

    Args:
        model: the teacher.
        sample_shape: shape of one sample.
        teacher_steps: steps of the iPNDM teacher (the launch script's 61 points: 60).
        num_trajectories: warm-up trajectories averaged into the matrix (official: 256).
        metric: ``'dev'`` (default, signed), ``'l2'`` or ``'l1'``.
        seed: noise of trajectory ``k`` is ``fold_in(key(seed), k)``.
        batch_size: trajectories per jitted batch.
        t_start, t_end: the grid's ends (default: the path's).
        cond: conditioning for the teacher, arrays with a leading axis of ``num_trajectories``.

    Returns:
        ``(ts, C)``: the teacher times (decreasing) and the (T, T) matrix (entries with ``j <= i``
        are unused).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    teacher_steps = _check_int("teacher_steps", teacher_steps, 2)
    num_trajectories = _check_int("num_trajectories", num_trajectories, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    path = model.path
    ts = grids.edm(path, teacher_steps, 7.0, t_start=t_start, t_end=t_end)
    scale = 1.0 / path.alpha(ts)
    s = path.sigma(ts) * scale
    total = jnp.zeros((len(METRICS), ts.shape[0], ts.shape[0]))
    keys = jax.vmap(lambda k: jax.random.fold_in(jax.random.key(seed), k))(jnp.arange(num_trajectories))
    for lo in range(0, num_trajectories, batch_size):
        hi = min(lo + batch_size, num_trajectories)
        noise = jax.vmap(lambda k: initial_noise(k, tuple(sample_shape)))(keys[lo:hi])
        c = {} if cond is None else {k: v[lo:hi] for k, v in cond.items()}
        _, traj = sample(model, ipndm(4), ts, noise, cond=c, return_trajectory=True)
        eps = jax.vmap(lambda x, t: model.eps(x, t, **c))(traj, ts)
        flat = lambda a, sc: (a * expand_to(sc, a)).reshape(a.shape[0], a.shape[1], -1)  # noqa: E731
        costs = _costs(flat(traj, scale), eps.reshape(eps.shape[0], eps.shape[1], -1), s)
        total = total + (hi - lo) * jnp.transpose(costs, (1, 0, 2))
    return ts, np.asarray(total[METRICS.index(metric)] / num_trajectories, np.float64)


def dynamic_programming(cost, num_steps: int, coeff: float = 1.15) -> list:
    """The indices (from 0 to T-1, ``num_steps + 1`` of them) of the GITS path through ``cost``.

    ``V[i, 1] = C[i, T-1]``, ``V[j, k] = min_{j < i < T-1} C[j, i] + coeff V[i, k-1]``, backtracked
    from 0 taking the first minimiser (``gits_utils.dp``).
    """
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square matrix, got shape {cost.shape}")
    T = cost.shape[0]
    K = _check_int("num_steps", num_steps, 1)
    if K > T - 1:
        raise ValueError(f"num_steps must be at most {T - 1} (the teacher's steps), got {K}")
    V = np.full((T, K + 1), np.inf)
    arg = np.zeros((T, K + 1), np.int64)
    V[:, 1] = cost[:, -1]
    for k in range(2, K + 1):
        for j in range(T - 1):
            if j + 1 >= T - 1:
                continue
            cand = cost[j, j + 1:T - 1] + coeff * V[j + 1:T - 1, k - 1]
            arg[j, k] = j + 1 + int(np.argmin(cand))
            V[j, k] = cand.min()
    path, w = [0], 0
    for k in range(K, 1, -1):
        w = int(arg[w, k])
        path.append(w)
    return path + [T - 1]


def brute_force(cost, num_steps: int, coeff: float = 1.15) -> list:
    """The same path by enumerating every choice of interior indices (for tests; exponential)."""
    cost = np.asarray(cost, np.float64)
    T = cost.shape[0]
    best, best_path = np.inf, None
    for inner in itertools.combinations(range(1, T - 1), num_steps - 1):
        idx = (0,) + inner + (T - 1,)
        # V-recursion value: C[i0,i1] + coeff (C[i1,i2] + coeff (... + coeff C[i_{K-1}, T-1]))
        value = 0.0
        for a, b in reversed(list(zip(idx[:-1], idx[1:]))):
            value = cost[a, b] + coeff * value if b != T - 1 else cost[a, b]
        if value < best:
            best, best_path = value, list(idx)
    return best_path


def grid(model: Model, sample_shape, num_steps: int, *, coeff: float = 1.15, teacher_steps: int = 60,
         num_trajectories: int = 256, metric: str = "dev", seed: int = 0, batch_size: int = 256,
         t_start=None, t_end=None, cond: Optional[dict] = None):
    """The GITS grid of ``num_steps`` steps for ``model`` (usable with any solver).

    Args: as :func:`cost_matrix`, plus ``num_steps`` (the grid's steps: NFE for one-call solvers)
    and ``coeff`` (the DP's discount, official 1.15; 1.20 for Stable Diffusion).

    Returns:
        A decreasing array of ``num_steps + 1`` times, a subset of the teacher's grid.
    """
    ts, cost = cost_matrix(model, sample_shape, teacher_steps=teacher_steps, num_trajectories=num_trajectories,
                           metric=metric, seed=seed, batch_size=batch_size, t_start=t_start, t_end=t_end, cond=cond)
    return ts[np.asarray(dynamic_programming(cost, num_steps, coeff))]
