import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import objectives, paths

PATHS = [paths.VPCosine(), paths.VPLinear(), paths.EDM(), paths.RectifiedFlow()]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "velocity", "score"])
def test_x0_error_scale_closed_forms(path, prediction):
    t = jnp.array([0.3 * path.t_max + 0.7 * path.t_min, 0.6 * path.t_max])
    a, s, da, ds = path.alpha(t), path.sigma(t), path.d_alpha(t), path.d_sigma(t)
    expected = {
        "eps": -s / a,
        "x0": jnp.ones_like(t),
        "v": -s / (a**2 + s**2),
        "velocity": -s / (a * ds - s * da),
        "score": s**2 / a,
    }[prediction]
    np.testing.assert_allclose(objectives.x0_error_scale(path, prediction, t), expected, rtol=1e-5)


def _hand_example(path, prediction, t):
    """x0, eps, a fixed network output, and the x0 estimate implied by it."""
    x0 = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]])
    eps = jnp.array([[0.3, 0.1, -0.7], [-1.2, 0.4, 0.9]])
    raw = jnp.array([[0.2, -0.4, 1.0], [0.0, 0.6, -0.3]])
    a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
    x_t = a * x0 + s * eps
    from jaxsample.models import to_x0_eps

    x0_hat, _ = to_x0_eps(path, prediction, raw, x_t, t)
    return x0, eps, raw, x0_hat


@pytest.mark.parametrize("path", [paths.VPCosine(), paths.EDM(), paths.RectifiedFlow()], ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "velocity"])
def test_each_weighting_equals_its_formula(path, prediction):
    t = jnp.array([0.35, 0.7]) if path.t_max == 1.0 else jnp.array([0.5, 3.0])
    x0, eps, raw, x0_hat = _hand_example(path, prediction, t)
    snr = np.asarray(path.alpha(t) ** 2 / path.sigma(t) ** 2)
    e_x0 = np.mean(np.asarray(x0_hat - x0) ** 2, axis=1)
    # own-space target, by hand
    a, s = np.asarray(path.alpha(t))[:, None], np.asarray(path.sigma(t))[:, None]
    da, ds = np.asarray(path.d_alpha(t))[:, None], np.asarray(path.d_sigma(t))[:, None]
    target = {"eps": eps, "x0": x0, "v": a * eps - s * x0, "velocity": da * x0 + ds * eps}[prediction]
    own = np.mean((np.asarray(raw) - np.asarray(target)) ** 2, axis=1)
    expected = {
        "none": own,
        "x0": e_x0,
        "snr": snr * e_x0,
        "truncated_snr": np.maximum(snr, 1.0) * e_x0,
        "snr_plus_one": (snr + 1.0) * e_x0,
    }
    for weighting, value in expected.items():
        got = objectives.per_example_loss(path, prediction, weighting, raw, x0, eps, t)
        np.testing.assert_allclose(got, value, rtol=2e-5, err_msg=weighting)


def test_weighting_identities_on_vp():
    # snr weighting == eps-MSE and snr_plus_one == v-MSE on a VP path, for any model.
    path = paths.VPCosine()
    t = jnp.array([0.2, 0.8])
    x0, eps, raw, _ = _hand_example(path, "x0", t)
    a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
    x_t = a * x0 + s * eps
    x0_hat = raw
    eps_hat = (x_t - a * x0_hat) / s
    v_hat, v = a * eps_hat - s * x0_hat, a * eps - s * x0
    np.testing.assert_allclose(objectives.per_example_loss(path, "x0", "snr", raw, x0, eps, t),
                               jnp.mean((eps_hat - eps) ** 2, axis=1), rtol=1e-4)
    np.testing.assert_allclose(objectives.per_example_loss(path, "x0", "snr_plus_one", raw, x0, eps, t),
                               jnp.mean((v_hat - v) ** 2, axis=1), rtol=1e-4)
    # hand numbers: truncated SNR at t with SNR < 1 equals plain x0-MSE
    t_hi = jnp.array([0.9, 0.9])
    assert float(jnp.max(path.alpha(t_hi) / path.sigma(t_hi))) < 1.0
    np.testing.assert_allclose(objectives.per_example_loss(path, "x0", "truncated_snr", raw, x0, eps, t_hi),
                               jnp.mean((raw - x0) ** 2, axis=1), rtol=1e-6)


def _linear_apply(variables, x, t, label=None):
    """A 'network' out = w * x + b * t (+ c[label]) for exact loss checks."""
    p = variables["params"]
    t = jnp.broadcast_to(jnp.asarray(t), x.shape[:1])
    out = p["w"] * x + p["b"] * t[:, None]
    if label is not None:
        out = out + p["c"][label][:, None]
    return out


