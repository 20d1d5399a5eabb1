"""Metrics: against ground truth, and between sample sets (no flax, no optax).

- :func:`psnr` (as BNS reports it), :func:`rmse`, :func:`mean_log_likelihood` (exact, on
  analytic models).
- :func:`frechet_distance` (FID-style) between two sets of features, and
  :func:`frechet_distance_from_stats` between two Gaussians, with a symmetric-eigenvalue
  matrix square root that stays real and stable for singular covariances.
- :func:`mmd` (unbiased squared MMD, polynomial / RBF / linear kernel) and :func:`kid`
  (the KID estimator: cubic polynomial kernel averaged over random subsets).
- :func:`sliced_wasserstein` for low-dimensional samples (2-D toys).

The distances between sample sets are computed in float64 NumPy (features are brought to the
host). The digits features themselves (the shipped classifier) are in :mod:`jaxsample.features`.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxsample import metrics
    >>> ref = jnp.zeros((2, 4)); x = ref + 0.02
    >>> round(float(metrics.psnr(x, ref, data_range=2.0)), 2)   # 10 log10(4 / 4e-4)
    40.0
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "psnr",
    "rmse",
    "mean_log_likelihood",
    "sqrtm_psd",
    "trace_sqrt_product",
    "feature_stats",
    "frechet_distance_from_stats",
    "frechet_distance",
    "mmd",
    "kid",
    "sliced_wasserstein",
]


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


# --------------------------------------------------------------------------------------------
# Distances between sample sets (float64 NumPy)


def _as_features(name, x):
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (num_samples, num_features), got {x.shape}")
    return x


def sqrtm_psd(a):
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    a = np.asarray(a, np.float64)
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(cov1, cov2):
    """``tr((cov1 cov2)^(1/2))`` for PSD ``cov1``, ``cov2``.

    Computed as the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``cov1^(1/2) cov2 cov1^(1/2)`` (same spectrum as ``cov1 cov2``), clipped at 0: real-valued
    and stable where ``scipy.linalg.sqrtm(cov1 @ cov2)`` can return complex or NaN values.
    """
    s1 = sqrtm_psd(cov1)
    m = s1 @ np.asarray(cov2, np.float64) @ s1
    w = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def feature_stats(feats):
    """Mean and (unbiased, ddof=1) covariance of features of shape (N, D)."""
    feats = _as_features("feats", feats)
    if feats.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {feats.shape[0]}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False).reshape(feats.shape[1], feats.shape[1])


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2):
    ``|mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2))`` (clipped at 0).

    Example:
        >>> import numpy as np
        >>> from jaxsample import metrics
        >>> mu, cov = np.zeros(2), np.eye(2)
        >>> float(metrics.frechet_distance_from_stats(mu, cov, mu + 1.0, 4.0 * cov))
        4.0
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, mu2 {mu2.shape}, cov1 {cov1.shape}, cov2 {cov2.shape}")
    d = float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt_product(cov1, cov2))
    return max(d, 0.0)


def frechet_distance(feats1, feats2) -> float:
    """Frechet distance (as in FID) between Gaussians fitted to two feature sets (N_i, D).

    Example:
        >>> import numpy as np
        >>> from jaxsample import metrics
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
        >>> metrics.frechet_distance(a, b) < 0.05                  # same distribution
        True
        >>> round(metrics.frechet_distance(a, b + 1.0), 1)         # means 1 apart in 3 dimensions
        3.0
    """
    f1, f2 = _as_features("feats1", feats1), _as_features("feats2", feats2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature sizes differ: {f1.shape[1]} vs {f2.shape[1]}")
    return frechet_distance_from_stats(*feature_stats(f1), *feature_stats(f2))


def _kernel(x, y, kernel, degree, gamma, coef0, bandwidth):
    if kernel == "polynomial":
        g = 1.0 / x.shape[1] if gamma is None else gamma
        return (g * x @ y.T + coef0) ** degree
    if kernel == "linear":
        return x @ y.T
    if kernel == "rbf":
        d2 = np.sum(x**2, 1)[:, None] + np.sum(y**2, 1)[None, :] - 2.0 * x @ y.T
        return np.exp(-np.clip(d2, 0.0, None) / (2.0 * bandwidth**2))
    raise ValueError(f"kernel must be 'polynomial', 'rbf' or 'linear', got {kernel!r}")


def mmd(x, y, *, kernel: str = "polynomial", degree: int = 3, gamma: Optional[float] = None,
        coef0: float = 1.0, bandwidth: float = 1.0) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy MMD^2(P, Q).

    ``mean_{i != j} k(x_i, x_j) + mean_{i != j} k(y_i, y_j) - 2 mean_{i, j} k(x_i, y_j)``.

    Kernels: ``'polynomial'`` ``(gamma x.y + coef0)^degree`` with gamma = 1/D by default (the
    KID kernel with the defaults), ``'rbf'`` ``exp(-|x - y|^2 / (2 bandwidth^2))``, ``'linear'``
    ``x.y`` (then MMD^2 estimates ``|mu_P - mu_Q|^2``). The estimate can be negative.

    Example:
        >>> import numpy as np
        >>> from jaxsample import metrics
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(500, 2)), rng.normal(size=(500, 2))
        >>> metrics.mmd(x, y, kernel="rbf") < 0.01 < 0.1 < metrics.mmd(x, y + 1.0, kernel="rbf")
        True
        >>> abs(metrics.mmd(x, y + 1.0, kernel="linear") - 2.0) < 0.3   # estimates |mu_P - mu_Q|^2 = 2
        True
    """
    x, y = _as_features("x", x), _as_features("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"need at least 2 samples in each set, got {m} and {n}")
    kxx = _kernel(x, x, kernel, degree, gamma, coef0, bandwidth)
    kyy = _kernel(y, y, kernel, degree, gamma, coef0, bandwidth)
    kxy = _kernel(x, y, kernel, degree, gamma, coef0, bandwidth)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(feats1, feats2, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance estimator (Binkowski et al. 2018): the unbiased polynomial-kernel
    MMD^2 (``(x.y / D + 1)^3``) averaged over ``num_subsets`` random subsets of
    ``min(subset_size, N1, N2)`` samples of each set (deterministic given ``seed``).

    Example:
        >>> import numpy as np
        >>> from jaxsample import metrics
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
        >>> metrics.kid(a, b, num_subsets=10, subset_size=100) < 0.5 < metrics.kid(a, b + 1.0, num_subsets=10)
        True
    """
    f1, f2 = _as_features("feats1", feats1), _as_features("feats2", feats2)
    size = min(subset_size, f1.shape[0], f2.shape[0])
    rng = np.random.default_rng(seed)
    vals = [mmd(f1[rng.choice(f1.shape[0], size, replace=False)], f2[rng.choice(f2.shape[0], size, replace=False)])
            for _ in range(num_subsets)]
    return float(np.mean(vals))


def sliced_wasserstein(x, y, *, num_projections: int = 256, key=None, directions=None, p: int = 2) -> float:
    """Sliced p-Wasserstein distance between two equal-size sample sets (N, D).

    ``SW_p = (mean_k W_p^p(<x, theta_k>, <y, theta_k>))^(1/p)`` with unit directions theta_k
    (``directions`` of shape (K, D), normalised here, or ``num_projections`` uniform random
    directions from ``key``, default ``jax.random.key(0)``). The 1-D distances are exact:
    sorted projections are matched. For ``y = x + s``, ``SW_2^2 = mean_k (theta_k . s)^2``,
    whose expectation over uniform directions is ``|s|^2 / D``.

    Example:
        >>> import numpy as np
        >>> from jaxsample import metrics
        >>> x = np.random.default_rng(0).normal(size=(200, 2))
        >>> round(metrics.sliced_wasserstein(x, x + [3.0, 0.0], directions=np.eye(2)), 4)   # sqrt((9 + 0) / 2)
        2.1213
    """
    x, y = _as_features("x", x), _as_features("y", y)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    if directions is None:
        key = jax.random.key(0) if key is None else key
        directions = np.asarray(jax.random.normal(key, (num_projections, x.shape[1])), np.float64)
    directions = np.asarray(directions, np.float64)
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    px = np.sort(x @ directions.T, axis=0)
    py = np.sort(y @ directions.T, axis=0)
    return float(np.mean(np.abs(px - py) ** p) ** (1.0 / p))
