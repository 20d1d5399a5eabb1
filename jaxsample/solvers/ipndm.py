"""iPNDM: Adams-Bashforth on the noise prediction with the exponential (DDIM) transfer.

The exponential-integrator forms it builds on are described in
:mod:`jaxsample.solvers._exponential`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers._exponential import (MultistepState, check_choice, combine, effective_order, empty_history,
                                            grid_steps, interval, push)

__all__ = ["MultistepState", "IPNDM", "ipndm"]


_IPNDM_WEIGHTS = np.array([
    [1.0, 0.0, 0.0, 0.0],
    [3.0 / 2.0, -1.0 / 2.0, 0.0, 0.0],
    [23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0, 0.0],
    [55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0],
])


class IPNDM(AbstractSolver):
    """iPNDM: fixed Adams-Bashforth weights on eps, with the DDIM (exponential) transfer.

    ``eps_AB = sum_j w_{q,j} eps_{i-j}`` with ``q = min(max_order, i + 1)`` and
    ``x_{i+1} = (alpha_{i+1}/alpha_i) x_i - sigma_{i+1} (e^h - 1) eps_AB``, which is the Euler
    step ``v_{i+1} = v_i + (rho_{i+1} - rho_i) eps_AB`` in ``v = x/alpha``, ``rho = sigma/alpha``
    (on the EDM path, exactly EDM-style iPNDM). The weights assume equal steps, so the
    nominal order ``max_order`` is reached on grids uniform in ``rho``; on other grids
    (e.g. EDM's rho = 7) the local order drops with the step-size variation.
    """

    max_order: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        check_choice("order", self.max_order, (1, 2, 3, 4))

    @property
    def order(self) -> int:
        return self.max_order

    def init(self, model, ts, x, cond):
        return MultistepState(x, empty_history(self.max_order - 1, x))

    def step(self, model, ts, i, state, cond, key):
        x, hist = state
        iv = interval(model.path, ts, i, x.dtype, exact_lam=False)
        eps = model.eps(x, iv.s, **cond)
        p = self.max_order
        q = effective_order(p, i, grid_steps(ts), False, None)  # warm-up only
        w = jnp.asarray(_IPNDM_WEIGHTS[:, :p], x.dtype)[q - 1]
        return MultistepState(iv.noise_step(x, combine(w, eps, hist)), push(hist, eps))


def ipndm(order: int = 4) -> IPNDM:
    """iPNDM: improved pseudo numerical method (Adams-Bashforth on eps), one model call a step.

    Args:
        order: the highest Adams-Bashforth order, 1 to 4 (1 is DDIM). Step ``i`` uses
            ``min(order, i + 1)``.

    Raises:
        ValueError: if ``order`` is not in 1..4.

    References:
        Zhang & Chen, "Fast Sampling of Diffusion Models with Exponential Integrator" (DEIS),
        ICLR 2023 (arXiv 2204.13902), code qsh-zh/deis; the EDM-form iPNDM of
        Zhou et al., AMED (arXiv 2312.00094), code zju-pi/diff-sampler.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample, solvers
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.EDM(), "x0")
        >>> x = sample(model, solvers.ipndm(), grids.edm(model.path, 10),
        ...            jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape
        (4, 2)
    """
    return IPNDM(order)
