import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import models, nets, paths


def test_sinusoidal_embedding_values():
    t = jnp.array([0.0, 2.0])
    emb = nets.sinusoidal_embedding(t, 4, max_period=100.0)
    # freqs = 100^(-k/2), k = 0, 1 -> [1, 0.1]
    expected = np.array([[1, 1, 0, 0], [np.cos(2.0), np.cos(0.2), np.sin(2.0), np.sin(0.2)]])
    np.testing.assert_allclose(emb, expected, atol=1e-6)
    chex.assert_shape(nets.sinusoidal_embedding(t, 5), (2, 5))


@pytest.mark.parametrize("num_classes", [None, 3])
def test_mlp_shapes_and_scalar_t_broadcast(num_classes):
    net = nets.MLP(features=(16, 16), time_embed_dim=8, num_classes=num_classes)
    x = jax.random.normal(jax.random.key(0), (5, 3))
    label = jnp.array([0, 1, 2, 3, 0]) if num_classes else None
    params = jax.jit(net.init)(jax.random.key(1, impl="rbg"), x, 0.3, label=label)["params"]
    out_scalar = jax.jit(net.apply)({"params": params}, x, 0.3, label=label)
    out_vec = jax.jit(net.apply)({"params": params}, x, jnp.full((5,), 0.3), label=label)
    chex.assert_equal_shape([out_scalar, x])
    np.testing.assert_allclose(out_scalar, out_vec, atol=0)
    # Each example depends only on its own row (no cross-batch mixing).
    single = jax.jit(net.apply)({"params": params}, x[2:3], 0.3, label=None if label is None else label[2:3])
    np.testing.assert_allclose(single[0], out_scalar[2], atol=1e-6)
    with pytest.raises(ValueError, match="t must be a scalar or have shape"):
        jax.jit(net.apply)({"params": params}, x, jnp.zeros(4), label=label)


def test_mlp_rejects_label_without_classes():
    net = nets.MLP(features=(8,))
    x = jnp.zeros((2, 2))
    params = jax.jit(net.init)(jax.random.key(0, impl="rbg"), x, 0.1)["params"]
    with pytest.raises(ValueError, match="num_classes"):
        jax.jit(net.apply)({"params": params}, x, 0.1, label=jnp.array([0, 1]))


def test_unet_shapes_labels_time_and_sizes():
    # One init and two compiled applies (8x8 and 16x16): compilation dominates on CPU.
    net = nets.UNet(channels=8, channel_mults=(1, 2), num_res_blocks=1, groups=4, time_embed_dim=16, num_classes=10)
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    labels = jnp.array([1, 2, 3])
    # an 'rbg' key: compiling the initialisers is several times cheaper than with threefry
    params = jax.jit(net.init)(jax.random.key(1, impl="rbg"), x, jnp.full((3,), 0.5), label=labels)["params"]
    chex.assert_shape(params["_Conditioning_0"]["Embed_0"]["embedding"], (11, 16))  # 10 classes + null
    apply = jax.jit(net.apply)
    xs = jnp.concatenate([x, x, x, x[:1]])
    ls = jnp.concatenate([labels, jnp.array([4, 5, 6]), labels, labels[:1]])
    ts = jnp.array([0.5] * 6 + [0.9] * 3 + [0.5])
    out = apply({"params": params}, xs, ts, label=ls)
    chex.assert_equal_shape([out, xs])
    chex.assert_type(out, xs.dtype)
    base, other_label, other_time = out[:3], out[3:6], out[6:9]
    assert float(jnp.max(jnp.abs(other_label - base))) > 1e-4  # the label matters
    assert float(jnp.max(jnp.abs(other_time - base))) > 1e-4  # the time matters
    np.testing.assert_allclose(out[9], base[0], atol=1e-5)  # no mixing across the batch
    x16 = jax.random.normal(jax.random.key(2), (2, 16, 16, 1))
    out16 = apply({"params": params}, x16, jnp.full((2,), 0.5), label=labels[:2])
    chex.assert_shape(out16, (2, 16, 16, 1))
    chex.assert_tree_all_finite(out16)


def test_label_none_is_null_class():
    net = nets.MLP(features=(8,), time_embed_dim=8, num_classes=10)
    x = jax.random.normal(jax.random.key(0), (3, 2))
    params = jax.jit(net.init)(jax.random.key(1, impl="rbg"), x, 0.5, label=jnp.array([1, 2, 3]))["params"]
    null = net.apply({"params": params}, x, 0.5, label=jnp.full((3,), 10))
    np.testing.assert_allclose(net.apply({"params": params}, x, 0.5), null, atol=0)


def test_unet_bad_size():
    net = nets.UNet(channels=8, channel_mults=(1, 2, 2), groups=4)
    with pytest.raises(ValueError, match="divisible by 4"):
        jax.jit(net.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, 6, 6, 1)), 0.5)


