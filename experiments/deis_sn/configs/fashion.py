"""DEIS vs DEIS-SN on the Fashion-MNIST VP teacher (``fashion_vp``: v-prediction patch transformer,
28x28), on EDM's interval; Frechet distance in the Fashion classifier's features (against the
shipped held-out statistics) and PSNR against a 100-step DEIS-3 run from the same noise.

Sized for 2 CPU cores: the calibration keeps the authors' 1000-step uniform-t DEIS run but on 128
samples; the comparison is order 3 (the demo's DEIS-SN) at the demo's NFEs on 256 samples."""

from experiments.deis_sn.configs import digits


def get_config():
    c = digits.get_config()
    c.teacher = "fashion_vp"
    c.calibration_samples, c.calibration_batch_size = 128, 128
    c.num_samples = 256
    c.reference_steps = 100
    c.nfes = (4, 8, 16)
    c.orders = (3,)
    c.grids = ("quadratic",)
    return c
