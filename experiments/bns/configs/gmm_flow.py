"""BNS on the Gaussian-mixture benchmark under rectified flow (velocity model)."""

from experiments.bns.configs import gmm


def get_config():
    c = gmm.get_config()
    c.setting = "rectified_flow"
    c.field = "velocity"  # the BNS paper's choice for flow models
    c.init_grid = "quadratic"
    return c
