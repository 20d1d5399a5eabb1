"""Sample-quality metrics on feature vectors, and a small digits feature network.

- :func:`frechet_distance` (FID-style) between two sets of features, and
  :func:`frechet_distance_from_stats` between two Gaussians, with a symmetric-eigenvalue
  matrix square root that stays real and stable for singular covariances.
- :func:`mmd` (unbiased squared MMD, polynomial / RBF / linear kernel) and :func:`kid`
  (the KID estimator: cubic polynomial kernel averaged over random subsets).
- :func:`sliced_wasserstein` for low-dimensional samples (2-D toys).
- :class:`DigitsClassifier`, :func:`train_digits_classifier` (seconds on CPU) and
  :func:`digits_frechet_distance`: the Frechet distance in the classifier's penultimate layer
  between generated digits and the held-out test digits.

All distances are computed in float64 NumPy (features are brought to the host).

Example:
    >>> import numpy as np
    >>> from jaxsample import features
    >>> mu, cov = np.zeros(2), np.eye(2)
    >>> float(features.frechet_distance_from_stats(mu, cov, mu + 1.0, 4.0 * cov))
    4.0
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "sqrtm_psd",
    "trace_sqrt_product",
    "feature_stats",
    "frechet_distance_from_stats",
    "frechet_distance",
    "mmd",
    "kid",
    "sliced_wasserstein",
    "DigitsClassifier",
    "train_digits_classifier",
    "digits_features",
    "digits_frechet_distance",
]


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
    ``|mu1 - mu2|^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2))`` (clipped at 0)."""
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
        >>> from jaxsample import features
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
        >>> features.frechet_distance(a, b) < 0.05                  # same distribution
        True
        >>> round(features.frechet_distance(a, b + 1.0), 1)         # means 1 apart in 3 dimensions
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
        >>> from jaxsample import features
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(500, 2)), rng.normal(size=(500, 2))
        >>> features.mmd(x, y, kernel="rbf") < 0.01 < 0.1 < features.mmd(x, y + 1.0, kernel="rbf")
        True
        >>> abs(features.mmd(x, y + 1.0, kernel="linear") - 2.0) < 0.3   # estimates |mu_P - mu_Q|^2 = 2
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
        >>> from jaxsample import features
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
        >>> features.kid(a, b, num_subsets=10, subset_size=100) < 0.5 < features.kid(a, b + 1.0, num_subsets=10)
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
        >>> from jaxsample import features
        >>> x = np.random.default_rng(0).normal(size=(200, 2))
        >>> round(features.sliced_wasserstein(x, x + [3.0, 0.0], directions=np.eye(2)), 4)   # sqrt((9 + 0) / 2)
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


# --------------------------------------------------------------------------------------------
# Digits classifier and the digits Frechet distance


class DigitsClassifier(nn.Module):
    """A small CNN on (N, 8, 8, 1) digits in [-1, 1]; ``features`` is the penultimate layer.

    ``__call__(x)`` returns logits (N, 10); ``__call__(x, return_features=True)`` returns
    ``(logits, features)`` with features of size ``feature_dim``. 16x16 inputs are average-pooled
    to 8x8 first.
    """

    feature_dim: int = 64
    channels: int = 32
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, return_features: bool = False):
        if x.ndim != 4 or x.shape[-1] != 1:
            raise ValueError(f"expected digits of shape (N, 8, 8, 1) or (N, 16, 16, 1), got {x.shape}")
        if x.shape[1:3] == (16, 16):
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        if x.shape[1:3] != (8, 8):
            raise ValueError(f"expected 8x8 or 16x16 digits, got {x.shape[1:3]}")
        h = nn.relu(nn.Conv(self.channels, (3, 3))(x))
        h = nn.relu(nn.Conv(2 * self.channels, (3, 3), strides=(2, 2))(h))
        h = h.reshape((h.shape[0], -1))
        feats = nn.relu(nn.Dense(self.feature_dim)(h))
        logits = nn.Dense(self.num_classes)(feats)
        return (logits, feats) if return_features else logits


def train_digits_classifier(*, seed: int = 0, num_steps: int = 400, batch_size: int = 128,
                            learning_rate: float = 3e-3, augment_noise: float = 0.1):
    """Train :class:`DigitsClassifier` on the digits train split (a few seconds on CPU).

    Uses :func:`jaxsample.train.train_step`. Training images get N(0, augment_noise^2) pixel
    noise. Returns ``(module, params, test_accuracy)`` (accuracy on the 300 held-out digits).
    """
    import optax

    from jaxsample import data as data_lib
    from jaxsample import train as train_lib

    if num_steps <= 0:
        raise ValueError(f"num_steps must be > 0, got {num_steps}")
    module = DigitsClassifier()
    images, labels = data_lib.load_digits("train")
    params = module.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)))["params"]
    state = train_lib.TrainState.create(params, optax.adam(learning_rate), seed=seed, ema_decay=0.0)
    batcher = data_lib.ArrayBatcher({"x": images, "label": labels}, batch_size, seed=seed)

    def loss_fn(p, batch, key):
        x = batch["x"] + augment_noise * jax.random.normal(key, batch["x"].shape)
        logits = module.apply({"params": p}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

    for step in range(num_steps):
        state, _ = train_lib.train_step(state, batcher(step), loss_fn)
    test_x, test_y = data_lib.load_digits("test")
    logits = module.apply({"params": state.params}, jnp.asarray(test_x))
    accuracy = float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(test_y)))
    return module, state.params, accuracy


@functools.lru_cache(maxsize=2)
def _default_classifier(seed: int = 0):
    return train_digits_classifier(seed=seed)


def digits_features(images, classifier=None, *, batch_size: int = 1024) -> np.ndarray:
    """Penultimate-layer features (N, feature_dim) of digits images (N, 8|16, 8|16, 1) in [-1, 1].

    ``classifier`` is a ``(module, params)`` pair; by default a classifier trained once per
    process with :func:`train_digits_classifier` (seed 0).
    """
    module, params = (_default_classifier()[:2] if classifier is None else classifier[:2])
    images = jnp.asarray(images, jnp.float32)
    apply = jax.jit(lambda p, x: module.apply({"params": p}, x, return_features=True)[1])
    out = [np.asarray(apply(params, images[i:i + batch_size])) for i in range(0, images.shape[0], batch_size)]
    return np.concatenate(out, axis=0)


def digits_frechet_distance(images, reference=None, classifier=None) -> float:
    """Frechet distance between digits classifier features of ``images`` and of ``reference``
    (default: the 300 held-out test digits at the same resolution as ``images``)."""
    if reference is None:
        from jaxsample import data as data_lib

        reference = data_lib.load_digits("test", size=int(np.shape(images)[1]))[0]
    return frechet_distance(digits_features(images, classifier), digits_features(reference, classifier))
