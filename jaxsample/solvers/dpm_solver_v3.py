"""DPM-Solver-v3: multistep exponential integrator with empirical model statistics (EMS).

Zheng, Lu, Bao, Zhu, "DPM-Solver-v3: Improved Diffusion ODE Solver with Empirical Model
Statistics", NeurIPS 2023 (arXiv 2310.13268); official code thu-ml/DPM-Solver-v3,
``dpm_solver_v3.py`` (class ``DPM_Solver_v3``: ``__init__``, ``get_g``,
``multistep_predictor_update``, ``multistep_corrector_update``, ``sample``).

In half log-SNR ``lam = log(alpha / sigma)`` the probability-flow ODE is rewritten with three
statistics of the model, functions of ``lam`` (one value per element of a sample, or per channel,
or one for all):

- ``l = E[diag(sigma d eps / dx)]``: the linear part of the noise prediction,
- ``f = (sigma eps - l x) / alpha``: what is left of it, and its derivative ``f' = df/dlam``
  along the ODE, fitted by least squares as ``f' ~ s f + b``.

With ``L = int l``, ``S = int s``, ``B = int e^{-S} b``, ``I = int e^{L+S}``, ``C = int e^{L+S} B``
(cumulative trapezoids from the high-noise end ``lam_T`` of the EMS grid), the exact solution is
integrated in closed form up to the term ``g = e^{-S} f - B`` (re-based at the step's start ``s``),
which is expanded in a Taylor series in ``lam``. The predictor of order ``n + 1`` from ``s`` to
``t`` (history ``j = 0..n``, ``j = 0`` the newest point ``s``)::

    f_j = (sigma_j eps_j - l_j x_j) / alpha_j,   g_j = e^{S_s - S_j} f_j - e^{S_s} (B_j - B_s)
    x_t = (alpha_t / alpha_s) e^{L_s - L_t} x_s - alpha_t e^{-L_t - S_s} (I_t - I_s) g_0
          - alpha_t e^{-L_t} (C_t - C_s - B_s (I_t - I_s))
          - sum_{k=1..n} alpha_t e^{L_s - L_t} Phi_k g^(k),
    Phi_k = int_{lam_s}^{lam_t} e^{(L+S)(lam) - (L+S)(lam_s)} (lam - lam_s)^k / k! dlam,

with ``g^(k)`` the derivatives of the polynomial through ``(lam_j, g_j)`` (``pseudo``: ``k!`` times
the divided differences ``g[lam_0..lam_k]`` instead). The corrector repeats the update from the
previous point once ``eps`` is known at the new one (history ``[s, t, older...]``); it changes
``x_t`` but not ``f_t`` (the official code recomputes ``eps_t`` so that ``f_t`` is unchanged), so
it costs no model call.

With ``l = 1, s = b = 0`` (:meth:`EMS.degenerate`), ``f = -x0_hat`` and the update is multistep
DPM-Solver++ with its polynomial integrated exactly (the Taylor form), up to the trapezoid error of
the integrals. :func:`~jaxsample.solvers.dpm_solver_pp_2m` / ``_3m`` (LuChengTHU/dpm-solver's
``'dpmsolver'`` form, as in diffusers and k-diffusion) differ from it in two coefficients. With
``D1 = h x0[lam_0, lam_1]`` (second order) or its quadratic correction (third order), ``D2 = h^2
x0[lam_0, lam_1, lam_2]`` (half ``h^2 x0''``), ``phi_2 = 1 + (e^{-h} - 1) / h`` and ``phi_3 = phi_2 / h
- 1/2``: their second-order update adds ``alpha_t (1 - e^{-h}) / 2 D1`` where the Taylor form adds
``alpha_t phi_2 D1``, and their third-order update adds ``-alpha_t phi_3 D2``, half the Taylor form's
``-2 alpha_t phi_3 D2`` (``= alpha_t e^{-h} int_0^h e^u u^2 / 2 du x0''``).
(LuChengTHU's singlestep ``'taylor'`` update has the factor 2: its ``D2`` is ``h^2 x0''``.) On a Gaussian
mixture (float64, logSNR grids of 32 to 256 steps) the degenerate order-3 solver's error falls by 10.0,
9.6, 9.2 per halving of the step (order 3), DPM-Solver++(3M)'s by 5.2, 4.4, 4.2 (order 2).

The EMS are estimated for one model by :func:`jaxsample.distill.dpm_solver_v3.calibrate`; they
are invariant under a change of path (VP, EDM, ...) at the same log-SNR, so they are tabulated
in ``lam`` only. A :class:`DPMSolverV3` holding its :class:`EMS` is a learned solver: it saves and
loads through :func:`~jaxsample.solvers.save_solver` / :func:`~jaxsample.solvers.load_solver`.

Departures from the official code (each one forced by, or improving on, a jitted ``lax.scan``
over a grid that the caller chooses):

1. **Interpolation instead of snapping.** The official code moves every step time to the nearest
   EMS grid point (``convert_to_indexes``) so that it can index ``L, S, I, B, C``. Here the grid
   ``ts`` is the caller's and the step index is traced, so ``L, S, B, I, C`` are interpolated
   linearly in ``lam`` at ``lam(t)``, and ``Phi_k`` is the trapezoid over the EMS grid points
   strictly inside ``(lam_s, lam_t)`` plus the two ends (where ``L + S`` is interpolated). When
   the step times fall on EMS grid points (e.g. a logSNR-uniform grid of ``n`` steps and an EMS
   grid of ``k n + 1`` points on the same interval) this is exactly the official computation;
   otherwise it adds an error of the order of the trapezoid's own, ``O(dlam_ems^2)``.
2. **The grid must lie inside the EMS range** ``[lam[0], lam[-1]]`` (up to ``1e-4`` of its width):
   :meth:`DPMSolverV3.init` raises a ValueError for a concrete grid, and inside ``jit`` the sample
   becomes an ``equinox`` runtime error. The official code builds the statistics' grid on its own
   sampling interval and has no such case (beyond it, its indexes would fall outside the tables).
   Grids ending at ``sigma = 0`` are outside every EMS range: use
   :func:`~jaxsample.sampling.sample`'s ``final_x0=True``.
3. **History of ``f`` instead of ``(x, eps)``.** ``f_j`` is all the updates read from older points,
   and the corrector leaves it unchanged, so the state keeps ``f`` (and the previous sample for
   the corrector); the arithmetic is the official one.
4. **"auto" settings.** ``predictor_pseudo="auto"`` is ``num_steps <= 5`` and
   ``use_corrector="auto"`` is ``num_steps <= 6``, the rule of the official EDM example
   (``codebases/edm/sample.py``); the number of steps is the static length of ``ts``.
5. **Not implemented:** the official ``half`` flag (corrector only where ``t > 0.5``, a time
   threshold of the VP parametrisation) and the EDM-rho and time-quadratic grids (use
   :mod:`jaxsample.grids`; any strictly decreasing grid inside the EMS range works).
6. The integrals are accumulated in float64 (NumPy) when an :class:`EMS` is built, as the
   official NumPy code does, and stored in the default float dtype; the updates run in the
   sample's dtype. The official ``lower_order_final`` applies at every grid length, so there is
   no ``lower_order_final_below`` here.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsample import grids, models, paths, sample, solvers
    >>> from jaxsample.solvers.dpm_solver_v3 import EMS, dpm_solver_v3, lambda_grid
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
    >>> model = gmm.model(paths.VPLinear(), "eps")
    >>> ts = grids.logsnr_uniform(model.path, 6)
    >>> ems = EMS.degenerate(lambda_grid(model.path, 1201), shape=(2,))   # l = 1, s = b = 0
    >>> noise = jax.random.normal(jax.random.key(1), (4, 2))
    >>> x = sample(model, dpm_solver_v3(ems, 1), ts, noise)
    >>> x_ddim = sample(model, solvers.ddim(), ts, noise)      # order 1, degenerate: DDIM
    >>> bool(jnp.max(jnp.abs(x - x_ddim)) < 1e-4), dpm_solver_v3(ems).nfe(6)
    (True, 6)
"""

