"""digits_vp_128.py, plus the same-noise comparison with the shipped BNS solvers (NFE 4, 8, 16)
and the teacher's exact ODE (adaptive Dopri8, rtol 1e-4), on 1024 held-out noises."""

from experiments.progressive.configs import digits_vp_128


def get_config():
    c = digits_vp_128.get_config()
    c.compare_bns = True
    c.reference_rtol = 1e-4
    c.num_eval = 1024
    return c
