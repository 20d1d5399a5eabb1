"""BNS for the shipped class-conditional rectified-flow digits teacher, with guidance.

Guidance scale 2 (w = 1 in Ho & Salimans' convention) and source-noise preconditioning
sigma0 = 5, the BNS paper's setting for CFG w = 2. BNS starts from the exact embedding of the
best classical solver expressed on the noise-scaled path (``embed(..., ns_path=)``); from
Euler on that path it started 7 dB behind the baseline and stayed there (results/README.md).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from digits_vp import get_config as _base  # noqa: E402


def get_config():
    c = _base()
    c.teacher = "digits_flow"
    c.guidance_scale = 2.0
    c.sigma0 = 5.0
    c.field = "velocity"
    c.init = "best_baseline"
    c.init_grid = "uniform"
    c.edm_interval = False  # rectified flow runs its whole range, t from 1 to 0
    return c
