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


def setup(config):
    """``(module, state, loss_fn, batcher)`` for :func:`jaxsample.train.fit` from a
    ``digits_classifier`` config (``net``, ``learning_rate``, ``batch_size``, ``seed``,
    ``ema_decay``, ``augment_noise``: N(0, augment_noise^2) pixel noise on training images)."""
    module = teachers.build_module("DigitsClassifier", config.net.to_dict())
    images, labels = data.load_digits("train")
    # rbg keys: flax init compiles much faster than with threefry.
    params = module.init(jax.random.key(0, impl="rbg"), jnp.zeros((1, 8, 8, 1)))["params"]
    tx = train.make_optimizer(config.learning_rate)
    state = train.TrainState.create(params, tx, seed=config.seed, ema_decay=config.ema_decay)
    batcher = data.ArrayBatcher({"x": images, "label": labels}, config.batch_size, seed=config.seed)
    noise = config.augment_noise

    def loss_fn(p, batch, key):
        x = batch["x"] + noise * jax.random.normal(key, batch["x"].shape)
        logits = module.apply({"params": p}, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

    return module, state, loss_fn, batcher


def evaluate(module, params) -> dict:
    """``{"test_accuracy", "num_test"}``: accuracy of ``(module, params)`` on the 300 held-out digits."""
    test_x, test_y = data.load_digits("test")
    logits = module.apply({"params": params}, jnp.asarray(test_x))
    return {"test_accuracy": float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(test_y))),
            "num_test": int(test_x.shape[0])}


def train_digits_classifier(config, workdir=None, *, mesh=None):
    """Train for ``config.num_steps`` steps; returns ``(module, params, test_accuracy)``
    (``params``: the EMA parameters if ``config.ema_decay > 0``, else the raw ones, as shipped)."""
    module, state, loss_fn, batcher = setup(config)
    state, _ = train.fit(state, loss_fn, batcher, num_steps=config.num_steps, workdir=workdir,
                         log_every=config.get("log_every", 50), progress=config.get("progress", False), mesh=mesh)
    params = state.ema_params if config.ema_decay > 0 else state.params
    return module, params, evaluate(module, params)["test_accuracy"]
