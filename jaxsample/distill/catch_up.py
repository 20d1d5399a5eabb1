"""Catch-up distillation (CUD): few-step rectified-flow velocity models trained in one session.

Shao et al. 2023, "Catch-Up Distillation: You Only Need to Train Once for Accelerating
Sampling" (arXiv 2305.10769); reference code shaoshitong/Catch-Up-Distillation (``flows.py``,
``OnlineSlimFlow``; ``train_cud_reverse_img_ddp.py``; ``train_distill_update.py``).

Rectified flow in the library's convention: ``x_t = (1 - t) x0 + t eps``, ``t = 1`` is noise,
the target velocity is ``v* = eps - x0`` and samplers run from ``t = 1`` to ``t = 0``. A
catch-up network ``v(x, t)`` is trained against two targets at once:

- the ground truth ``v*`` (plain flow matching), and
- the "previous-moment output": the same online network, under stop-gradient, evaluated at the
  smaller time ``t - Delta`` on the point reached from ``x_t`` by a look-ahead step of size
  ``Delta`` taken with the network's own velocity. The network thereby learns to agree with
  where its own coarse step lands: it catches up with its previous moment.

Look-ahead targets (``sg`` is stop-gradient, ``k1 = sg[v(x_t, t)]``, ``h = Delta``), see
:func:`catch_up_targets`:

- ``'rk12'`` (one head): ``[v(x_t - h k1, t - h)]``.
- ``'rk23'`` (two heads): ``k2 = v(x_t - h k1, t - h)``, ``s = (k1 + k2) / 2`` and targets
  ``[v(x_t - j h s, t - j h) for j = 1, 2]``.
- ``'rk34'`` (three heads): ``k2`` as above, ``k3 = v(x_t - h (7/4 k1 + 1/4 k2), t - 2h)``,
  ``s = 5/12 k1 + 2/3 k2 - 1/12 k3`` and targets ``[v(x_t - j h s, t - j h) for j = 1, 2, 3]``.

Head ``j`` (``j = 1`` is the network's ordinary output, the others are extra output layers on
the network's last features, see :class:`CatchUpNet`) regresses target ``j``. Times are clamped to
``>= eps``; where ``t < eps + order * Delta`` (the look-ahead would pass the data end) every
catch-up target is replaced by ``v*``.

``Delta`` schedules (``TN = num_segments``, 16 in the paper): ``'uniform'``: ``Delta ~
U(0, 1/TN)`` per example; ``'rule'``: ``Delta = t / TN``; ``'origin'``: ``Delta = 1 / TN``.

Loss (per example, mean over dimensions, then over the batch), ``(w_c, w_g) = weights``
(default ``(2, 2)``):

``L = sum_j a * w_c * |v_j - target_j|^2 + b * w_g * |v_j - v*|^2``

with ``a = b = 1/2`` for ``weighting='fixed'`` and ``a = p, b = 1 - p`` for ``'adaptive'``, ``p``
the training progress (step / num_steps) passed per example as ``batch['progress']``. (The
reference code uses the adaptive weights for RK12 only; here they apply to every method.)

One-step stage (``train_distill_update.py``): sample trajectories with the trained network
(Euler, ``N`` steps), keep ``(noise, sample)`` pairs and train ``x0_hat = z - v(z, 1)`` to hit
the sample in one step, see :func:`trajectory_pairs` and :func:`train_one_step`. The reference
regularises towards the EMA network's ``v(z, 1)``; here the anchor is the network the stage
starts from (its predictions are stored with the pairs), because the loss cannot see the EMA.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsample import data, nets
    >>> from jaxsample.distill import catch_up
    >>> state, history = catch_up.train_catch_up(
    ...     nets.MLP(features=(16,)), data.toy_batches("checkerboard", 32), num_steps=2,
    ...     method="rk23", example_x=jnp.zeros((1, 2)), progress=False)
    >>> model = catch_up.catch_up_model(nets.MLP(features=(16,)), state.ema_params, method="rk23")
    >>> model(jnp.zeros((4, 2)), 0.5).shape
    (4, 2)
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import flax.linen as nn
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample import objectives, train
from jaxsample.models import Model, expand_to
from jaxsample.nets import network_model, nnx_apply
from jaxsample.paths import RectifiedFlow

__all__ = [
    "METHODS",
    "DELTA_SCHEDULES",
    "LOSS_WEIGHTINGS",
    "method_order",
    "CatchUpNet",
    "NNXCatchUpNet",
    "final_layer_name",
    "init_catch_up_params",
    "sample_deltas",
    "catch_up_targets",
    "catch_up_loss",
    "with_progress",
    "train_catch_up",
    "catch_up_model",
    "trajectory_pairs",
    "one_step_loss",
    "train_one_step",
]

#: Training methods: plain flow matching (the baseline, one head) and the three catch-up orders.
METHODS = ("flow_matching", "rk12", "rk23", "rk34")
#: Delta schedules of the reference code's ``adapt_cu``.
DELTA_SCHEDULES = ("uniform", "rule", "origin")
#: Loss weightings: fixed (1/2, 1/2) or adaptive (progress, 1 - progress).
LOSS_WEIGHTINGS = ("fixed", "adaptive")

_ORDERS = {"flow_matching": 1, "rk12": 1, "rk23": 2, "rk34": 3}


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def method_order(method: str) -> int:
    """Number of heads (= look-ahead steps) of ``method``: 1 for flow_matching and rk12, 2 for
    rk23, 3 for rk34."""
    _check_choice("method", method, METHODS)
    return _ORDERS[method]


def _final_layer_interceptor(record, parent_path):
    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        if (context.method_name == "__call__" and isinstance(mod, (nn.Dense, nn.Conv))
                and mod.parent is not None and getattr(mod.parent, "scope", None) is not None
                and tuple(mod.parent.scope.path) == parent_path):
            record["features"], record["module"] = args[0], mod
        return next_fun(*args, **kwargs)

    return interceptor


class CatchUpNet(nn.Module):
    """A velocity network with ``num_heads`` outputs sharing one trunk.

    Head 1 is ``base``'s own output. Heads 2..num_heads (parameters ``head_2``, ...) are extra
    copies of ``base``'s final layer (the last ``nn.Dense`` / ``nn.Conv`` called directly by
    ``base``: the output Dense of :class:`~jaxsample.nets.MLP`, the output Conv of
    :class:`~jaxsample.nets.UNet`) applied to the same features, like the reference code's
    ``MetaGenerator`` heads. ``base``'s parameters live under ``'base'``, so a trained
    ``base`` (e.g. a flow-matching teacher) drops in for fine-tuning.

    Called as ``apply(variables, x, t, label=None, all_heads=False)``: head 1 of shape
    ``x.shape``, or with ``all_heads=True`` all heads stacked, shape ``(num_heads, *x.shape)``.
    """

    base: nn.Module
    num_heads: int = 1

    @nn.compact
    def __call__(self, x, t, label=None, all_heads: bool = False):
        if isinstance(self.num_heads, bool) or not isinstance(self.num_heads, int) or self.num_heads < 1:
            raise ValueError(f"num_heads must be a positive integer, got {self.num_heads!r}")
        base = self.base
        cond = {} if label is None else {"label": label}
        if self.num_heads == 1:
            out = base(x, t, **cond)
            return out[None] if all_heads else out
        record = {}
        with nn.intercept_methods(_final_layer_interceptor(record, tuple(self.scope.path) + ("base",))):
            out = base(x, t, **cond)
        if "module" not in record:
            raise ValueError(f"base {type(self.base).__name__} calls no nn.Dense / nn.Conv directly; "
                             "extra heads need its final layer")
        final, feats = record["module"], record["features"]
        outs = [out]
        for j in range(2, self.num_heads + 1):
            if isinstance(final, nn.Conv):
                head = nn.Conv(final.features, final.kernel_size, strides=final.strides, padding=final.padding,
                               name=f"head_{j}")
            else:
                head = nn.Dense(final.features, name=f"head_{j}")
            outs.append(_head_output(self.base, head(feats), x, out))
        return jnp.stack(outs) if all_heads else out


def _head_output(base, y, x, out):
    """An extra head's output ``y`` (its final layer's output) in the shape of ``base``'s output
    ``out``: through ``base.from_final_layer(y, x)`` where ``base`` post-processes its final layer's
    output (e.g. :class:`~jaxsample.nets.PatchTransformer` folds patch tokens back into an image)."""
    if hasattr(base, "from_final_layer"):
        y = base.from_final_layer(y, x)
    if y.shape != out.shape:
        raise ValueError(f"base {type(base).__name__}: its final layer gives shape {y.shape} but the network "
                         f"returns {out.shape}; give it a from_final_layer(y, x) method that maps one to the other")
    return y.astype(out.dtype)


class _Tap:
    """Stands in for an NNX layer during one call: records the layer's input, then calls it."""

    def __init__(self, layer, record: dict, name: str):
        self.layer, self.record, self.name = layer, record, name

    def __call__(self, h, *args, **kwargs):
        self.record["features"], self.record["name"] = h, self.name
        return self.layer(h, *args, **kwargs)


