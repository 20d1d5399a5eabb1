"""Models: prediction conversions round-trip on every path; the exact mixture is exact."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import models, paths
from jaxsample.models import PREDICTIONS, GaussianMixture, Model, convert_prediction

ALL_PATHS = [paths.VPCosine(), paths.VPLinear(), paths.DiscreteDDPM(), paths.EDM(), paths.RectifiedFlow()]
IDS = [type(p).__name__ for p in ALL_PATHS]


def mid_time(path, frac):
    return path.t_min + frac * (path.t_max - path.t_min)


@pytest.fixture(scope="module")
def gmm():
    return GaussianMixture.random(jax.random.key(0), dim=5, num_components=3)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
@pytest.mark.parametrize("source", PREDICTIONS)
def test_conversions_round_trip(path, source, x64):
    key = jax.random.key(1)
    x = jax.random.normal(key, (6, 5), jnp.float64)
    raw = jax.random.normal(jax.random.key(2), (6, 5), jnp.float64)
    t = jnp.linspace(mid_time(path, 0.1), mid_time(path, 0.9), 6)  # per-sample times
    there = {target: convert_prediction(path, raw, x, t, source, target) for target in PREDICTIONS}
    back = {target: convert_prediction(path, y, x, t, target, source) for target, y in there.items()}
    chex.assert_trees_all_close(back, {target: raw for target in PREDICTIONS}, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_all_prediction_types_agree(gmm, path, x64):
    x = jax.random.normal(jax.random.key(3), (7, 5), jnp.float64)
    t = jnp.asarray(mid_time(path, 0.4), jnp.float64)
    eps_model = gmm.model(path, "eps")
    derived = {target: eps_model.predict(target, x, t) for target in PREDICTIONS}
    direct = {target: gmm.model(path, target)(x, t) for target in PREDICTIONS}
    chex.assert_trees_all_close(derived, direct, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_exact_score_is_grad_of_marginal_log_density(gmm, path, x64):
    x = jax.random.normal(jax.random.key(4), (4, 5), jnp.float64)
    for frac in (0.05, 0.5, 0.95):
        t = jnp.asarray(mid_time(path, frac), jnp.float64)
        grad = jax.vmap(jax.grad(lambda xi: gmm.marginal_log_prob(path, xi[None], t)[0]))(x)
        np.testing.assert_allclose(gmm.score(path, x, t), grad, rtol=1e-8, atol=1e-10)


def test_mixture_log_prob_and_sampling(gmm, x64):
    # A 1-component, 1-d mixture is a Gaussian: compare with the closed form.
    g = GaussianMixture(jnp.array([[0.5]]), jnp.array([[2.0]]))
    x = jnp.linspace(-3, 3, 7)[:, None]
    expected = -0.5 * ((x[:, 0] - 0.5) / 2.0) ** 2 - jnp.log(2.0 * jnp.sqrt(2 * jnp.pi))
    np.testing.assert_allclose(g.log_prob(x), expected, rtol=1e-12)
    # Sample moments of the mixture (200k samples: standard error of the mean < 0.01).
    s = gmm.sample(jax.random.key(5), 200_000)
    w = jnp.exp(gmm.log_weights)[:, None]
    mean = jnp.sum(w * gmm.means, axis=0)
    np.testing.assert_allclose(s.mean(0), mean, atol=0.02)


def test_marginal_at_data_end_is_data_density(x64):
    g = GaussianMixture(jnp.array([[0.0, 1.0], [2.0, -1.0]]), jnp.array([[0.3, 0.5], [0.2, 0.4]]))
    path = paths.RectifiedFlow()
    x = jax.random.normal(jax.random.key(6), (5, 2), jnp.float64)
    np.testing.assert_allclose(g.marginal_log_prob(path, x, jnp.float64(0.0)), g.log_prob(x), rtol=1e-12)


def test_flip_time_for_flow_matching_convention(gmm):
    # A velocity trained with t' = 1 - t (t' = 0 noise) is d x / d t' = -d x / d t.
    path = paths.RectifiedFlow()
    ours = gmm.model(path, "velocity")
    theirs = lambda x, tp: -ours(x, 1.0 - tp)  # noqa: E731
    wrapped = Model(models.flip_time(theirs, "velocity"), path, "velocity")
    x = jnp.ones((2, 5))
    np.testing.assert_allclose(wrapped(x, 0.3), ours(x, 0.3), rtol=1e-6)


def test_bad_inputs_name_the_argument(gmm):
    with pytest.raises(ValueError, match="prediction must be one of"):
        Model(lambda x, t: x, paths.VPCosine(), "noise")
    with pytest.raises(ValueError, match="path must be"):
        Model(lambda x, t: x, "vp", "eps")
    with pytest.raises(ValueError, match="weights must have shape"):
        GaussianMixture(jnp.zeros((2, 3)), 1.0, jnp.ones(3))
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture(jnp.zeros((2, 3)), -1.0)


@pytest.mark.parametrize("base,pred", [(paths.RectifiedFlow(), "velocity"), (paths.VPCosine(), "eps")],
                         ids=["rf", "vp_cosine"])
def test_scale_time_transform_keeps_the_noise_to_data_map(base, pred, x64):
    """change_path onto NoiseScaled(base, 5): same samples from the same noise (Bespoke solvers' transform)."""
    from jaxsample import compare, sampling

    gmm = GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    model = gmm.model(base, pred)
    new = paths.NoiseScaled(base, 5.0)
    moved = models.change_path(model, new)
    interval = {} if isinstance(base, paths.RectifiedFlow) else compare.edm_interval(base)
    t_start = interval.get("t_start", base.t_max)
    t_end = interval.get("t_end", base.t_min)
    noise = sampling.initial_noise(jax.random.key(1), (6, 4), jnp.float64)
    ref = sampling.reference_sample(model, noise, t_start=t_start, t_end=t_end, rtol=1e-10, atol=1e-10)
    r_start = float(models.equivalent_time(base, new, t_start)) if interval else new.t_max
    r_end = float(models.equivalent_time(base, new, t_end)) if interval else new.t_min
    out = sampling.reference_sample(moved, noise, t_start=r_start, t_end=r_end, rtol=1e-10, atol=1e-10)
    scale_end = new.alpha(r_end) / base.alpha(t_end)  # x_new = s x_old at the end
    np.testing.assert_allclose(out / scale_end, ref, atol=1e-7)
    # The moved model is the exact mixture's velocity on the new path.
    x = jax.random.normal(jax.random.key(2), (3, 4), jnp.float64)
    t = jnp.float64(0.5 * (new.t_min + new.t_max))
    np.testing.assert_allclose(moved(x, t), gmm.model(new, "velocity")(x, t), rtol=1e-8, atol=1e-10)
