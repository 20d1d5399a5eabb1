"""Class-conditional rectified-flow velocity patch transformer on Fashion-MNIST (28x28): the guided image teacher.

The same network as ``fashion_vp`` (chosen by ``bench/fashion_networks.py``) with a class
embedding: label in 0..9, 10 = the null class, label dropout 0.1 for classifier-free guidance
(``nets.guided(model, scale, null_label=10)``)."""

from experiments.teachers.configs import fashion_vp


def get_config():
    c = fashion_vp.get_config()
    c.name = "fashion_flow"
    c.description = ("Rectified-flow (x_t = (1-t) x0 + t eps) velocity patch transformer (nets.PatchTransformer, "
                     "4x4 patches, width 128, 4 blocks) on Fashion-MNIST 28x28 in [-1, 1], class-conditional: "
                     "label in 0..9, 10 = null class (label dropout 0.1 for classifier-free guidance; "
                     "nets.guided(model, scale, null_label=10)).")
    c.net.num_classes = 10
    c.path = "RectifiedFlow"
    c.prediction = "velocity"
    c.t_range = (0.0, 1.0)
    c.label_dropout = 0.1
    return c
