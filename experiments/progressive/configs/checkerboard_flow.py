"""The shipped rectified-flow checkerboard teacher (velocity MLP): DDIM (= Euler on this path)
at 64 steps distilled 64 -> 1, student in the teacher's velocity parameterisation."""

from experiments.progressive.configs import digits_vp_full


def get_config():
    c = digits_vp_full.get_config()
    c.teacher = "checkerboard_flow"
    c.parameterization = "velocity"
    c.weighting = "truncated_snr"
    c.start_steps, c.full_steps = 64, 256
    c.steps_per_round = (300,) * 6
    c.batch_size = 256
    c.learning_rate = 2e-4
    c.num_eval = 2000
    c.checkpoint_every, c.log_every = 100, 20
    return c
