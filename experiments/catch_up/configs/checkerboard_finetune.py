"""Catch-up vs flow matching on the 2-D checkerboard, fine-tuned from the shipped checkerboard_flow
teacher (12000 flow-matching steps): the "fine-tune a flow-matching model" use of CUD.

Default: 1000 steps at batch 256 (scaled down for the shared 2-core CPU);
``--config=experiments/catch_up/configs/checkerboard_finetune.py:full``: 6000 steps at batch 512.
"""

from experiments.catch_up.configs import checkerboard


def get_config(size: str = "small"):
    c = checkerboard.get_config(size)
    full = size == "full"
    c.init = "teacher"
    c.num_steps = 6000 if full else 1000
    c.learning_rate = 1e-3
    c.warmup_steps = 0
    c.ema_decay = 0.99
    c.one_step_methods = ("rk12",) if full else ()
    c.one_step_steps = 4000 if full else 0
    return c
