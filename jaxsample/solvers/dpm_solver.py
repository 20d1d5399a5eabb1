"""DPM-Solver (noise prediction, singlestep) and DPM-Solver++ (data prediction: singlestep 2S,
multistep 2M / 3M, and the 2M SDE).

The exponential-integrator forms these build on are described in
:mod:`jaxsample.solvers._exponential`.

Example:
    >>> import jax
    >>> from jaxsample import grids, models, paths, sample, solvers
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    >>> model = gmm.model(paths.VPLinear(), "eps")
    >>> ts = grids.logsnr_uniform(model.path, 10)
    >>> noise = jax.random.normal(jax.random.key(1), (8, 4))
    >>> x = sample(model, solvers.dpm_solver_pp_2m(), ts, noise)
    >>> x.shape, solvers.dpm_solver_pp_2m().nfe(10)
    ((8, 4), 10)
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxsample.models import expand_to
from jaxsample.solvers._base import AbstractSolver, SimpleState, per_sample_normal
from jaxsample.solvers._exponential import (MultistepState, check_choice, check_lower_order_final,
                                            data_update, effective_order, empty_history, interval,
                                            multistep_order, noise_update, past_lam, push, sched,
                                            select_branch, sigma_expm1_h)
from jaxsample.solvers.stochastic import _check_number

__all__ = [
    "MultistepState",
    "DPMSolver",
    "DPMSolverPP2S",
    "DPMSolverPPMultistep",
    "DPMSolverPP2MSDE",
    "DPMSolverPP2MSDEState",
    "dpm_solver",
    "dpm_solver_pp_2s",
    "dpm_solver_pp_2m",
    "dpm_solver_pp_3m",
    "dpm_solver_pp_2m_sde",
    "effective_order",
]


# --------------------------------------------------------------------------- DPM-Solver (noise)


class DPMSolver(AbstractSolver):
    """Singlestep DPM-Solver-k in noise-prediction form (k = 1, 2, 3), k model calls a step.

    Intermediate times are placed in lam: ``r1 = 0.5`` for k = 2, ``r1 = 1/3, r2 = 2/3``
    for k = 3 (the ``solver_type='dpmsolver'`` updates of LuChengTHU/dpm-solver).
    """

    solver_order: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        check_choice("order", self.solver_order, (1, 2, 3))

    @property
    def order(self) -> int:
        return self.solver_order

    def nfe(self, num_steps: int) -> int:
        return self.solver_order * num_steps

    def step(self, model, ts, i, state, cond, key):
        x = state.x
        dt = x.dtype
        path = model.path
        iv = interval(path, ts, i, dt, exact_lam=False)
        a_s, sig_s, lam_s, h = iv.a_s, iv.sig_s, iv.lam_s, iv.h
        eps_s = model.eps(x, iv.s, **cond)
        x_1 = iv.noise_step(x, eps_s)  # the first-order update
        k = self.solver_order
        if k == 1:
            return SimpleState(x_1)
        c_1 = sigma_expm1_h(a_s, sig_s, iv.a_t, iv.sig_t, h)  # sigma_t phi_1
        if k == 2:
            r1 = 0.5
            s1 = path.t_from_lam(lam_s + r1 * h).astype(dt)
            a_1, sig_1, _ = sched(path, s1, dt)
            eps_1 = model.eps(noise_update(x, eps_s, a_s, sig_s, a_1, sig_1, r1 * h), s1, **cond)
            return SimpleState(x_1 - (0.5 / r1) * c_1 * (eps_1 - eps_s))
        r1, r2 = 1.0 / 3.0, 2.0 / 3.0
        s1 = path.t_from_lam(lam_s + r1 * h).astype(dt)
        s2 = path.t_from_lam(lam_s + r2 * h).astype(dt)
        a_1, sig_1, _ = sched(path, s1, dt)
        a_2, sig_2, _ = sched(path, s2, dt)
        phi_22 = jnp.expm1(r2 * h) / (r2 * h) - 1.0
        c_2 = c_1 / h - iv.sig_t  # sigma_t phi_2
        eps_1 = model.eps(noise_update(x, eps_s, a_s, sig_s, a_1, sig_1, r1 * h), s1, **cond)
        x_s2 = noise_update(x, eps_s, a_s, sig_s, a_2, sig_2, r2 * h) - (r2 / r1) * (sig_2 * phi_22) * (eps_1 - eps_s)
        eps_2 = model.eps(x_s2, s2, **cond)
        return SimpleState(x_1 - (1.0 / r2) * c_2 * (eps_2 - eps_s))


def dpm_solver(order: int = 3) -> DPMSolver:
    """Singlestep DPM-Solver (noise prediction) of order 1, 2 or 3; ``order`` model calls a step.

    Args:
        order: 1 (= DDIM), 2 (DPM-Solver-2, r1 = 1/2) or 3 (DPM-Solver-3, r1 = 1/3, r2 = 2/3).

    Raises:
        ValueError: if ``order`` is not 1, 2 or 3.

    References:
        Lu et al., "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling in
        Around 10 Steps", NeurIPS 2022 (arXiv 2206.00927); code LuChengTHU/dpm-solver
        ``singlestep_dpm_solver_{second,third}_update`` with ``solver_type='dpmsolver'``.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample, solvers
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.VPLinear(), "eps")
        >>> solver = solvers.dpm_solver(3)
        >>> x = sample(model, solver, grids.logsnr_uniform(model.path, 4), jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape, solver.nfe(4)
        ((4, 2), 12)
    """
    return DPMSolver(order)



# --------------------------------------------------------------------------- DPM-Solver++ 2S


class DPMSolverPP2S(AbstractSolver):
    """Singlestep DPM-Solver++(2S), data prediction, intermediate point at ``lam_s + r1 h``."""

    r1: float = eqx.field(static=True, default=0.5)

    def __check_init__(self):
        if not (isinstance(self.r1, (float, int)) and 0.0 < float(self.r1) <= 1.0):
            raise ValueError(f"r1 must lie in (0, 1], got {self.r1!r}")

    @property
    def order(self) -> int:
        return 2

    def nfe(self, num_steps: int) -> int:
        return 2 * num_steps

    def step(self, model, ts, i, state, cond, key):
        x = state.x
        dt = x.dtype
        path = model.path
        iv = interval(path, ts, i, dt)
        h = iv.h
        r1 = float(self.r1)
        s1 = path.t_from_lam(iv.lam_s + r1 * h).astype(dt)
        a_1, sig_1, _ = sched(path, s1, dt)
        x0_s = model.x0(x, iv.s, **cond)
        x0_1 = model.x0(data_update(x, x0_s, iv.sig_s, sig_1, a_1, r1 * h), s1, **cond)
        return SimpleState(iv.data_step(x, x0_s) - (0.5 / r1) * (iv.a_t * jnp.expm1(-h)) * (x0_1 - x0_s))


def dpm_solver_pp_2s(r1: float = 0.5) -> DPMSolverPP2S:
    """DPM-Solver++(2S): singlestep, second order, data prediction, two model calls a step.

    Args:
        r1: position of the intermediate point in lam, as a fraction of the step (0, 1].

    Raises:
        ValueError: if ``r1`` is outside (0, 1].

    References:
        Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
        Models", 2022 (arXiv 2211.01095); code LuChengTHU/dpm-solver
        ``singlestep_dpm_solver_second_update`` (``predict_x0``, ``solver_type='dpmsolver'``).

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample, solvers
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.EDM(), "x0")
        >>> solver = solvers.dpm_solver_pp_2s()
        >>> x = sample(model, solver, grids.edm(model.path, 5), jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape, solver.nfe(5)
        ((4, 2), 10)
    """
    return DPMSolverPP2S(r1)



# --------------------------------------------------------------------------- DPM-Solver++ multistep


class DPMSolverPPMultistep(AbstractSolver):
    """Multistep DPM-Solver++(2M) / (3M), data prediction, one model call a step.

    Step ``i`` uses order ``min(order, i + 1)`` (warm-up); with ``lower_order_final``
    also at most ``num_steps - i`` when ``num_steps < lower_order_final_below``.
    """

    solver_order: int = eqx.field(static=True, default=2)
    lower_order_final: bool = eqx.field(static=True, default=True)
    lower_order_final_below: Optional[int] = eqx.field(static=True, default=10)

    def __check_init__(self):
        check_choice("order", self.solver_order, (1, 2, 3))
        check_lower_order_final(self)

    @property
    def order(self) -> int:
        return self.solver_order

    def init(self, model, ts, x, cond):
        return MultistepState(x, empty_history(self.solver_order - 1, x))

    def step(self, model, ts, i, state, cond, key):
        x, hist = state
        dt = x.dtype
        path = model.path
        iv = interval(path, ts, i, dt)
        a_t, lam_s, h = iv.a_t, iv.lam_s, iv.h
        m0 = model.x0(x, iv.s, **cond)
        phi_1 = jnp.expm1(-h)
        base = iv.data_step(x, m0)
        # h = inf on a step to sigma = 0 and repeated times during the warm-up, where only the
        # lower-order update is selected: the other branches are still computed (select_branch), so
        # they use finite stand-ins there.
        h = jnp.where(jnp.isfinite(h), h, jnp.ones_like(h))

        def first():
            return base

        def second():
            r0 = (lam_s - past_lam(path, ts, i, 1, dt)) / h
            r0 = jnp.where(i >= 1, r0, 1.0)  # warm-up: not selected, kept finite (see above)
            d1 = (m0 - hist[0]) / r0
            return base - 0.5 * (a_t * phi_1) * d1

        def third():
            lam_1, lam_2 = past_lam(path, ts, i, 1, dt), past_lam(path, ts, i, 2, dt)
            r0, r1 = (lam_s - lam_1) / h, (lam_1 - lam_2) / h
            r0, r1 = jnp.where(i >= 1, r0, 1.0), jnp.where(i >= 2, r1, 1.0)
            d1_0 = (m0 - hist[0]) / r0
            d1_1 = (hist[0] - hist[1]) / r1
            d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_2 = phi_1 / h + 1.0
            phi_3 = phi_2 / h - 0.5
            return base + (a_t * phi_2) * d1 - (a_t * phi_3) * d2

        branches = [first, second, third][: self.solver_order]
        if len(branches) == 1:
            x_t = first()
        else:
            x_t = select_branch(multistep_order(self, ts, i, iv.sig_t) - 1, branches)
        return MultistepState(x_t, push(hist, m0))


def dpm_solver_pp_2m(lower_order_final: bool = True, lower_order_final_below: Optional[int] = 10
                     ) -> DPMSolverPPMultistep:
    """DPM-Solver++(2M): multistep, second order, data prediction, one model call a step.

    The first step is first order (warm-up). By default, as in LuChengTHU/dpm-solver,
    grids of fewer than 10 steps take a first-order last step (``lower_order_final``).

    Args:
        lower_order_final: use lower orders on the last steps (the last step first order,
            the one before at most second order), which stabilises very short grids.
        lower_order_final_below: apply ``lower_order_final`` only to grids with fewer
            steps than this (dpm-solver: 10, the default; diffusers: 15); ``None``: always.

    Raises:
        ValueError: on a non-bool ``lower_order_final`` or a non-positive ``lower_order_final_below``.

    References:
        Lu et al., "DPM-Solver++", 2022 (arXiv 2211.01095); code LuChengTHU/dpm-solver
        ``multistep_dpm_solver_second_update`` (``predict_x0``, ``solver_type='dpmsolver'``),
        diffusers ``DPMSolverMultistepScheduler`` (``solver_type='midpoint'``).

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample, solvers
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.VPCosine(), "v")
        >>> solver = solvers.dpm_solver_pp_2m()
        >>> x = sample(model, solver, grids.logsnr_uniform(model.path, 8), jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape, solver.nfe(8)
        ((4, 2), 8)
    """
    return DPMSolverPPMultistep(2, lower_order_final, lower_order_final_below)


def dpm_solver_pp_3m(lower_order_final: bool = True, lower_order_final_below: Optional[int] = 10
                     ) -> DPMSolverPPMultistep:
    """DPM-Solver++(3M): multistep, third order, data prediction, one model call a step.

    The first two steps use orders 1 and 2 (warm-up). By default, as in
    LuChengTHU/dpm-solver, grids of fewer than 10 steps take their last two steps at
    orders 2 and 1 (``lower_order_final``).

    Args:
        lower_order_final: use lower orders on the last steps (the last step first order,
            the one before at most second order), which stabilises very short grids.
        lower_order_final_below: apply ``lower_order_final`` only to grids with fewer
            steps than this (dpm-solver: 10, the default; diffusers: 15); ``None``: always.

    Raises:
        ValueError: on a non-bool ``lower_order_final`` or a non-positive ``lower_order_final_below``.

    References:
        Lu et al., "DPM-Solver++", 2022 (arXiv 2211.01095); code LuChengTHU/dpm-solver
        ``multistep_dpm_solver_third_update`` (``predict_x0``), diffusers
        ``DPMSolverMultistepScheduler(solver_order=3)``.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample, solvers
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.RectifiedFlow(), "velocity")
        >>> solver = solvers.dpm_solver_pp_3m()
        >>> x = sample(model, solver, grids.uniform(model.path, 8), jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape, solver.nfe(8)
        ((4, 2), 8)
    """
    return DPMSolverPPMultistep(3, lower_order_final, lower_order_final_below)


# --------------------------------------------------------------------------- DPM-Solver++(2M) SDE


class DPMSolverPP2MSDEState(NamedTuple):
    """State of :class:`DPMSolverPP2MSDE`: the sample and the previous data prediction."""

    x: jax.Array
    x0_prev: jax.Array


class DPMSolverPP2MSDE(AbstractSolver):
    """DPM-Solver++(2M) SDE (k-diffusion ``sample_dpmpp_2m_sde``), on any path.

    With data predictions ``D_i = x0(x_i, t_i)``, ``h = lam_{i+1} - lam_i``,
    ``hh = (1 + eta) h``, ``r = h_{i-1} / h``::

        x_{i+1} = (sigma_{i+1}/sigma_i) e^{-eta h} x_i + alpha_{i+1} (1 - e^{-hh}) D_i
                  + alpha_{i+1} c (D_i - D_{i-1}) / r
                  + sigma_{i+1} sqrt(1 - e^{-2 eta h}) s_noise z

    with ``c = (1 - e^{-hh}) / 2`` ('midpoint') or ``c = 1 + (e^{-hh} - 1)/hh`` ('heun'),
    and no ``D_{i-1}`` term at the first step. A step to ``sigma = 0`` returns
    ``alpha D_i`` (k-diffusion's denoising step). On the EDM path (``alpha = 1``) this is
    k-diffusion's sampler; on VP paths it is diffusers' ``DPMSolverMultistepScheduler``
    with ``algorithm_type='sde-dpmsolver++'`` (there ``eta = 1``). ``eta = 0`` is the
    deterministic DPM-Solver++(2M) (midpoint variant). One model call a step.
    Nominal weak order 1 for ``eta > 0`` (its first-order part is the exact-noise
    exponential SDE integrator; on Gaussian data the measured order is about 2);
    order 2 for ``eta = 0``.
    """

    eta: float = eqx.field(static=True, default=1.0)
    solver_type: str = eqx.field(static=True, default="midpoint")
    s_noise: float = eqx.field(static=True, default=1.0)

    is_stochastic: ClassVar[bool] = True

    def __check_init__(self):
        _check_number("eta", self.eta, low=0.0)
        _check_number("s_noise", self.s_noise, low=0.0)
        if self.solver_type not in ("midpoint", "heun"):
            raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {self.solver_type!r}")

    @property
    def order(self) -> int:
        return 2 if self.eta == 0.0 else 1

    def init(self, model, ts, x, cond):
        return DPMSolverPP2MSDEState(x, jnp.zeros_like(x))

    def step(self, model, ts, i, state, cond, key):
        path, x = model.path, state.x
        t, t_next = ts[i], ts[i + 1]
        x0 = model.x0(x, t, **cond)
        lam, lam_next = path.lam(t), path.lam(t_next)
        h = lam_next - lam
        eta_h = self.eta * h
        hh = h + eta_h
        alpha_next, sigma, sigma_next = path.alpha(t_next), path.sigma(t), path.sigma(t_next)
        phi = -jnp.expm1(-hh)  # 1 - e^{-hh}
        # the first-order part: DDIM with x scaled by e^{-eta h} and h -> (1 + eta) h
        x_new = data_update(x, x0, sigma, sigma_next, alpha_next, hh, x_scale=jnp.exp(-eta_h))
        # Second-order multistep correction (not at the first step).
        h_last = lam - past_lam(path, ts, i, 1, None)
        inv_r = jnp.where(i > 0, h / jnp.where(i > 0, h_last, 1.0), 0.0)
        if self.solver_type == "heun":
            c = jnp.expm1(-hh) / hh + 1.0
        else:
            c = 0.5 * phi
        x_new = x_new + expand_to(alpha_next * c * inv_r, x) * (x0 - state.x0_prev)
        if self.eta != 0.0 and self.s_noise != 0.0:
            z = per_sample_normal(key, x)
            std = sigma_next * jnp.sqrt(-jnp.expm1(-2.0 * eta_h)) * self.s_noise
            x_new = x_new + expand_to(std, x) * z
        x_new = jnp.where(sigma_next == 0, expand_to(alpha_next, x) * x0, x_new)
        return DPMSolverPP2MSDEState(x_new, x0)


def dpm_solver_pp_2m_sde(eta: float = 1.0, solver_type: str = "midpoint",
                         s_noise: float = 1.0) -> DPMSolverPP2MSDE:
    """DPM-Solver++(2M) SDE with data prediction, on any path.

    Args:
        eta: ``>= 0``; stochasticity. ``1`` is the SDE-DPM-Solver++ of Lu et al.,
            ``0`` the deterministic DPM-Solver++(2M).
        solver_type: ``'midpoint'`` (k-diffusion's default) or ``'heun'``.
        s_noise: scale of the injected noise, ``>= 0``.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths
        >>> from jaxsample.sampling import sample
        >>> from jaxsample.solvers import dpm_solver_pp_2m_sde
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.EDM(), "x0")
        >>> ts = grids.edm(model.path, 15)
        >>> noise = jax.random.normal(jax.random.key(1), (3, 2))
        >>> solver = dpm_solver_pp_2m_sde(eta=1.0, solver_type="heun")
        >>> sample(model, solver, ts, noise, key=jax.random.key(2)).shape
        (3, 2)

    References:
        Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
        Models", arXiv 2211.01095; code crowsonkb/k-diffusion ``sample_dpmpp_2m_sde`` and
        huggingface/diffusers ``DPMSolverMultistepScheduler`` (``sde-dpmsolver++``).
    """
    return DPMSolverPP2MSDE(eta=eta, solver_type=solver_type, s_noise=s_noise)
