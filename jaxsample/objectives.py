"""Training objectives: denoising diffusion and flow-matching losses, for any path.

Every loss here is built by a factory that returns ``loss_fn(params, batch, key) ->
(loss, metrics)``, the signature :func:`jaxsample.train.train_step` expects. ``batch`` is a
dict with ``'x'`` (data, leading batch axis) and optionally ``'label'`` (int, shape (batch,)).
``key`` is the step's key; example ``i`` of the global batch draws its time, noise and label
dropout from ``fold_in(key, i)``, so the loss does not depend on how the batch is sharded.

Loss definition (per example, then averaged over the batch). With ``x_t = alpha x0 + sigma eps``,
``raw = f(x_t, t)`` the network output, ``target`` the same prediction type computed from the
true ``(x0, eps)`` and ``SNR = alpha^2 / sigma^2``:

- ``weighting='none'``: the plain MSE in the model's own prediction space,
  ``mean((raw - target)^2)`` (eps-MSE for eps, x0-MSE for x0, v-MSE for v, velocity-MSE
  for velocity: flow matching on :class:`~jaxsample.paths.RectifiedFlow`).
- ``'x0'``: ``mean((x0_hat - x0)^2)`` (weight 1 in x0 space).
- ``'snr'``: ``SNR * mean((x0_hat - x0)^2)`` (= eps-MSE).
- ``'truncated_snr'``: ``max(SNR, 1) * mean((x0_hat - x0)^2)`` (Salimans & Ho 2022).
- ``'snr_plus_one'``: ``(SNR + 1) * mean((x0_hat - x0)^2)`` (= v-MSE on VP paths).

Here ``x0_hat`` is the model's x0 estimate at fixed ``x_t``. Because ``x0_hat - x0 = c(t) (raw -
target)`` for a scalar ``c(t)`` (see :func:`x0_error_scale`), the x0-space losses are evaluated as
``w(t) c(t)^2 mean((raw - target)^2)``: the same number, without dividing by a small alpha.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsample import nets, objectives, paths
    >>> net = nets.MLP(features=(16,))
    >>> params = net.init(jax.random.key(0), jnp.zeros((1, 2)), 0.5)["params"]
    >>> loss_fn = objectives.flow_matching_loss(net.apply)
    >>> loss, metrics = loss_fn(params, {"x": jnp.ones((8, 2))}, jax.random.key(1))
    >>> loss.shape
    ()
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from jaxsample.models import check_prediction, expand_to, from_x0_eps, to_x0_eps
from jaxsample.paths import AbstractPath, RectifiedFlow

__all__ = [
    "WEIGHTINGS",
    "snr",
    "x0_error_scale",
    "loss_weight",
    "per_example_loss",
    "diffusion_loss",
    "flow_matching_loss",
    "drop_labels",
    "example_keys",
    "lognormal_times",
]

WEIGHTINGS = ("none", "x0", "snr", "truncated_snr", "snr_plus_one")


def _check_weighting(weighting):
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def snr(path: AbstractPath, t):
    """Signal-to-noise ratio alpha(t)^2 / sigma(t)^2 = exp(2 lam(t))."""
    return (path.alpha(t) / path.sigma(t)) ** 2


def x0_error_scale(path: AbstractPath, prediction: str, t):
    """The scalar c(t) with ``x0_hat - x0 = c(t) * (raw - target)`` at fixed x_t.

    eps: -sigma/alpha; x0: 1; v: -sigma/(alpha^2 + sigma^2); velocity: -sigma/(alpha sigma' - sigma alpha');
    score: sigma^2/alpha.
    """
    check_prediction(prediction)
    t = jnp.asarray(t)
    zero = jnp.zeros(t.shape + (1,), jnp.result_type(t, jnp.float32))
    one = jnp.ones_like(zero)
    # to_x0_eps is affine in raw at fixed x: its x0 part at (raw=1, x=0) is the slope.
    x0_one, _ = to_x0_eps(path, prediction, one, zero, t)
    x0_zero, _ = to_x0_eps(path, prediction, zero, zero, t)
    return (x0_one - x0_zero)[..., 0]


def loss_weight(path: AbstractPath, prediction: str, weighting: str, t):
    """Factor multiplying ``mean((raw - target)^2)`` for each weighting (see module docstring)."""
    _check_weighting(weighting)
    check_prediction(prediction)
    t = jnp.asarray(t)
    if weighting == "none":
        return jnp.ones_like(t, dtype=jnp.result_type(t, jnp.float32))
    c2 = x0_error_scale(path, prediction, t) ** 2
    if weighting == "x0":
        return c2
    s = snr(path, t)
    if weighting == "snr":
        return s * c2
    if weighting == "truncated_snr":
        return jnp.maximum(s, 1.0) * c2
    return (s + 1.0) * c2


def per_example_loss(path: AbstractPath, prediction: str, weighting: str, raw, x0, eps, t):
    """Per-example weighted loss, shape (batch,), for network output ``raw`` at
    ``x_t = alpha(t) x0 + sigma(t) eps``. ``t`` is a scalar or has shape (batch,)."""
    x_t = expand_to(path.alpha(t), x0) * x0 + expand_to(path.sigma(t), x0) * eps
    target = from_x0_eps(path, prediction, x0, eps, x_t, t)
    mse = jnp.mean(jnp.reshape((raw - target) ** 2, (raw.shape[0], -1)), axis=-1)
    return loss_weight(path, prediction, weighting, t) * mse


def example_keys(key, batch_size: int):
    """Key of example i: ``fold_in(key, i)`` (global batch index, independent of sharding)."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch_size))


