"""Shared pieces of the exponential integrators: DDIM (:mod:`jaxsample.solvers.ddim`),
DPM-Solver and DPM-Solver++ (:mod:`jaxsample.solvers.dpm_solver`), UniPC
(:mod:`jaxsample.solvers.unipc`), DEIS (:mod:`jaxsample.solvers.deis`) and iPNDM
(:mod:`jaxsample.solvers.ipndm`).

All of them integrate the linear part of the ODE exactly and approximate only the
model term. In half log-SNR ``lam = log(alpha / sigma)`` with ``h = lam_t - lam_s``
(``h > 0``: sampling runs towards more signal), the exact solution is

- data-prediction form:  ``x_t = (sigma_t / sigma_s) x_s + sigma_t int_{lam_s}^{lam_t} e^{l} x0(l) dl``,
- noise-prediction form: ``x_t = (alpha_t / alpha_s) x_s - alpha_t int_{lam_s}^{lam_t} e^{-l} eps(l) dl``.

The solvers only use ``path.alpha``, ``path.sigma``, ``path.lam`` and
``path.t_from_lam``, and consume ``model.x0`` or ``model.eps``, so they work with
every path and every prediction type. The noise-prediction forms (DPM-Solver,
iPNDM) divide by ``alpha`` and so cannot start where ``alpha = 0`` (rectified flow
at ``t = 1``); start such grids slightly below ``t = 1`` or use a data-prediction
solver (DDIM, DPM-Solver++, UniPC).

Coefficients are computed in the dtype of ``x`` (float64 when x64 is enabled) with
``expm1`` forms.

This module holds what the methods share: the schedule terms of a step
(:func:`interval`), the first-order updates in data- and noise-prediction form
(:func:`data_update`, :func:`noise_update`), the history buffer of the multistep methods
(:class:`MultistepState`, :func:`push`, :func:`combine`) and their order schedule
(warm-up and ``lower_order_final``: :func:`effective_order`, :func:`step_orders`).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.models import expand_to


class MultistepState(NamedTuple):
    """State of a multistep solver.

    Attributes:
        x: the current sample at ``ts[i]``.
        history: model outputs at earlier times, shape ``(k, *x.shape)``;
            ``history[j]`` belongs to ``ts[i - 1 - j]`` (zeros until filled).
    """

    x: jax.Array
    history: jax.Array


# --------------------------------------------------------------------------- settings


def check_choice(name: str, value, allowed):
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return value


def check_below(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be None or a positive integer, got {value!r}")
    return int(value)


def check_lower_order_final(solver) -> None:
    """Validate a multistep solver's ``lower_order_final`` (a bool) and ``lower_order_final_below``."""
    if not isinstance(solver.lower_order_final, bool):
        raise ValueError(f"lower_order_final must be a bool, got {solver.lower_order_final!r}")
    check_below("lower_order_final_below", solver.lower_order_final_below)


# --------------------------------------------------------------------------- schedule terms


def sched(path, t, dtype, exact_lam=True):
    """(alpha, sigma, lam) at time ``t``, in ``dtype`` (``None``: ``t``'s own).

    ``lam`` is ``+inf`` where ``sigma = 0`` (e.g. rectified flow at ``t = 0``; paths clip
    their own lam there), so that the data-prediction updates land exactly on
    ``alpha_t x0`` (``expm1(-inf) = -1``). ``exact_lam=False`` keeps the path's (clipped,
    finite) lam, for the noise-prediction forms.
    """
    if dtype is not None:
        t = jnp.asarray(t, dtype)
    a, s = path.alpha(t), path.sigma(t)
    lam = path.lam(t)
    return a, s, (jnp.where(s == 0, jnp.inf, lam) if exact_lam else lam)


def grid_steps(ts) -> int:
    """The number of steps of grid ``ts``."""
    return int(ts.shape[0]) - 1


def past_lam(path, ts, i, k, dtype):
    """lam at ``ts[i - k]`` (index clamped at 0: only used where ``i >= k``)."""
    return path.lam(jnp.asarray(ts[jnp.maximum(i - k, 0)], dtype))


def sigma_expm1_h(a_s, sig_s, a_t, sig_t, h):
    """``sigma_t (e^h - 1)``, the noise-form coefficient, with its limit
    ``alpha_t sigma_s / alpha_s`` where ``sigma_t = 0``."""
    return jnp.where(sig_t == 0, a_t * sig_s / a_s, sig_t * jnp.expm1(h))


# --------------------------------------------------------------------------- first-order updates


def data_coefficients(sig_s, sig_t, a_t, h, x_scale=None):
    """``(c_x, c_0)`` of the first-order data-prediction step ``x_t = c_x x - c_0 x0``:
    ``c_x = sigma_t / sigma_s`` (times ``x_scale`` if given), ``c_0 = alpha_t (e^{-h} - 1)``."""
    c_x = sig_t / sig_s
    if x_scale is not None:
        c_x = c_x * x_scale
    return c_x, a_t * jnp.expm1(-h)


