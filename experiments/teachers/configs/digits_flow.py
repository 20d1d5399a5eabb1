"""Class-conditional rectified-flow velocity U-Net on the 8x8 digits (the guided teacher)."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "digits_flow"
    c.description = ("Rectified-flow (x_t = (1-t) x0 + t eps) velocity U-Net on the 8x8 digits in [-1, 1], "
                     "class-conditional: label in 0..9, 10 = null class (label dropout 0.1 for "
                     "classifier-free guidance; nets.guided(model, scale, null_label=10)).")
    c.dataset = "digits"
    c.module = "UNet"
    c.net = ml_collections.ConfigDict(dict(channels=32, channel_mults=(1, 2), num_res_blocks=1, num_classes=10))
    c.path = "RectifiedFlow"
    c.prediction = "velocity"
    c.weighting = "none"
    c.t_range = (0.0, 1.0)
    c.label_dropout = 0.1
    c.num_steps, c.batch_size = 2500, 128
    c.learning_rate, c.warmup_steps, c.grad_clip = 2e-3, 100, 1.0
    c.ema_decay = 0.999
    c.seed = 0
    c.log_every, c.progress = 50, False
    c.store_dtype = "float16"
    c.export_dir = ""  # e.g. jaxsample/assets
    c.eval = ml_collections.ConfigDict(dict(num_samples=500, solver="dopri8", rtol=1e-5, atol=1e-5, seed=0))
    return c
