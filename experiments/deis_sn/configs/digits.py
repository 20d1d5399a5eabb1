"""DEIS vs DEIS-SN on the shipped VP-cosine digits teacher (v-prediction U-Net, 8x8 digits),
on EDM's interval; Frechet distance on the digits classifier's features, and PSNR against a
200-step DEIS-3 run from the same noise (1000 samples: keeps the study at minutes on CPU)."""

from experiments.deis_sn.configs import gmm


def get_config():
    c = gmm.get_config()
    c.teacher = "digits_vp"
    c.calibration_samples, c.calibration_batch_size = 256, 256
    c.kinds = ("tab",)
    c.dpm_solver = False
    c.num_samples = 1000
    c.reference_steps = 200
    return c