from __future__ import annotations

import math
from typing import NamedTuple, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers._exponential import check_choice, effective_order, empty_history, grid_steps, push

__all__ = ["EMS", "DPMSolverV3", "DPMSolverV3State", "dpm_solver_v3", "lambda_grid"]

#: The EMS arrays, in the order of :class:`EMS`'s fields after ``lam``.
_ARRAYS = ("l", "s", "b", "L", "S", "B", "I", "C")


def _is_traced(*arrays) -> bool:
    return any(isinstance(a, jax.core.Tracer) for a in arrays)


def _cumtrapz_exp(a, x, b):
    """``int_{x_0}^{x} b e^a`` by the cumulative trapezoid, zero at ``x_0`` (float64 NumPy).

    The official ``weighted_cumsumexp_trapezoid``: ``a`` and ``b`` of shape ``(N + 1, ...)``,
    ``x`` of shape ``(N + 1,)``; ``e^a`` is scaled by its maximum for the sum.
    """
    x = x.reshape((-1,) + (1,) * (a.ndim - 1))
    a_max = np.max(a, axis=0, keepdims=True)
    tmp = b * np.exp(a - a_max)
    out = np.cumsum(0.5 * (x[1:] - x[:-1]) * (tmp[1:] + tmp[:-1]), axis=0) * np.exp(a_max)
    return np.concatenate([np.zeros_like(out[:1]), out], axis=0)


