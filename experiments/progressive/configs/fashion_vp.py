"""The Fashion-MNIST VP teacher (``fashion_vp``, a patch transformer) distilled 128 -> 64 -> ... -> 1
(7 rounds) with the reduced CPU schedule of digits_vp_128.py, on EDM's interval (sigma / alpha from
80 to 0.002, as the shipped BNS solvers), and scored on the 256 noises of the demo's shipped ground
truth: its Dopri8 solutions are the exact ODE (no new adaptive solves), and the shipped BNS solvers
(NFE 4, 8, 16) sample the same noise."""

from experiments.progressive.configs import digits_vp_128


def get_config():
    c = digits_vp_128.get_config()
    c.teacher = "fashion_vp"
    c.edm_interval = True
    c.full_steps = 256
    c.compare_bns = True
    c.eval_seed, c.num_eval = 2, 256  # the shipped ground truth's noise (seed 2)
    return c