def drop_labels(key, labels, rate: float, null_label: int):
    """Replace each label by ``null_label`` with probability ``rate`` (per-example keys from ``key``)."""
    keys = example_keys(key, labels.shape[0])
    drop = jax.vmap(lambda k: jax.random.bernoulli(k, rate))(keys)
    return jnp.where(drop, jnp.asarray(null_label, labels.dtype), labels)


def lognormal_times(p_mean: float = -1.2, p_std: float = 1.2, path: Optional[AbstractPath] = None):
    """EDM's training times (Karras et al. 2022): ``t = sigma = exp(p_mean + p_std * n)``,
    n ~ N(0, 1), clipped to ``[path.t_min, path.t_max]`` if ``path`` is given. Returns a
    ``key -> t`` function for ``diffusion_loss(..., time_sampler=...)``."""
    if not p_std > 0:
        raise ValueError(f"p_std must be > 0, got {p_std}")

    def sample_t(key):
        t = jnp.exp(p_mean + p_std * jax.random.normal(key, ()))
        if path is not None:
            t = jnp.clip(t, path.t_min, path.t_max)
        return t

    return sample_t


def diffusion_loss(
    apply_fn: Callable,
    path: AbstractPath,
    prediction: str,
    weighting: str = "none",
    *,
    t_range: Optional[tuple] = None,
    label_dropout: float = 0.0,
    null_label: Optional[int] = None,
    time_sampler: Optional[Callable] = None,
):
    """Denoising loss for a network ``apply_fn({'params': params}, x, t, label=...)``.

    Args:
        apply_fn: usually ``module.apply``.
        path: the noise path.
        prediction: the network's prediction type.
        weighting: one of :data:`WEIGHTINGS` (see module docstring for the exact formulas).
        t_range: (lo, hi) for t ~ Uniform(lo, hi); defaults to the path's [t_min, t_max],
            shrunk by 1e-3 of its width at both ends (the ends can have alpha = 0 or sigma = 0).
        label_dropout: probability of replacing a label by ``null_label`` (classifier-free
            guidance training). Requires ``null_label`` and a ``'label'`` entry in the batch.
        null_label: the null-class index (``num_classes`` for :mod:`jaxsample.nets`).
        time_sampler: optional ``key -> scalar t`` replacing the uniform draw (e.g. EDM's
            log-normal sigmas).

    Returns:
        ``loss_fn(params, batch, key) -> (loss, {'loss_unweighted': ...})``.
    """
    check_prediction(prediction)
    _check_weighting(weighting)
    if not 0.0 <= label_dropout <= 1.0:
        raise ValueError(f"label_dropout must be in [0, 1], got {label_dropout}")
    if label_dropout > 0 and null_label is None:
        raise ValueError("null_label must be given when label_dropout > 0")
    if t_range is None:
        lo, hi = float(path.t_min), float(path.t_max)
        pad = 1e-3 * (hi - lo)
        t_range = (lo + pad, hi - pad)
    lo, hi = map(float, t_range)
    if not lo < hi:
        raise ValueError(f"t_range must satisfy lo < hi, got {t_range}")
    path.check_times("t_range", [lo, hi])

    def loss_fn(params, batch, key):
        if "x" not in batch:
            raise ValueError(f"batch must contain 'x', got keys {sorted(batch)}")
        x0 = batch["x"]
        n = x0.shape[0]
        k_t, k_eps, k_drop = jax.random.split(key, 3)

        def draw(k):
            if time_sampler is not None:
                return jnp.asarray(time_sampler(k), x0.dtype)
            return jax.random.uniform(k, (), x0.dtype, lo, hi)

        t = jax.vmap(draw)(example_keys(k_t, n))
        eps = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:], x0.dtype))(example_keys(k_eps, n))
        x_t = expand_to(path.alpha(t), x0) * x0 + expand_to(path.sigma(t), x0) * eps
        cond = {}
        if "label" in batch:
            label = batch["label"]
            if label_dropout > 0:
                label = drop_labels(k_drop, label, label_dropout, null_label)
            cond["label"] = label
        raw = apply_fn({"params": params}, x_t, t, **cond)
        target = from_x0_eps(path, prediction, x0, eps, x_t, t)
        mse = jnp.mean(jnp.reshape((raw - target) ** 2, (n, -1)), axis=-1)
        loss = jnp.mean(loss_weight(path, prediction, weighting, t) * mse)
        return loss, {"loss_unweighted": jnp.mean(mse)}

    return loss_fn


def flow_matching_loss(apply_fn: Callable, path: Optional[AbstractPath] = None, **kwargs):
    """Flow matching / rectified flow: regress the velocity ``u = eps - x0`` of
    ``x_t = (1 - t) x0 + t eps`` (conditional OT path, t = 1 noise), unweighted.

    This is :func:`diffusion_loss` with ``RectifiedFlow``, ``prediction='velocity'``,
    ``weighting='none'``; other keyword arguments are passed through.
    """
    path = RectifiedFlow() if path is None else path
    kwargs.setdefault("t_range", (0.0, 1.0))
    return diffusion_loss(apply_fn, path, "velocity", "none", **kwargs)