def test_network_model_params_are_leaves_and_grad_reaches_them():
    net = nets.MLP(features=(8,), time_embed_dim=4)
    x = jnp.ones((2, 2))
    params = jax.jit(net.init)(jax.random.key(0, impl="rbg"), x, 0.5)["params"]
    model = nets.network_model(net, params, paths.VPCosine(), "eps")
    assert isinstance(model, models.Model)
    # the model's leaves are exactly the parameters
    chex.assert_trees_all_equal(jax.tree_util.tree_leaves(model), jax.tree_util.tree_leaves(params))
    np.testing.assert_allclose(model(x, 0.5), jax.jit(net.apply)({"params": params}, x, 0.5), atol=0)

    def f(m):
        return jnp.sum(m.x0(x, 0.5) ** 2)

    g = jax.jit(jax.grad(f))(model)
    chex.assert_trees_all_equal_shapes(g, model)
    chex.assert_tree_all_finite(g)
    gnorm = sum(float(jnp.sum(a**2)) for a in jax.tree_util.tree_leaves(g))
    assert gnorm > 0
    # jit over the model works and matches
    np.testing.assert_allclose(jax.jit(lambda m: m.velocity(x, 0.5))(model), model.velocity(x, 0.5), atol=1e-6)


def _class_model(prediction):
    net = nets.MLP(features=(16,), time_embed_dim=8, num_classes=4)
    x = jax.random.normal(jax.random.key(3), (6, 2))
    params = jax.jit(net.init)(jax.random.key(4, impl="rbg"), x, 0.5, label=jnp.zeros(6, jnp.int32))["params"]
    return nets.network_model(net, params, paths.VPCosine(), prediction), x


@pytest.mark.parametrize("prediction", ["eps", "x0", "velocity"])
def test_guided_formula_and_consistency_across_spaces(prediction):
    model, x = _class_model(prediction)
    label = jnp.array([0, 1, 2, 3, 0, 1])
    null = jnp.full((6,), 4)
    t = jnp.linspace(0.2, 0.8, 6)
    w = 2.5
    targets = ("eps", "x0", "v", "velocity")

    @jax.jit
    def compute(model):
        g = nets.guided(model, w, null_label=4)
        out = {
            "guided": g(x, t, label=label),
            "cond": model(x, t, label=label),
            "uncond": model(x, t, label=null),
            "scale1": nets.guided(model, 1.0, 4)(x, t, label=label),
            "scale0": nets.guided(model, 0.0, 4)(x, t, label=label),
        }
        for target in targets:
            out["g_" + target] = g.predict(target, x, t, label=label)
            out["c_" + target] = model.predict(target, x, t, label=label)
            out["u_" + target] = model.predict(target, x, t, label=null)
        return out

    o = compute(model)
    cond, uncond = o["cond"], o["uncond"]
    np.testing.assert_allclose(o["guided"], uncond + w * (cond - uncond), rtol=1e-5, atol=1e-5)
    # scale 1 is the conditional model, scale 0 the unconditional one
    np.testing.assert_allclose(o["scale1"], cond, atol=1e-5)
    np.testing.assert_allclose(o["scale0"], uncond, atol=1e-5)
    # Guidance commutes with conversions: e.g. guided eps == eps-space combination of cond/uncond eps.
    chex.assert_trees_all_close({target: o["g_" + target] for target in targets},
                                {target: o["u_" + target] + w * (o["c_" + target] - o["u_" + target])
                                 for target in targets}, rtol=1e-4, atol=1e-4)


def test_guided_scalar_t_and_jit():
    model, x = _class_model("eps")
    label = jnp.array([0, 1, 2, 3, 0, 1])
    g = nets.guided(model, 3.0, 4)
    a = jax.jit(lambda m, x: m(x, 0.4, label=label))(g, x)
    b = g(x, jnp.full((6,), 0.4), label=label)
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="Model"):
        nets.guided(lambda x, t: x, 1.0, 0)


