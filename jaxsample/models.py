"""Models: a pure prediction function bundled with its path and prediction type.

A :class:`Model` wraps ``fn(x, t, **cond)``, where ``x`` has a leading batch axis
and ``t`` is a scalar or has shape ``x.shape[:1]``. It derives every other
prediction from the one ``fn`` makes:

- ``eps``: the noise;  ``x0``: the data;  ``v = alpha * eps - sigma * x0``;
- ``velocity = d x_t / dt = alpha'(t) x0 + sigma'(t) eps`` (the probability-flow ODE);
- ``score = -eps / sigma``.

:class:`GaussianMixture` gives all of these exactly, along with exact
log-densities and samples: it is the ground truth of the test suite.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsample import paths, models
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    >>> model = gmm.model(paths.VPCosine(), prediction="eps")
    >>> x = jnp.ones((2, 4)); t = jnp.asarray(0.5)
    >>> v1 = model.velocity(x, t)
    >>> v2 = gmm.model(paths.VPCosine(), prediction="velocity")(x, t)
    >>> bool(jnp.allclose(v1, v2, atol=1e-5))
    True
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.paths import AbstractPath

__all__ = [
    "PREDICTIONS",
    "Model",
    "GaussianMixture",
    "to_x0_eps",
    "from_x0_eps",
    "convert_prediction",
    "check_prediction",
    "flip_time",
    "change_path",
    "equivalent_time",
    "path_scale",
    "clip_x0",
    "dynamic_threshold",
]

PREDICTIONS = ("eps", "x0", "v", "velocity", "score")


def check_prediction(prediction: str, name: str = "prediction") -> str:
    if prediction not in PREDICTIONS:
        raise ValueError(f"{name} must be one of {PREDICTIONS}, got {prediction!r}")
    return prediction


def expand_to(a, x):
    """Reshape a scalar or per-sample array ``a`` so it broadcasts against ``x``."""
    a = jnp.asarray(a)
    return jnp.reshape(a, a.shape + (1,) * (x.ndim - a.ndim))


def to_x0_eps(path: AbstractPath, prediction: str, raw, x, t):
    """Turn a raw prediction of type ``prediction`` at (x, t) into (x0, eps)."""
    check_prediction(prediction)
    a, s = expand_to(path.alpha(t), x), expand_to(path.sigma(t), x)
    if prediction == "eps":
        return (x - s * raw) / a, raw
    if prediction == "x0":
        return raw, (x - a * raw) / s
    if prediction == "score":
        eps = -s * raw
        return (x - s * eps) / a, eps
    if prediction == "v":
        # [x; v] = [[a, s], [-s, a]] [x0; eps]
        norm = a * a + s * s
        return (a * x - s * raw) / norm, (s * x + a * raw) / norm
    # velocity: [x; u] = [[a, s], [a', s']] [x0; eps]
    da, ds = expand_to(path.d_alpha(t), x), expand_to(path.d_sigma(t), x)
    det = a * ds - s * da
    return (ds * x - s * raw) / det, (a * raw - da * x) / det


def from_x0_eps(path: AbstractPath, prediction: str, x0, eps, x, t):
    """Express the pair (x0, eps) at (x, t) as a prediction of type ``prediction``."""
    check_prediction(prediction)
    if prediction == "x0":
        return x0
    if prediction == "eps":
        return eps
    s = expand_to(path.sigma(t), x)
    if prediction == "score":
        return -eps / s
    a = expand_to(path.alpha(t), x)
    if prediction == "v":
        return a * eps - s * x0
    return expand_to(path.d_alpha(t), x) * x0 + expand_to(path.d_sigma(t), x) * eps


def convert_prediction(path: AbstractPath, raw, x, t, source: str, target: str):
    """Convert a prediction between any two types in :data:`PREDICTIONS`."""
    check_prediction(source, "source")
    check_prediction(target, "target")
    if source == target:
        return raw
    x0, eps = to_x0_eps(path, source, raw, x, t)
    return from_x0_eps(path, target, x0, eps, x, t)


class Model(eqx.Module):
    """A prediction function with its path and prediction type.

    Args:
        fn: pure function ``fn(x, t, **cond)`` returning an array shaped like ``x``.
            If ``fn`` is a pytree (an equinox Module, a ``jax.tree_util.Partial`` over
            network parameters), its leaves are traced, so ``jax.grad`` reaches them.
        path: the :class:`~jaxsample.paths.AbstractPath` the model was trained on.
        prediction: one of ``'eps', 'x0', 'v', 'velocity', 'score'``.
    """

    fn: Callable
    path: AbstractPath
    prediction: str = eqx.field(static=True)

    def __check_init__(self):
        check_prediction(self.prediction)
        if not isinstance(self.path, AbstractPath):
            raise ValueError(f"path must be a jaxsample AbstractPath, got {type(self.path).__name__}")

    def __call__(self, x, t, **cond):
        """``fn(x, t, **cond)`` in ``x``'s dtype: a bfloat16 network's output is cast up to the
        solver's float32, a float64 function's down to float32 noise (the dtype rule of
        :func:`~jaxsample.sampling.sample`)."""
        out = self.fn(x, t, **cond)
        dtype = getattr(x, "dtype", None)
        return out if dtype is None or getattr(out, "dtype", dtype) == dtype else jnp.asarray(out, dtype)

    def predict(self, target: str, x, t, **cond):
        """The prediction of type ``target`` at (x, t)."""
        return convert_prediction(self.path, self(x, t, **cond), x, t, self.prediction, target)

    def x0_and_eps(self, x, t, **cond):
        return to_x0_eps(self.path, self.prediction, self(x, t, **cond), x, t)

    def eps(self, x, t, **cond):
        return self.predict("eps", x, t, **cond)

    def x0(self, x, t, **cond):
        return self.predict("x0", x, t, **cond)

    def v(self, x, t, **cond):
        return self.predict("v", x, t, **cond)

    def velocity(self, x, t, **cond):
        return self.predict("velocity", x, t, **cond)

    def score(self, x, t, **cond):
        return self.predict("score", x, t, **cond)


class _FlippedTime(eqx.Module):
    fn: Callable
    negate: bool = eqx.field(static=True)

    def __call__(self, x, t, **cond):
        out = self.fn(x, 1.0 - t, **cond)
        return -out if self.negate else out


def flip_time(fn: Callable, prediction: str) -> Callable:
    """Adapt a function trained with t = 0 noise, t = 1 data (flow-matching convention).

    The result is called with jaxsample's time (t = 1 noise); a velocity changes sign.
    """
    check_prediction(prediction)
    return _FlippedTime(fn, negate=prediction == "velocity")


def path_scale(old: AbstractPath, new: AbstractPath, t):
    """``(t_old, s)`` with ``x_new(t) = s x_old(t_old)``: the time on ``old`` with the log-SNR of
    ``t`` on ``new``, and the scale between the two paths there (see :func:`change_path`)."""
    t_old = old.t_from_lam(new.lam(t))
    # s = alpha_new / alpha_old = sigma_new / sigma_old; use the larger pair.
    a_new, s_new = new.alpha(t), new.sigma(t)
    return t_old, jnp.where(a_new >= s_new, a_new / old.alpha(t_old), s_new / old.sigma(t_old))


class _ChangedPath(eqx.Module):
    model: Model
    path: AbstractPath

    def __call__(self, x, t, **cond):
        t_old, scale = path_scale(self.model.path, self.path, t)
        x_old = x / expand_to(scale, x)
        x0, eps = self.model.x0_and_eps(x_old, t_old, **cond)
        return from_x0_eps(self.path, "velocity", x0, eps, x, t)


def change_path(model: Model, path: AbstractPath) -> Model:
    """The same model seen on another path: a scale-time transformation.

    Two Gaussian paths with the same data are related by ``x_new(t) = s(t) x_old(t_old(t))``,
    where ``t_old`` has the same log-SNR and ``s = alpha_new / alpha_old``; the denoiser
    (x0 and eps) is invariant. The result predicts the new path's velocity, so ODE solvers
    integrate the transformed probability-flow ODE; from the same noise they reach the same
    samples (exactly, for the exact ODE). Used for BNS preconditioning with
    :class:`~jaxsample.paths.NoiseScaled`.
    """
    if not isinstance(path, AbstractPath):
        raise ValueError(f"path must be a jaxsample AbstractPath, got {type(path).__name__}")
    return Model(_ChangedPath(model, path), path, "velocity")


def equivalent_time(old_path: AbstractPath, new_path: AbstractPath, t):
    """The time on ``new_path`` with the same log-SNR as ``t`` on ``old_path``.

    Sample a :func:`change_path` model over ``[equivalent_time(old, new, t_start),
    equivalent_time(old, new, t_end)]`` to reach the same samples as the original over
    ``[t_start, t_end]`` from the same noise.
    """
    return new_path.t_from_lam(old_path.lam(t))


class _ThresholdedX0(eqx.Module):
    model: Model
    percentile: float = eqx.field(static=True)
    max_value: float = eqx.field(static=True)
    clip_only: bool = eqx.field(static=True)

    def __call__(self, x, t, **cond):
        x0 = self.model.x0(x, t, **cond)
        if self.clip_only:
            return jnp.clip(x0, -self.max_value, self.max_value)
        flat = jnp.abs(x0.reshape(x0.shape[0], -1)).astype(jnp.float32)
        s = jnp.clip(jnp.quantile(flat, self.percentile, axis=1), 1.0, self.max_value)
        s = expand_to(s, x0).astype(x0.dtype)
        return jnp.clip(x0, -s, s) / s


def clip_x0(model: Model, max_value: float = 1.0) -> Model:
    """The model with its x0 prediction clipped to ``[-max_value, max_value]`` (diffusers'
    ``clip_sample``); the result predicts ``x0``, so every solver sees the clipped denoiser.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxsample as js
        >>> model = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2).model(js.VPCosine())
        >>> bool(jnp.abs(js.models.clip_x0(model, 0.5).x0(3 * jnp.ones((4, 2)), 0.5)).max() <= 0.5)
        True
    """
    if not max_value > 0:
        raise ValueError(f"max_value must be positive, got {max_value}")
    return Model(_ThresholdedX0(model, 1.0, float(max_value), True), model.path, "x0")


def dynamic_threshold(model: Model, percentile: float = 0.995, max_value: float = 1.0) -> Model:
    """Imagen's dynamic thresholding (Saharia et al. 2022) of the x0 prediction, as diffusers'
    ``DDPMScheduler._threshold_sample``: per sample, ``s = quantile(|x0|, percentile)`` clamped to
    ``[1, max_value]``, then ``x0 <- clip(x0, -s, s) / s``. ``max_value = 1`` is a plain clip to
    [-1, 1]; UniPC's and AdaSDE's code use no upper clamp (``max_value=inf``). The result predicts
    ``x0``, so it works with every solver."""
    if not 0 < percentile <= 1:
        raise ValueError(f"percentile must be in (0, 1], got {percentile}")
    if not max_value >= 1:
        raise ValueError(f"max_value must be >= 1, got {max_value}")
    return Model(_ThresholdedX0(model, float(percentile), float(max_value), False), model.path, "x0")


class GaussianMixture(eqx.Module):
    """A diagonal Gaussian mixture: exact data density and exact predictions on any path.

    Args:
        means: (K, d) component means.
        stds: (K, d) per-component, per-dimension standard deviations (> 0).
        weights: (K,) mixture weights (normalised here).
    """

    means: jax.Array
    stds: jax.Array
    log_weights: jax.Array

    def __init__(self, means, stds, weights=None):
        means = jnp.asarray(means)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {means.shape}")
        stds = jnp.broadcast_to(jnp.asarray(stds, means.dtype), means.shape)
        if weights is None:
            weights = jnp.ones(means.shape[0], means.dtype)
        weights = jnp.asarray(weights, means.dtype)
        if weights.shape != means.shape[:1]:
            raise ValueError(f"weights must have shape ({means.shape[0]},), got {weights.shape}")
        try:
            bad = np.any(np.asarray(stds) <= 0) or np.any(np.asarray(weights) <= 0)
        except jax.errors.TracerArrayConversionError:  # under jit: cannot check
            bad = False
        if bad:
            raise ValueError("stds and weights must be positive")
        self.means = means
        self.stds = stds
        self.log_weights = jnp.log(weights) - jnp.log(jnp.sum(weights))

    @classmethod
    def random(cls, key, dim: int = 64, num_components: int = 8, mean_scale: float = 1.0,
               std_range=(0.05, 0.5)):
        """A random anisotropic mixture: means ~ N(0, mean_scale^2), stds log-uniform."""
        km, ks, kw = jax.random.split(key, 3)
        means = mean_scale * jax.random.normal(km, (num_components, dim))
        lo, hi = np.log(std_range[0]), np.log(std_range[1])
        stds = jnp.exp(jax.random.uniform(ks, (num_components, dim), minval=lo, maxval=hi))
        weights = jax.random.uniform(kw, (num_components,), minval=0.5, maxval=1.5)
        return cls(means, stds, weights)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _component_log_probs(self, x, mean_scale, var):
        diff = x[..., None, :] - mean_scale * self.means
        logn = -0.5 * jnp.sum(diff**2 / var + jnp.log(2 * jnp.pi * var), axis=-1)
        return self.log_weights + logn, diff

    def log_prob(self, x0):
        """Exact log-density of the data distribution, over the last axis."""
        logits, _ = self._component_log_probs(x0, 1.0, self.stds**2)
        return jax.nn.logsumexp(logits, axis=-1)

    def sample(self, key, num_samples: int):
        """Exact samples from the data distribution, shape (num_samples, d)."""
        kc, kn = jax.random.split(key)
        comp = jax.random.categorical(kc, self.log_weights, shape=(num_samples,))
        noise = jax.random.normal(kn, (num_samples, self.dim), self.means.dtype)
        return self.means[comp] + self.stds[comp] * noise

    def _posterior(self, path, x, t):
        a = expand_to(path.alpha(t), x)[..., None, :]
        s = expand_to(path.sigma(t), x)[..., None, :]
        var = a**2 * self.stds**2 + s**2
        logits, diff = self._component_log_probs(x, a, var)
        return a, s, var, logits, diff

    def marginal_log_prob(self, path, x, t):
        """Exact log p_t(x) of x_t = alpha x0 + sigma noise."""
        _, _, _, logits, _ = self._posterior(path, x, t)
        return jax.nn.logsumexp(logits, axis=-1)

    def x0_and_eps(self, path, x, t):
        """Exact E[x0 | x_t] and E[eps | x_t]."""
        a, s, var, logits, diff = self._posterior(path, x, t)
        resp = jax.nn.softmax(logits, axis=-1)[..., None]
        x0 = jnp.sum(resp * (self.means + a * self.stds**2 / var * diff), axis=-2)
        eps = jnp.sum(resp * (s * diff / var), axis=-2)
        return x0, eps

    def score(self, path, x, t):
        """Exact score of p_t."""
        _, _, var, logits, diff = self._posterior(path, x, t)
        resp = jax.nn.softmax(logits, axis=-1)[..., None]
        return -jnp.sum(resp * diff / var, axis=-2)

    def model(self, path: AbstractPath, prediction: str = "eps") -> Model:
        """The exact model of this mixture under ``path``, making prediction ``prediction``."""
        check_prediction(prediction)
        return Model(_ExactMixtureFn(self, path, prediction), path, prediction)


class _ExactMixtureFn(eqx.Module):
    gmm: GaussianMixture
    path: AbstractPath
    prediction: str = eqx.field(static=True)

    def __call__(self, x, t, **cond):
        if x.ndim < 2 or x.shape[-1] != self.gmm.dim:
            raise ValueError(f"x must have shape (batch, {self.gmm.dim}), got {x.shape}")
        if self.prediction == "score":
            return self.gmm.score(self.path, x, t)
        x0, eps = self.gmm.x0_and_eps(self.path, x, t)
        return from_x0_eps(self.path, self.prediction, x0, eps, x, t)
