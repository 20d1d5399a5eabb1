"""The Restart sampler (Xu et al. 2023): a deterministic Heun main pass with stochastic restarts.

Restart alternates between the ODE and large jumps back in noise. The main pass is EDM's Heun
sampler without churn (:class:`~jaxsample.solvers.stochastic.EDMStochasticHeun`, ``s_churn = 0``)
on the grid ``ts``. Each restart interval ``(num_steps, repeats, t_min, t_max)`` (noise levels
``sigma / alpha`` as in EDM) is attached to the main point nearest ``t_min``, ``t_j``; after the
main pass reaches it, ``repeats`` times:

1. jump forward: ``x~ <- x~ + s_noise sqrt(t_max^2 - t_j^2) z`` in EDM's variable ``x~ = x/alpha``;
2. run back from ``t_max`` to ``t_j`` with Heun on EDM's rho = 7 grid of ``num_steps`` points,
   with churn ``gamma`` (default 0.05) at the inner steps whose noise level is in
   ``[s_min, s_max]`` (default ``[0.01, 1]``).

This is Newbeeer/diffusion_restart_sampling ``benchmarks/generate_restart.py``
``restart_sampler`` (``restart_info`` ``{i: [N_R, K, t_min, t_max]}``, ``restart_gamma``); its
configurations are ``CIFAR10_VP`` (main 18 points, ``[(3, 2, 0.06, 0.30)]``, NFE 43) and
``IMAGENET64`` (main 36 points, five intervals, NFE 203). On a grid that ends at ``sigma = 0`` the
last main step is Euler, as there. Departure: EDM's ``round_sigma`` (a no-op for the EDM models)
is not applied.

Example:
    >>> import jax
    >>> from jaxsample import grids, models, paths, sample, solvers
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
    >>> model = gmm.model(paths.EDM(), "x0")
    >>> solver = solvers.restart([(3, 2, 0.06, 0.30)])
    >>> x = sample(model, solver, grids.edm(model.path, 17), jax.random.normal(jax.random.key(1), (4, 2)),
    ...            key=jax.random.key(2))
    >>> x.shape, solver.nfe(17)          # 2 x 17 main calls + 2 x 2 x (3 - 1)
    ((4, 2), 42)
"""

from __future__ import annotations

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxsample.models import expand_to
from jaxsample.solvers._base import AbstractSolver, SimpleState, per_sample_normal
from jaxsample.solvers.stochastic import EDMStochasticHeun, _check_number

__all__ = ["Restart", "restart", "CIFAR10_VP", "IMAGENET64"]

#: The official configurations (``params_cifar10_vp.txt``, ``params_imagenet.txt``): main grid
#: points (without the final 0) and restart intervals (num_steps, repeats, t_min, t_max).
CIFAR10_VP = (18, ((3, 2, 0.06, 0.30),))
IMAGENET64 = (36, ((4, 1, 19.35, 40.79), (4, 1, 1.09, 1.92), (4, 5, 0.59, 1.09), (4, 5, 0.30, 0.59),
                   (6, 6, 0.06, 0.30)))


def _check_intervals(intervals):
    try:
        intervals = tuple(tuple(iv) for iv in intervals)
    except TypeError:
        raise ValueError(f"intervals must be a sequence of (num_steps, repeats, t_min, t_max), got {intervals!r}")
    out = []
    for iv in intervals:
        if len(iv) != 4:
            raise ValueError(f"each restart interval must be (num_steps, repeats, t_min, t_max), got {iv!r}")
        n, k, lo, hi = iv
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"a restart interval's num_steps must be an integer >= 2 (grid points), got {n!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"a restart interval's repeats must be an integer >= 0, got {k!r}")
        lo = _check_number("t_min", lo, low=0.0)
        hi = _check_number("t_max", hi, low=0.0)
        if not hi > lo:
            raise ValueError(f"a restart interval needs t_max > t_min, got t_min={lo}, t_max={hi}")
        out.append((n, k, lo, hi))
    return tuple(out)