def _tapped_call(base, names, record, *args, **kwargs):
    """``base(*args, **kwargs)`` with its direct sub-layers ``names`` tapped (restored afterwards)."""
    layers = {name: getattr(base, name) for name in names}
    try:
        for name, layer in layers.items():
            setattr(base, name, _Tap(layer, record, name))
        return base(*args, **kwargs)
    finally:
        for name, layer in layers.items():
            setattr(base, name, layer)


def _is_nnx(module) -> bool:
    return isinstance(module, nnx.Module)


def final_layer_name(base, x, t=0.5, **cond) -> str:
    """Name of the last Dense/Conv ``base`` calls directly: in linen ``base``'s parameters, in NNX
    the attribute of ``base`` holding that ``nnx.Linear`` / ``nnx.Conv``. ``x`` is an example input
    (its values are not used)."""
    if _is_nnx(base):
        names = [k for k, v in vars(base).items() if isinstance(v, (nnx.Linear, nnx.Conv))]
        record = {}
        x = jnp.asarray(x)[:1]  # one real call at batch 1 (NNX modules cannot be mutated inside a trace)
        cond = {k: jnp.asarray(v)[:1] for k, v in cond.items()}
        _tapped_call(base, names, record, x, jnp.full((1,), t, x.dtype), **cond)
        if "name" not in record:
            raise ValueError(f"base {type(base).__name__} calls no nnx.Linear / nnx.Conv held as its own attribute; "
                             "extra heads need its final layer")
        return record["name"]
    record = {}
    with nn.intercept_methods(_final_layer_interceptor(record, ())):
        jax.eval_shape(lambda: base.init(jax.random.key(0), x, t, **cond))
    if "module" not in record:
        raise ValueError(f"base {type(base).__name__} calls no nn.Dense / nn.Conv directly")
    return record["module"].name