def lambda_grid(path, num_lambdas: int, t_start=None, t_end=None):
    """The EMS grid: ``num_lambdas`` values of ``lam`` uniform between ``lam(t_start)`` and
    ``lam(t_end)`` (defaults: the path's ``t_max`` and ``t_min``), increasing, each the ``lam`` of
    the time :func:`~jaxsample.grids.logsnr_uniform` would put there (the ends exactly
    ``lam(t_start)`` and ``lam(t_end)``, so that grids on the same interval lie inside it).

    Example:
        >>> from jaxsample import paths
        >>> from jaxsample.solvers.dpm_solver_v3 import lambda_grid
        >>> lam = lambda_grid(paths.EDM(), 5)
        >>> [round(float(v), 2) for v in lam]
        [-4.38, -1.73, 0.92, 3.57, 6.21]
    """
    from jaxsample.grids import logsnr_uniform

    if isinstance(num_lambdas, bool) or not isinstance(num_lambdas, (int, np.integer)) or num_lambdas < 2:
        raise ValueError(f"num_lambdas must be an integer >= 2, got {num_lambdas!r}")
    ts = logsnr_uniform(path, int(num_lambdas) - 1, t_start=t_start, t_end=t_end)
    return path.lam(ts)


# --------------------------------------------------------------------------- the statistics


