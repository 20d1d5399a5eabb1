"""DEIS vs DEIS-SN on the Gaussian-mixture benchmark (64-d, 8 components, VP cosine, exact eps model,
EDM's interval sigma / alpha in [0.002, 80])."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.teacher = ""  # a shipped teacher instead of the mixture (see configs/digits.py)
    c.setting = "vp_cosine"
    c.dim, c.num_components, c.data_seed = 64, 8, 0
    # calibration: the authors' 1000-step DEIS run, uniform in t, 5 smallest-t entries clamped
    c.calibration_samples, c.calibration_batch_size = 1024, 1024
    c.calibration_steps, c.calibration_grid, c.num_clamped = 1000, "uniform", 5
    # evaluation
    c.nfes = (5, 6, 8, 10, 15)
    c.orders = (1, 2, 3)
    c.kinds = ("tab", "rhoab")
    c.grids = ("quadratic", "logsnr")
    c.dpm_solver = True  # also DPM-Solver-2/3 against DPM-Solver-SN where the NFE allows
    c.num_samples = 1000
    c.reference_steps = 0  # 0: adaptive dopri8 reference at reference_rtol
    c.reference_rtol = 1e-7
    c.data_range = 2.0
    c.mark_steps = 10  # grid points marked on the r(t) plot
    c.seed = 0
    c.progress = True
    return c
