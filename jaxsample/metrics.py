"""Metrics against ground truth: PSNR (as BNS reports it), RMSE, exact log-likelihood.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxsample import metrics
    >>> ref = jnp.zeros((2, 4)); x = ref + 0.02
    >>> round(float(metrics.psnr(x, ref, data_range=2.0)), 2)   # 10 log10(4 / 4e-4)
    40.0
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["psnr", "rmse", "mean_log_likelihood"]


def _per_sample_mse(x, ref):
    x, ref = jnp.asarray(x), jnp.asarray(ref)
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape, got {x.shape} and {ref.shape}")
    if x.ndim < 1:
        raise ValueError("x must have a leading batch axis")
    return jnp.mean((x - ref).reshape(x.shape[0], -1) ** 2, axis=1)


def psnr(x, ref, data_range: float = 2.0, eps: float = 1e-20):
    """Mean over samples of ``10 log10(data_range^2 / MSE_k)``, MSE over each sample's entries.

    This is the PSNR of the BNS paper (per-sample PSNR, then averaged). The default
    ``data_range = 2`` is for data in [-1, 1]; pass the range of your data. ``eps``
    guards a sample identical to its reference.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxsample as js
        >>> ref = jnp.zeros((2, 4))
        >>> x = ref.at[0].set(0.02).at[1].set(0.2)   # per-sample MSE 4e-4 and 4e-2: 40 and 20 dB
        >>> round(float(js.psnr(x, ref, data_range=2.0)), 2)
        30.0
    """
    return jnp.mean(10.0 * jnp.log10(data_range**2 / (_per_sample_mse(x, ref) + eps)))


def rmse(x, ref):
    """Root mean squared error over all entries.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxsample as js
        >>> float(js.rmse(jnp.full((2, 3), 0.5), jnp.zeros((2, 3))))
        0.5
    """
    return jnp.sqrt(jnp.mean(_per_sample_mse(x, ref)))


def mean_log_likelihood(distribution, x):
    """Mean exact log-density of samples ``x`` under ``distribution`` (e.g. a GaussianMixture).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxsample as js
        >>> standard_normal = js.GaussianMixture(jnp.zeros((1, 1)), jnp.ones((1, 1)))
        >>> round(float(js.mean_log_likelihood(standard_normal, jnp.zeros((3, 1)))), 4)   # -log(2 pi) / 2
        -0.9189
    """
    return jnp.mean(distribution.log_prob(x))