class NNXCatchUpNet(nnx.Module):
    """The Flax NNX form of :class:`CatchUpNet`: an NNX velocity network ``base`` (called as
    ``base(x, t, **cond)``) with ``num_heads - 1`` extra copies of its final layer (the last
    ``nnx.Linear`` / ``nnx.Conv`` attribute of ``base`` that ``base`` calls, found from one
    example call, :func:`final_layer_name`) applied to the same features. Every extra head
    starts as a copy of that layer, so all heads start at ``base``'s velocity (fine-tuning a
    trained network, as :func:`init_catch_up_params` does with ``base_params``).

    Called as ``net(x, t, label=None, all_heads=False)``, with the outputs of
    :class:`CatchUpNet`. ``base`` is held, not copied: train the split state
    (:func:`jaxsample.nets.nnx_apply`), as :func:`train_catch_up` does.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from jaxsample.distill import catch_up
        >>> class Net(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.hidden, self.out = nnx.Linear(3, 8, rngs=rngs), nnx.Linear(8, 2, rngs=rngs)
        ...     def __call__(self, x, t):
        ...         h = jnp.concatenate([x, jnp.broadcast_to(t, x.shape[:1])[:, None]], -1)
        ...         return self.out(jnp.tanh(self.hidden(h)))
        >>> net = catch_up.NNXCatchUpNet(Net(nnx.Rngs(0)), 3, example_x=jnp.zeros((1, 2)))
        >>> net.final_layer, net(jnp.zeros((4, 2)), jnp.full((4,), 0.5), all_heads=True).shape
        ('out', (3, 4, 2))
    """

    def __init__(self, base, num_heads: int = 1, *, example_x=None, example_cond: Optional[dict] = None):
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads must be a positive integer, got {num_heads!r}")
        if not isinstance(base, nnx.Module):
            raise ValueError(f"base must be a Flax NNX module, got {type(base).__name__}")
        self.base, self.num_heads, self.final_layer = base, num_heads, None
        if num_heads > 1:
            if example_x is None:
                raise ValueError("example_x is required for num_heads > 1 (one example call finds base's final "
                                 "layer)")
            self.final_layer = final_layer_name(base, example_x, **dict(example_cond or {}))
            self.heads = nnx.List([nnx.clone(getattr(base, self.final_layer)) for _ in range(num_heads - 1)])

    def __call__(self, x, t, label=None, all_heads: bool = False):
        cond = {} if label is None else {"label": label}
        if self.num_heads == 1 or not all_heads:
            out = self.base(x, t, **cond)
            return out[None] if all_heads else out
        record = {}
        out = _tapped_call(self.base, [self.final_layer], record, x, t, **cond)
        return jnp.stack([out] + [_head_output(self.base, head(record["features"]), x, out) for head in self.heads])


