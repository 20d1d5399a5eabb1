"""Training of the digits feature classifier shipped as ``jaxsample/assets/digits_classifier.*``.

The library only loads the shipped classifier (:func:`jaxsample.teachers.load_digits_classifier`,
the default of :mod:`jaxsample.features`); this file trains it, with
``configs/digits_classifier.py``:

    python experiments/teachers/main.py --config experiments/teachers/configs/digits_classifier.py \
        --workdir /tmp/teachers/digits_classifier --config.export_dir=jaxsample/assets

- :func:`setup` builds what ``train_and_evaluate`` feeds to :func:`jaxsample.train.fit`:
  ``(module, state, loss_fn, batcher)``.
- :func:`evaluate` is the card's evaluation (accuracy on the 300 held-out digits).
- :func:`train_digits_classifier` runs both, for tests and notebooks.

It imports only jaxsample (no sibling module), so it loads however the study is started.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jaxsample import data, teachers, train


#: Per dataset: the classifier module and the loader of its splits.
DATASETS = {"digits": ("DigitsClassifier", data.load_digits),
            "fashion_mnist": ("FashionClassifier", data.load_fashion_mnist)}


def _dataset(config):
    name = config.get("dataset", "digits")
    if name not in DATASETS:
        raise ValueError(f"config.dataset must be one of {sorted(DATASETS)}, got {name!r}")
    return DATASETS[name]


def setup(config):
    """``(module, state, loss_fn, batcher)`` for :func:`jaxsample.train.fit` from a
    ``digits_classifier`` or ``fashion_classifier`` config (``dataset``, ``net``,
    ``learning_rate``, ``batch_size``, ``seed``, ``ema_decay``, ``augment_noise``:
    N(0, augment_noise^2) pixel noise on training images)."""
    module_name, load = _dataset(config)
    module = teachers.build_module(module_name, config.net.to_dict())
    images, labels = load("train")
    # rbg keys: flax init compiles much faster than with threefry.
    params = module.init(jax.random.key(0, impl="rbg"), jnp.zeros((1, *images.shape[1:])))["params"]
    tx = train.make_optimizer(config.learning_rate, decay_steps=config.get("decay_steps", 0))
    state = train.TrainState.create(params, tx, seed=config.seed, ema_decay=config.ema_decay)
    batcher = data.ArrayBatcher({"x": images, "label": labels}, config.batch_size, seed=config.seed)
    noise = config.augment_noise

    def loss_fn(p, batch, key):
        x = batch["x"] + noise * jax.random.normal(key, batch["x"].shape)
        logits = module.apply({"params": p}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

    return module, state, loss_fn, batcher


def evaluate(module, params, dataset: str = "digits") -> dict:
    """``{"test_accuracy", "num_test"}``: accuracy of ``(module, params)`` on the held-out split of
    ``dataset`` (the 300 held-out digits, or the 10,000 Fashion-MNIST test images)."""
    test_x, test_y = DATASETS[dataset][1]("test")
    apply = jax.jit(lambda x: module.apply({"params": params}, x))
    hits = sum(float(jnp.sum(jnp.argmax(apply(jnp.asarray(test_x[i:i + 1000])), -1) == jnp.asarray(test_y[i:i + 1000])))
               for i in range(0, len(test_y), 1000))
    return {"test_accuracy": hits / len(test_y), "num_test": int(test_x.shape[0])}


def train_digits_classifier(config, workdir=None, *, mesh=None):
    """Train for ``config.num_steps`` steps; returns ``(module, params, test_accuracy)``
    (``params``: the EMA parameters if ``config.ema_decay > 0``, else the raw ones, as shipped)."""
    module, state, loss_fn, batcher = setup(config)
    state, _ = train.fit(state, loss_fn, batcher, num_steps=config.num_steps, workdir=workdir,
                         log_every=config.get("log_every", 50), progress=config.get("progress", False), mesh=mesh)
    params = state.ema_params if config.ema_decay > 0 else state.params
    return module, params, evaluate(module, params, config.get("dataset", "digits"))["test_accuracy"]
