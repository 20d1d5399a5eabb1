"""BNS on the Gaussian-mixture benchmark of the solver table (VP cosine, eps model)."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.setting = "vp_cosine"  # or "rectified_flow" (see configs/gmm_flow.py)
    c.teacher = ""  # a shipped teacher instead of the mixture (see configs/digits_*.py)
    c.guidance_scale = 1.0
    c.reference_rtol = 1e-7
    c.dim, c.num_components, c.data_seed = 64, 8, 0
    c.nfes = (4, 6, 8, 10, 16)
    c.num_train, c.num_val, c.num_test = 1024, 1024, 1024
    c.field = "x0"  # the NS coefficients multiply the x0 prediction (best on VP, see the README)
    # Initialisations to distil from, comma-separated; the best on validation is kept: "best_baseline"
    # (the best classical solver at this NFE), or a solver name from compare.baseline_suite on init_grid.
    c.init = "best_baseline,euler"
    c.init_grid = "quadratic"
    c.baselines = ()  # names from compare.baseline_suite to try as baselines; () = all of them
    c.baseline_grids = ()  # grids the baselines are tried on; () = each solver's default set
    c.sigma0 = 1.0  # source-noise scaling (preconditioning for guided models)
    c.num_steps, c.batch_size, c.learning_rate, c.eval_every = 2000, 64, 2e-3, 100
    c.fixed_grid = {}  # with ground_truth = 'fixed_grid': overrides of bns.FIXED_GRID (solver, grid, steps)
    c.patience = 0  # > 0: stop after this many evaluations without a better validation PSNR
    c.learning_rates = ()  # one per entry of nfes, overriding learning_rate (high NFEs start near 50 dB: smaller steps)
    c.data_range = 2.0
    c.seed = 0
    c.progress = True
    c.save_test_pairs = False  # write DIR/test_pairs.npz (noise, target): the demo ships them as ground truth
    c.num_devices = 0  # 0: every device (data-parallel); 1: one device
    return c