def _network(base, num_heads: int, example_x, example_cond=None, *, key=None, base_params=None):
    """``(apply_fn, params)`` of the catch-up network on ``base``, linen (:class:`CatchUpNet`) or NNX
    (:class:`NNXCatchUpNet`, its split state as ``params``)."""
    if _is_nnx(base):
        if base_params is not None:
            raise ValueError("base_params must be None for an NNX base (it holds its own, trained, parameters)")
        return nnx_apply(NNXCatchUpNet(base, num_heads, example_x=example_x, example_cond=example_cond))
    if not isinstance(base, nn.Module):
        raise ValueError(f"base must be a Flax linen or NNX module, got {type(base).__name__}")
    params = init_catch_up_params(base, num_heads, example_x, key=key, base_params=base_params,
                                  example_cond=example_cond)
    return CatchUpNet(base, num_heads).apply, params


def init_catch_up_params(base: nn.Module, num_heads: int, example_x, *, key=None, base_params=None,
                         example_cond: Optional[dict] = None):
    """Parameters of ``CatchUpNet(base, num_heads)``.

    Args:
        base: the trunk network (e.g. :class:`~jaxsample.nets.MLP`, :class:`~jaxsample.nets.UNet`).
        num_heads: number of heads (:func:`method_order`).
        example_x: an input with a leading batch axis (its values are not used).
        key: initialisation key (default ``jax.random.key(0)``).
        base_params: pretrained parameters of ``base`` (fine-tuning from a flow-matching
            teacher). They replace the fresh trunk, and every extra head starts as a copy of the
            trained final layer, so all heads start at the teacher's velocity.
        example_cond: condition passed at initialisation (e.g. ``{'label': labels}``).
    """
    key = jax.random.key(0) if key is None else key
    cond = dict(example_cond or {})
    net = CatchUpNet(base, num_heads)
    params = net.init(key, jnp.asarray(example_x), jnp.zeros(np.shape(example_x)[:1]), all_heads=True, **cond)["params"]
    params = jax.tree_util.tree_map(jnp.asarray, _unfreeze(params))
    if base_params is None:
        return params
    fresh = jax.tree_util.tree_structure(params["base"])
    given = jax.tree_util.tree_structure(_unfreeze(base_params))
    if fresh != given:
        raise ValueError("base_params do not match the structure of base's parameters; "
                         "build base with the teacher's own configuration")
    params["base"] = jax.tree_util.tree_map(jnp.asarray, _unfreeze(base_params))
    if num_heads > 1:
        name = final_layer_name(base, jnp.asarray(example_x), 0.5, **cond)
        for j in range(2, num_heads + 1):
            params[f"head_{j}"] = jax.tree_util.tree_map(jnp.array, params["base"][name])
    return params


def _unfreeze(tree):
    from flax.core import unfreeze

    return unfreeze(tree)


# --------------------------------------------------------------------------------------------
# Targets and loss


def sample_deltas(key, t, schedule: str, num_segments: int = 16):
    """The look-ahead sizes Delta for times ``t`` (shape (batch,)): ``'uniform'``
    ``U(0, 1/num_segments)`` (example i from ``fold_in(key, i)``), ``'rule'`` ``t / num_segments``,
    ``'origin'`` ``1 / num_segments``."""
    _check_choice("delta_schedule", schedule, DELTA_SCHEDULES)
    _check_positive_int("num_segments", num_segments)
    t = jnp.asarray(t)
    if schedule == "uniform":
        keys = objectives.example_keys(key, t.shape[0])
        return jax.vmap(lambda k: jax.random.uniform(k, (), t.dtype))(keys) / num_segments
    if schedule == "rule":
        return t / num_segments
    return jnp.full_like(t, 1.0 / num_segments)


