"""Flax networks for diffusion and flow models, and their bridge to :class:`~jaxsample.models.Model`.

- :class:`MLP`: a time-conditioned MLP for low-dimensional data (2-D toys, small vectors).
- :class:`UNet`: a small NHWC U-Net (two or more resolutions, residual blocks with a time
  embedding, GroupNorm, optional class conditioning with a null class for guidance).
- :class:`DigitsClassifier`: the small CNN whose penultimate layer gives the digits features.
- :func:`network_model` turns ``(module, params)`` into a :class:`~jaxsample.models.Model`
  whose ``fn`` is a ``jax.tree_util.Partial`` over the variables, so ``jax.grad`` reaches them.
- :func:`guided` wraps a class-conditional model into a classifier-free-guided one.

Every diffusion network (MLP, UNet) is called as ``module.apply(variables, x, t, label=None)``:
``x`` has a leading batch axis, ``t`` is a scalar or has shape ``(batch,)`` (a scalar is broadcast to the batch),
``label`` is an int array of shape ``(batch,)`` (or a scalar) when ``num_classes`` is set.
Label ``num_classes`` is the null class ("no label"), used by classifier-free guidance; passing
``label=None`` to a class-conditional network means the null class.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsample import nets, paths
    >>> net = nets.MLP(features=(32, 32))
    >>> x = jnp.zeros((4, 2))
    >>> params = net.init(jax.random.key(0), x, 0.5)["params"]
    >>> model = nets.network_model(net, params, paths.RectifiedFlow(), "velocity")
    >>> model(x, 0.5).shape
    (4, 2)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.models import Model, check_prediction, expand_to
from jaxsample.paths import AbstractPath

__all__ = ["sinusoidal_embedding", "MLP", "UNet", "ResBlock", "PatchTransformer", "DigitsClassifier",
           "FashionClassifier", "network_model", "guided"]


def sinusoidal_embedding(t, dim: int, max_period: float = 10000.0):
    """Transformer-style sinusoidal embedding of times ``t`` (shape (batch,)) -> (batch, dim).

    Frequencies are ``max_period ** (-k / (dim // 2))``, k = 0 .. dim//2 - 1; the output is
    ``[cos(t f), sin(t f)]`` (zero-padded by one column if ``dim`` is odd).
    """
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    t = jnp.asarray(t, jnp.float32)
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def _broadcast_t(t, batch: int):
    t = jnp.asarray(t)
    if t.ndim == 0:
        return jnp.broadcast_to(t, (batch,))
    if t.shape != (batch,):
        raise ValueError(f"t must be a scalar or have shape ({batch},), got {t.shape}")
    return t


def _time_features(t, batch, time_scale, log_time):
    t = _broadcast_t(t, batch).astype(jnp.float32)
    if log_time:  # EDM-style c_noise = log(sigma) / 4
        t = 0.25 * jnp.log(t)
    return time_scale * t


class _Conditioning(nn.Module):
    """Time (and optional class) embedding -> a vector of size ``dim``."""

    dim: int
    time_scale: float
    log_time: bool
    num_classes: Optional[int]

    @nn.compact
    def __call__(self, t, label, batch):
        emb = sinusoidal_embedding(_time_features(t, batch, self.time_scale, self.log_time), self.dim)
        emb = nn.Dense(self.dim)(emb)
        emb = nn.Dense(self.dim)(nn.silu(emb))
        if self.num_classes is not None:
            if label is None:
                label = jnp.full((batch,), self.num_classes, jnp.int32)
            label = jnp.broadcast_to(jnp.asarray(label, jnp.int32), (batch,))
            # num_classes + 1 rows: the last one is the null class.
            emb = emb + nn.Embed(self.num_classes + 1, self.dim)(label)
        elif label is not None:
            raise ValueError("label given to a network built without num_classes")
        return emb


class MLP(nn.Module):
    """Time-conditioned MLP for data of shape (batch, d).

    Attributes:
        features: hidden widths, one Dense + SiLU layer each; the time (and class) embedding
            is added to every hidden layer.
        time_embed_dim: size of the sinusoidal embedding and of the conditioning vector.
        time_scale: times are multiplied by this before the embedding (1000 suits t in [0, 1]).
        log_time: embed ``log(t) / 4`` instead of ``t`` (EDM / VE paths, t = sigma).
        num_classes: if set, the network takes ``label`` in [0, num_classes]
            (``num_classes`` = null class).
    """

    features: Sequence[int] = (256, 256, 256)
    time_embed_dim: int = 64
    time_scale: float = 1000.0
    log_time: bool = False
    num_classes: Optional[int] = None

    @nn.compact
    def __call__(self, x, t, label=None):
        if x.ndim != 2:
            raise ValueError(f"MLP expects x of shape (batch, d), got {x.shape}")
        if not self.features:
            raise ValueError("features must list at least one hidden width")
        batch = x.shape[0]
        emb = _Conditioning(self.time_embed_dim, self.time_scale, self.log_time, self.num_classes)(t, label, batch)
        h = x
        for width in self.features:
            h = nn.Dense(width)(h) + nn.Dense(width)(emb)
            h = nn.silu(h)
        return nn.Dense(x.shape[-1])(h).astype(x.dtype)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> Conv -> (+ time embedding) -> GroupNorm -> SiLU -> Conv, plus a skip."""

    channels: int
    groups: int = 8
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, emb, train: bool = False):
        groups = math.gcd(self.groups, x.shape[-1])
        h = nn.silu(nn.GroupNorm(num_groups=groups)(x))
        h = nn.Conv(self.channels, (3, 3))(h)
        h = h + nn.Dense(self.channels)(nn.silu(emb))[:, None, None, :]
        h = nn.silu(nn.GroupNorm(num_groups=math.gcd(self.groups, self.channels))(h))
        if self.dropout > 0:
            h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Conv(self.channels, (3, 3))(h)
        if x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1))(x)
        return x + h