def test_guidance_interval_and_schedule():
    """Kynkaanniemi et al. 2024 Eq. 6: guided inside (sigma_lo, sigma_hi] of EDM's sigma / alpha, the
    conditional model outside; the interval (0, inf) is plain CFG. A schedule scale(t) is the
    per-time scale."""
    model, x = _class_model("eps")
    label = jnp.array([0, 1, 2, 3, 0, 1])
    path = model.path
    t = jnp.linspace(0.1, 0.9, 6)
    noise_level = np.asarray(path.sigma(t) / path.alpha(t))
    # samples 2, 3, 4 inside (lo, hi], no level near a boundary (jit may round differently)
    lo, hi = float(noise_level[1:3].mean()), float(noise_level[4:6].mean())
    plain = nets.guided(model, 2.0, 4)
    cond = model(x, t, label=label)
    inside = (noise_level > lo) & (noise_level <= hi)
    assert inside.tolist() == [False, False, True, True, True, False]
    limited = nets.guided(model, 2.0, 4, interval=(lo, hi))
    want = np.where(inside[:, None], plain(x, t, label=label), cond)
    np.testing.assert_allclose(jax.jit(lambda m: m(x, t, label=label))(limited), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(nets.guided(model, 2.0, 4, interval=(0, np.inf))(x, t, label=label),
                               plain(x, t, label=label), rtol=1e-6, atol=1e-6)
    for i in (0, 3):  # scalar t: lax.cond picks one branch for the whole batch
        ti = float(t[i])
        want_i = plain(x, ti, label=label) if inside[i] else model(x, ti, label=label)
        np.testing.assert_allclose(jax.jit(lambda m: m(x, ti, label=label))(limited), want_i, rtol=1e-6, atol=1e-6)
    # A schedule: scale(t) per sample, equal to a constant scale where it takes that value.
    sched = nets.guided(model, lambda t: 1.0 + 2.0 * t, 4)
    for i in (0, 5):
        np.testing.assert_allclose(sched(x, t, label=label)[i], nets.guided(model, 1.0 + 2.0 * float(t[i]), 4)(
            x, t, label=label)[i], rtol=1e-5, atol=1e-6)
    for bad in ((2.0, 1.0), (-1.0, 1.0), "wide", (1.0,)):
        with pytest.raises(ValueError, match="interval"):
            nets.guided(model, 2.0, 4, interval=bad)


def test_guided_model_runs_in_the_sampler_with_labels():
    from jaxsample import grids, sampling, solvers

    model, _ = _class_model("eps")
    noise = jax.random.normal(jax.random.key(5), (6, 2))
    label = jnp.array([0, 1, 2, 3, 0, 1])
    ts = grids.uniform(model.path, 8)
    w = 2.0

    def manual(x, t, label):
        c, u = model(x, t, label=label), model(x, t, label=jnp.full(label.shape, 4))
        return u + w * (c - u)

    manual_model = models.Model(manual, model.path, "eps")
    out = jax.jit(lambda m: sampling.sample(m, solvers.heun(), ts, noise, cond={"label": label}))(
        nets.guided(model, w, 4))
    ref = jax.jit(lambda: sampling.sample(manual_model, solvers.heun(), ts, noise, cond={"label": label}))()
    chex.assert_equal_shape([out, noise])
    chex.assert_tree_all_finite(out)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_cfg_pp_against_its_definition_and_limits():
    """CFG++ (ALGORITHMS.md section 16): x_t = alpha_t x0_lam + sigma_t eps_u with
    x0_lam = (x - sigma_s eps_lam) / alpha_s; lambda = 0 is unconditional DDIM, a label-blind model is DDIM."""
    from jaxsample import grids, sampling, solvers

    model, _ = _class_model("eps")
    path = model.path
    noise = jax.random.normal(jax.random.key(5), (6, 2))
    label = jnp.array([0, 1, 2, 3, 0, 1])
    null = jnp.full((6,), 4)
    ts = grids.logsnr_uniform(path, 6)
    lam = 0.6
    # One step by hand, in eps space as the official code writes it.
    s, t = ts[0], ts[1]
    eps_c, eps_u = model.eps(noise, s, label=label), model.eps(noise, s, label=null)
    eps_lam = eps_u + lam * (eps_c - eps_u)
    x0_lam = (noise - path.sigma(s) * eps_lam) / path.alpha(s)
    want = path.alpha(t) * x0_lam + path.sigma(t) * eps_u
    got = sampling.sample(model, solvers.cfg_pp(lam, 4), ts[:2], noise, cond={"label": label})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # lambda = 0: unconditional DDIM.
    np.testing.assert_allclose(sampling.sample(model, solvers.cfg_pp(0.0, 4), ts, noise, cond={"label": label}),
                               sampling.sample(model, solvers.ddim(), ts, noise, cond={"label": null}),
                               rtol=1e-5, atol=1e-5)
    # A model that ignores its label: CFG++ is DDIM at any lambda.
    blind = models.Model(lambda x, t, label=None: model.fn(x, t, label=jnp.zeros(x.shape[0], jnp.int32)), path, "eps")
    np.testing.assert_allclose(sampling.sample(blind, solvers.cfg_pp(0.8, 4), ts, noise, cond={"label": label}),
                               sampling.sample(blind, solvers.ddim(), ts, noise), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="label"):
        sampling.sample(model, solvers.cfg_pp(0.6, 4), ts, noise)
    for bad in (-0.1, "0.6", True):
        with pytest.raises(ValueError, match="guidance"):
            solvers.cfg_pp(bad, 4)
    with pytest.raises(ValueError, match="null_label"):
        solvers.cfg_pp(0.6, -1)