def catch_up_targets(velocity_fn: Callable, x, t, delta, method: str, *, k1=None, eps: float = 1e-5):
    """The catch-up targets of ``method`` at ``(x, t)`` with look-ahead ``delta``.

    Args:
        velocity_fn: ``velocity_fn(x, t) -> velocity`` (head 1 of the online network; the
            caller applies stop-gradient). ``t`` has shape (batch,).
        x: points ``x_t``, leading batch axis.
        t, delta: shape (batch,).
        method: ``'rk12'``, ``'rk23'`` or ``'rk34'``.
        k1: ``velocity_fn(x, t)`` if already computed (saves a call).
        eps: times are clamped to ``>= eps``.

    Returns:
        Shape ``(order, *x.shape)``: target j (0-based) is the velocity at ``t - (j+1) delta`` of
        the look-ahead point (see the module docstring), without the ``v*`` replacement near t = 0.
    """
    _check_choice("method", method, METHODS[1:])
    order = _ORDERS[method]
    t = jnp.asarray(t)
    delta = jnp.asarray(delta, t.dtype)
    h = expand_to(delta, x)

    def v(y, s):
        return velocity_fn(y, jnp.maximum(s, eps))

    k1 = v(x, t) if k1 is None else k1
    if method == "rk12":
        slope = k1
    else:
        k2 = v(x - h * k1, t - delta)
        if method == "rk23":
            slope = 0.5 * k1 + 0.5 * k2
        else:
            k3 = v(x - h * (1.75 * k1 + 0.25 * k2), t - 2.0 * delta)
            slope = (5.0 / 12.0) * k1 + (2.0 / 3.0) * k2 - (1.0 / 12.0) * k3
    return jnp.stack([v(x - j * h * slope, t - j * delta) for j in range(1, order + 1)])


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_weights(weights):
    try:
        w = tuple(float(a) for a in weights)
    except TypeError:
        raise ValueError(f"weights must be a pair (catch_up, ground_truth) of floats >= 0, got {weights!r}") from None
    if len(w) != 2 or min(w) < 0 or not all(np.isfinite(w)):
        raise ValueError(f"weights must be a pair (catch_up, ground_truth) of floats >= 0, got {weights!r}")
    return w