class EMS(eqx.Module):
    """Empirical model statistics of DPM-Solver-v3, tabulated on an increasing ``lam`` grid.

    Build it with :meth:`from_statistics` (or :meth:`degenerate`), which computes the integrals;
    :func:`jaxsample.distill.dpm_solver_v3.calibrate` estimates one from a model.

    Attributes:
        lam: the grid, strictly increasing (from the high-noise end ``lam_T``), shape ``(N + 1,)``.
        l, s, b: the statistics, shape ``(N + 1, *stat_shape)``; ``stat_shape`` broadcasts
            against one sample, aligned on the right: ``sample_shape`` itself (the official,
            per-element statistics), per channel (e.g. ``(1, 1, C)`` for ``(H, W, C)`` samples),
            or ``()``.
        L, S, B, I, C: the cumulative trapezoids from ``lam[0]`` of ``l``, ``s``, ``e^{-S} b``,
            ``e^{L+S}`` and ``e^{L+S} B`` (zero at ``lam[0]``), same shape.
    """

    lam: jax.Array
    l: jax.Array
    s: jax.Array
    b: jax.Array
    L: jax.Array
    S: jax.Array
    B: jax.Array
    I: jax.Array
    C: jax.Array

    def __check_init__(self):
        arrays = [getattr(self, n) for n in ("lam",) + _ARRAYS]
        if _is_traced(*arrays):
            return  # built inside a transformation: checked where it was made
        lam = np.asarray(self.lam)
        if lam.ndim != 1 or lam.shape[0] < 2:
            raise ValueError(f"lam must be a 1-D array of at least 2 values, got shape {lam.shape}")
        if not (np.all(np.isfinite(lam)) and np.all(np.diff(lam) > 0)):
            raise ValueError("lam must be finite and strictly increasing (from high noise to low noise)")
        shape = np.shape(self.l)
        for name in _ARRAYS:
            a = np.asarray(getattr(self, name))
            if a.ndim < 1 or a.shape[0] != lam.shape[0]:
                raise ValueError(f"{name} must have shape ({lam.shape[0]}, ...) (one entry per lam), got {a.shape}")
            if a.shape != shape:
                raise ValueError(f"{name} must have the shape of l {shape}, got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} must be finite")

    @classmethod
    def from_statistics(cls, lam, l, s, b, dtype=None) -> "EMS":
        """The EMS with statistics ``l, s, b`` on the grid ``lam``, integrals computed here.

        Args:
            lam: strictly increasing ``lam`` values, shape ``(N + 1,)``.
            l, s, b: arrays of shape ``(N + 1, *stat_shape)`` (broadcast to a common shape).
            dtype: the stored dtype (default: JAX's default float, float64 under x64). The
                integrals are computed in float64 either way.

        Raises:
            ValueError: naming the bad argument.

        Example:
            >>> import numpy as np
            >>> from jaxsample.solvers.dpm_solver_v3 import EMS
            >>> lam = np.linspace(-3.0, 3.0, 7)
            >>> ems = EMS.from_statistics(lam, np.ones((7, 2)), np.zeros((7, 2)), np.zeros((7, 2)))
            >>> [float(v) for v in ems.L[:, 0]]                     # int_{-3}^{lam} 1
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        """
        lam = np.asarray(lam, np.float64)
        if lam.ndim != 1 or lam.shape[0] < 2:
            raise ValueError(f"lam must be a 1-D array of at least 2 values, got shape {lam.shape}")
        if not (np.all(np.isfinite(lam)) and np.all(np.diff(lam) > 0)):
            raise ValueError("lam must be finite and strictly increasing (from high noise to low noise)")
        stats = {}
        for name, v in (("l", l), ("s", s), ("b", b)):
            v = np.asarray(v, np.float64)
            if v.ndim < 1 or v.shape[0] != lam.shape[0]:
                raise ValueError(f"{name} must have shape ({lam.shape[0]}, ...) (one entry per lam), got {v.shape}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{name} must be finite")
            stats[name] = v
        try:
            l, s, b = np.broadcast_arrays(stats["l"], stats["s"], stats["b"])
        except ValueError:
            raise ValueError(f"l, s and b must broadcast to one shape, got {stats['l'].shape}, {stats['s'].shape} "
                             f"and {stats['b'].shape}") from None
        zero, one = np.zeros_like(l), np.ones_like(l)
        big_l = _cumtrapz_exp(zero, lam, l)
        big_s = _cumtrapz_exp(zero, lam, s)
        big_i = _cumtrapz_exp(big_l + big_s, lam, one)
        big_b = _cumtrapz_exp(-big_s, lam, b)
        big_c = _cumtrapz_exp(big_l + big_s, lam, big_b)
        dtype = jnp.zeros(()).dtype if dtype is None else dtype
        with np.errstate(over="ignore"):  # an overflow in the cast is reported below
            arrays = [jnp.asarray(v, dtype) for v in (lam, l, s, b, big_l, big_s, big_b, big_i, big_c)]
        if not all(bool(jnp.all(jnp.isfinite(a))) for a in arrays):
            raise ValueError(f"the integrals L, S, B, I, C of l, s, b overflow in {jnp.dtype(dtype).name} (int s "
                             f"or int (l + s) is too large over the grid): l, s or b are not statistics of a "
                             f"diffusion model")
        return cls(*arrays)

    @classmethod
    def degenerate(cls, lam, shape=(), dtype=None) -> "EMS":
        """``l = 1, s = b = 0`` on the grid ``lam``: DPM-Solver-v3 becomes multistep DPM-Solver++
        (Taylor form), up to the trapezoid error of the integrals (the official ``degenerated``).

        Args:
            lam: strictly increasing ``lam`` values (e.g. :func:`lambda_grid`).
            shape: ``stat_shape``, e.g. ``()`` or a sample's shape.
            dtype: as in :meth:`from_statistics`.
        """
        try:
            shape = tuple(int(d) for d in shape)
        except TypeError:
            raise ValueError(f"shape must be a tuple of non-negative integers, got {shape!r}") from None
        n = np.shape(lam)[0] if np.ndim(lam) == 1 else -1
        if n < 2:
            raise ValueError(f"lam must be a 1-D array of at least 2 values, got shape {np.shape(lam)}")
        full = (n,) + shape
        return cls.from_statistics(lam, np.ones(full), np.zeros(full), np.zeros(full), dtype)

    @property
    def num_points(self) -> int:
        """``N + 1``, the number of grid points."""
        return int(self.lam.shape[0])

    @property
    def stat_shape(self) -> tuple:
        """The shape of the statistics at one ``lam``."""
        return tuple(self.l.shape[1:])

    def interpolate(self, lam, *names):
        """The arrays ``names`` (of ``l, s, b, L, S, B, I, C``) linearly interpolated at the
        scalar ``lam`` (extrapolated linearly beyond the ends), in ``lam``'s dtype.

        Example:
            >>> import numpy as np
            >>> from jaxsample.solvers.dpm_solver_v3 import EMS
            >>> ems = EMS.degenerate(np.linspace(0.0, 1.0, 11))
            >>> round(float(ems.interpolate(0.25, "L")[0]), 6)
            0.25
        """
        lam = jnp.asarray(lam)
        dt = lam.dtype if jnp.issubdtype(lam.dtype, jnp.floating) else jnp.zeros(()).dtype
        lam = lam.astype(dt)
        grid = self.lam.astype(dt)
        k = jnp.clip(jnp.searchsorted(grid, lam, side="right") - 1, 0, grid.shape[0] - 2)
        w = (lam - grid[k]) / (grid[k + 1] - grid[k])
        out = []
        for name in names:
            a = getattr(self, name).astype(dt)
            out.append(a[k] + w * (a[k + 1] - a[k]))
        return tuple(out)


