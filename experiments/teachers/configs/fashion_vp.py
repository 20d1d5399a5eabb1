"""Unconditional VP-cosine v-prediction patch transformer on Fashion-MNIST (28x28): the VP image teacher.

The network was chosen by ``bench/fashion_networks.py`` (bench/results/fashion_networks.json): on
2 CPU cores a small U-Net's training step at batch 128 took 12x longer than this transformer's
(XLA's CPU convolutions), which would leave it a few hundred steps in the 60-minute budget."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "fashion_vp"
    c.description = ("VP cosine (paths.VPCosine) v-prediction patch transformer (nets.PatchTransformer, 4x4 patches, "
                     "width 128, 4 blocks) on Fashion-MNIST 28x28 in [-1, 1], unconditional; v-MSE loss.")
    c.dataset = "fashion_mnist"
    c.module = "PatchTransformer"
    c.net = ml_collections.ConfigDict(dict(patch=4, dim=128, depth=4, heads=4))
    c.path = "VPCosine"
    c.prediction = "v"
    c.weighting = "none"
    c.t_range = None  # the path range shrunk by 1e-3 at both ends
    c.label_dropout = 0.0
    c.num_steps, c.batch_size = 4000, 128  # about 45 minutes on 2 quiet CPU cores
    c.learning_rate, c.warmup_steps, c.grad_clip = 1e-3, 200, 1.0
    c.ema_decay = 0.999
    c.seed = 0
    c.checkpoint_every = 250  # resumable across sessions: re-run the same command
    c.log_every, c.progress = 50, False
    c.store_dtype = "float16"
    c.export_dir = ""  # e.g. jaxsample/assets
    c.eval = ml_collections.ConfigDict(dict(num_samples=500, solver="dopri8", rtol=1e-4, atol=1e-4, seed=0))
    return c
