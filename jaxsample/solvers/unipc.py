"""UniPC: the unified predictor (UniP) and corrector (UniC), multistep, data prediction.

The exponential-integrator forms it builds on are described in
:mod:`jaxsample.solvers._exponential`.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers._exponential import (check_below, check_choice, empty_history, grid_steps, interval,
                                            multistep_order, past_lam, push, select_branch)

__all__ = ["UniPCState", "UniPC", "unipc"]


class UniPCState(NamedTuple):
    """State of UniPC.

    Attributes:
        x: the current (corrected) sample at ``ts[i]``.
        history: data predictions, shape ``(order, *x.shape)``: ``history[0]`` is the model
            value for ``ts[i]`` (taken at the predicted point, unset before the first step),
            ``history[j]`` the one for ``ts[i - j]``.
    """

    x: jax.Array
    history: jax.Array


def _unipc_coefficients(h, rks, q: int, variant: str):
    """(h_phi_1, B_h, rhos_p, rhos_c) of ``multistep_uni_pc_bh_update`` for order ``q``.

    ``rks``: list of the q - 1 ratios ``(lam_{i-k} - lam_i) / h``.
    """
    hh = -h  # data prediction
    h_phi_1 = jnp.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1.0
    b_h = hh if variant == "bh1" else jnp.expm1(hh)
    r = list(rks) + [jnp.ones_like(h)]
    rows, b = [], []
    factorial_i = 1
    for k in range(1, q + 1):
        rows.append(jnp.stack([rk ** (k - 1) for rk in r]))
        b.append(h_phi_k * factorial_i / b_h)
        factorial_i *= k + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial_i
    big_r = jnp.stack(rows)
    b = jnp.stack(b)
    if q == 1:
        rhos_p = None
        rhos_c = jnp.full((1,), 0.5, h.dtype)
    else:
        rhos_p = jnp.full((1,), 0.5, h.dtype) if q == 2 else jnp.linalg.solve(big_r[:-1, :-1], b[:-1])
        rhos_c = jnp.linalg.solve(big_r, b)
    return h_phi_1, b_h, rhos_p, rhos_c


class UniPC(AbstractSolver):
    """Multistep UniPC with B(h) = h (``bh1``) or e^h - 1 (``bh2``), data prediction.

    Each step: predictor UniP-q gives ``x_pred`` at ``ts[i+1]``; the model is evaluated
    there once; the corrector UniC-q combines that value with the history into the new
    sample, and the same value becomes the history entry for ``ts[i+1]``. So the model is
    called once per step (the first step also evaluates the initial point; the last step
    skips the corrector and its model call): ``nfe(n) = n``.
    The order used at step ``i`` is ``q = min(order, i + 1)`` and, with
    ``lower_order_final``, at most ``num_steps - i``.
    """

    solver_order: int = eqx.field(static=True, default=2)
    variant: str = eqx.field(static=True, default="bh2")
    lower_order_final: bool = eqx.field(static=True, default=True)
    lower_order_final_below: Optional[int] = eqx.field(static=True, default=None)
    corrector: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_choice("order", self.solver_order, (1, 2, 3))
        check_choice("variant", self.variant, ("bh1", "bh2"))
        if not isinstance(self.lower_order_final, bool):
            raise ValueError(f"lower_order_final must be a bool, got {self.lower_order_final!r}")
        if not isinstance(self.corrector, bool):
            raise ValueError(f"corrector must be a bool, got {self.corrector!r}")
        check_below("lower_order_final_below", self.lower_order_final_below)

    @property
    def order(self) -> int:
        # UniC raises the predictor's order by one.
        return self.solver_order + 1 if self.corrector else self.solver_order

    def init(self, model, ts, x, cond):
        return UniPCState(x, empty_history(self.solver_order, x))

    def step(self, model, ts, i, state, cond, key):
        x, hist = state
        dt = x.dtype
        path = model.path
        n = grid_steps(ts)
        iv = interval(path, ts, i, dt)
        a_t, h = iv.a_t, iv.h
        m0 = jax.lax.cond(i == 0, lambda: model.x0(x, iv.s, **cond), lambda: hist[0])
        x_lin = iv.data_step(x, m0)

        # h = inf on a step to sigma = 0 (only order 1 selected) and repeated times in the warm-up:
        # the higher-order branches are computed too (select_branch), so they get finite stand-ins.
        h_hi = jnp.where(jnp.isfinite(h), h, jnp.ones_like(h))

        def branch(q):
            def run():
                hq = h if q == 1 else h_hi
                rks = [jnp.where(i >= k, (past_lam(path, ts, i, k, dt) - iv.lam_s) / hq, -float(k))
                       for k in range(1, q)]  # warm-up: not selected, kept finite and distinct
                d1s = [(hist[k] - m0) / rk for k, rk in zip(range(1, q), rks)]
                _, b_h, rhos_p, rhos_c = _unipc_coefficients(hq, rks, q, self.variant)
                x_pred = x_lin
                if rhos_p is not None:
                    x_pred = x_lin - (a_t * b_h) * sum(rhos_p[k] * d for k, d in enumerate(d1s))
                corr = sum((rhos_c[k] * d for k, d in enumerate(d1s)), jnp.zeros_like(x))
                return x_pred, x_lin - (a_t * b_h) * corr, a_t * b_h * rhos_c[-1]
            return run

        branches = [branch(q) for q in range(1, self.solver_order + 1)]
        x_pred, x_corr_base, c_last = select_branch(multistep_order(self, ts, i, iv.sig_t) - 1, branches)

        def corrected():
            m_new = model.x0(x_pred, iv.t, **cond)
            x_new = x_corr_base - c_last * (m_new - m0) if self.corrector else x_pred
            return x_new, m_new

        def last():
            return x_pred, jnp.zeros_like(x)

        x_new, m_new = jax.lax.cond(i == n - 1, last, corrected)
        return UniPCState(x_new, push(hist.at[0].set(m0), m_new))


def unipc(order: int = 2, variant: str = "bh2", lower_order_final: bool = True,
          lower_order_final_below: Optional[int] = None, corrector: bool = True) -> UniPC:
    """UniPC (predictor UniP-``order`` + corrector UniC), data prediction, one model call a step.

    The corrector reuses the model value at the predicted point (no extra model call) and
    is skipped on the last step; it raises the order of accuracy by one, so ``.order`` is
    ``order + 1`` (``order`` without the corrector).

    Args:
        order: predictor order, 1, 2 or 3 (UniPC-2 and UniPC-3 are the usual choices).
        variant: ``'bh1'`` (B(h) = h, better for unconditional sampling with few steps) or
            ``'bh2'`` (B(h) = e^h - 1, the diffusers default).
        lower_order_final: lower orders on the last steps (step ``i`` at most ``num_steps - i``),
            as wl-zhao/UniPC and diffusers do by default.
        lower_order_final_below: apply ``lower_order_final`` only to grids with fewer steps
            than this; ``None`` (default, as in wl-zhao/UniPC and diffusers): always.
        corrector: apply UniC (default True); False gives the bare UniP predictor.

    Raises:
        ValueError: naming the bad argument.

    References:
        Zhao et al., "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
        Diffusion Models", NeurIPS 2023 (arXiv 2302.04867); code wl-zhao/UniPC
        ``multistep_uni_pc_bh_update``; diffusers ``UniPCMultistepScheduler``.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample, solvers
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.VPLinear(), "eps")
        >>> solver = solvers.unipc(3, variant="bh1")
        >>> x = sample(model, solver, grids.logsnr_uniform(model.path, 6), jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape, solver.nfe(6)
        ((4, 2), 6)
    """
    return UniPC(order, variant, lower_order_final, lower_order_final_below, corrector)
