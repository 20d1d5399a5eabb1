"""Catch-up vs flow matching on Fashion-MNIST, fine-tuning the shipped class-conditional
``fashion_flow`` teacher (patch transformer, 1.27M parameters) on the 2-core CPU.

The digits fine-tuning setting (``digits.py``: Adam 2e-4, EMA 0.99, batch 64, no guidance) for 400
steps; 1024 evaluation samples (Frechet distance against the shipped statistics of the 10,000
held-out images), and Euler at the league's NFEs on the shipped ground truth
(``jaxsample/assets/demo/fashion_flow_reference.npz``) for PSNR against the exact ODE:

    python experiments/catch_up/main.py --config experiments/catch_up/configs/fashion_flow.py --workdir W
"""

from experiments.catch_up.configs import digits


def get_config():
    c = digits.get_config("small")
    c.dataset = "fashion_mnist"
    c.methods = ("flow_matching", "rk12", "rk23")
    c.num_steps = 400
    c.num_eval = 1024
    c.reference_nfes = (3, 4, 5, 6, 8, 10, 16)
    c.checkpoint_every = 100
    return c
