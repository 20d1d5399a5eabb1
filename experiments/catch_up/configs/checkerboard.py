"""Catch-up vs flow matching on the 2-D checkerboard, trained from scratch.

Default: the scaled-down run for the shared 2-core CPU (MLP 4x256 as the shipped teacher,
3000 steps at batch 256, one-step stage for RK12 only). ``--config=experiments/catch_up/configs/checkerboard.py:full``:
the full-size run (the teacher's 12000 steps).
"""

import ml_collections


def get_config(size: str = "small"):
    if size not in ("small", "full"):
        raise ValueError(f"size must be 'small' or 'full', got {size!r}")
    full = size == "full"
    c = ml_collections.ConfigDict()
    c.dataset = "checkerboard"
    c.init = "scratch"  # or "teacher": fine-tune the shipped checkerboard_flow
    c.net = None  # None: the teacher's MLP (features 4 x 256, time_embed_dim 64)
    c.methods = ("flow_matching", "rk12", "rk23", "rk34")
    c.num_steps = 12000 if full else 3000
    c.batch_size = 512 if full else 256
    c.learning_rate = 2e-3
    c.warmup_steps = 100
    c.grad_clip = 1.0
    c.ema_decay = 0.999
    c.delta_schedule = "uniform"
    c.num_segments = 16
    c.weighting = "fixed"
    c.weights = (2.0, 2.0)
    c.label_dropout = 0.0
    c.seed = 0
    c.num_eval = 20000 if full else 10000
    c.euler_steps = (1, 2, 4, 8, 16)
    c.heun_nfe = 15
    c.eval_ema = True
    c.one_step_methods = ("rk12", "rk23", "rk34") if full else ("rk12",)
    c.one_step_steps = 4000 if full else 1000
    c.one_step_pairs = 20000 if full else 4000
    c.one_step_teacher_steps = 16
    c.one_step_anchor_weight = 0.1
    c.checkpoint_every = 1000
    c.log_every = 100
    c.progress = False
    return c