class Restart(AbstractSolver):
    """The Restart sampler (see the module doc): Heun main steps, then the restarts attached to the
    main point each step reaches."""

    intervals: tuple = eqx.field(static=True, default=CIFAR10_VP[1])
    s_noise: float = eqx.field(static=True, default=1.0)
    gamma: float = eqx.field(static=True, default=0.05)
    s_min: float = eqx.field(static=True, default=0.01)
    s_max: float = eqx.field(static=True, default=1.0)
    rho: float = eqx.field(static=True, default=7.0)

    is_stochastic: ClassVar[bool] = True

    def __check_init__(self):
        _check_intervals(self.intervals)
        _check_number("s_noise", self.s_noise, low=0.0)
        _check_number("gamma", self.gamma, low=0.0, high=math.sqrt(2.0) - 1.0)
        _check_number("s_min", self.s_min, low=0.0, allow_inf=True)
        _check_number("s_max", self.s_max, low=0.0, allow_inf=True)
        _check_number("rho", self.rho, low=1e-6)

    @property
    def order(self) -> int:
        return 2

    def nfe(self, num_steps: int) -> int:
        """``2 num_steps + sum 2 repeats (num_steps_R - 1)`` (one call less on a grid that ends at
        ``sigma = 0``, whose last main step is Euler)."""
        return 2 * num_steps + sum(2 * k * (n - 1) for n, k, _, _ in self.intervals)

    def _restarts(self, model, ts, j, x, cond, key, which):
        """The ``repeats`` restarts of interval ``which`` from main point ``ts[j]``."""
        n, repeats, _, t_max = self.intervals[which]
        path = model.path
        dt = x.dtype
        t_j = ts[j]
        r_j = path.sigma(t_j) / path.alpha(t_j)
        r_max = jnp.asarray(t_max, dt)
        k = jnp.arange(n, dtype=dt) / (n - 1)
        r = (r_max ** (1 / self.rho) + k * (r_j ** (1 / self.rho) - r_max ** (1 / self.rho))) ** self.rho
        inner = path.t_from_lam(-jnp.log(r)).astype(dt).at[-1].set(t_j)
        heun = EDMStochasticHeun(s_churn=self.gamma * (n - 1), s_min=self.s_min, s_max=self.s_max,
                                 s_noise=self.s_noise)
        t_top = inner[0]
        std = self.s_noise * jnp.sqrt(jnp.maximum(r_max**2 - r_j**2, 0.0))
        salt = 7919 * (which + 1)
        for rep in range(repeats):
            keys = jax.vmap(jax.random.fold_in, (0, None))(key, salt + 101 * rep)
            z = per_sample_normal(keys, x)
            x = expand_to(path.alpha(t_top) / path.alpha(t_j), x) * x + expand_to(path.alpha(t_top) * std, x) * z
            for m in range(n - 1):
                step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, m + 1)
                x = heun.step(model, inner, m, SimpleState(x), cond, step_keys).x
        return x

    def step(self, model, ts, i, state, cond, key):
        main = EDMStochasticHeun(s_churn=0.0, s_noise=self.s_noise)
        x = main.step(model, ts, i, state, cond, None).x
        rel = model.path.sigma(ts) / model.path.alpha(ts)  # the main grid's EDM noise levels
        for which, (_, repeats, t_min, _) in enumerate(self.intervals):
            if repeats == 0:
                continue
            j = jnp.argmin(jnp.abs(rel - t_min))
            x = jax.lax.cond(i + 1 == j, lambda x, w=which: self._restarts(model, ts, i + 1, x, cond, key, w),
                             lambda x: x, x)
        return SimpleState(x)


def restart(intervals=CIFAR10_VP[1], s_noise: float = 1.0, gamma: float = 0.05, s_min: float = 0.01,
            s_max: float = 1.0, rho: float = 7.0) -> Restart:
    """The Restart sampler: EDM Heun main steps plus stochastic restart intervals.

    Args:
        intervals: ``(num_steps, repeats, t_min, t_max)`` per restart interval, noise levels in
            ``sigma / alpha`` (default: the CIFAR-10 VP setting ``[(3, 2, 0.06, 0.30)]``; see
            :data:`CIFAR10_VP`, :data:`IMAGENET64`). ``repeats = 0`` everywhere gives EDM's Heun.
        s_noise: the noise scale of the jumps and of the inner churn (official ``S_noise``; its
            configurations use 1.0 or EDM's 1.003).
        gamma: the inner steps' churn (official ``restart_gamma``), at most ``sqrt(2) - 1``.
        s_min, s_max: the inner churn applies where ``s_min <= sigma/alpha <= s_max``.
        rho: the inner grids' EDM exponent.

    Raises:
        ValueError: naming the bad argument.

    References:
        Xu et al., "Restart Sampling for Improving Generative Processes", NeurIPS 2023
        (arXiv 2306.14878); code Newbeeer/diffusion_restart_sampling ``restart_sampler``.
    """
    return Restart(_check_intervals(intervals), s_noise, gamma, s_min, s_max, rho)
