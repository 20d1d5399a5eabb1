import chex
import numpy as np

from jaxsample import data, features, teachers


def test_shipped_digits_classifier_and_frechet_distance():
    clf = teachers.load_digits_classifier()
    module, params = clf
    train_x, _ = data.load_digits("train")
    test_x, test_y = data.load_digits("test")
    logits = module.apply({"params": params}, test_x)
    assert float(np.mean(np.argmax(logits, -1) == test_y)) > 0.9  # held-out accuracy on 300 digits (card: 0.983)
    f = features.digits_features(test_x[:10], clf)
    chex.assert_shape(f, (10, module.feature_dim))
    # the default classifier is the shipped one
    chex.assert_trees_all_equal(features.digits_features(test_x[:10]), f)
    assert features.digits_frechet_distance(test_x, test_x, clf) < 1e-6
    real = features.digits_frechet_distance(train_x[:300], classifier=clf)
    noise = features.digits_frechet_distance(np.random.default_rng(0).uniform(-1, 1, (300, 8, 8, 1)), classifier=clf)
    assert real < 0.1 * noise, (real, noise)
    assert features.digits_frechet_distance(train_x[:300]) == real
    # 16x16 digits are pooled to 8x8 first: nearest-upsampled digits have the same features
    x16, _ = data.load_digits("test", size=16, upsample="nearest")
    chex.assert_trees_all_close(features.digits_features(x16[:10], clf), f, rtol=1e-4, atol=1e-5)


def test_classifier_training_recipe():
    """experiments/teachers/classifier.py (what trained the shipped classifier), 200 steps."""
    from experiments.teachers import classifier
    from experiments.teachers.configs import digits_classifier

    config = digits_classifier.get_config()
    config.num_steps = 200
    module, params, acc = classifier.train_digits_classifier(config)
    assert module == teachers.load_digits_classifier()[0]
    chex.assert_trees_all_equal_shapes_and_dtypes(params, teachers.load_params("digits_classifier"))
    assert acc > 0.9  # held-out accuracy on 300 test digits
    real = features.digits_frechet_distance(data.load_digits("train")[0][:300], classifier=(module, params))
    noise = features.digits_frechet_distance(np.random.default_rng(0).uniform(-1, 1, (300, 8, 8, 1)),
                                             classifier=(module, params))
    assert real < 0.1 * noise, (real, noise)


def test_shipped_fashion_classifier_and_statistics():
    """The shipped Fashion-MNIST classifier and held-out feature statistics (no dataset needed):
    noise is far from the held-out images; with the dataset installed, the held-out accuracy of the
    card and a Frechet distance of 2,000 test images well below the noise's."""
    import os

    import jax.numpy as jnp

    from jaxsample._assets import asset_path
    from jaxsample.nets import FashionClassifier

    module, params = teachers.load_classifier("fashion_classifier")
    assert isinstance(module, FashionClassifier)
    card = teachers.teacher_card("fashion_classifier")
    assert card["eval"]["num_test"] == 10_000 and card["eval"]["test_accuracy"] > 0.88
    with np.load(asset_path(features.FASHION_STATS)) as z:
        assert z["mean"].shape == (128,) and z["cov"].shape == (128, 128)
        np.testing.assert_allclose(z["cov"], z["cov"].T)
    noise = np.random.default_rng(0).uniform(-1, 1, (256, 28, 28, 1)).astype(np.float32)
    noise_fd = features.fashion_frechet_distance(noise)
    assert noise_fd > 10.0, noise_fd
    if not os.path.isdir(data.FASHION_MNIST_DIR):
        return
    test_x, test_y = data.load_fashion_mnist("test")
    logits = module.apply({"params": params}, jnp.asarray(test_x[:2000]))
    assert float(np.mean(np.argmax(logits, -1) == test_y[:2000])) > 0.87
    assert features.fashion_frechet_distance(test_x[:2000]) < 0.05 * noise_fd