def _check_ems(ems):
    if not isinstance(ems, EMS):
        raise ValueError(f"ems must be an EMS (jaxsample.solvers.dpm_solver_v3.EMS), got {type(ems).__name__}")
    return ems


# --------------------------------------------------------------------------- the update


def _phis(ems: EMS, lam_s, lam_t, ls_s, ls_t, n: int, dt):
    """``[Phi_1, ..., Phi_n]``, ``Phi_k = int_{lam_s}^{lam_t} e^{(L+S) - (L+S)_s} (lam - lam_s)^k / k!``: the
    trapezoid over ``lam_s``, the EMS points strictly between, and ``lam_t`` (``ls_*``: ``L + S`` at the
    ends); on EMS points it is the official ``compute_exponential_coefficients_high_order``."""
    grid = ems.lam.astype(dt)
    ls = (ems.L + ems.S).astype(dt)
    shape = (-1,) + (1,) * (ls.ndim - 1)
    nodes = jnp.concatenate([lam_s[None], jnp.clip(grid, lam_s, lam_t), lam_t[None]])
    gr = grid.reshape(shape)
    vals = jnp.where(gr <= lam_s, ls_s, jnp.where(gr >= lam_t, ls_t, ls))
    e = jnp.exp(jnp.concatenate([ls_s[None], vals, ls_t[None]]) - ls_s)
    width = (0.5 * (nodes[1:] - nodes[:-1])).reshape(shape)
    out = []
    for k in range(1, n + 1):
        w = e * ((nodes - lam_s) ** k / math.factorial(k)).reshape(shape)
        out.append(jnp.sum(width * (w[1:] + w[:-1]), axis=0))
    return out


def _derivatives(lams, gs, pseudo: bool):
    """``[g^(1), ..., g^(n)]`` at ``lams[0]`` from the ``n + 1`` points ``(lams[j], gs[j])``
    (the official ``compute_high_order_derivatives``)."""
    n = len(gs) - 1
    if pseudo:
        table = [list(gs)]
        for i in range(1, n + 1):
            prev = table[-1]
            table.append([(prev[j] - prev[j + 1]) / (lams[j] - lams[i + j]) for j in range(n - i + 1)])
        return [table[i][0] * math.factorial(i) for i in range(1, n + 1)]
    d = jnp.stack([lams[j] - lams[0] for j in range(1, n + 1)])
    vander = jnp.stack([d**i for i in range(1, n + 1)], axis=1)  # rows j, columns powers 1..n
    rhs = jnp.stack([g - gs[0] for g in gs[1:]])
    shape = rhs.shape
    coef = jnp.linalg.solve(vander, rhs.reshape(n, -1)).reshape(shape)
    return [coef[i - 1] * math.factorial(i) for i in range(1, n + 1)]


