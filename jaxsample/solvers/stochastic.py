"""Stochastic samplers: reverse-SDE solvers with explicit per-sample keys.

Both work on every path (:mod:`jaxsample.paths`) and every prediction
type, through ``alpha(t)``, ``sigma(t)`` and the half log-SNR ``lam(t)``. Each step
draws its noise with :func:`~jaxsample.solvers._base.per_sample_normal` from the
per-sample keys the driver passes, exactly once per step (none when the noise
coefficient is statically zero), so the noise of sample k depends on its own key
alone and results do not change with the batch size.

- :func:`euler_maruyama`: Euler-Maruyama on the reverse-time SDE (weak order 1).
- :func:`edm_stochastic_heun`: Karras et al. (2022) Algorithm 2, stochastic Heun with churn.

The stochastic exponential integrators live beside their ODE versions and follow the same
rules: :func:`~jaxsample.solvers.ddim.ddpm_ancestral` (DDPM ancestral sampling / DDIM with
``eta``) in :mod:`jaxsample.solvers.ddim`, :func:`~jaxsample.solvers.dpm_solver.dpm_solver_pp_2m_sde`
(k-diffusion's ``sample_dpmpp_2m_sde``) in :mod:`jaxsample.solvers.dpm_solver`.

Example:
    >>> import jax
    >>> from jaxsample import grids, models, paths
    >>> from jaxsample.sampling import sample
    >>> from jaxsample.solvers.stochastic import euler_maruyama
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
    >>> model = gmm.model(paths.VPCosine(), "eps")
    >>> ts = grids.logsnr_uniform(model.path, 10, t_start=0.99)
    >>> noise = jax.random.normal(jax.random.key(1), (4, 2))
    >>> x = sample(model, euler_maruyama(), ts, noise, key=jax.random.key(2))
    >>> x.shape
    (4, 2)
"""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxsample.models import expand_to
from jaxsample.paths import EDM
from jaxsample.solvers._base import AbstractSolver, SimpleState, per_sample_normal

__all__ = [
    "EulerMaruyama",
    "EDMStochasticHeun",
    "euler_maruyama",
    "edm_stochastic_heun",
]