def catch_up_loss(apply_fn: Callable, *, method: str = "rk12", delta_schedule: str = "uniform",
                  num_segments: int = 16, weighting: str = "fixed", weights: Sequence[float] = (2.0, 2.0),
                  eps: float = 1e-5, label_dropout: float = 0.0, null_label: Optional[int] = None):
    """The catch-up loss (module docstring) for ``apply_fn`` = ``CatchUpNet(...).apply``.

    Args:
        apply_fn: called as ``apply_fn({'params': p}, x, t, all_heads=True, **cond)`` and must return
            ``(order, *x.shape)``; with ``all_heads=False`` head 1 only.
        method: ``'rk12'``, ``'rk23'`` or ``'rk34'``.
        delta_schedule: one of :data:`DELTA_SCHEDULES`.
        num_segments: TN (16 in the paper).
        weighting: ``'fixed'`` or ``'adaptive'`` (needs ``batch['progress']``, shape (batch,)).
        weights: ``(catch_up, ground_truth)`` weights, the reference code's ``l_weight``.
        eps: smallest training time; times are ``eps + (1 - eps) U(0, 1)``.
        label_dropout, null_label: classifier-free guidance training, as in
            :func:`jaxsample.objectives.diffusion_loss`.

    Returns:
        ``loss_fn(params, batch, key) -> (loss, metrics)``; example i draws its time, noise,
        Delta and label dropout from ``fold_in`` of the step key with i.
    """
    _check_choice("method", method, METHODS[1:])
    _check_choice("delta_schedule", delta_schedule, DELTA_SCHEDULES)
    _check_choice("weighting", weighting, LOSS_WEIGHTINGS)
    _check_positive_int("num_segments", num_segments)
    w_c, w_g = _check_weights(weights)
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in (0, 1), got {eps}")
    if not 0.0 <= label_dropout <= 1.0:
        raise ValueError(f"label_dropout must be in [0, 1], got {label_dropout}")
    if label_dropout > 0 and null_label is None:
        raise ValueError("null_label must be given when label_dropout > 0")
    order = _ORDERS[method]

    def loss_fn(params, batch, key):
        if "x" not in batch:
            raise ValueError(f"batch must contain 'x', got keys {sorted(batch)}")
        x0 = batch["x"]
        n = x0.shape[0]
        k_t, k_eps, k_delta, k_drop = jax.random.split(key, 4)
        u = jax.vmap(lambda k: jax.random.uniform(k, (), x0.dtype))(objectives.example_keys(k_t, n))
        t = eps + (1.0 - eps) * u
        noise = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:], x0.dtype))(objectives.example_keys(k_eps, n))
        delta = sample_deltas(k_delta, t, delta_schedule, num_segments).astype(x0.dtype)
        x_t = expand_to(1.0 - t, x0) * x0 + expand_to(t, x0) * noise
        v_star = noise - x0
        cond = {}
        if "label" in batch:
            label = batch["label"]
            if label_dropout > 0:
                label = objectives.drop_labels(k_drop, label, label_dropout, null_label)
            cond["label"] = label
        preds = apply_fn({"params": params}, x_t, t, all_heads=True, **cond)
        if preds.shape != (order,) + x0.shape:
            raise ValueError(f"apply_fn returned shape {preds.shape}, expected {(order,) + x0.shape}: "
                             f"build CatchUpNet with num_heads={order} for method {method!r}")
        frozen = jax.lax.stop_gradient(params)

        def velocity_fn(y, s):
            return apply_fn({"params": frozen}, y, s, **cond)

        targets = jax.lax.stop_gradient(
            catch_up_targets(velocity_fn, x_t, t, delta, method, k1=jax.lax.stop_gradient(preds[0]), eps=eps))
        valid = t >= eps + order * delta
        targets = jnp.where(expand_to(valid, targets[0])[None], targets, v_star[None])

        def mse(a, b):
            return jnp.mean(jnp.reshape((a - b) ** 2, (order, n, -1)), axis=-1)  # (order, n)

        mse_c, mse_g = mse(preds, targets), mse(preds, v_star[None])
        if weighting == "fixed":
            a, b = 0.5, 0.5
        else:
            if "progress" not in batch:
                raise ValueError("weighting='adaptive' needs batch['progress'] (step / num_steps, shape (batch,)); "
                                 "wrap the batch function with with_progress")
            a = jnp.asarray(batch["progress"], x0.dtype)
            b = 1.0 - a
        per_example = jnp.sum(a * w_c * mse_c + b * w_g * mse_g, axis=0)
        loss = jnp.mean(per_example)
        metrics = {"loss_catch_up": jnp.mean(mse_c), "loss_ground_truth": jnp.mean(mse_g),
                   "catch_up_fraction": jnp.mean(valid.astype(x0.dtype))}
        return loss, metrics

    return loss_fn


def with_progress(batch_fn: Callable[[int], dict], num_steps: int) -> Callable[[int], dict]:
    """``batch_fn`` with ``'progress' = step / num_steps`` added per example (shape (batch,))."""
    _check_positive_int("num_steps", num_steps)

    def wrapped(step: int) -> dict:
        batch = dict(batch_fn(step))
        n = np.shape(batch["x"])[0]
        batch["progress"] = np.full((n,), step / num_steps, np.float32)
        return batch

    for attr in ("process_local",):
        if hasattr(batch_fn, attr):
            setattr(wrapped, attr, getattr(batch_fn, attr))
    return wrapped


# --------------------------------------------------------------------------------------------
# Training


