"""Rectified-flow velocity MLP on the 2-D checkerboard (data.checkerboard)."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "checkerboard_flow"
    c.description = ("Rectified-flow velocity MLP on the 2-D checkerboard (data.checkerboard: 4x4 cells on "
                     "[-2, 2]^2), fresh exact samples every step.")
    c.dataset = "checkerboard"
    c.module = "MLP"
    c.net = ml_collections.ConfigDict(dict(features=(256, 256, 256, 256), time_embed_dim=64))
    c.path = "RectifiedFlow"
    c.prediction = "velocity"
    c.weighting = "none"
    c.t_range = (0.0, 1.0)
    c.label_dropout = 0.0
    c.num_steps, c.batch_size = 12000, 512
    c.learning_rate, c.warmup_steps, c.grad_clip = 2e-3, 100, 1.0
    c.ema_decay = 0.999
    c.seed = 0
    c.log_every, c.progress = 200, False
    c.store_dtype = "float16"
    c.export_dir = ""  # e.g. jaxsample/assets
    c.eval = ml_collections.ConfigDict(dict(num_samples=2000, solver="dopri8", rtol=1e-5, atol=1e-5, seed=0))
    return c
