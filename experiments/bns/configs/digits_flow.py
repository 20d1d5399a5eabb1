"""BNS for the shipped class-conditional rectified-flow digits teacher, with guidance.

Guidance scale 2 (w = 1 in Ho & Salimans' convention) and source-noise preconditioning
sigma0 = 5, the BNS paper's setting for CFG w = 2. BNS starts from the exact embedding of the
best classical solver expressed on the noise-scaled path (``embed(..., ns_path=)``); from
Euler on that path it started 7 dB behind the baseline and stayed there (results/README.md).
"""

from experiments.bns.configs import digits_vp


def get_config():
    c = digits_vp.get_config()
    c.teacher = "digits_flow"
    c.guidance_scale = 2.0
    c.sigma0 = 5.0
    c.field = "velocity"
    c.init = "best_baseline"
    c.init_grid = "uniform"
    c.edm_interval = False  # rectified flow runs its whole range, t from 1 to 0
    return c
