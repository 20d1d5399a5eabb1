"""Unconditional VP-cosine v-prediction U-Net on the 8x8 digits."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "digits_vp"
    c.description = ("VP cosine (paths.VPCosine, log-SNR in [-20, 20]) v-prediction U-Net on the 8x8 digits in [-1, 1], "
                     "unconditional; v-MSE loss (= (SNR+1)-weighted x0 loss).")
    c.dataset = "digits"
    c.module = "UNet"
    c.net = ml_collections.ConfigDict(dict(channels=32, channel_mults=(1, 2), num_res_blocks=1))
    c.path = "VPCosine"
    c.prediction = "v"
    c.weighting = "none"
    c.t_range = None  # the path range shrunk by 1e-3 at both ends
    c.label_dropout = 0.0
    c.num_steps, c.batch_size = 2500, 128
    c.learning_rate, c.warmup_steps, c.grad_clip = 2e-3, 100, 1.0
    c.ema_decay = 0.999
    c.seed = 0
    c.log_every, c.progress = 50, False
    c.store_dtype = "float16"
    c.export_dir = ""  # e.g. jaxsample/assets
    c.eval = ml_collections.ConfigDict(dict(num_samples=500, solver="dopri8", rtol=1e-5, atol=1e-5, seed=0))
    return c
