"""AdaSDE on the Gaussian-mixture benchmark (VP cosine, eps model, sigma / alpha in [0.002, 80])."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.setting = "vp_cosine"
    c.teacher = ""  # a shipped teacher instead of the mixture (see configs/digits.py)
    c.dim, c.num_components, c.data_seed = 64, 8, 0
    c.nfes = (3, 5, 7, 9)
    c.grids = ("edm", "logsnr", "quadratic")  # the coarse grid: the best DPM-Solver-2 (AFS) on validation
    # Teacher trajectories: 'reference' (the adaptive ODE solution at the coarse times, cheap on the mixture and
    # the same targets BNS gets) or 'dpm_solver_2' (the paper's: DPM-Solver-2 with teacher_m extra points per interval).
    c.teacher_kind, c.teacher_m = "reference", 3
    c.num_train, c.num_val, c.num_test, c.num_truth = 1024, 256, 2048, 20000
    # AdaSDE: gamma in [2e-4, gamma_max], initialised at 0.6 of the range (official predictor).
    c.gamma_max, c.gamma_init_frac = 0.02, 0.6
    c.plugin_bases = ("euler", "ipndm")  # plug-in gamma on these (NFE steps on plugin_grid)
    c.plugin_grid = "quadratic"
    c.num_steps, c.batch_size, c.learning_rate, c.eval_every = 400, 64, 0.2, 100
    # BNS at the same NFE: embedding of bns_init on bns_init_grid; targets 'reference' (exact ODE) or 'teacher'.
    c.bns = True
    c.bns_init, c.bns_init_grid, c.bns_target, c.bns_learning_rate = "euler", "quadratic", "reference", 2e-3
    c.baselines = ("euler", "heun", "midpoint", "ddim", "dpm_solver_2", "dpm_solver_pp_2m", "dpm_solver_pp_3m",
                   "unipc_bh2_2", "unipc_bh2_3", "deis_tab_3", "ipndm", "ddpm_ancestral", "dpm_solver_pp_2m_sde")
    c.baseline_grids = ("quadratic", "logsnr", "edm")
    # The official recipe part by part (configs/official.py turns all of them on; see train.py):
    c.teacher_substeps = 2  # teacher_kind='official': DPM-Solver-2 sub-steps per fine interval (EDM rho 7)
    c.fresh_trajectories = False  # True: new noise + teacher trajectories every batch (num_steps * batch_size)
    c.loss = "mean"  # 'official': sum of squares / batch, last step feature_alpha * D * MSE of features
    c.feature_alpha = 20.0
    c.update_order = "per_batch"  # 'per_step': Adam stepped after every coarse step (official)
    c.lr_schedule = "cosine"  # 'official': CosineAnnealingLR to the absolute floor 0.01, once per batch
    c.official_gamma = False  # the official gamma map: gmin + (gmax - gmin) sigmoid((raw + 2 ln 1.5) / 2)
    c.init_noise = 0.0  # 1.0: raw parameters start at N(0, 1) draws, as the official predictor's
    c.scale_dir = 0.05
    c.select_on = "init"  # 'trained': grid (and gamma_max) by the trained solvers' validation FD
    c.gamma_maxes = ()  # candidates of gamma_max for select_on='trained' (empty: gamma_max)
    # Per-NFE values, pairs (nfe, value), override learning_rate, gamma_max, scale_dir, teacher_m, feature_alpha.
    c.learning_rate_by_nfe = c.gamma_max_by_nfe = c.scale_dir_by_nfe = ()
    c.teacher_m_by_nfe = c.feature_alpha_by_nfe = ()
    c.seed = 0
    c.progress = True
    return c