class _Interval(NamedTuple):
    """The coefficients of one update from ``lam_s`` to ``lam_t`` (what does not depend on ``f``)."""

    big_s_s: jax.Array
    big_b_s: jax.Array
    c_x: jax.Array  # (alpha_t / alpha_s) e^{L_s - L_t}
    c_g: jax.Array  # alpha_t e^{-L_t - S_s} (I_t - I_s)
    c_b: jax.Array  # alpha_t e^{-L_t} (C_t - C_s - B_s (I_t - I_s))
    c_k: list  # alpha_t e^{L_s - L_t} Phi_k, k = 1..n


def _interval(ems: EMS, lam_s, a_s, lam_t, a_t, n: int, dt) -> _Interval:
    big_l_s, big_s_s, big_b_s, big_i_s, big_c_s = ems.interpolate(lam_s, "L", "S", "B", "I", "C")
    big_l_t, big_s_t, big_i_t, big_c_t = ems.interpolate(lam_t, "L", "S", "I", "C")
    d_i = big_i_t - big_i_s
    scale = a_t * jnp.exp(big_l_s - big_l_t)
    phis = _phis(ems, lam_s, lam_t, big_l_s + big_s_s, big_l_t + big_s_t, n, dt)
    return _Interval(big_s_s, big_b_s, (a_t / a_s) * jnp.exp(big_l_s - big_l_t),
                     a_t * jnp.exp(-big_l_t - big_s_s) * d_i,
                     a_t * jnp.exp(-big_l_t) * (big_c_t - big_c_s - big_b_s * d_i), [scale * p for p in phis])


def _update(ems: EMS, iv: _Interval, x_s, lams, fs, pseudo: bool):
    """The official ``multistep_{predictor,corrector}_update`` over the interval ``iv``: from ``x_s`` at
    ``lams[0]``, with the values ``fs[j]`` of ``f`` at ``lams[j]`` (``j = 0`` the start ``s``)."""
    gs = [fs[0]]
    for lam_j, f_j in zip(lams[1:], fs[1:]):
        big_s_j, big_b_j = ems.interpolate(lam_j, "S", "B")
        gs.append(jnp.exp(iv.big_s_s - big_s_j) * f_j - jnp.exp(iv.big_s_s) * (big_b_j - iv.big_b_s))  # get_g
    x_t = iv.c_x * x_s - iv.c_g * gs[0] - iv.c_b
    if len(fs) > 1:
        for c_k, g_k in zip(iv.c_k, _derivatives(lams, gs, pseudo)):
            x_t = x_t - c_k * g_k
    return x_t.astype(x_s.dtype)


# --------------------------------------------------------------------------- the solver


class DPMSolverV3State(NamedTuple):
    """State of :class:`DPMSolverV3`.

    Attributes:
        x: the sample at ``ts[i]`` as the predictor left it (the corrector of step ``i`` refines it).
        x_prev: the (corrected) sample at ``ts[i - 1]``, the corrector's starting point (zeros at
            the first step).
        history: ``f = (sigma eps - l x) / alpha`` at ``ts[i - 1 - j]`` for ``j = 0, 1, ...``, shape
            ``(k, *x.shape)`` (zeros until filled).
    """

    x: jax.Array
    x_prev: jax.Array
    history: jax.Array


def _check_flag(name, value, allow_auto: bool):
    allowed = (True, False, "auto") if allow_auto else (True, False)
    if not any(value is a or (isinstance(a, str) and value == a) for a in allowed):
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


