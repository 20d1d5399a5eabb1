"""The task loader (jaxsample.tasks): model, sample shape, interval, conditioning and metrics of a
shipped teacher, a teacher card or the Gaussian-mixture benchmark, and clear errors."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxsample import compare, data, metrics, nets, paths, tasks, teachers


def test_mixture_task_is_the_benchmark_of_the_setting():
    task = tasks.load_task("gmm", dim=4, num_components=2, data_seed=3)
    assert task.name == "gmm_vp_cosine" and task.sample_shape == (4,) and task.dataset == "gmm"
    assert isinstance(task.model.path, paths.VPCosine) and task.model.prediction == "eps"
    assert task.interval == compare.edm_interval(task.model.path)  # the setting's interval: EDM's
    gmm = compare.benchmark_mixture(4, 2, 3)
    np.testing.assert_array_equal(task.mixture.means, gmm.means)
    assert task.conditioning(5, seed=0) == {} and task.num_classes is None and task.card is None
    assert task.teacher_train_seconds is None

    flow = tasks.load_task("gmm_rectified_flow", dim=4, num_components=2)  # the setting in the name
    assert flow.name == "gmm_rectified_flow" and flow.model.prediction == "velocity"
    assert (flow.t_start, flow.t_end) == (1.0, 0.0)  # its whole range
    assert tasks.load_task("gmm", setting="rectified_flow", dim=4, num_components=2).interval == flow.interval
    assert tasks.load_task("gmm_rectified_flow", dim=4, num_components=2, edm_interval=True).interval == \
        compare.edm_interval(flow.model.path)
    assert tasks.load_task("gmm", dim=4, num_components=2, edm_interval=False).interval == {"t_start": 1.0,
                                                                                             "t_end": 0.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.sample_shape = (5,)


@pytest.mark.parametrize("name, shape, path_cls, num_classes, dataset", [
    ("digits_vp", (8, 8, 1), paths.VPCosine, None, "digits"),
    ("digits_flow", (8, 8, 1), paths.RectifiedFlow, 10, "digits"),
    ("checkerboard_flow", (2,), paths.RectifiedFlow, None, "checkerboard"),
])
def test_teacher_tasks(name, shape, path_cls, num_classes, dataset):
    task = tasks.load_task(name)
    card = teachers.teacher_card(name)
    assert (task.name, task.sample_shape, task.num_classes, task.dataset) == (name, shape, num_classes, dataset)
    assert isinstance(task.model.path, path_cls) and task.model.prediction == card["prediction"]
    assert (task.t_start, task.t_end) == (task.model.path.t_max, task.model.path.t_min)  # the whole range
    assert tasks.load_task(name, edm_interval=True).interval == compare.edm_interval(task.model.path)
    assert task.teacher_train_seconds == card["train_wall_time_s"]
    assert task.noise(jax.random.key(0), 3).shape == (3, *shape)
    module, params = task.network()
    assert type(module).__name__ == card["module"] and params is teachers.load_params(name)
    if name == "checkerboard_flow":  # (a small network: cheap to call un-jitted)
        x, t = task.noise(jax.random.key(1), 2), jnp.full((2,), 0.5)
        np.testing.assert_allclose(module.apply({"params": params}, x, t), task.model.fn(x, t), rtol=1e-6)


def test_conditioning_draws_labels_from_the_seed():
    task = tasks.load_task("digits_flow")
    labels = task.conditioning(200, seed=7)["label"]
    assert labels.shape == (200,) and labels.min() >= 0 and labels.max() < 10 and len(np.unique(labels)) == 10
    np.testing.assert_array_equal(labels, task.conditioning(200, seed=7)["label"])
    np.testing.assert_array_equal(labels, np.random.default_rng(7).integers(0, 10, 200))
    assert not np.array_equal(labels, task.conditioning(200, seed=8)["label"])


def test_guidance_wraps_a_conditional_teacher():
    plain, guided = tasks.load_task("digits_flow"), tasks.load_task("digits_flow", guidance_scale=2.0)
    want = nets.guided(plain.model, 2.0, null_label=10)  # the card's null class
    assert type(guided.model.fn) is type(want.fn) and (guided.model.fn.scale, guided.model.fn.null_label) == (2.0, 10)
    assert eqx.tree_equal(jax.tree_util.tree_leaves(guided.model), jax.tree_util.tree_leaves(want))
    assert (guided.sample_shape, guided.num_classes, guided.interval) == (plain.sample_shape, 10, plain.interval)


def test_a_teacher_card_file_is_a_task():
    card_file = str(teachers.ASSETS_DIR / "digits_flow.json")
    task = tasks.load_task(card_file, guidance_scale=1.5)
    assert task.name == card_file and task.sample_shape == (8, 8, 1) and task.num_classes == 10
    assert task.card == teachers.teacher_card("digits_flow")
    _, params = task.network()
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda a, b: bool(jnp.array_equal(a, b)), params, teachers.load_params("digits_flow")))


def test_task_from_config_reads_the_study_fields():
    c = ml_collections.ConfigDict({"teacher": "", "setting": "rectified_flow", "dim": 3, "num_components": 2,
                                   "data_seed": 0, "data_range": 4.0, "num_steps": 10})
    task = tasks.task_from_config(c)
    assert task.name == "gmm_rectified_flow" and task.sample_shape == (3,) and task.data_range == 4.0
    assert task.interval == {"t_start": 1.0, "t_end": 0.0}
    assert tasks.task_from_config(c, edm_interval=True).interval == compare.edm_interval(task.model.path)
    c = ml_collections.ConfigDict({"teacher": "digits_flow", "guidance_scale": 2.0, "edm_interval": False})
    task = tasks.task_from_config(c)
    assert task.name == "digits_flow" and type(task.model.fn).__name__ == "_GuidedFn"


def test_metrics():
    task = tasks.load_task("gmm", dim=4, num_components=2)
    x = task.data_samples(jax.random.key(0), 256)
    y = x + 0.01
    assert task.psnr(y, x) == pytest.approx(float(metrics.psnr(y, x, 2.0)))
    assert task.log_likelihood(x) == pytest.approx(float(metrics.mean_log_likelihood(task.mixture, x)))
    assert task.frechet_distance(x, reference=x) < 1e-6
    assert task.frechet_distance(y, reference=x) == pytest.approx(4 * 0.01 ** 2, rel=1e-3)
    with pytest.raises(ValueError, match="reference"):
        task.frechet_distance(x)
    digits = tasks.load_task("digits_vp")
    test_x, _ = data.load_digits("test")
    assert digits.frechet_distance(test_x) < 1e-6  # against the 300 held-out digits
    with pytest.raises(ValueError, match="log-density"):
        digits.log_likelihood(test_x)
    board = tasks.load_task("checkerboard_flow")
    assert board.data_samples(jax.random.key(0), 5).shape == (5, 2)
    with pytest.raises(ValueError, match="no exact sampler"):
        digits.data_samples(jax.random.key(0), 5)
    assert digits.has_image_features and not task.has_image_features


def test_fashion_task_scores_against_the_shipped_statistics():
    from jaxsample import features

    fashion = dataclasses.replace(tasks.load_task("digits_vp"), dataset="fashion_mnist", sample_shape=(28, 28, 1))
    x = np.asarray(jax.random.uniform(jax.random.key(0), (64, 28, 28, 1), minval=-1, maxval=1))
    assert fashion.has_image_features
    assert fashion.frechet_distance(x) == pytest.approx(features.fashion_frechet_distance(x), rel=1e-6)
    with pytest.raises(ValueError, match="reference must be None for Fashion-MNIST"):
        fashion.frechet_distance(x, reference=x)


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown teacher 'cifar': name must be a shipped teacher "
                                         r"\(checkerboard_flow, digits_flow, digits_vp, fashion_flow, fashion_vp\)"):
        tasks.load_task("cifar")
    with pytest.raises(ValueError, match="unknown teacher 'digits_classifier': name must be"):
        tasks.load_task("digits_classifier")
    with pytest.raises(ValueError, match="no such card file"):
        tasks.load_task(str(tmp_path / "mine.json"))
    with pytest.raises(ValueError, match=r"setting must be one of \['rectified_flow', 'vp_cosine'\], got 've'"):
        tasks.load_task("gmm", setting="ve")
    with pytest.raises(ValueError, match="got 'edm'"):
        tasks.load_task("gmm_edm")
    with pytest.raises(ValueError, match="guidance_scale=2.0 needs a class-conditional teacher; 'digits_vp'"):
        tasks.load_task("digits_vp", guidance_scale=2.0)
    with pytest.raises(ValueError, match="no network"):
        tasks.load_task("gmm", dim=2, num_components=1).network()