def train_catch_up(base, batch_fn: Callable[[int], dict], *, num_steps: int, example_x,
                   method: str = "rk12", delta_schedule: str = "uniform", num_segments: int = 16,
                   weighting: str = "fixed", weights: Sequence[float] = (2.0, 2.0), eps: float = 1e-5,
                   base_params=None, example_cond: Optional[dict] = None, label_dropout: float = 0.0,
                   null_label: Optional[int] = None, learning_rate: float = 2e-4, warmup_steps: int = 0,
                   grad_clip: Optional[float] = None, ema_decay: float = 0.999, seed: int = 0, workdir=None,
                   checkpoint_every: Optional[int] = None, log_every: int = 50, mesh=None, progress: bool = True):
    """Train a catch-up network (or, with ``method='flow_matching'``, the flow-matching baseline
    with the same network and loop) with :func:`jaxsample.train.fit`.

    Args:
        base: the trunk network; the trained network is ``CatchUpNet(base, method_order(method))``.
            A Flax NNX module works too: the trained network is then
            ``NNXCatchUpNet(base, method_order(method))`` (extra heads start as copies of base's
            final layer, base starts from its own weights), trained through its split state
            (:func:`jaxsample.nets.nnx_apply`); ``state.params`` is that state.
        batch_fn: ``batch_fn(step) -> {'x': data, ['label': ...]}``, deterministic in ``step``.
        num_steps: total training steps.
        example_x: an input with a leading batch axis for initialisation.
        method: one of :data:`METHODS`.
        delta_schedule, num_segments, weighting, weights, eps, label_dropout, null_label: see
            :func:`catch_up_loss` (flow matching uses only the label dropout).
        base_params: trained parameters of ``base`` to fine-tune from (a flow-matching teacher);
            None trains from scratch.
        example_cond: condition for initialisation (e.g. ``{'label': jnp.zeros(1, int)}``).
        learning_rate, warmup_steps, grad_clip: :func:`jaxsample.train.make_optimizer` (Adam).
        ema_decay, seed: :class:`jaxsample.train.TrainState`; the initialisation key is
            ``fold_in(key(seed), 1)`` and the training keys derive from ``key(seed)``.
        workdir, checkpoint_every, log_every, mesh, progress: :func:`jaxsample.train.fit`
            (orbax checkpoints, exact resume, data parallelism).

    Returns:
        ``(state, history)`` from :func:`jaxsample.train.fit`; ``state.params`` and
        ``state.ema_params`` are ``CatchUpNet`` parameters (see :func:`catch_up_model`).
    """
    _check_choice("method", method, METHODS)
    _check_positive_int("num_steps", num_steps)
    order = _ORDERS[method]
    _check_choice("weighting", weighting, LOSS_WEIGHTINGS)
    root = jax.random.key(seed)
    apply_fn, params = _network(base, order, example_x, example_cond, key=jax.random.fold_in(root, 1),
                                base_params=base_params)
    if method == "flow_matching":
        loss_fn = objectives.flow_matching_loss(apply_fn, label_dropout=label_dropout, null_label=null_label)
    else:
        loss_fn = catch_up_loss(apply_fn, method=method, delta_schedule=delta_schedule, num_segments=num_segments,
                                weighting=weighting, weights=weights, eps=eps, label_dropout=label_dropout,
                                null_label=null_label)
    if weighting == "adaptive" and method != "flow_matching":
        batch_fn = with_progress(batch_fn, num_steps)
    tx = train.make_optimizer(learning_rate, warmup_steps=warmup_steps, grad_clip=grad_clip)
    config = {"method": method, "delta_schedule": delta_schedule, "num_segments": int(num_segments),
              "weighting": weighting, "weights": tuple(float(w) for w in weights), "eps": float(eps),
              "fine_tune": base_params is not None or _is_nnx(base)}
    state = train.TrainState.create(params, tx, rng=root, ema_decay=ema_decay, config=config)
    return train.fit(state, loss_fn, batch_fn, num_steps=num_steps, workdir=workdir,
                     checkpoint_every=checkpoint_every, log_every=log_every, mesh=mesh, progress=progress)


def catch_up_model(base, params, *, method: str = "rk12", example_x=None, example_cond: Optional[dict] = None) -> Model:
    """Head 1 of a trained catch-up network as a rectified-flow velocity
    :class:`~jaxsample.models.Model`, ready for :func:`jaxsample.sampling.sample`.

    ``base`` and ``params`` as :func:`train_catch_up` took and returned them: a linen module and
    :class:`CatchUpNet` parameters, or an NNX module and :class:`NNXCatchUpNet`'s state (then
    ``example_x``, and ``example_cond`` for a conditional network, as given to training)."""
    if _is_nnx(base):
        graphdef = nnx.graphdef(NNXCatchUpNet(base, method_order(method), example_x=example_x,
                                              example_cond=example_cond))
        return network_model(nnx.merge(graphdef, params), path=RectifiedFlow(), prediction="velocity")
    return network_model(CatchUpNet(base, method_order(method)), params, RectifiedFlow(), "velocity")


# --------------------------------------------------------------------------------------------
# One-step stage