def _check_number(name: str, value, *, low=None, high=None, allow_inf=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


class EulerMaruyama(AbstractSolver):
    """Euler-Maruyama on the reverse-time SDE of the path.

    The forward SDE of a path ``x_t = alpha x0 + sigma eps`` is
    ``dx = f x dt + g dW`` with ``f = alpha'/alpha`` and
    ``g^2 = 2 sigma^2 (sigma'/sigma - alpha'/alpha) = -2 sigma^2 lam'``. Its reverse
    (Anderson 1982; Song et al. 2021) runs from ``t_max`` to ``t_min``:
    ``dx = [f x - g^2 score] dt + g dW``. One step from ``t`` to ``t + dt`` (``dt < 0``)
    evaluates the model once at ``(x, t)``::

        x <- x + [f x - g^2 score(x, t)] dt + g(t) sqrt(-dt) z.

    The drift is computed as ``alpha' x0 + (sigma' - sigma lam') eps``, which equals
    ``f x - g^2 score`` and divides neither by ``alpha`` nor by ``sigma``.

    ``g`` is infinite where ``alpha = 0`` (e.g. :class:`~jaxsample.paths.RectifiedFlow`
    at ``t = 1``): start such grids below that time (``t_start=0.999``).
    Weak order 1; one model call a step.

    The step is explicit in ``t``: it is stable only while each step's log-SNR change is small,
    ``|lam'(t) dt| < ~1``. Near ``alpha = 0`` the coefficients change by orders of magnitude
    within one step: on :class:`~jaxsample.paths.VPCosine` the 8-step EDM grid from ``t = 1`` has
    ``|lam' dt|`` of 1.4 to 9 on its first steps and the samples blow up (to ~10^3); 32 steps keep
    it below 0.3. For few steps use the exponential integrators, which solve the linear part
    exactly (:func:`~jaxsample.solvers.ddpm_ancestral`, :func:`~jaxsample.solvers.dpm_solver_pp_2m_sde`).
    """

    is_stochastic: ClassVar[bool] = True

    @property
    def order(self) -> int:
        return 1

    def step(self, model, ts, i, state, cond, key):
        path, x = model.path, state.x
        t, t_next = ts[i], ts[i + 1]
        dt = t_next - t
        x0, eps = model.x0_and_eps(x, t, **cond)
        s, ds, da, dlam = path.sigma(t), path.d_sigma(t), path.d_alpha(t), path.d_lam(t)
        drift = expand_to(da, x) * x0 + expand_to(ds - s * dlam, x) * eps
        g = s * jnp.sqrt(jnp.maximum(-2.0 * dlam, 0.0))
        z = per_sample_normal(key, x)
        x = x + drift * expand_to(dt, x) + expand_to(g * jnp.sqrt(-dt), x) * z
        return SimpleState(x)


def euler_maruyama() -> EulerMaruyama:
    """Euler-Maruyama on the reverse-time SDE ``dx = [f x - g^2 score] dt + g dW``.

    Works on every path and prediction type (see :class:`EulerMaruyama`). Weak order 1,
    ``nfe(n) = n``.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths
        >>> from jaxsample.sampling import sample
        >>> from jaxsample.solvers.stochastic import euler_maruyama
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.VPLinear(), "eps")
        >>> ts = grids.uniform(model.path, 50)
        >>> noise = jax.random.normal(jax.random.key(1), (3, 2))
        >>> sample(model, euler_maruyama(), ts, noise, key=jax.random.key(2)).shape
        (3, 2)

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential
        Equations", ICLR 2021 (arXiv 2011.13456), eq. (6).
    """
    return EulerMaruyama()


class EDMStochasticHeun(AbstractSolver):
    """Karras et al. (2022) Algorithm 2 (NVlabs/edm ``edm_sampler``), on any path.

    The algorithm is defined on the EDM variable ``x~ = x / alpha`` with noise level
    ``sigma~ = sigma / alpha = exp(-lam)``; on other paths it is applied there (as EDM
    does for VP models through ``VPPrecond``), and every quantity is mapped back to
    ``x``. On the EDM path (``alpha = 1``) it is exactly ``edm_sampler``. Step i::

        gamma = min(s_churn / N, sqrt(2) - 1) if s_min <= sigma~_i <= s_max else 0
        sigma~_hat = (1 + gamma) sigma~_i        # t_hat = t_from_lam(lam_i - log(1+gamma))
        x~_hat = x~_i + sqrt(sigma~_hat^2 - sigma~_i^2) s_noise z
        d = (x~_hat - D(x~_hat; sigma~_hat)) / sigma~_hat           # = eps prediction
        x~_{i+1} = x~_hat + (sigma~_{i+1} - sigma~_hat) d           # Euler (= DDIM step)
        if sigma~_{i+1} != 0: Heun correction with d' at (x~_{i+1}, sigma~_{i+1})

    ``N = len(ts) - 1`` and ``s_min``, ``s_max`` compare against ``sigma~ = sigma/alpha``.
    The Euler step is computed in the stable DDIM form and the correction as
    ``0.5 (sigma~_{i+1} - sigma~_hat) (eps' - eps)``, so no large ``x~`` is formed.
    With churn, ``t_hat`` may lie above ``ts[i]`` (above ``t_max`` at the first step when
    ``s_max`` allows it, as in EDM): the model must accept it. ``ts[0]`` needs
    ``alpha > 0``. Two model calls a step (one on a step to ``sigma = 0``).

    Weak order 2: the churn maps the exact marginal at ``t_i`` to the exact marginal at
    ``t_hat`` (it adds exactly the missing Gaussian noise), so the only error is that of
    the Heun step; with ``s_churn = 0`` it is Heun's method in ``sigma~``.
    """

    s_churn: float = eqx.field(static=True, default=0.0)
    s_min: float = eqx.field(static=True, default=0.0)
    s_max: float = eqx.field(static=True, default=float("inf"))
    s_noise: float = eqx.field(static=True, default=1.0)

    is_stochastic: ClassVar[bool] = True

    def __check_init__(self):
        _check_number("s_churn", self.s_churn, low=0.0)
        _check_number("s_min", self.s_min, low=0.0, allow_inf=True)
        _check_number("s_max", self.s_max, low=0.0, allow_inf=True)
        _check_number("s_noise", self.s_noise, low=0.0)
        if self.s_min > self.s_max:
            raise ValueError(f"s_min must be <= s_max, got s_min={self.s_min}, s_max={self.s_max}")

    @property
    def order(self) -> int:
        return 2

    def nfe(self, num_steps: int) -> int:
        """Two calls a step (an upper bound: a step that ends at ``sigma = 0`` uses one)."""
        return 2 * num_steps

    def step(self, model, ts, i, state, cond, key):
        path, x = model.path, state.x
        t, t_next = ts[i], ts[i + 1]
        alpha, sigma = path.alpha(t), path.sigma(t)
        if self.s_churn > 0.0:
            rel = sigma / alpha  # EDM noise level sigma~
            num_steps = ts.shape[0] - 1
            gamma_max = min(self.s_churn / num_steps, math.sqrt(2.0) - 1.0)
            gamma = jnp.where((rel >= self.s_min) & (rel <= self.s_max), gamma_max, 0.0).astype(t.dtype)
            if isinstance(path, EDM):  # sigma~ = t: EDM's own arithmetic, no log/exp round trip
                t_hat = t * (1.0 + gamma)
            else:
                t_hat = jnp.where(gamma > 0, path.t_from_lam(path.lam(t) - jnp.log1p(gamma)), t)
            alpha_hat, sigma_hat = path.alpha(t_hat), path.sigma(t_hat)
            # x_hat = alpha_hat * (x~ + sqrt(sigma~_hat^2 - sigma~^2) s_noise z)
            std = jnp.sqrt(jnp.maximum(sigma_hat**2 - (alpha_hat * rel) ** 2, 0.0)) * self.s_noise
            z = per_sample_normal(key, x)
            x = expand_to(alpha_hat / alpha, x) * x + expand_to(std, x) * z
        else:
            t_hat, alpha_hat, sigma_hat = t, alpha, sigma
        x0_1, eps_1 = model.x0_and_eps(x, t_hat, **cond)
        alpha_next, sigma_next = path.alpha(t_next), path.sigma(t_next)
        # Euler in (x~, sigma~) = DDIM: r = sigma~_next / sigma~_hat.
        r = (sigma_next * alpha_hat) / (alpha_next * sigma_hat)
        x_euler = expand_to(sigma_next / sigma_hat, x) * x + expand_to(alpha_next * (1.0 - r), x) * x0_1
        coeff = 0.5 * (sigma_next - alpha_next * sigma_hat / alpha_hat)

        def heun(x_euler):
            _, eps_2 = model.x0_and_eps(x_euler, t_next, **cond)
            return x_euler + expand_to(coeff, x) * (eps_2 - eps_1)

        x = jax.lax.cond(sigma_next == 0, lambda x_e: x_e, heun, x_euler)
        return SimpleState(x)


def edm_stochastic_heun(s_churn: float = 0.0, s_min: float = 0.0, s_max: float = float("inf"),
                        s_noise: float = 1.0) -> EDMStochasticHeun:
    """EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2), on any path.

    On :class:`~jaxsample.paths.EDM` this is NVlabs/edm's ``edm_sampler`` and
    k-diffusion's ``sample_heun``; on other paths it runs on ``x/alpha`` with noise
    level ``sigma/alpha`` (see :class:`EDMStochasticHeun`).

    Args:
        s_churn: total churn, ``>= 0``; ``gamma_i = min(s_churn / N, sqrt(2) - 1)``.
            ``0`` gives the deterministic Heun sampler (the key is then unused).
        s_min, s_max: churn only where ``s_min <= sigma/alpha <= s_max``.
        s_noise: scale of the churn noise (EDM's ``S_noise``, e.g. 1.003), ``>= 0``.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths
        >>> from jaxsample.sampling import sample
        >>> from jaxsample.solvers.stochastic import edm_stochastic_heun
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.EDM(), "x0")
        >>> ts = grids.edm(model.path, 18)
        >>> solver = edm_stochastic_heun(s_churn=40.0, s_min=0.05, s_max=50.0, s_noise=1.003)
        >>> noise = jax.random.normal(jax.random.key(1), (3, 2))
        >>> sample(model, solver, ts, noise, key=jax.random.key(2)).shape, solver.nfe(18)
        ((3, 2), 36)

    References:
        Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models",
        NeurIPS 2022 (arXiv 2206.00364), Algorithm 2; code NVlabs/edm ``generate.py``.
    """
    return EDMStochasticHeun(s_churn=s_churn, s_min=s_min, s_max=s_max, s_noise=s_noise)
