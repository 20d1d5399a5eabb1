"""digits_vp_128.py, plus the same-noise comparison with the shipped BNS solvers (NFE 4, 8, 16)
and the teacher's exact ODE (adaptive Dopri8, rtol 1e-4), on 1024 held-out noises."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from digits_vp_128 import get_config as _base  # noqa: E402


def get_config():
    c = _base()
    c.compare_bns = True
    c.reference_rtol = 1e-4
    c.num_eval = 1024
    return c
