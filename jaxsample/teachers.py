"""Shipped teacher networks: small pretrained models that load offline, in seconds.

Each teacher is a set of weights (``jaxsample/assets/<name>.msgpack``, Flax msgpack
serialization, stored in float16 and loaded as float32) plus a JSON card
(``jaxsample/assets/<name>.json``) recording its network, path, prediction, training config,
the exact command that trained it (``experiments/teachers/main.py``), its training wall time,
final loss, and evaluation numbers.

- ``digits_flow``: rectified-flow velocity U-Net on the 8x8 digits, class-conditional
  (``num_classes=10``, label 10 = null class, trained with label dropout for classifier-free
  guidance). Call it with ``cond={'label': labels}``; wrap with :func:`jaxsample.nets.guided`
  (``null_label=10``) for guidance.
- ``digits_vp``: VP-cosine v-prediction U-Net on the 8x8 digits, unconditional.
- ``fashion_vp``: VP-cosine v-prediction patch transformer (4x4 patches) on Fashion-MNIST 28x28
  in [-1, 1], unconditional: the demo's teacher.
- ``fashion_flow``: rectified-flow velocity patch transformer (the same network with a class
  embedding) on Fashion-MNIST 28x28, class-conditional (label 10 = null class, label dropout 0.1
  for classifier-free guidance; ``nets.guided(model, scale, null_label=10)``).
- ``checkerboard_flow``: rectified-flow velocity MLP on the 2-D checkerboard
  (:func:`jaxsample.data.checkerboard`).
- ``digits_classifier``: the :class:`~jaxsample.nets.DigitsClassifier` whose features define
  the digits Frechet distance (see :func:`load_digits_classifier`).

Example:
    >>> import jax
    >>> from jaxsample import teachers, sampling
    >>> model = teachers.load_teacher("checkerboard_flow")
    >>> noise = jax.random.normal(jax.random.key(0), (4, 2))
    >>> sampling.reference_sample(model, noise).shape
    (4, 2)
"""

from __future__ import annotations

import functools
import json

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample import nets, paths
from jaxsample._assets import ASSETS_DIR, asset_path
from jaxsample.models import Model

__all__ = [
    "TEACHERS",
    "GENERATIVE",
    "ASSETS_DIR",
    "list_teachers",
    "teacher_card",
    "load_params",
    "load_teacher",
    "load_digits_classifier",
    "load_classifier",
    "build_module",
    "build_path",
    "serialize_params",
]

#: Names of the shipped teachers (generative models and the digits and Fashion-MNIST feature classifiers).
TEACHERS = ("digits_flow", "digits_vp", "fashion_vp", "fashion_flow", "checkerboard_flow", "digits_classifier",
            "fashion_classifier")
#: The generative ones (the rest are feature classifiers).
GENERATIVE = ("digits_flow", "digits_vp", "fashion_vp", "fashion_flow", "checkerboard_flow")
_GENERATIVE = GENERATIVE
_CLASSIFIERS = ("digits_classifier", "fashion_classifier")

_MODULES = {"UNet": nets.UNet, "PatchTransformer": nets.PatchTransformer, "MLP": nets.MLP,
            "DigitsClassifier": nets.DigitsClassifier, "FashionClassifier": nets.FashionClassifier}
_PATHS = {"RectifiedFlow": paths.RectifiedFlow, "VPCosine": paths.VPCosine}


def list_teachers() -> list:
    """Names accepted by :func:`load_teacher` and :func:`teacher_card` (sorted).

    Example:
        >>> import jaxsample as js
        >>> js.list_teachers()  # doctest: +NORMALIZE_WHITESPACE
        ['checkerboard_flow', 'digits_classifier', 'digits_flow', 'digits_vp', 'fashion_classifier', 'fashion_flow',
         'fashion_vp']
    """
    return sorted(TEACHERS)


