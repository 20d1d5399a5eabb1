"""BNS for the Fashion-MNIST VP teacher (``fashion_vp``: VP cosine, v prediction, a patch transformer).

Ground truth from the batched fixed-grid solver (``bns.FIXED_GRID``: UniPC-3 on a 128-step
quadratic grid; its accuracy against adaptive Dopri8 is measured by ``bns.ground_truth_accuracy``,
see results/README.md) instead of one adaptive Dopri8 solve per pair: on this 28x28 teacher the
adaptive solve costs several times more. The test pairs are the demo's shipped ground truth
(``save_test_pairs``), which the demo re-checks against Dopri8.
"""

from experiments.bns.configs import digits_vp


def get_config():
    c = digits_vp.get_config()
    c.teacher = "fashion_vp"
    c.nfes = (4, 8, 16)
    c.ground_truth = "fixed_grid"
    c.pair_batch_size = 128
    c.num_train, c.num_val, c.num_test = 520, 128, 256
    # The classical solvers the best baseline is picked from (the full suite compiles ~20 solvers x
    # 2 grids per NFE on a 28x28 transformer: minutes each on 2 CPU cores).
    # The first run searched 8 solvers on the quadratic and time-uniform grids and missed iPNDM on the EDM
    # grid (44.0 dB at NFE 16 against 38.1): results/fashion_vp_all_grids_nfe4_8_16.json.
    c.baselines = ("euler", "heun", "ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh1_2", "unipc_bh2_3",
                   "deis_tab_2", "deis_tab_3", "ipndm")
    c.baseline_grids = ("quadratic", "time_uniform", "edm")
    c.num_steps, c.batch_size, c.eval_every = 300, 32, 50
    c.save_test_pairs = True
    return c