class DPMSolverV3(AbstractSolver):
    """Multistep DPM-Solver-v3 (predictor, optional corrector), one model call a step.

    Step ``i`` evaluates ``eps`` at ``(x_i, t_i)``; with the corrector it first refines ``x_i``
    from ``x_{i-1}`` (order ``q_{i-1} + corrector_pseudo``, applied when above 1, no model call),
    then predicts ``x_{i+1}`` at order ``q_i = min(order, i + 1)`` (with ``lower_order_final``
    also at most ``num_steps - i``). The final point is never evaluated: ``nfe(n) = n``.
    """

    ems: EMS
    solver_order: int = eqx.field(static=True, default=3)
    predictor_pseudo: Union[bool, str] = eqx.field(static=True, default="auto")
    use_corrector: Union[bool, str] = eqx.field(static=True, default="auto")
    corrector_pseudo: bool = eqx.field(static=True, default=False)
    lower_order_final: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        _check_ems(self.ems)
        check_choice("order", self.solver_order, (1, 2, 3))
        _check_flag("predictor_pseudo", self.predictor_pseudo, True)
        _check_flag("use_corrector", self.use_corrector, True)
        _check_flag("corrector_pseudo", self.corrector_pseudo, False)
        _check_flag("lower_order_final", self.lower_order_final, False)

    @property
    def order(self) -> int:
        """The convergence order: ``order``, but 2 where pseudo derivatives enter every step
        (``predictor_pseudo=True`` with order 3, or a pseudo corrector, which is of order 2);
        the ``"auto"`` settings are off on long grids."""
        q = self.solver_order
        if self.predictor_pseudo is True:
            q = min(q, 2)
        if self.use_corrector is True and self.corrector_pseudo:
            q = 2
        return q

    def settings(self, num_steps: int) -> dict:
        """The resolved ``predictor_pseudo`` and ``use_corrector`` on a grid of ``num_steps`` steps."""
        p = num_steps <= 5 if self.predictor_pseudo == "auto" else bool(self.predictor_pseudo)
        c = num_steps <= 6 if self.use_corrector == "auto" else bool(self.use_corrector)
        return {"predictor_pseudo": p, "use_corrector": c}

    def _history_length(self) -> int:
        corrector = self.use_corrector is not False
        return self.solver_order - 1 + int(corrector and self.corrector_pseudo)

    def init(self, model, ts, x, cond):
        path = model.path
        dt = x.dtype
        lam_ts = path.lam(jnp.asarray(ts, dt))
        grid = self.ems.lam.astype(dt)
        tol = 1e-4 * jnp.maximum(1.0, grid[-1] - grid[0])
        bad = (jnp.min(lam_ts) < grid[0] - tol) | (jnp.max(lam_ts) > grid[-1] + tol)
        msg = ("ts must lie inside the EMS range of log-SNR: lam(ts) in [{:.4g}, {:.4g}] is not inside "
               "[{:.4g}, {:.4g}]; calibrate the EMS on an interval that covers the grid (a grid ending at "
               "sigma = 0 never fits: sample with final_x0=True)")
        if not _is_traced(lam_ts, grid):
            lo, hi = float(jnp.min(lam_ts)), float(jnp.max(lam_ts))
            if bool(bad):
                raise ValueError(msg.format(lo, hi, float(grid[0]), float(grid[-1])))
        else:
            zero = eqx.error_if(jnp.zeros((), dt), bad, msg.replace("{:.4g}", "?"))
            x = x + zero
        return DPMSolverV3State(x, jnp.zeros_like(x), empty_history(self._history_length(), x))

    def step(self, model, ts, i, state, cond, key):
        x, x_prev, hist = state
        dt = x.dtype
        path = model.path
        n = grid_steps(ts)
        cfg = self.settings(n)
        order = self.solver_order

        def sched(k):  # (alpha, sigma, lam) at ts[i - k] (index clamped at 0: used only where i >= k)
            t = jnp.asarray(ts[jnp.maximum(i - k, 0)], dt)
            return path.alpha(t), path.sigma(t), path.lam(t)

        t_i = jnp.asarray(ts[i], dt)
        a_i, sig_i, lam_i = sched(0)
        t_next = jnp.asarray(ts[i + 1], dt)
        a_next, lam_next = path.alpha(t_next), path.lam(t_next)
        eps = model.eps(x, t_i, **cond)
        (l_i,) = self.ems.interpolate(lam_i, "l")
        f_i = ((sig_i * eps - l_i * x) / a_i).astype(dt)
        past = [sched(k) for k in range(1, self._history_length() + 1)]  # ts[i-1], ts[i-2], ...

        def p_order(j):
            return effective_order(order, j, n, self.lower_order_final, None)

        if cfg["use_corrector"] and hist.shape[0] > 0:
            cp = int(self.corrector_pseudo)
            a_prev, _, lam_prev = past[0]
            iv_c = _interval(self.ems, lam_prev, a_prev, lam_i, a_i, order + cp - 1, dt)

            def corrector(c):
                def run():
                    # points [s = ts[i-1], t = ts[i], ts[i-2], ...] (the official indexes [-2, -1, -3, ...])
                    lams = [lam_prev, lam_i] + [past[k][2] for k in range(1, c - 1)]
                    fs = [hist[0], f_i] + [hist[k] for k in range(1, c - 1)]
                    return _update(self.ems, iv_c, x_prev, lams, fs, cp == 1)
                return run

            c_order = jnp.where(i > 0, p_order(i - 1) + cp, 0)
            branches = [lambda: x] + [corrector(c) for c in range(2, order + cp + 1)]
            x = jax.lax.switch(jnp.clip(c_order - 1, 0, len(branches) - 1), branches)

        iv_p = _interval(self.ems, lam_i, a_i, lam_next, a_next, order - 1, dt)

        def predictor(q):
            def run():
                lams = [lam_i] + [past[k][2] for k in range(q - 1)]
                fs = [f_i] + [hist[k] for k in range(q - 1)]
                return _update(self.ems, iv_p, x, lams, fs, cfg["predictor_pseudo"])
            return run

        branches = [predictor(q) for q in range(1, order + 1)]
        if len(branches) == 1:
            x_next = branches[0]()
        else:
            x_next = jax.lax.switch(p_order(i) - 1, branches)
        return DPMSolverV3State(x_next, x, push(hist, f_i))


