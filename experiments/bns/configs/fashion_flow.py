"""BNS for the Fashion-MNIST rectified-flow teacher (``fashion_flow``: class-conditional velocity
patch transformer), unguided, on EDM's interval (sigma / alpha from 80 to 0.002, as the demo's
shipped ground truth).

The fashion_vp recipe (``fashion_vp.py``): ground truth from UniPC-3 on a 512-step quadratic grid
(84.5 dB from Dopri8 at rtol 1e-6 on 32 noises; 128 steps reach 58.2 dB, 256 steps 66.2:
``bench/results/ground_truth_accuracy_fashion_flow.json``), 520 + 128 pairs, batch 32, validation
every 50 steps with patience 6. The NS solver learns the velocity field (``field='velocity'``, as
for the digits flow teacher), starting from the exact embedding of the best classical solver.
"""

from experiments.bns.configs import fashion_vp


def get_config():
    c = fashion_vp.get_config()
    c.teacher = "fashion_flow"
    c.field = "velocity"
    c.nfes = (16, 8)
    c.learning_rates = (2e-3, 2e-3)
    c.num_steps = 1000
    return c
