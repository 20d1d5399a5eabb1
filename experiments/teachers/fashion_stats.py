"""Build the shipped held-out statistics of Fashion-MNIST (``jaxsample/assets/fashion_mnist_test_features.npz``):
the mean and covariance of the shipped ``fashion_classifier``'s features of the 10,000 test images,
with the classifier's own train/test gap (the Frechet distance of 10,000 training images to them).

    python experiments/teachers/fashion_stats.py            # needs dataset-fashion-mnist (or tfds)
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from jaxsample import data, features, metrics
from jaxsample._assets import ASSETS_DIR
from jaxsample._files import atomic_write


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.path.join(ASSETS_DIR, features.FASHION_STATS))
    args = p.parse_args(argv)
    test_x, _ = data.load_fashion_mnist("test")
    train_x, _ = data.load_fashion_mnist("train")
    f_test = features.fashion_features(test_x)
    mean, cov = metrics.feature_stats(f_test)
    idx = np.random.default_rng(0).choice(train_x.shape[0], 10_000, replace=False)
    gap = metrics.frechet_distance_from_stats(*metrics.feature_stats(features.fashion_features(train_x[idx])), mean, cov)
    info = {"num_images": int(test_x.shape[0]), "feature_dim": int(mean.size),
            "train_10k_vs_test_frechet_distance": gap}
    with atomic_write(args.out) as f:
        np.savez(f, mean=mean, cov=cov, info=np.frombuffer(json.dumps(info).encode(), np.uint8))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
