"""The digits feature classifier (nets.DigitsClassifier) that defines the digits Frechet distance."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "digits_classifier"
    c.description = ("Small CNN (nets.DigitsClassifier) on the 8x8 digits train split; its 64-d "
                     "penultimate layer defines the digits Frechet distance.")
    c.net = ml_collections.ConfigDict(dict(feature_dim=64, channels=32, num_classes=10))
    c.num_steps, c.batch_size, c.learning_rate = 1000, 128, 3e-3
    c.augment_noise = 0.1  # N(0, 0.1^2) pixel noise on training images
    c.ema_decay = 0.0  # ship the raw parameters
    c.seed = 0
    c.log_every, c.progress = 50, False
    c.store_dtype = "float32"
    c.export_dir = ""  # e.g. jaxsample/assets
    return c