def _check_name(name, allowed=TEACHERS):
    if name not in allowed:
        raise ValueError(f"unknown teacher {name!r}; valid names are: {', '.join(sorted(allowed))}")


@functools.lru_cache(maxsize=None)
def _card(name: str) -> str:
    return asset_path(f"{name}.json").read_text()


def teacher_card(name: str) -> dict:
    """The JSON card of teacher ``name`` as a dict (a fresh copy each call).

    Example:
        >>> from jaxsample import teachers
        >>> card = teachers.teacher_card("digits_vp")
        >>> card["path"], card["prediction"], card["module"]
        ('VPCosine', 'v', 'UNet')
    """
    _check_name(name)
    return json.loads(_card(name))


def _tupleize(value):
    return tuple(_tupleize(v) for v in value) if isinstance(value, (list, tuple)) else value


def build_module(module_name: str, kwargs: dict):
    """The Flax module ``module_name`` ('UNet', 'MLP', 'DigitsClassifier') with ``kwargs``
    (lists turned into tuples so the module stays hashable)."""
    if module_name not in _MODULES:
        raise ValueError(f"module must be one of {sorted(_MODULES)}, got {module_name!r}")
    return _MODULES[module_name](**{k: _tupleize(v) for k, v in kwargs.items()})


def build_path(path_name: str):
    """The path named in a card ('RectifiedFlow' or 'VPCosine')."""
    if path_name not in _PATHS:
        raise ValueError(f"path must be one of {sorted(_PATHS)}, got {path_name!r}")
    return _PATHS[path_name]()


def serialize_params(params, dtype: str = "float16") -> bytes:
    """Flax msgpack bytes of ``params`` with floating leaves cast to ``dtype``."""
    cast = jax.tree_util.tree_map(
        lambda a: np.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating) else np.asarray(a), params)
    return flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(cast))


def _restore(blob: bytes):
    tree = flax.serialization.msgpack_restore(blob)
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float32) if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.asarray(a),
        tree)


@functools.lru_cache(maxsize=None)
def _params(name: str):
    card = json.loads(_card(name))
    return _restore(asset_path(card["weights_file"]).read_bytes())


def load_params(name: str):
    """The float32 parameters (the ``'params'`` collection) of teacher ``name``."""
    _check_name(name)
    return _params(name)


def load_teacher(name: str, nnx: bool = False) -> Model:
    """Teacher ``name`` as a :class:`~jaxsample.models.Model` (built with
    :func:`jaxsample.nets.network_model` on the path and prediction it was trained with).

    With ``nnx=True`` the network inside is the Flax NNX version of the same linen network and
    weights (:func:`jaxsample.nets.to_nnx`): the same samples, and ``load_network(name, nnx=True)``
    gives the module itself for your NNX code.

    The class-conditional ``digits_flow`` takes ``label=`` (int, shape (batch,), 10 = null
    class) as its condition.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), or for
            ``'digits_classifier'`` (use :func:`load_digits_classifier`).

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> model = js.load_teacher("checkerboard_flow")
        >>> type(model.path).__name__, model.prediction
        ('RectifiedFlow', 'velocity')
        >>> noise = js.initial_noise(jax.random.key(0), (4, 2))
        >>> js.sample(model, js.heun(), js.uniform(model.path, 4), noise).shape
        (4, 2)
    """
    _check_name(name)
    if name not in _GENERATIVE:
        raise ValueError(f"{name!r} is not a generative teacher (use load_digits_classifier()); "
                         f"generative teachers are: {', '.join(sorted(_GENERATIVE))}")
    return _model_from_card(teacher_card(name), load_params(name), nnx=nnx)


