"""Argument checks the distillation and calibration methods share (each error names the argument)."""

from __future__ import annotations

import numpy as np

from jaxsample.models import Model


def check_int(name, value, minimum):
    """``int(value)``, or a ValueError unless ``value`` is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_model_and_shape(model, sample_shape) -> tuple:
    """``sample_shape`` as a tuple of ints, after checking that ``model`` is a :class:`~jaxsample.Model`
    and ``sample_shape`` a non-empty tuple of positive integers."""
    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxsample.Model, got {type(model).__name__}")
    try:
        sample_shape = tuple(int(d) for d in sample_shape)
    except TypeError:
        raise ValueError(f"sample_shape must be a tuple of positive integers, got {sample_shape!r}") from None
    if not sample_shape or any(d < 1 for d in sample_shape):
        raise ValueError(f"sample_shape must be a tuple of positive integers, got {sample_shape!r}")
    return sample_shape
