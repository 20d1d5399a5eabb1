"""BNS for the shipped VP-cosine digits teacher (v prediction, unconditional)."""

from experiments.bns.configs import gmm


def get_config():
    c = gmm.get_config()
    c.teacher = "digits_vp"
    c.guidance_scale = 1.0
    c.field = "x0"
    c.nfes = (4, 8)
    c.init = "best_baseline"  # one initialisation: each distillation on the U-Net costs minutes on CPU
    c.num_train, c.num_val, c.num_test = 520, 256, 512  # BNS trains on ~520 pairs
    c.reference_rtol = 1e-4  # ground truth to ~80 dB, far beyond what any sampler reaches here
    c.edm_interval = True  # sample sigma / alpha from 80 down to 0.002, as for the mixture
    c.num_steps, c.batch_size, c.eval_every = 600, 32, 100
    c.baseline_grids = ("quadratic", "uniform")  # fewer grids than for the mixture: U-Net sampling is costly
    return c