def load_network(name: str, nnx: bool = False):
    """The network of generative teacher ``name``: ``(linen_module, params)``, or with ``nnx=True``
    one Flax NNX module holding the trained weights (:func:`jaxsample.nets.to_nnx`), called as
    ``net(x, t)`` (``label=`` for the class-conditional teachers).

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxsample as js
        >>> net = js.teachers.load_network("checkerboard_flow", nnx=True)
        >>> net(jnp.zeros((3, 2)), jnp.full((3,), 0.5)).shape
        (3, 2)
    """
    _check_name(name, _GENERATIVE)
    card = teacher_card(name)
    return _network_from_card(card, load_params(name), nnx)


def _network_from_card(card: dict, params, nnx: bool):
    module = build_module(card["module"], card["net"])
    if not nnx:
        return module, params
    x = jnp.zeros((1, *sample_shape(card)), jnp.float32)
    return nets.to_nnx(module, params, x, jnp.full((1,), 0.5, jnp.float32))


def _model_from_card(card: dict, params, nnx: bool = False) -> Model:
    path = build_path(card["path"])
    if nnx:
        return nets.network_model(_network_from_card(card, params, True), path=path, prediction=card["prediction"])
    return nets.network_model(build_module(card["module"], card["net"]), params, path, card["prediction"])


def load_teacher_from_card(card_path) -> Model:
    """A teacher you trained with ``experiments/teachers/main.py``, from its ``.json`` card (the
    weights file named in the card sits next to it), as a :class:`~jaxsample.models.Model`.

    Raises:
        ValueError: if the card does not exist, lacks an entry of a generative teacher card
            (``module``, ``net``, ``weights_file``, ``path``, ``prediction``, ``config``), or its
            weights file does not exist.
    """
    import os

    card_path = os.fspath(card_path)
    if not os.path.isfile(card_path):
        raise ValueError(f"card_path {card_path!r} does not exist (expected a teacher card, NAME.json)")
    with open(card_path) as f:
        card = json.load(f)
    missing = [k for k in ("module", "net", "weights_file", "path", "prediction", "config") if k not in card]
    if missing:
        raise ValueError(f"card_path {card_path!r} is not a generative teacher card: it lacks {missing}")
    weights = os.path.join(os.path.dirname(os.path.abspath(card_path)), card["weights_file"])
    if not os.path.isfile(weights):
        raise ValueError(f"card_path {card_path!r} names the weights file {card['weights_file']!r}, but {weights!r} "
                         f"does not exist (it must sit next to the card)")
    with open(weights, "rb") as f:
        return _model_from_card(card, _restore(f.read()))


def sample_shape(name_or_card) -> tuple:
    """The shape of one sample of a teacher: ``(8, 8, 1)`` for the digits, ``(2,)`` for 2-D toys.

    Example:
        >>> from jaxsample import teachers
        >>> teachers.sample_shape("digits_vp"), teachers.sample_shape("checkerboard_flow")
        ((8, 8, 1), (2,))
    """
    import os

    if isinstance(name_or_card, dict):
        card = name_or_card
    elif str(name_or_card).endswith(".json") and os.path.isfile(name_or_card):
        with open(name_or_card) as f:
            card = json.load(f)
    else:
        card = teacher_card(name_or_card)
    return {"digits": (8, 8, 1), "fashion_mnist": (28, 28, 1)}.get(card["config"]["dataset"], (2,))


def load_classifier(name: str = "digits_classifier"):
    """A shipped feature classifier (``'digits_classifier'`` or ``'fashion_classifier'``) as a
    ``(module, params)`` pair."""
    if name not in _CLASSIFIERS:
        raise ValueError(f"name must be one of {list(_CLASSIFIERS)}, got {name!r}")
    card = teacher_card(name)
    return build_module(card["module"], card["net"]), load_params(name)


def load_digits_classifier():
    """The shipped digits classifier (a :class:`~jaxsample.nets.DigitsClassifier`) as a
    ``(module, params)`` pair: the default classifier of :func:`jaxsample.features.digits_features`
    and :func:`jaxsample.features.digits_frechet_distance`."""
    card = teacher_card("digits_classifier")
    return build_module(card["module"], card["net"]), load_params("digits_classifier")
