"""The full schedule of issue 8: the shipped digits VP teacher (v prediction) at 256 DDIM steps
distilled 256 -> 128 -> ... -> 1 (8 rounds). Sized for an accelerator: on the shared 2-core CPU
this is many hours (see digits_vp.py for the reduced run that was measured)."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.teacher = "digits_vp"
    c.parameterization = "v"  # the teacher's own: the student starts from its weights
    c.weighting = "snr_plus_one"  # = v-MSE, the teacher's training loss
    c.final_x0 = False  # target formula on every interval (exact for jaxsample's DDIM sampler)
    c.start_steps, c.final_steps = 256, 1
    c.full_steps = 256  # the teacher's reference step count
    c.grid = "uniform"  # u = i / N on [0, 1] as in the paper
    c.t_start = None
    c.t_end = None
    c.steps_per_round = (4000,) * 8  # one entry per round
    c.batch_size = 128
    c.learning_rate, c.decay, c.grad_clip, c.ema_decay = 1e-4, True, 1.0, 0.0
    c.seed, c.eval_seed, c.num_eval = 0, 1000, 500
    c.checkpoint_every, c.log_every, c.progress = 200, 20, False
    return c
