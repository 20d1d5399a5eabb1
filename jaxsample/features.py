"""Digits features: the shipped digits classifier's penultimate layer, and the digits Frechet distance.

- :func:`digits_features`: the 64-d penultimate-layer features of the shipped
  :class:`~jaxsample.nets.DigitsClassifier` (``jaxsample/assets/digits_classifier.*``, loaded
  with :func:`jaxsample.teachers.load_digits_classifier`), or of a ``(module, params)`` you pass.
- :func:`digits_frechet_distance`: the Frechet distance in those features between generated
  digits and the 300 held-out test digits.

The distances themselves (Frechet, MMD, KID, sliced Wasserstein) are in :mod:`jaxsample.metrics`;
the classifier is trained by ``experiments/teachers`` (config ``digits_classifier.py``).

Example:
    >>> import numpy as np
    >>> from jaxsample import data, features
    >>> test_x, _ = data.load_digits("test")
    >>> features.digits_features(test_x[:4]).shape
    (4, 64)
    >>> features.digits_frechet_distance(test_x) < 1e-6                 # the test digits themselves
    True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.metrics import frechet_distance

__all__ = ["digits_features", "digits_frechet_distance", "fashion_features", "fashion_frechet_distance",
           "FASHION_STATS"]

#: The shipped held-out statistics of Fashion-MNIST: mean and covariance of the shipped
#: ``fashion_classifier``'s features of the 10,000 test images (built by
#: ``experiments/teachers/fashion_stats.py``), so that the Frechet distance needs no dataset.
FASHION_STATS = "fashion_mnist_test_features.npz"


def _default_classifier():
    from jaxsample import teachers

    return teachers.load_digits_classifier()


def digits_features(images, classifier=None, *, batch_size: int = 1024) -> np.ndarray:
    """Penultimate-layer features (N, feature_dim) of digits images (N, 8|16, 8|16, 1) in [-1, 1].

    ``classifier`` is a ``(module, params)`` pair; by default the shipped digits classifier
    (:func:`jaxsample.teachers.load_digits_classifier`).
    """
    module, params = (_default_classifier() if classifier is None else classifier)[:2]
    images = jnp.asarray(images, jnp.float32)
    apply = jax.jit(lambda p, x: module.apply({"params": p}, x, return_features=True)[1])
    out = [np.asarray(apply(params, images[i:i + batch_size])) for i in range(0, images.shape[0], batch_size)]
    return np.concatenate(out, axis=0)


def digits_frechet_distance(images, reference=None, classifier=None) -> float:
    """Frechet distance between digits classifier features of ``images`` and of ``reference``
    (default: the 300 held-out test digits at the same resolution as ``images``), with the
    shipped classifier unless ``classifier`` (a ``(module, params)`` pair) is given."""
    if reference is None:
        from jaxsample import data as data_lib

        reference = data_lib.load_digits("test", size=int(np.shape(images)[1]))[0]
    if classifier is None:
        classifier = _default_classifier()
    return frechet_distance(digits_features(images, classifier), digits_features(reference, classifier))


def fashion_features(images, classifier=None, *, batch_size: int = 1024) -> np.ndarray:
    """Penultimate-layer features (N, 128) of Fashion-MNIST images (N, 28, 28, 1) in [-1, 1], with
    the shipped ``fashion_classifier`` unless ``classifier`` (a ``(module, params)`` pair) is given."""
    if classifier is None:
        from jaxsample import teachers

        classifier = teachers.load_classifier("fashion_classifier")
    return digits_features(images, classifier, batch_size=batch_size)


def fashion_frechet_distance(images, classifier=None) -> float:
    """Frechet distance between the shipped classifier's features of ``images`` and the shipped
    statistics of the 10,000 held-out Fashion-MNIST images (:data:`FASHION_STATS`): no dataset
    needed. With another ``classifier`` the shipped statistics do not apply: pass its own
    reference features to :func:`jaxsample.metrics.frechet_distance` instead."""
    if classifier is not None:
        raise ValueError("classifier must be None: the shipped statistics are of the shipped classifier's features")
    from jaxsample._assets import asset_path
    from jaxsample.metrics import feature_stats, frechet_distance_from_stats

    with np.load(asset_path(FASHION_STATS)) as z:
        mu, cov = z["mean"], z["cov"]
    return frechet_distance_from_stats(*feature_stats(fashion_features(images)), mu, cov)
