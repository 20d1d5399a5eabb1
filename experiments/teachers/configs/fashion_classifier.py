"""The Fashion-MNIST feature classifier (nets.FashionClassifier) that defines the Fashion-MNIST Frechet distance."""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.name = "fashion_classifier"
    c.description = ("Small CNN (nets.FashionClassifier) on the 60,000 Fashion-MNIST training images; its 128-d "
                     "penultimate layer defines the Fashion-MNIST Frechet distance.")
    c.dataset = "fashion_mnist"
    c.net = ml_collections.ConfigDict(dict(feature_dim=128, channels=32, num_classes=10))
    c.num_steps, c.batch_size, c.learning_rate = 3000, 128, 2e-3
    c.decay_steps = 3000  # cosine decay to 0 over the run
    c.augment_noise = 0.1  # N(0, 0.1^2) pixel noise on training images
    c.ema_decay = 0.0  # ship the raw parameters
    c.seed = 0
    c.checkpoint_every = 250  # resumable across sessions: re-run the same command
    c.log_every, c.progress = 100, False
    c.store_dtype = "float32"
    c.export_dir = ""  # e.g. jaxsample/assets
    return c
