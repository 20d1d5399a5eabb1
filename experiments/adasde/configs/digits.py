"""AdaSDE on the shipped VP-cosine digits teacher (v prediction, unconditional U-Net).

Small settings: U-Net distillation on CPU costs about a second a training step.
"""

from experiments.adasde.configs import gmm


def get_config():
    c = gmm.get_config()
    c.teacher = "digits_vp"
    c.teacher_kind = "dpm_solver_2"  # the paper's teacher (M = 3): adaptive solves of the U-Net cost too much here
    c.grids = ("logsnr", "quadratic")
    c.num_train, c.num_val, c.num_test = 256, 64, 512
    c.plugin_bases = ()
    c.num_steps, c.batch_size, c.eval_every = 60, 32, 30
    c.bns_target = "teacher"  # the final sample of the same DPM-Solver-2 teacher (no adaptive solves of the U-Net)
    c.baselines = ("ddim", "ipndm", "dpm_solver_pp_3m", "unipc_bh2_3", "dpm_solver_pp_2m_sde")
    c.baseline_grids = ("quadratic", "logsnr")
    return c