class UNet(nn.Module):
    """A small U-Net for NHWC images (e.g. 8x8x1 or 16x16x1 digits, 32x32x3).

    Attributes:
        channels: base width; level i has ``channels * channel_mults[i]`` channels.
        channel_mults: one entry per resolution (2 entries = 2 resolutions). Height and width
            must be divisible by ``2 ** (len(channel_mults) - 1)``.
        num_res_blocks: residual blocks per resolution on the way down (one more on the way up).
        groups: GroupNorm groups (reduced to gcd(groups, channels) where needed).
        time_embed_dim, time_scale, log_time, num_classes: as in :class:`MLP`.
    """

    channels: int = 32
    channel_mults: Sequence[int] = (1, 2)
    num_res_blocks: int = 1
    groups: int = 8
    time_embed_dim: int = 128
    time_scale: float = 1000.0
    log_time: bool = False
    num_classes: Optional[int] = None

    @nn.compact
    def __call__(self, x, t, label=None):
        if x.ndim != 4:
            raise ValueError(f"UNet expects NHWC images of shape (batch, H, W, C), got {x.shape}")
        if not self.channel_mults:
            raise ValueError("channel_mults must have at least one entry")
        factor = 2 ** (len(self.channel_mults) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"image size {x.shape[1:3]} must be divisible by {factor} for channel_mults={self.channel_mults}")
        batch = x.shape[0]
        emb = _Conditioning(self.time_embed_dim, self.time_scale, self.log_time, self.num_classes)(t, label, batch)
        h = nn.Conv(self.channels, (3, 3))(x)
        skips = [h]
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                h = ResBlock(self.channels * mult, self.groups)(h, emb)
                skips.append(h)
            if level < len(self.channel_mults) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
                skips.append(h)
        h = ResBlock(h.shape[-1], self.groups)(h, emb)
        h = ResBlock(h.shape[-1], self.groups)(h, emb)
        for level, mult in reversed(list(enumerate(self.channel_mults))):
            for _ in range(self.num_res_blocks + 1):
                h = ResBlock(self.channels * mult, self.groups)(jnp.concatenate([h, skips.pop()], axis=-1), emb)
            if level > 0:
                b, hh, ww, c = h.shape
                h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method="nearest")
                h = nn.Conv(c, (3, 3))(h)
        h = nn.silu(nn.GroupNorm(num_groups=math.gcd(self.groups, h.shape[-1]))(h))
        return nn.Conv(x.shape[-1], (3, 3))(h).astype(x.dtype)