def data_update(x, x0, sig_s, sig_t, a_t, h, x_scale=None):
    """First-order data-prediction step (DDIM): ``(sigma_t/sigma_s) x - alpha_t (e^{-h} - 1) x0``.

    The schedule terms may be scalars or per-sample arrays (shape ``(batch,)``). The
    stochastic variants keep a fraction of ``x``: DDIM-eta steps to ``k sigma_t`` (pass
    ``sig_t = k sigma_t``, ``h = h - log k``), DPM-Solver++(2M) SDE scales ``x`` by
    ``x_scale = e^{-eta h}`` (with ``h = (1 + eta) h``).
    """
    c_x, c_0 = data_coefficients(sig_s, sig_t, a_t, h, x_scale)
    return expand_to(c_x, x) * x - expand_to(c_0, x) * x0


def noise_update(x, eps, a_s, sig_s, a_t, sig_t, h):
    """First-order noise-prediction step: (alpha_t/alpha_s) x - sigma_t (e^{h} - 1) eps."""
    return (a_t / a_s) * x - sigma_expm1_h(a_s, sig_s, a_t, sig_t, h) * eps


class Interval(NamedTuple):
    """The schedule terms of one step from ``s = ts[i]`` to ``t = ts[i + 1]`` (see :func:`interval`)."""

    s: jax.Array
    t: jax.Array
    a_s: jax.Array
    sig_s: jax.Array
    lam_s: jax.Array
    a_t: jax.Array
    sig_t: jax.Array
    lam_t: jax.Array
    h: jax.Array

    def data_step(self, x, x0):
        """The first-order data-prediction step over the whole interval."""
        return data_update(x, x0, self.sig_s, self.sig_t, self.a_t, self.h)

    def noise_step(self, x, eps):
        """The first-order noise-prediction step over the whole interval."""
        return noise_update(x, eps, self.a_s, self.sig_s, self.a_t, self.sig_t, self.h)


def interval(path, ts, i, dtype, exact_lam=True) -> Interval:
    """The step prologue: times ``ts[i]``, ``ts[i + 1]`` in ``dtype``, their (alpha, sigma, lam)
    from :func:`sched` and ``h = lam_t - lam_s``."""
    s, t = jnp.asarray(ts[i], dtype), jnp.asarray(ts[i + 1], dtype)
    a_s, sig_s, lam_s = sched(path, s, dtype, exact_lam)
    a_t, sig_t, lam_t = sched(path, t, dtype, exact_lam)
    return Interval(s, t, a_s, sig_s, lam_s, a_t, sig_t, lam_t, lam_t - lam_s)


# --------------------------------------------------------------------------- multistep history and orders


def empty_history(k: int, x):
    """A history buffer of ``k`` zero entries shaped like ``x``."""
    return jnp.zeros((k,) + x.shape, x.dtype)


def push(history, m):
    """New history with ``m`` in front, dropping the oldest entry."""
    if history.shape[0] == 0:
        return history
    return jnp.concatenate([m[None], history[:-1]], axis=0)


def combine(weights, m, history):
    """``weights[0] m + sum_j weights[j + 1] history[j]``."""
    return jnp.tensordot(weights, jnp.concatenate([m[None], history], axis=0), axes=1)


def _orders(xp, order, i, num_steps, lower_order_final, lower_order_final_below):
    q = xp.minimum(order, i + 1)
    if lower_order_final and (lower_order_final_below is None or num_steps < lower_order_final_below):
        q = xp.minimum(q, num_steps - i)
    return q


def effective_order(order: int, i, num_steps: int, lower_order_final: bool,
                    lower_order_final_below: Optional[int]):
    """Order used at step ``i`` of a multistep method: warm-up ``min(order, i + 1)``,
    and with ``lower_order_final`` also at most ``num_steps - i`` (so the last step is
    first order), applied only when ``num_steps < lower_order_final_below``
    (``None``: always)."""
    return _orders(jnp, order, i, num_steps, lower_order_final, lower_order_final_below)


def step_orders(order: int, num_steps: int, lower_order_final: bool = False,
                lower_order_final_below: Optional[int] = None) -> np.ndarray:
    """The number of eps values used at each step: warm-up ``min(order, i + 1)``, and with
    ``lower_order_final`` at most ``num_steps - i`` (when ``num_steps < lower_order_final_below``)."""
    return _orders(np, order, np.arange(num_steps), num_steps, lower_order_final, lower_order_final_below)


def select_branch(index, branches):
    """``branches[index]()`` computed as a select over every branch's value, not a ``lax.switch``.

    For cheap branches without model calls (the coefficient variants of a multistep update): an
    XLA conditional inside the sampling scan costs a device-to-host copy of its predicate at every
    step on a GPU (DPM-Solver++(2M) in ``jax.jit`` ran 24% above the hand-written loop at batch
    4096 on an H200 with ``lax.switch``; ``bench/hand_written.py``). Every branch must be finite
    wherever it is computed, also where it is not selected (gradients pass through the select).
    """
    values = [b() for b in branches]
    out = values[0]
    for k, v in enumerate(values[1:], start=1):
        out = jax.tree_util.tree_map(lambda a, b, k=k: jnp.where(index == k, a, b), v, out)
    return out


def multistep_order(solver, ts, i, sig_t):
    """:func:`effective_order` of ``solver`` (its ``solver_order``, ``lower_order_final`` and
    ``lower_order_final_below``) at step ``i``; 1 where ``sigma_t = 0`` (``h = inf``: only the
    first-order update is defined)."""
    q = effective_order(solver.solver_order, i, grid_steps(ts), solver.lower_order_final,
                        solver.lower_order_final_below)
    return jnp.where(sig_t == 0, 1, q)
