"""DDIM, the first-order exponential integrator, and its stochastic version: DDPM ancestral
sampling (DDIM with ``eta``).

Both take the first-order data-prediction step of :mod:`jaxsample.solvers._exponential`
(see there for the exponential-integrator forms); ``ddpm_ancestral`` steps to a lower noise
level and adds the missing noise.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

from jaxsample.models import expand_to
from jaxsample.solvers._base import AbstractSolver, SimpleState, per_sample_normal
from jaxsample.solvers._exponential import data_update, interval
from jaxsample.solvers.stochastic import _check_number

__all__ = ["DDIM", "ddim", "DDPMAncestral", "ddpm_ancestral"]


class DDIM(AbstractSolver):
    """DDIM, the first-order exponential integrator, in data-prediction form.

    ``x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) x0(x_s, s)``, one model call a
    step. Identical (in exact arithmetic) to the noise form and to DPM-Solver-1.
    """

    @property
    def order(self) -> int:
        return 1

    def step(self, model, ts, i, state, cond, key):
        x = state.x
        iv = interval(model.path, ts, i, x.dtype)
        return SimpleState(iv.data_step(x, model.x0(x, iv.s, **cond)))


def ddim() -> DDIM:
    """DDIM (Song et al. 2021), deterministic (eta = 0), as an exponential integrator.

    References:
        Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021 (arXiv 2010.02502);
        Lu et al., "DPM-Solver", NeurIPS 2022 (arXiv 2206.00927), DPM-Solver-1 = DDIM.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample, solvers
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.VPCosine(), "x0")
        >>> ts = grids.logsnr_uniform(model.path, 20)
        >>> x = sample(model, solvers.ddim(), ts, jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape
        (4, 2)
    """
    return DDIM()


class DDPMAncestral(AbstractSolver):
    """DDPM ancestral sampling, generalised by DDIM's ``eta``, on any path.

    From ``s = t_i`` to ``t = t_{i+1}``, with ``h = lam(t) - lam(s) > 0`` and the model's
    data prediction ``x0 = x0(x, s)``::

        q = eta^2 (1 - e^{-2h})                 # c^2 / sigma_t^2
        x_t = alpha_t x0 + sqrt(sigma_t^2 - c^2) eps + c z,   c = sigma_t sqrt(q)

    written as ``sqrt(1-q) (sigma_t/sigma_s) x + alpha_t (1 - sqrt(1-q) e^{-h}) x0 + c z``
    (with ``expm1``/``log1p``), so that ``eta = 0`` is exactly DDIM
    ``x_t = (sigma_t/sigma_s) x - alpha_t (e^{-h} - 1) x0`` and ``eta = 1`` draws from the
    DDPM posterior ``q(x_t | x_s, x0)``, whose variance is ``sigma_t^2 (1 - e^{-2h})`` on
    any path. On the EDM path this is k-diffusion's ``sample_euler_ancestral``
    (``sigma_up = c``, ``sigma_down = sqrt(sigma_t^2 - c^2)``).

    Weak order 1; one model call a step.
    """

    eta: float = eqx.field(static=True, default=1.0)

    is_stochastic: ClassVar[bool] = True

    def __check_init__(self):
        _check_number("eta", self.eta, low=0.0, high=1.0)

    @property
    def order(self) -> int:
        return 1

    def step(self, model, ts, i, state, cond, key):
        path, x = model.path, state.x
        s, t = ts[i], ts[i + 1]
        x0 = model.x0(x, s, **cond)
        h = path.lam(t) - path.lam(s)
        sigma_s, sigma_t, alpha_t = path.sigma(s), path.sigma(t), path.alpha(t)
        if self.eta == 0.0:
            return SimpleState(data_update(x, x0, sigma_s, sigma_t, alpha_t, h))
        q = jnp.minimum(self.eta**2 * -jnp.expm1(-2.0 * h), 1.0)
        log_k = 0.5 * jnp.log1p(-q)  # k = sqrt(1 - q)
        # the mean is the DDIM step to sigma_down = k sigma_t (lam_down = lam_t - log k)
        x = data_update(x, x0, sigma_s, jnp.exp(log_k) * sigma_t, alpha_t, h - log_k)
        z = per_sample_normal(key, x)
        return SimpleState(x + expand_to(sigma_t * jnp.sqrt(q), x) * z)


def ddpm_ancestral(eta: float = 1.0) -> DDPMAncestral:
    """DDPM ancestral sampling (``eta=1``), DDIM-eta in general, on any path.

    Args:
        eta: in ``[0, 1]``; the fraction of the DDPM posterior standard deviation
            injected at each step. ``eta=0`` is deterministic DDIM (the key is then
            unused), ``eta=1`` is ancestral DDPM.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths
        >>> from jaxsample.sampling import sample
        >>> from jaxsample.solvers import ddpm_ancestral
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.DiscreteDDPM(), "eps")
        >>> ts = grids.uniform(model.path, 20)
        >>> noise = jax.random.normal(jax.random.key(1), (3, 2))
        >>> sample(model, ddpm_ancestral(eta=1.0), ts, noise, key=jax.random.key(2)).shape
        (3, 2)

    References:
        Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (arXiv 2006.11239);
        Song et al., "Denoising Diffusion Implicit Models", ICLR 2021 (arXiv 2010.02502), eq. (16).
    """
    return DDPMAncestral(eta=eta)
