"""digits_vp with a smoother time input: the sinusoidal embedding of 30 t instead of 1000 t
(frequencies up to 30 rad per unit t, not 1000), everything else the same. The shipped digits_vp
has structure in t on a scale of ~0.005 that caps every 16-NFE solver near 55 dB
(experiments/bns/teacher_smoothness.py); this teacher tests that explanation. Not shipped."""

from experiments.teachers.configs import digits_vp


def get_config():
    c = digits_vp.get_config()
    c.name = "digits_vp_smooth_time"
    c.description = c.description + " Time embedding of 30 t (time_scale = 30)."
    c.net.time_scale = 30.0
    return c
