"""The issue's "(or 128)" schedule, reduced in optimizer steps to fit the shared 2-core CPU: the
digits VP teacher at 128 DDIM steps distilled 128 -> 64 -> ... -> 1 (7 rounds)."""

from experiments.progressive.configs import digits_vp


def get_config():
    c = digits_vp.get_config()
    c.start_steps = 128
    c.steps_per_round = (150, 150, 150, 200, 250, 300, 350)
    return c