def trajectory_pairs(model: Model, noise, *, num_steps: int = 16, cond: Optional[dict] = None,
                     batch_size: int = 1024) -> dict:
    """Saved sampler trajectories for the one-step stage: ``{'noise', 'target', 'anchor'}``.

    ``target`` is the ``num_steps``-step uniform Euler sample of ``model`` (a rectified-flow
    velocity model) from ``noise``, ``anchor`` is ``model``'s velocity at ``(noise, t = 1)``
    (what the one-step network is regularised towards); ``cond`` entries are copied in.
    """
    from jaxsample import grids, solvers
    from jaxsample.sampling import sample

    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxsample Model, got {type(model).__name__}")
    if not isinstance(model.path, RectifiedFlow) or model.prediction != "velocity":
        raise ValueError("model must be a rectified-flow velocity model (path RectifiedFlow, prediction 'velocity')")
    _check_positive_int("num_steps", num_steps)
    _check_positive_int("batch_size", batch_size)
    noise = jnp.asarray(noise)
    cond = dict(cond or {})
    ts = grids.uniform(model.path, num_steps)
    targets, anchors = [], []
    for i in range(0, noise.shape[0], batch_size):
        c = {k: jnp.asarray(v)[i:i + batch_size] for k, v in cond.items()}
        z = noise[i:i + batch_size]
        targets.append(np.asarray(sample(model, solvers.euler(), ts, z, cond=c)))
        anchors.append(np.asarray(model(z, jnp.ones((z.shape[0],), z.dtype), **c)))
    out = {"noise": np.asarray(noise), "target": np.concatenate(targets), "anchor": np.concatenate(anchors)}
    out.update({k: np.asarray(v) for k, v in cond.items()})
    return out


def one_step_loss(apply_fn: Callable, *, anchor_weight: float = 0.1):
    """``loss_fn(params, batch, key)`` of the one-step stage: ``|z - v(z, 1) - target|^2 +
    anchor_weight |v(z, 1) - anchor|^2`` (means over dimensions and batch) on a batch of
    :func:`trajectory_pairs`."""
    anchor_weight = float(anchor_weight)
    if not anchor_weight >= 0:
        raise ValueError(f"anchor_weight must be >= 0, got {anchor_weight}")

    def loss_fn(params, batch, key):
        del key
        for k in ("noise", "target", "anchor"):
            if k not in batch:
                raise ValueError(f"batch must contain 'noise', 'target' and 'anchor', got keys {sorted(batch)}")
        z = batch["noise"]
        cond = {"label": batch["label"]} if "label" in batch else {}
        v = apply_fn({"params": params}, z, jnp.ones((z.shape[0],), z.dtype), **cond)
        fit_err = jnp.mean((z - v - batch["target"]) ** 2)
        anchor_err = jnp.mean((v - batch["anchor"]) ** 2)
        return fit_err + anchor_weight * anchor_err, {"loss_one_step": fit_err, "loss_anchor": anchor_err}

    return loss_fn


def train_one_step(base, params, pairs: dict, *, num_steps: int, batch_size: int = 128,
                   method: str = "rk12", anchor_weight: float = 0.1, learning_rate: float = 2e-4,
                   grad_clip: Optional[float] = None, ema_decay: float = 0.999, seed: int = 0, workdir=None,
                   checkpoint_every: Optional[int] = None, log_every: int = 50, mesh=None, progress: bool = True):
    """The one-step stage: fine-tune ``CatchUpNet(base, method_order(method))`` (``params``) on
    ``pairs`` (:func:`trajectory_pairs`) so that one Euler step from t = 1 reproduces the
    many-step sample. Batches are :class:`jaxsample.data.ArrayBatcher` draws (seed ``seed``).
    Returns ``(state, history)`` from :func:`jaxsample.train.fit`."""
    from jaxsample.data import ArrayBatcher

    _check_positive_int("num_steps", num_steps)
    if _is_nnx(base):
        example_cond = {"label": np.asarray(pairs["label"])[:1]} if "label" in pairs else None
        graphdef = nnx.graphdef(NNXCatchUpNet(base, method_order(method), example_x=np.asarray(pairs["noise"])[:1],
                                              example_cond=example_cond))
        apply_fn = nnx_apply(nnx.merge(graphdef, params))[0]
    else:
        apply_fn = CatchUpNet(base, method_order(method)).apply
    batcher = ArrayBatcher(pairs, batch_size, seed=seed)
    tx = train.make_optimizer(learning_rate, grad_clip=grad_clip)
    state = train.TrainState.create(params, tx, seed=seed, ema_decay=ema_decay,
                                    config={"stage": "one_step", "anchor_weight": float(anchor_weight)})
    return train.fit(state, one_step_loss(apply_fn, anchor_weight=anchor_weight), batcher, num_steps=num_steps,
                     workdir=workdir, checkpoint_every=checkpoint_every, log_every=log_every, mesh=mesh,
                     progress=progress)

