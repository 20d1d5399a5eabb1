"""The issue's "(or 128)" schedule, reduced in optimizer steps to fit the shared 2-core CPU: the
digits VP teacher at 128 DDIM steps distilled 128 -> 64 -> ... -> 1 (7 rounds)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from digits_vp import get_config as _reduced  # noqa: E402


def get_config():
    c = _reduced()
    c.start_steps = 128
    c.steps_per_round = (150, 150, 150, 200, 250, 300, 350)
    return c
