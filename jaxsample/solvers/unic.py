"""UniC as a plug-in corrector: the corrector of UniPC on the steps of any one-call multistep solver.

UniPC's corrector (UniC) needs nothing from the predictor but the point it predicted: at step
``i`` the model is evaluated at the predicted sample ``x~_i`` (the call the predictor needs
anyway for its next step), and that value ``m_i`` corrects ``x~_i`` into

    x_i = (sigma_i / sigma_{i-1}) x_{i-1} - alpha_i (e^{-h} - 1) m_{i-1}
          - alpha_i B(h) [sum_{k<p} rho_k D_k + rho_p (m_i - m_{i-1})],

with ``D_k = (m_{i-1-k} - m_{i-1}) / r_k`` over the data-prediction history and ``rho`` the UniC
coefficients of order ``p`` (:func:`jaxsample.solvers.unipc._unipc_coefficients`). The predictor
then steps from the corrected ``x_i`` with the same model value, so the corrector costs no
model call: ``nfe(n) = n``. It is skipped after the last step, as in UniPC.

This is what wl-zhao/UniPC's ``multistep_uni_pc_bh_update`` does when it is handed any ``x_t``,
and what diffusers' ``UniPCMultistepScheduler(solver_p=...)`` does with another scheduler as
predictor. With the predictor UniP-2 (= DPM-Solver++(2M) for ``bh2``) or DDIM (= UniP-1) it
reduces to :func:`~jaxsample.solvers.unipc` exactly (``tests/test_unic.py``).

Which model value the predictor reuses at the corrected point (evaluated at ``x~_i``, used at
``x_i``): ``reuse='eps'`` (default) keeps the noise prediction, ``'x0'`` the data prediction
``m_i`` (what UniPC itself does), ``'raw'`` the model's own output, which is what diffusers'
``solver_p`` path does (its predictor receives the raw ``model_output`` with the corrected sample).
On a VP Gaussian mixture (``tests/test_unic.py``) keeping eps was the better choice for every
predictor: UniC-3 bh2 lowered the RMSE against the exact solution of DPM-Solver++(3M) by 40-47%
and of DEIS-3 by 40-57% at NFE 5, 6 and 10 (keeping x0: 14-30%); on iPNDM, already the most
accurate there, it raised the error at NFE 5-6 (0.070 -> 0.104) and lowered it only at NFE 10.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxsample.models import Model, convert_prediction
from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers._exponential import (check_below, check_choice, effective_order, empty_history, grid_steps,
                                            interval, past_lam, push)
from jaxsample.solvers.unipc import _unipc_coefficients

__all__ = ["UniCState", "UniC", "unic"]


class UniCState(NamedTuple):
    """State of :class:`UniC`.

    Attributes:
        x: the predicted (not yet corrected) sample at ``ts[i]`` (at ``ts[0]``: the start).
        x_prev: the corrected sample at ``ts[i - 1]``.
        history: data predictions, ``history[j]`` the one for ``ts[i - 1 - j]``.
        inner: the predictor's own state.
    """

    x: jax.Array
    x_prev: jax.Array
    history: jax.Array
    inner: NamedTuple


class _Fixed(eqx.Module):
    """A model function that returns one stored value whatever it is asked."""

    value: jax.Array

    def __call__(self, x, t, **cond):
        return self.value


def _one_call_predictors():
    from jaxsample.solvers.ddim import DDIM
    from jaxsample.solvers.deis import DEIS
    from jaxsample.solvers.dpm_solver import DPMSolverPPMultistep
    from jaxsample.solvers.ipndm import IPNDM
    from jaxsample.solvers.score_norm import DEISSN

    return DDIM, DPMSolverPPMultistep, DEIS, IPNDM, DEISSN


class UniC(AbstractSolver):
    """UniC of order ``solver_order`` (1-3) on the steps of ``predictor`` (see the module doc).

    The predictor must call the model exactly once a step, at its starting point (DDIM,
    DPM-Solver++(2M/3M), DEIS, iPNDM, DEIS-SN): the corrector hands it the value it computed
    there. The corrector's order at the correction after step ``i`` is ``min(solver_order, i + 1)``
    and, with ``lower_order_final``, at most ``num_steps - i`` (UniPC's schedule).
    """

    predictor: AbstractSolver
    solver_order: int = eqx.field(static=True, default=2)
    variant: str = eqx.field(static=True, default="bh2")
    reuse: str = eqx.field(static=True, default="eps")
    lower_order_final: bool = eqx.field(static=True, default=True)
    lower_order_final_below: Optional[int] = eqx.field(static=True, default=None)

    def __check_init__(self):
        allowed = _one_call_predictors()
        if not isinstance(self.predictor, allowed):
            raise ValueError("predictor must be a solver that calls the model once a step at its starting point ("
                             f"{', '.join(c.__name__ for c in allowed)}), got {type(self.predictor).__name__}")
        check_choice("order", self.solver_order, (1, 2, 3))
        check_choice("variant", self.variant, ("bh1", "bh2"))
        check_choice("reuse", self.reuse, ("eps", "x0", "raw"))
        if not isinstance(self.lower_order_final, bool):
            raise ValueError(f"lower_order_final must be a bool, got {self.lower_order_final!r}")
        check_below("lower_order_final_below", self.lower_order_final_below)

    @property
    def order(self) -> int:
        # a corrector of order p + 1 needs a predictor accurate to order p
        return min(self.predictor.order, self.solver_order) + 1

    def nfe(self, num_steps: int) -> int:
        return self.predictor.nfe(num_steps)

    def init(self, model, ts, x, cond):
        return UniCState(x, x, empty_history(self.solver_order, x), self.predictor.init(model, ts, x, cond))

    def _corrected(self, path, ts, i, x_prev, hist, m):
        """``x_prev`` (at ``ts[i - 1]``) stepped to ``ts[i]`` by UniC with the new value ``m``."""
        dt = x_prev.dtype
        j = jnp.maximum(i - 1, 0)  # the step being corrected
        iv = interval(path, ts, j, dt)
        q = effective_order(self.solver_order, j, grid_steps(ts), self.lower_order_final,
                            self.lower_order_final_below)
        q = jnp.where(iv.sig_t == 0, 1, q)

        def branch(q):
            def run():
                rks = [(past_lam(path, ts, j, k, dt) - iv.lam_s) / iv.h for k in range(1, q)]
                _, b_h, _, rhos_c = _unipc_coefficients(iv.h, rks, q, self.variant)
                corr = rhos_c[-1] * (m - hist[0])
                for k, rk in zip(range(1, q), rks):
                    corr = corr + rhos_c[k - 1] * (hist[k] - hist[0]) / rk
                return iv.data_step(x_prev, hist[0]) - (iv.a_t * b_h) * corr
            return run

        return jax.lax.switch(q - 1, [branch(k) for k in range(1, self.solver_order + 1)])

    def step(self, model, ts, i, state, cond, key):
        x_pred, x_prev, hist, inner = state
        path = model.path
        s = jnp.asarray(ts[i], x_pred.dtype)
        raw = model(x_pred, s, **cond)
        m = convert_prediction(path, raw, x_pred, s, model.prediction, "x0")
        x = jax.lax.cond(i == 0, lambda: x_pred, lambda: self._corrected(path, ts, i, x_prev, hist, m))
        if self.reuse == "raw":
            fixed = Model(_Fixed(raw), path, model.prediction)
        else:
            value = m if self.reuse == "x0" else convert_prediction(path, raw, x_pred, s, model.prediction, "eps")
            fixed = Model(_Fixed(value), path, self.reuse)
        inner = self.predictor.step(fixed, ts, i, inner._replace(x=x), cond, key)
        return UniCState(inner.x, x, push(hist, m), inner)


def unic(predictor: AbstractSolver, order: Optional[int] = None, variant: str = "bh2", *, reuse: str = "eps",
         lower_order_final: bool = True, lower_order_final_below: Optional[int] = None) -> UniC:
    """UniC (UniPC's corrector) plugged into ``predictor``: one order more, no extra model call.

    Args:
        predictor: a solver that calls the model once a step at its starting point: :func:`ddim`,
            :func:`dpm_solver_pp_2m`, :func:`dpm_solver_pp_3m`, :func:`deis`, :func:`ipndm` or a
            DEIS-SN solver.
        order: the corrector's order p (1, 2 or 3; its accuracy is p + 1). Default: the
            predictor's order, capped at 3.
        variant: ``'bh2'`` (B(h) = e^h - 1, diffusers' default) or ``'bh1'`` (B(h) = h).
        reuse: which model value the predictor takes at the corrected point: ``'eps'`` (default,
            the noise prediction), ``'x0'`` (the data prediction, as UniPC) or ``'raw'`` (the
            model's own output, as diffusers' ``solver_p``).
        lower_order_final, lower_order_final_below: UniPC's order schedule for the corrector.

    Raises:
        ValueError: naming the bad argument.

    References:
        Zhao et al., "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
        Models", NeurIPS 2023 (arXiv 2302.04867), section 3.1 (UniC with any solver); code
        wl-zhao/UniPC ``multistep_uni_pc_bh_update``; diffusers ``UniPCMultistepScheduler(solver_p=)``.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample, solvers
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.VPLinear(), "eps")
        >>> solver = solvers.unic(solvers.ipndm(), variant="bh1")
        >>> x = sample(model, solver, grids.logsnr_uniform(model.path, 6), jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape, solver.nfe(6), solver.solver_order
        ((4, 2), 6, 3)
    """
    if not isinstance(predictor, AbstractSolver):
        raise ValueError(f"predictor must be a jaxsample solver, got {type(predictor).__name__}")
    if order is None:
        order = min(int(predictor.order), 3)
    return UniC(predictor, order, variant, reuse, lower_order_final, lower_order_final_below)