def dpm_solver_v3(ems: EMS, order: int = 3, predictor_pseudo: Union[bool, str] = "auto",
                  use_corrector: Union[bool, str] = "auto", corrector_pseudo: bool = False,
                  lower_order_final: bool = True) -> DPMSolverV3:
    """DPM-Solver-v3 with the empirical model statistics ``ems``; one model call a step.

    Args:
        ems: the :class:`EMS` of the model (:func:`jaxsample.distill.dpm_solver_v3.calibrate`), on
            a ``lam`` range that covers the sampling grid.
        order: 1, 2 or 3 (the official defaults: 3 unconditional, 2 with guidance).
        predictor_pseudo: use divided differences for the predictor's derivatives (the official
            ``p_pseudo``); ``"auto"``: on grids of at most 5 steps (the official EDM example).
        use_corrector: apply the corrector (no extra model call); ``"auto"``: on grids of at most
            6 steps (the official EDM example).
        corrector_pseudo: the official ``c_pseudo``: the corrector uses one more point, with
            divided differences (Stable Diffusion example: True; others: False).
        lower_order_final: the last step first order, the one before at most second order (the
            official ``lower_order_final``, applied at every grid length).

    Raises:
        ValueError: naming the bad argument.

    References:
        Zheng et al., "DPM-Solver-v3: Improved Diffusion ODE Solver with Empirical Model
        Statistics", NeurIPS 2023 (arXiv 2310.13268); code thu-ml/DPM-Solver-v3
        ``dpm_solver_v3.py``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxsample import grids, models, paths, sample
        >>> from jaxsample.solvers.dpm_solver_v3 import EMS, dpm_solver_v3, lambda_grid
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.EDM(), "x0")
        >>> solver = dpm_solver_v3(EMS.degenerate(lambda_grid(model.path, 241)), order=2, use_corrector=True)
        >>> x = sample(model, solver, grids.logsnr_uniform(model.path, 5), jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape, solver.nfe(5), solver.settings(5)
        ((4, 2), 5, {'predictor_pseudo': True, 'use_corrector': True})
    """
    return DPMSolverV3(ems, order, predictor_pseudo, use_corrector, corrector_pseudo, lower_order_final)
