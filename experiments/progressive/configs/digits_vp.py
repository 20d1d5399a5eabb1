"""Reduced schedule measured on the shared 2-core CPU: the digits VP teacher at 64 DDIM steps
distilled 64 -> 32 -> 16 -> 8 -> 4 -> 2 -> 1 (6 rounds), few optimizer steps per round.
The full run of issue 8 (256 -> 1) is digits_vp_full.py."""

from experiments.progressive.configs import digits_vp_full


def get_config():
    c = digits_vp_full.get_config()
    c.start_steps = 64
    c.full_steps = 256  # still compare with the teacher at 256 DDIM steps
    c.steps_per_round = (150, 150, 200, 250, 300, 350)  # the last rounds are the hard ones
    c.batch_size = 64
    c.learning_rate = 2e-4
    c.checkpoint_every, c.log_every = 50, 10
    return c