class _DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-zero conditioning (Peebles and Xie 2023): the
    conditioning vector sets each sub-layer's shift, scale and gate (gates start at zero)."""

    dim: int
    heads: int
    mlp_ratio: int = 4

    @nn.compact
    def __call__(self, h, emb):
        mods = nn.Dense(6 * self.dim, kernel_init=nn.initializers.zeros)(nn.silu(emb))[:, None, :]
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mods, 6, axis=-1)
        norm = lambda z: nn.LayerNorm(use_bias=False, use_scale=False)(z)  # noqa: E731
        a = norm(h) * (1 + scale1) + shift1
        h = h + gate1 * nn.MultiHeadDotProductAttention(self.heads, qkv_features=self.dim)(a, a)
        m = norm(h) * (1 + scale2) + shift2
        m = nn.Dense(self.dim)(nn.gelu(nn.Dense(self.mlp_ratio * self.dim)(m)))
        return h + gate2 * m


class PatchTransformer(nn.Module):
    """A small diffusion transformer (DiT-style) for NHWC images: non-overlapping ``patch x patch``
    tokens, learned position embeddings, ``depth`` adaLN-zero blocks, a linear un-patchify. Its
    work is dense matmuls, which suit a CPU better than small convolutions.

    Attributes:
        patch: patch size (height and width must be divisible by it).
        dim, depth, heads, mlp_ratio: token width, number of blocks, attention heads, MLP ratio.
        time_embed_dim, time_scale, log_time, num_classes: as in :class:`MLP`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> net = PatchTransformer(patch=4, dim=32, depth=1, heads=2)
        >>> x = jnp.zeros((2, 8, 8, 1))
        >>> params = net.init(jax.random.key(0), x, jnp.zeros(2))["params"]
        >>> net.apply({"params": params}, x, jnp.zeros(2)).shape
        (2, 8, 8, 1)
    """

    patch: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    time_embed_dim: int = 128
    time_scale: float = 1000.0
    log_time: bool = False
    num_classes: Optional[int] = None

    @nn.compact
    def __call__(self, x, t, label=None):
        if x.ndim != 4:
            raise ValueError(f"PatchTransformer expects NHWC images of shape (batch, H, W, C), got {x.shape}")
        b, hh, ww, c = x.shape
        p = self.patch
        if hh % p or ww % p:
            raise ValueError(f"image size {(hh, ww)} must be divisible by patch={p}")
        emb = _Conditioning(self.time_embed_dim, self.time_scale, self.log_time, self.num_classes)(t, label, b)
        tokens = x.reshape(b, hh // p, p, ww // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, p * p * c)
        h = nn.Dense(self.dim)(tokens)
        h = h + self.param("pos_embed", nn.initializers.normal(0.02), (1, h.shape[1], self.dim))
        for _ in range(self.depth):
            h = _DiTBlock(self.dim, self.heads, self.mlp_ratio)(h, emb)
        shift, scale = jnp.split(nn.Dense(2 * self.dim, kernel_init=nn.initializers.zeros)(nn.silu(emb))[:, None],
                                 2, axis=-1)
        h = nn.LayerNorm(use_bias=False, use_scale=False)(h) * (1 + scale) + shift
        out = nn.Dense(p * p * c, kernel_init=nn.initializers.zeros)(h)
        return self.from_final_layer(out, x).astype(x.dtype)

    def from_final_layer(self, y, x):
        """The image of shape ``x.shape`` from the final layer's patch tokens ``y`` (batch, patches,
        patch * patch * C): used by :class:`~jaxsample.distill.catch_up.CatchUpNet`'s extra heads."""
        b, hh, ww, c = x.shape
        p = self.patch
        return y.reshape(b, hh // p, ww // p, p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hh, ww, c)


class DigitsClassifier(nn.Module):
    """A small CNN on (N, 8, 8, 1) digits in [-1, 1]; ``features`` is the penultimate layer.

    ``__call__(x)`` returns logits (N, 10); ``__call__(x, return_features=True)`` returns
    ``(logits, features)`` with features of size ``feature_dim``. 16x16 inputs are average-pooled
    to 8x8 first. The shipped one (:func:`jaxsample.teachers.load_digits_classifier`) defines the
    digits Frechet distance (:mod:`jaxsample.features`).
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


class FashionClassifier(nn.Module):
    """A small CNN on (N, 28, 28, 1) Fashion-MNIST images in [-1, 1]; ``features`` is the
    penultimate layer (as :class:`DigitsClassifier`). The shipped one
    (:func:`jaxsample.teachers.load_classifier` ``('fashion_classifier')``) defines the
    Fashion-MNIST Frechet distance."""

    feature_dim: int = 128
    channels: int = 32
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, return_features: bool = False):
        if x.ndim != 4 or x.shape[1:] != (28, 28, 1):
            raise ValueError(f"expected images of shape (N, 28, 28, 1), got {x.shape}")
        h = nn.relu(nn.Conv(self.channels, (3, 3))(x))
        h = nn.relu(nn.Conv(2 * self.channels, (3, 3), strides=(2, 2))(h))  # 14x14
        h = nn.relu(nn.Conv(2 * self.channels, (3, 3))(h))
        h = nn.relu(nn.Conv(4 * self.channels, (3, 3), strides=(2, 2))(h))  # 7x7
        h = jnp.mean(h, axis=(1, 2))
        feats = nn.relu(nn.Dense(self.feature_dim)(h))
        logits = nn.Dense(self.num_classes)(feats)
        return (logits, feats) if return_features else logits


class _NNXApply(eqx.Module):
    """``apply_fn(variables, x, t, **cond)`` of an NNX module: linen's calling convention, with the
    NNX state as ``variables['params']``."""

    graphdef: Any = eqx.field(static=True)

    def __call__(self, variables, *args, **kwargs):
        from flax import nnx

        return nnx.merge(self.graphdef, variables["params"])(*args, **kwargs)


def nnx_apply(module):
    """An NNX module as linen's ``(apply_fn, params)`` pair, for the training loops that take a
    network that way (progressive distillation's student, :func:`jaxsample.train.fit`'s losses):
    ``apply_fn({'params': params}, x, t, **cond)`` merges the state and calls the module;
    ``params`` is its ``nnx.split`` state (a pytree). Trained parameters go back into a module with
    ``nnx.merge(graphdef, params)`` or into a model with ``network_model``-like
    ``Model(jax.tree_util.Partial(apply_fn, {'params': params}), path, prediction)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxsample as js
        >>> net = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        >>> apply_fn, params = js.nets.nnx_apply(net)
        >>> bool(jnp.allclose(apply_fn({"params": params}, jnp.ones((3, 2))), net(jnp.ones((3, 2)))))
        True
    """
    from flax import nnx

    if not isinstance(module, nnx.Module):
        raise ValueError(f"module must be a Flax NNX module, got {type(module).__name__}")
    graphdef, state = nnx.split(module)
    return _NNXApply(graphdef), state


def to_nnx(module, params, *example_args, **example_kwargs):
    """A linen network and its trained parameters as a Flax NNX module (``flax.nnx.bridge.ToNNX``),
    called as ``net(x, t, **cond)`` and usable anywhere an NNX module is: in your own NNX code, in
    :func:`network_model`, in :func:`nnx_apply` for the training loops. The NNX module computes
    exactly what ``module.apply({'params': params}, ...)`` does (the same parameters, the same
    graph).

    Args:
        module: a Flax linen module (e.g. :class:`MLP`, :class:`UNet`, :class:`PatchTransformer`).
        params: its ``'params'`` collection (or a variables dict holding ``'params'``).
        *example_args, **example_kwargs: an example call (e.g. ``x[:1], t[:1]``), used once to
            create the module's variables, which then take ``params``' values.

    The module carries no random-number streams (the library's networks are deterministic), so it
    can be traced by ``jax.jit`` as well as ``nnx.jit``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxsample as js
        >>> net = js.nets.MLP(features=(16, 16))
        >>> x, t = jnp.ones((2, 3)), jnp.full((2,), 0.5)
        >>> params = net.init(jax.random.key(0), x, t)["params"]
        >>> nnx_net = js.nets.to_nnx(net, params, x, t)
        >>> bool(jnp.array_equal(nnx_net(x, t), net.apply({"params": params}, x, t)))
        True
    """
    import flax
    from flax import nnx
    from flax.nnx import bridge

    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a Flax linen module, got {type(module).__name__}")
    params = flax.core.unfreeze(params)
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of parameters (linen's 'params' collection), got "
                         f"{type(params).__name__}")
    params = params.get("params", params)
    net = bridge.ToNNX(module, rngs=nnx.Rngs(0))
    bridge.lazy_init(net, *example_args, **example_kwargs)
    net.to_nnx__rngs = None  # deterministic networks: no random streams to advance inside a trace
    given = flax.traverse_util.flatten_dict(params)
    created = dict(nnx.to_flat_state(nnx.state(net, nnx.Param)))
    if set(given) != set(created):
        raise ValueError(f"params do not match the parameters {type(module).__name__} creates for the example call: "
                         f"missing {sorted(set(created) - set(given))[:3]}, unexpected "
                         f"{sorted(set(given) - set(created))[:3]}")
    for key, var in created.items():
        if np.shape(given[key]) != var.value.shape:
            raise ValueError(f"params entry {'/'.join(key)} has shape {np.shape(given[key])}, "
                             f"{type(module).__name__} expects {var.value.shape}")
        var.value = jnp.asarray(given[key], var.value.dtype)
    return net


def network_model(module, params=None, path: AbstractPath = None, prediction: str = None) -> Model:
    """A :class:`~jaxsample.models.Model` from a Flax network, linen or NNX.

    Args:
        module: a Flax linen module called as ``module.apply(variables, x, t, **cond)``, or a Flax NNX
            module (holding its own parameters) called as ``module(x, t, **cond)``.
        params: linen: the ``'params'`` collection, or a full variables dict containing ``'params'``;
            NNX: leave it out (``None``).
        path: the path the network was trained on.
        prediction: what the network predicts (``'eps', 'x0', 'v', 'velocity', 'score'``).

    Either way the parameters are pytree leaves of the model: ``jax.grad`` with respect to the
    model reaches them, and a mesh replicates them. Linen: ``fn`` is
    ``jax.tree_util.Partial(module.apply, variables)``; NNX: the same with :func:`nnx_apply`'s pair
    (the module split once, merged inside each call, so the state is traced, not captured).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxsample as js
        >>> class Net(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.lin = nnx.Linear(3, 2, rngs=rngs)
        ...     def __call__(self, x, t):
        ...         return self.lin(jnp.concatenate([x, jnp.broadcast_to(t, x.shape[:1])[:, None]], -1))
        >>> model = js.nets.network_model(Net(nnx.Rngs(0)), path=js.RectifiedFlow(), prediction="velocity")
        >>> js.sample(model, js.heun(), js.uniform(model.path, 4), jnp.ones((5, 2))).shape
        (5, 2)
    """
    if path is None or prediction is None:
        raise ValueError("network_model needs path= and prediction=")
    check_prediction(prediction)
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        nnx = None
    if nnx is not None and isinstance(module, nnx.Module):
        if params is not None:
            raise ValueError("params must be None for an NNX module (it holds its own state)")
        apply_fn, state = nnx_apply(module)
        return Model(jax.tree_util.Partial(apply_fn, {"params": state}), path, prediction)
    if not hasattr(module, "apply"):
        raise ValueError(f"module must be a Flax linen module (with .apply) or an NNX module, got "
                         f"{type(module).__name__}")
    if params is None:
        raise ValueError("params is required for a linen module")
    variables = params if isinstance(params, dict) and "params" in params else {"params": params}
    return Model(jax.tree_util.Partial(module.apply, variables), path, prediction)


class _GuidedFn(eqx.Module):
    fn: Callable
    scale: Any  # a number, a traced scalar, or a function of t
    null_label: int = eqx.field(static=True)
    path: Any = None  # only for ``interval``
    interval: Optional[tuple] = eqx.field(static=True, default=None)

    def _both(self, x, t, label, cond):
        """(conditional, unconditional) predictions in one call on the doubled batch."""
        batch = x.shape[0]
        t2 = jnp.concatenate([t, t]) if t.ndim == 1 else t
        x2 = jnp.concatenate([x, x], axis=0)
        label2 = jnp.concatenate([label, jnp.full((batch,), self.null_label, jnp.int32)])
        cond2 = jax.tree_util.tree_map(lambda c: jnp.concatenate([c, c], axis=0), cond)
        out = self.fn(x2, t2, label=label2, **cond2)
        return out[:batch], out[batch:]

    def _guided(self, x, t, label, cond):
        out_cond, out_uncond = self._both(x, t, label, cond)
        scale = self.scale(t) if callable(self.scale) else self.scale
        return out_uncond + expand_to(jnp.asarray(scale, out_cond.dtype), out_cond) * (out_cond - out_uncond)

    def __call__(self, x, t, label=None, **cond):
        batch = x.shape[0]
        if label is None:  # nothing to guide towards: the unconditional prediction
            return self.fn(x, t, label=jnp.full((batch,), self.null_label, jnp.int32), **cond)
        label = jnp.broadcast_to(jnp.asarray(label, jnp.int32), (batch,))
        t = jnp.asarray(t)
        if self.interval is None:
            return self._guided(x, t, label, cond)
        lo, hi = self.interval
        noise_level = self.path.sigma(t) / self.path.alpha(t)  # EDM's sigma
        inside = (noise_level > lo) & (noise_level <= hi)
        conditional = lambda: self.fn(x, t, label=label, **cond)  # noqa: E731
        if t.ndim == 0:  # one noise level for the batch: outside the interval, one call on the batch only
            return jax.lax.cond(inside, lambda: self._guided(x, t, label, cond), conditional)
        return jnp.where(expand_to(inside, x), self._guided(x, t, label, cond), conditional())


def guided(model: Model, scale, null_label: int, interval=None) -> Model:
    """Classifier-free guidance (Ho & Salimans 2022) as a model wrapper.

    The guided model predicts ``uncond + scale * (cond - uncond)`` in the model's own
    prediction space, where ``cond = model(x, t, label=label)`` and
    ``uncond = model(x, t, label=null_label)``; both are evaluated in one batched call.
    ``scale = 1`` is the conditional model, ``scale = 0`` the unconditional one (the
    "w" of Ho & Salimans is ``scale - 1``). Because every conversion between eps, x0, v,
    velocity and score is affine in the prediction at fixed (x, t), and the weights
    ``(1 - scale, scale)`` sum to one, guiding in any prediction space gives the same result:
    guided eps, x0, v, velocity and score are all consistent.

    Args:
        model: a class-conditional model whose ``fn`` takes ``label=``.
        scale: guidance scale: a float, a traced scalar, or a function of the time ``t`` (a
            per-step guidance schedule, e.g. ``lambda t: 1 + 3 * t``; ``t`` is a scalar, or a
            vector with one time per sample).
        null_label: the null-class index (``num_classes`` for the networks here).
        interval: ``(sigma_lo, sigma_hi)``: guide only where EDM's noise level ``sigma / alpha``
            is in ``(sigma_lo, sigma_hi]`` and use the conditional model alone elsewhere, one
            network call instead of two (Kynkaanniemi et al. 2024, "Applying guidance in a limited
            interval", Eq. 6; e.g. ``(0.28, 2.90)`` at scale 2.1 for their EDM2-S). ``None``
            (default): guide everywhere. The paper switches at the grid's noise levels; here the
            switch is at each network call's own noise level, which is the same for one-call-per-step
            solvers (Euler, DDIM, the multistep ones) and can differ by one step for the second
            stage of Heun-type solvers.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxsample as js
        >>> net = lambda x, t, label: x * (1.0 + label[:, None])  # a toy conditional "network"
        >>> model = js.Model(net, js.EDM(), "x0")
        >>> g = js.guided(model, 2.0, null_label=0, interval=(0.5, 5.0))
        >>> x, label = jnp.ones((2, 1)), jnp.array([1, 1])
        >>> float(g(x, 1.0, label=label)[0, 0]), float(g(x, 10.0, label=label)[0, 0])  # guided, conditional only
        (3.0, 2.0)
    """
    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxsample Model, got {type(model).__name__}")
    if interval is not None:
        try:
            lo, hi = (float(v) for v in interval)
        except (TypeError, ValueError):
            raise ValueError(f"interval must be a pair (sigma_lo, sigma_hi) of noise levels, got {interval!r}") from None
        if not 0 <= lo < hi:
            raise ValueError(f"interval must satisfy 0 <= sigma_lo < sigma_hi, got {interval!r}")
        interval = (lo, hi)
    return Model(_GuidedFn(model.fn, scale, int(null_label), model.path if interval else None, interval),
                 model.path, model.prediction)
