"""Catch-up vs flow matching on the 8x8 digits, fine-tuned from the shipped digits_flow teacher.

Default: the scaled-down run for the shared 2-core CPU (the teacher's class-conditional U-Net,
fine-tuned 200 steps at batch 64, 500 evaluation samples).
``--config=experiments/catch_up/configs/digits.py:full``: the full-size run (from scratch,
5000 steps at batch 128, 2000 evaluation samples; about 1.5 GPU-hours-equivalent of CPU work
per method, so run it on an accelerator).
"""

import ml_collections


def get_config(size: str = "small"):
    if size not in ("small", "full"):
        raise ValueError(f"size must be 'small' or 'full', got {size!r}")
    full = size == "full"
    c = ml_collections.ConfigDict()
    c.dataset = "digits"
    c.init = "scratch" if full else "teacher"  # "teacher": fine-tune the shipped digits_flow
    c.net = None  # None: the teacher's U-Net (channels 32, mults (1, 2), 10 classes)
    c.methods = ("flow_matching", "rk12", "rk23", "rk34")
    c.num_steps = 5000 if full else 200
    c.batch_size = 128 if full else 64
    c.learning_rate = 2e-3 if full else 2e-4
    c.warmup_steps = 100 if full else 0
    c.grad_clip = 1.0
    c.ema_decay = 0.999 if full else 0.99
    c.delta_schedule = "uniform"
    c.num_segments = 16
    c.weighting = "fixed"
    c.weights = (2.0, 2.0)
    c.label_dropout = 0.1
    c.seed = 0
    c.num_eval = 2000 if full else 500
    c.euler_steps = (1, 2, 4, 8, 16)
    c.heun_nfe = 15
    c.eval_ema = True
    c.one_step_methods = ("rk12",)
    c.one_step_steps = 2000 if full else 0
    c.one_step_pairs = 10000 if full else 2000
    c.one_step_teacher_steps = 16
    c.one_step_anchor_weight = 0.1
    c.checkpoint_every = 500 if full else 100
    c.log_every = 50
    c.progress = False
    return c
