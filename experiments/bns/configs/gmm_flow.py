"""BNS on the Gaussian-mixture benchmark under rectified flow (velocity model)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gmm import get_config as _base  # noqa: E402


def get_config():
    c = _base()
    c.setting = "rectified_flow"
    c.field = "velocity"  # the BNS paper's choice for flow models
    c.init_grid = "quadratic"
    return c
