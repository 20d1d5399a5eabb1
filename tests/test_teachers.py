"""The shipped teachers (jaxsample.teachers): they load offline, have the path and prediction they
were trained with, and sample well with a cheap solver.

Quality thresholds (measured when the teachers were trained, see each card's ``eval`` and the
numbers in the comments below) are asserted with margin: Heun with 16 uniform steps (31 model
calls) on 200 samples.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import data, features, grids, metrics, nets, paths, sampling, solvers, teachers

GENERATIVE = {
    "digits_flow": (paths.RectifiedFlow, "velocity", (8, 8, 1)),
    "digits_vp": (paths.VPCosine, "v", (8, 8, 1)),
    "fashion_vp": (paths.VPCosine, "v", (28, 28, 1)),
    "fashion_flow": (paths.RectifiedFlow, "velocity", (28, 28, 1)),
    "checkerboard_flow": (paths.RectifiedFlow, "velocity", (2,)),
}
NUM_SAMPLES = 200
NUM_STEPS = 16


def test_list_teachers_and_cards():
    names = teachers.list_teachers()
    assert names == sorted(["digits_flow", "digits_vp", "fashion_vp", "fashion_flow", "checkerboard_flow",
                            "digits_classifier", "fashion_classifier"])
    for name in names:
        card = teachers.teacher_card(name)
        for key in ("name", "module", "net", "weights_file", "command", "config", "train_wall_time_s",
                    "steps", "final_loss", "eval"):
            assert key in card, (name, key)
        assert card["name"] == name
        assert card["command"].startswith("python experiments/teachers/main.py --config ")
        assert (teachers.ASSETS_DIR / card["weights_file"]).stat().st_size < 5 * 2**20
        assert np.isfinite(card["final_loss"])


@pytest.mark.parametrize("name", ["nope", "digits", ""])
def test_unknown_name_raises_listing_valid_names(name):
    with pytest.raises(ValueError, match="checkerboard_flow, digits_classifier, digits_flow, digits_vp"):
        teachers.load_teacher(name)
    with pytest.raises(ValueError, match="valid names"):
        teachers.teacher_card(name)


def test_classifier_is_not_a_generative_teacher():
    with pytest.raises(ValueError, match="load_digits_classifier"):
        teachers.load_teacher("digits_classifier")


@pytest.mark.parametrize("name", sorted(GENERATIVE))
def test_teacher_loads_with_its_path_and_prediction(name):
    path_cls, prediction, shape = GENERATIVE[name]
    model = teachers.load_teacher(name)
    assert type(model.path) is path_cls
    assert model.prediction == prediction
    card = teachers.teacher_card(name)
    assert card["prediction"] == prediction and card["path"] == path_cls.__name__
    noise = jax.random.normal(jax.random.key(0), (3, *shape))
    cond = {"label": jnp.array([0, 5, 10])} if name in ("digits_flow", "fashion_flow") else {}
    out = jax.jit(lambda x: model(x, 0.5, **cond))(noise)
    assert out.shape == noise.shape
    assert bool(jnp.all(jnp.isfinite(out)))


def test_conditional_teacher_takes_labels_and_null_label():
    model = teachers.load_teacher("digits_flow")
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
    f = jax.jit(lambda x, label: model(x, 0.7, label=label))
    a, b, null = f(x, jnp.array([1, 1])), f(x, jnp.array([7, 7])), f(x, jnp.array([10, 10]))
    assert not np.allclose(a, b)  # the label matters
    assert np.allclose(model(x, 0.7), null, atol=1e-5)  # label=None is the null class


@pytest.fixture(scope="module")
def classifier():
    return teachers.load_digits_classifier()


def test_classifier_held_out_accuracy(classifier):
    module, params = classifier
    x, y = data.load_digits("test")
    accuracy = float(jnp.mean(jnp.argmax(module.apply({"params": params}, jnp.asarray(x)), -1) == y))
    assert accuracy >= 0.9  # measured 0.983
    assert abs(accuracy - teachers.teacher_card("digits_classifier")["test_accuracy"]) < 0.02


@pytest.fixture(scope="module")
def digits_baselines(classifier):
    """Frechet distances to the 300 held-out digits: 200 real training digits, and pure noise."""
    test_f = features.digits_features(data.load_digits("test")[0], classifier)
    train_x = data.load_digits("train")[0]
    idx = np.random.default_rng(0).choice(train_x.shape[0], NUM_SAMPLES, replace=False)
    noise = np.asarray(jax.random.normal(jax.random.key(2), (NUM_SAMPLES, 8, 8, 1)))
    real = metrics.frechet_distance(features.digits_features(train_x[idx], classifier), test_f)
    pure_noise = metrics.frechet_distance(features.digits_features(noise, classifier), test_f)
    return test_f, real, pure_noise


# Measured with these seeds (200 samples, heun, 16 uniform steps): real-split FD 42.2, pure noise
# 523; digits_flow 55.7 (ratio 1.32), digits_vp 68.5 (ratio 1.62).
DIGITS_MAX_RATIO_TO_REAL = {"digits_flow": 2.0, "digits_vp": 2.5}


@pytest.mark.parametrize("name", ["digits_flow", "digits_vp"])
def test_digits_teacher_sample_quality(name, classifier, digits_baselines):
    test_f, real_fd, noise_fd = digits_baselines
    model = teachers.load_teacher(name)
    noise = sampling.initial_noise(jax.random.key(3), (NUM_SAMPLES, 8, 8, 1))
    cond = {}
    if name == "digits_flow":  # uniform labels, guidance scale 1 (the plain conditional model)
        cond = {"label": jax.random.randint(jax.random.key(4), (NUM_SAMPLES,), 0, 10)}
    ts = grids.uniform(model.path, NUM_STEPS)
    x = np.asarray(sampling.sample(model, solvers.heun(), ts, noise, cond=cond))
    assert x.shape == noise.shape and np.all(np.isfinite(x))
    fd = metrics.frechet_distance(features.digits_features(x, classifier), test_f)
    assert fd < 0.25 * noise_fd, (fd, noise_fd)  # measured <= 0.13
    assert fd < DIGITS_MAX_RATIO_TO_REAL[name] * real_fd, (fd, real_fd)


# Measured (1000 samples, heun, 16 uniform steps, 128 projections): ratio 1.08 to two exact sets.
CHECKERBOARD_MAX_RATIO_TO_REAL = 1.6


def test_checkerboard_teacher_sample_quality():
    model = teachers.load_teacher("checkerboard_flow")
    n = 1000
    noise = sampling.initial_noise(jax.random.key(5), (n, 2))
    x = np.asarray(sampling.sample(model, solvers.heun(), grids.uniform(model.path, NUM_STEPS), noise))
    ref_a = np.asarray(data.checkerboard(jax.random.key(6), n))
    ref_b = np.asarray(data.checkerboard(jax.random.key(7), n))
    sw = lambda a, b: metrics.sliced_wasserstein(a, b, num_projections=128, key=jax.random.key(8))  # noqa: E731
    teacher_sw, real_sw, noise_sw = sw(x, ref_a), sw(ref_b, ref_a), sw(np.asarray(noise), ref_a)
    assert teacher_sw < 0.45 * noise_sw, (teacher_sw, noise_sw)  # measured 0.084 vs noise 0.279
    assert teacher_sw < CHECKERBOARD_MAX_RATIO_TO_REAL * real_sw, (teacher_sw, real_sw)  # measured 0.084 vs 0.078



def test_fashion_teacher_sample_quality():
    """fashion_vp: 200 samples, Heun on 16 uniform steps, Frechet distance to the shipped held-out
    Fashion-MNIST statistics. Measured: 64.2 (the card's exact-ODE 500 samples: 50.2; 500 real training
    images: 2.3); the noise itself: 692."""
    model = teachers.load_teacher("fashion_vp")
    noise = sampling.initial_noise(jax.random.key(3), (NUM_SAMPLES, 28, 28, 1))
    x = np.asarray(sampling.sample(model, solvers.heun(), grids.uniform(model.path, NUM_STEPS), noise))
    fd, noise_fd = features.fashion_frechet_distance(x), features.fashion_frechet_distance(np.asarray(noise))
    assert fd < 0.15 * noise_fd, (fd, noise_fd)
    assert fd < 90.0, fd


def test_fashion_flow_teacher_sample_quality_and_guidance():
    """fashion_flow: 200 samples (labels 0..9 in turn), Heun on 16 uniform steps. Frechet distance to the
    held-out statistics: measured 30.4 (the card's exact-ODE 500 samples: 32.1; noise: 692); with
    classifier-free guidance at scale 2: 12.2."""
    model = teachers.load_teacher("fashion_flow")
    noise = sampling.initial_noise(jax.random.key(3), (NUM_SAMPLES, 28, 28, 1))
    cond = {"label": jnp.arange(NUM_SAMPLES) % 10}
    ts = grids.uniform(model.path, NUM_STEPS)
    fd = features.fashion_frechet_distance(np.asarray(sampling.sample(model, solvers.heun(), ts, noise, cond=cond)))
    assert fd < 50.0, fd
    guided = nets.guided(model, 2.0, null_label=10)
    fd_guided = features.fashion_frechet_distance(np.asarray(sampling.sample(guided, solvers.heun(), ts, noise,
                                                                             cond=cond)))
    assert fd_guided < 0.7 * fd, (fd, fd_guided)
