"""Shared test helpers."""

import numpy as np


def fitted_order(steps, errors):
    """Slope of -log2(error) against log2(steps): the empirical convergence order."""
    return -np.polyfit(np.log2(np.asarray(steps, float)), np.log2(np.asarray(errors, float)), 1)[0]