def test_flow_matching_loss_matches_manual_computation():
    params = {"w": jnp.array(0.5), "b": jnp.array(-0.25), "c": jnp.zeros(3)}
    x0 = jax.random.normal(jax.random.key(0), (6, 2))
    key = jax.random.key(1)
    loss, metrics = objectives.flow_matching_loss(_linear_apply)(params, {"x": x0}, key)
    k_t, k_eps, _ = jax.random.split(key, 3)
    keys_t = [jax.random.fold_in(k_t, i) for i in range(6)]
    keys_e = [jax.random.fold_in(k_eps, i) for i in range(6)]
    t = jnp.array([jax.random.uniform(k, (), minval=0.0, maxval=1.0) for k in keys_t])
    eps = jnp.stack([jax.random.normal(k, (2,)) for k in keys_e])
    x_t = (1 - t)[:, None] * x0 + t[:, None] * eps
    pred = 0.5 * x_t - 0.25 * t[:, None]
    expected = jnp.mean((pred - (eps - x0)) ** 2)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss_unweighted"], expected, rtol=1e-5)


def test_example_randomness_depends_on_index_only():
    # example i's (t, x_t) depend only on (key, i): the first 4 of a batch of 8 == a batch of 4
    params = {"w": jnp.array(0.5), "b": jnp.array(0.1), "c": jnp.zeros(3)}
    x0 = jax.random.normal(jax.random.key(0), (8, 3))
    seen = []

    def apply(variables, x, t, label=None):
        seen.append((x, t))
        return _linear_apply(variables, x, t, label)

    loss_fn = objectives.diffusion_loss(apply, paths.VPCosine(), "eps", "truncated_snr")
    key = jax.random.key(7)
    loss_fn(params, {"x": x0}, key)
    loss_fn(params, {"x": x0[:4]}, key)
    (x8, t8), (x4, t4) = seen
    np.testing.assert_array_equal(t8[:4], t4)
    np.testing.assert_array_equal(x8[:4], x4)
    assert len(np.unique(np.asarray(t8))) == 8


def test_label_dropout_rate_and_null_label():
    labels = jnp.zeros(20000, jnp.int32) + 2
    out = objectives.drop_labels(jax.random.key(0), labels, 0.2, null_label=10)
    frac = float(jnp.mean(out == 10))
    assert abs(frac - 0.2) < 0.01  # binomial std 0.0028
    assert bool(jnp.all((out == 10) | (out == 2)))
    # dropout enters the loss: with rate 1 every label is the null class
    params = {"w": jnp.array(0.0), "b": jnp.array(0.0), "c": jnp.arange(11.0)}
    seen = {}

    def apply(variables, x, t, label=None):
        seen["label"] = label
        return _linear_apply(variables, x, t, label)

    loss_fn = objectives.diffusion_loss(apply, paths.VPCosine(), "x0", "none", label_dropout=1.0, null_label=10)
    loss_fn(params, {"x": jnp.ones((4, 2)), "label": jnp.array([1, 2, 3, 4])}, jax.random.key(0))
    np.testing.assert_array_equal(seen["label"], jnp.full(4, 10))


def test_bad_arguments():
    with pytest.raises(ValueError, match="weighting"):
        objectives.diffusion_loss(_linear_apply, paths.VPCosine(), "eps", "min_snr")
    with pytest.raises(ValueError, match="prediction"):
        objectives.diffusion_loss(_linear_apply, paths.VPCosine(), "noise")
    with pytest.raises(ValueError, match="null_label"):
        objectives.diffusion_loss(_linear_apply, paths.VPCosine(), "eps", label_dropout=0.1)
    with pytest.raises(ValueError, match="t_range"):
        objectives.diffusion_loss(_linear_apply, paths.VPCosine(), "eps", t_range=(0.5, 2.0))
    loss_fn = objectives.diffusion_loss(_linear_apply, paths.VPCosine(), "eps")
    with pytest.raises(ValueError, match="'x'"):
        loss_fn({}, {"image": jnp.ones((2, 2))}, jax.random.key(0))


def test_lognormal_times_for_edm():
    path = paths.EDM()
    sample_t = objectives.lognormal_times(-1.2, 1.2, path)
    t = jax.vmap(sample_t)(objectives.example_keys(jax.random.key(0), 20000))
    logt = np.log(np.asarray(t))
    # log sigma ~ N(-1.2, 1.2^2), clipped to [0.002, 80] (clipping affects < 0.01% of draws)
    np.testing.assert_allclose(np.median(logt), -1.2, atol=0.05)
    np.testing.assert_allclose(np.std(logt), 1.2, rtol=0.03)
    assert t.min() >= 0.002 and t.max() <= 80.0
    seen = []

    def apply(variables, x, t, label=None):
        seen.append(t)
        return _linear_apply(variables, x, t, label)

    params = {"w": jnp.array(0.5), "b": jnp.array(0.0), "c": jnp.zeros(3)}
    loss_fn = objectives.diffusion_loss(apply, path, "x0", "snr_plus_one", time_sampler=sample_t)
    loss, _ = loss_fn(params, {"x": jnp.ones((4, 2))}, jax.random.key(1))
    k_t = jax.random.split(jax.random.key(1), 3)[0]
    expected_t = jax.vmap(sample_t)(objectives.example_keys(k_t, 4))
    np.testing.assert_allclose(seen[0], expected_t, rtol=1e-6)
    assert np.isfinite(float(loss))
