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

__all__ = ["DDIM", "ddim", "DDPMAncestral", "ddpm_ancestral", "CFGPlusPlus", "cfg_pp"]


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


class CFGPlusPlus(AbstractSolver):
    """DDIM with CFG++ guidance (Chung et al. 2025): denoise with the guided prediction, renoise
    with the unconditional one.

    With ``eps_lam = eps_u + lam (eps_c - eps_u)`` and ``x0_lam = (x - sigma_s eps_lam) / alpha_s``
    (equal to ``x0_u + lam (x0_c - x0_u)``), one step is ``x_t = alpha_t x0_lam + sigma_t eps_u``;
    plain CFG with DDIM renoises with ``eps_lam`` instead. On the EDM path this is CFG++'s Euler
    form ``x' = D_lam + sigma' (x - D_u) / sigma``. One step evaluates the conditional and the
    unconditional prediction in one call on the doubled batch (one NFE, as for :func:`~jaxsample.nets.guided`).
    """

    guidance: float = eqx.field(static=True)
    null_label: int = eqx.field(static=True)

    @property
    def order(self) -> int:
        return 1

    def step(self, model, ts, i, state, cond, key):
        x = state.x
        if "label" not in cond:
            raise ValueError("cfg_pp needs the class labels: pass cond={'label': labels} to sample, with the "
                             "unguided class-conditional model")
        iv = interval(model.path, ts, i, x.dtype)
        batch = x.shape[0]
        label = jnp.broadcast_to(jnp.asarray(cond["label"], jnp.int32), (batch,))
        rest = {k: jnp.concatenate([v, v], axis=0) for k, v in cond.items() if k != "label"}
        label2 = jnp.concatenate([label, jnp.full((batch,), self.null_label, jnp.int32)])
        x0, eps = model.x0_and_eps(jnp.concatenate([x, x], axis=0), iv.s, label=label2, **rest)
        x0_c, x0_u, eps_u = x0[:batch], x0[batch:], eps[batch:]
        x0_lam = x0_u + self.guidance * (x0_c - x0_u)
        return SimpleState(expand_to(iv.a_t, x) * x0_lam + expand_to(iv.sig_t, x) * eps_u)


def cfg_pp(guidance: float, null_label: int) -> CFGPlusPlus:
    """CFG++ (Chung et al., "CFG++: Manifold-constrained classifier free guidance for diffusion
    models", ICLR 2025, arXiv 2406.08070; official code ``CFGpp-diffusion``, ``BaseDDIMCFGpp`` and
    ``EulerCFGppSolver``): DDIM whose renoising uses the unconditional noise prediction.

    Pass the *unguided* class-conditional model and ``cond={'label': labels}`` to
    :func:`~jaxsample.sample`. ``guidance`` is CFG++'s ``lambda``, in [0, 1] in the paper (0.6 in
    its README example); 0 is unconditional DDIM, and with a model that ignores its label it is
    plain DDIM.

    Args:
        guidance: CFG++'s lambda (a float; the paper's range is [0, 1], larger values are allowed).
        null_label: the null-class index of the model (``num_classes`` for the networks here).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxsample as js
        >>> net = lambda x, t, label: x * (0.5 + 0.1 * label[:, None])  # a toy conditional x0 "network"
        >>> model = js.Model(net, js.VPCosine(), "x0")
        >>> ts = js.logsnr_uniform(model.path, 8)
        >>> x = js.sample(model, js.cfg_pp(0.6, null_label=0), ts, jnp.ones((2, 3)),
        ...               cond={"label": jnp.array([1, 2])})
        >>> x.shape
        (2, 3)
    """
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not guidance >= 0:
        raise ValueError(f"guidance must be a number >= 0 (CFG++'s lambda, usually in [0, 1]), got {guidance!r}")
    if isinstance(null_label, bool) or not isinstance(null_label, int) or null_label < 0:
        raise ValueError(f"null_label must be a non-negative int (the model's null class), got {null_label!r}")
    return CFGPlusPlus(float(guidance), int(null_label))
