"""Flax NNX models: the same network written in NNX and in linen gives the same samples, on one and
on eight devices, and gradients reach the NNX parameters."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js
from jaxsample import nets

nnx = pytest.importorskip("flax.nnx")
nn = pytest.importorskip("flax.linen")


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x, t):
        h = jnp.concatenate([x, jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None]], -1)
        return nn.Dense(3)(jnp.tanh(nn.Dense(16)(h)))


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x, t):
        h = jnp.concatenate([x, jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])[:, None]], -1)
        return self.out(jnp.tanh(self.hidden(h)))


class Nested(nnx.Module):
    """Its only layer sits in a list, not as its own attribute."""

    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Linear(4, 3, rngs=rngs)])

    def __call__(self, x, t):
        return self.layers[0](jnp.concatenate([x, jnp.broadcast_to(t, x.shape[:1])[:, None]], -1))


@pytest.fixture(scope="module")
def networks():
    """The same network in linen (module, params) and in NNX."""
    linen = LinenNet()
    params = linen.init(jax.random.key(0), jnp.zeros((1, 3)), jnp.zeros((1,)))["params"]
    net = NNXNet(nnx.Rngs(1))
    for layer in (net.hidden, net.out):  # the same weights in both (matched by shape)
        (name,) = [k for k, v in params.items() if v["kernel"].shape == layer.kernel.value.shape]
        layer.kernel.value = params[name]["kernel"]
        layer.bias.value = params[name]["bias"]
    return linen, params, net


@pytest.fixture(scope="module")
def models(networks):
    linen, params, net = networks
    path = js.RectifiedFlow()
    return (nets.network_model(linen, params, path, "velocity"),
            nets.network_model(net, path=path, prediction="velocity"))


@pytest.mark.parametrize("num_devices", [1, 8])
def test_nnx_and_linen_give_the_same_samples(models, num_devices):
    linen_model, nnx_model = models
    ts = js.uniform(linen_model.path, 6)
    noise = js.initial_noise(jax.random.key(2), (16, 3))
    mesh = None if num_devices == 1 else js.make_mesh(num_devices)
    want = js.sample(linen_model, js.dpm_solver_pp_2m(), ts, noise)
    got = js.sample(nnx_model, js.dpm_solver_pp_2m(), ts, noise, mesh=mesh)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_gradients_reach_the_nnx_parameters(models):
    _, nnx_model = models
    ts = js.uniform(nnx_model.path, 3)
    noise = js.initial_noise(jax.random.key(3), (4, 3))
    grads = jax.grad(lambda m: jnp.sum(js.sample(m, js.heun(), ts, noise) ** 2))(nnx_model)
    leaves = jax.tree_util.tree_leaves(grads.fn.args[0]["params"])
    assert len(leaves) == 4 and all(float(jnp.abs(g).max()) > 0 for g in leaves)
    chex.assert_tree_all_finite(leaves)


def test_network_model_names_what_it_expected():
    with pytest.raises(ValueError, match="params must be None for an NNX module"):
        nets.network_model(NNXNet(nnx.Rngs(0)), {"w": 1}, js.RectifiedFlow(), "velocity")
    with pytest.raises(ValueError, match="module must be a Flax linen module .* or an NNX module, got int"):
        nets.network_model(3, {}, js.RectifiedFlow(), "velocity")
    with pytest.raises(ValueError, match="params is required for a linen module"):
        nets.network_model(LinenNet(), None, js.RectifiedFlow(), "velocity")


def test_progressive_distillation_of_an_nnx_student_matches_linen(models):
    """One round of progressive distillation with the NNX network (nets.nnx_apply) and with the same
    network in linen: the same trained parameters and the same student samples, on 1 and 8 devices."""
    from jaxsample.distill import progressive

    linen_model, nnx_model = models
    gmm = js.GaussianMixture.random(jax.random.key(3), dim=3, num_components=2)

    def batch_fn(step):
        return {"x": gmm.sample(jax.random.fold_in(jax.random.key(4), step), 16)}

    ts = js.uniform(linen_model.path, 4, t_start=0.99)
    kw = dict(parameterization="velocity", num_steps=4, learning_rate=1e-2, progress=False)
    linen_student, _, _ = progressive.distill_round(linen_model, linen_model.fn.func, progressive._params_of(
        linen_model), ts, batch_fn, **kw)
    apply_fn, params = nets.nnx_apply(nnx.merge(nnx_model.fn.func.graphdef, nnx_model.fn.args[0]["params"]))
    noise = js.initial_noise(jax.random.key(5), (8, 3))
    want = js.sample(linen_student, js.ddim(), ts[::2], noise)
    for n in (1, 8):
        student, _, _ = progressive.distill_round(nnx_model, apply_fn, params, ts, batch_fn, mesh=js.make_mesh(n), **kw)
        np.testing.assert_allclose(js.sample(student, js.ddim(), ts[::2], noise), want, rtol=1e-5, atol=1e-5)
    # the teacher's own NNX state is the default starting point of progressive_distill
    chex.assert_trees_all_close(progressive._params_of(nnx_model), params)


def test_bns_distillation_on_an_nnx_teacher_matches_linen(models):
    """BNS distilled on the NNX network and on the same linen network: the same solver, on 1 and 8 devices."""
    from jaxsample.distill import bns

    linen_model, nnx_model = models
    train = bns.make_pairs(linen_model, 64, (3,), seed=0, method="fixed_grid")
    val = bns.make_pairs(linen_model, 32, (3,), seed=1, method="fixed_grid")
    np.testing.assert_allclose(bns.make_pairs(nnx_model, 32, (3,), seed=1, method="fixed_grid")["target"],
                               val["target"], rtol=1e-5, atol=1e-5)
    init = bns.BespokeNonStationary.from_solver(js.euler(), linen_model.path, js.uniform(linen_model.path, 3))
    kw = dict(num_steps=10, eval_every=5, batch_size=32, learning_rate=5e-3, progress=False)
    want, _ = bns.distill(linen_model, train, val, init, **kw)
    for n in (1, 8):
        got, _ = bns.distill(nnx_model, train, val, init, mesh=None if n == 1 else js.make_mesh(n), **kw)
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)


def test_catch_up_distillation_of_an_nnx_network_matches_linen(networks):
    """Catch-up distillation (RK23: two heads) fine-tuning the NNX network and the same linen network,
    then its one-step stage: the same losses and the same samples, on 1 and 8 devices."""
    from jaxsample.distill import catch_up

    linen, params, net = networks
    gmm = js.GaussianMixture.random(jax.random.key(3), dim=3, num_components=2)

    def batch_fn(step):
        return {"x": gmm.sample(jax.random.fold_in(jax.random.key(4), step), 16)}

    x1 = jnp.zeros((1, 3))
    kw = dict(num_steps=3, method="rk23", example_x=x1, learning_rate=1e-2, progress=False)
    noise = js.initial_noise(jax.random.key(5), (8, 3))
    ts = js.uniform(js.RectifiedFlow(), 4)
    want_state, want_hist = catch_up.train_catch_up(linen, batch_fn, base_params=params, **kw)
    want = js.sample(catch_up.catch_up_model(linen, want_state.params, method="rk23"), js.euler(), ts, noise)
    pairs = catch_up.trajectory_pairs(catch_up.catch_up_model(linen, want_state.params, method="rk23"), noise,
                                      num_steps=4)
    one = dict(num_steps=2, batch_size=8, method="rk23", learning_rate=1e-2, progress=False)
    want_one, _ = catch_up.train_one_step(linen, want_state.params, pairs, **one)
    want_one = js.sample(catch_up.catch_up_model(linen, want_one.params, method="rk23"), js.euler(), ts[::4], noise)
    assert float(jnp.max(jnp.abs(want_one - pairs["noise"]))) > 1e-2  # the stage moved something
    for n in (1, 8):
        mesh = None if n == 1 else js.make_mesh(n)
        state, hist = catch_up.train_catch_up(net, batch_fn, mesh=mesh, **kw)
        np.testing.assert_allclose([h["loss"] for h in hist], [h["loss"] for h in want_hist], rtol=1e-5)
        model = catch_up.catch_up_model(net, state.params, method="rk23", example_x=x1)
        np.testing.assert_allclose(js.sample(model, js.euler(), ts, noise), want, rtol=1e-5, atol=1e-5)
        got_one, _ = catch_up.train_one_step(net, state.params, pairs, mesh=mesh, **one)
        got_one = js.sample(catch_up.catch_up_model(net, got_one.params, method="rk23", example_x=x1), js.euler(),
                            ts[::4], noise)
        np.testing.assert_allclose(got_one, want_one, rtol=1e-5, atol=1e-5)


def test_nnx_catch_up_net_names_what_it_expected(networks):
    from jaxsample.distill import catch_up

    _, params, net = networks
    with pytest.raises(ValueError, match="example_x is required for num_heads > 1"):
        catch_up.NNXCatchUpNet(net, 2)
    with pytest.raises(ValueError, match="base_params must be None for an NNX base"):
        catch_up.train_catch_up(net, lambda s: {}, num_steps=1, example_x=jnp.zeros((1, 3)), base_params=params)
    with pytest.raises(ValueError, match="calls no nnx.Linear / nnx.Conv held as its own attribute"):
        catch_up.NNXCatchUpNet(Nested(nnx.Rngs(0)), 2, example_x=jnp.zeros((1, 3)))


def test_shipped_teachers_as_nnx_modules_give_the_same_samples():
    """``load_teacher(name, nnx=True)``: the linen network and weights bridged to NNX; bit-identical samples
    (a class-conditional U-Net teacher, with labels)."""
    linen_model = js.load_teacher("digits_flow")
    nnx_model = js.load_teacher("digits_flow", nnx=True)
    noise = js.initial_noise(jax.random.key(0), (4, 8, 8, 1))
    labels = jnp.arange(4)
    ts = js.uniform(linen_model.path, 4)
    want = js.sample(linen_model, js.heun(), ts, noise, cond={"label": labels})
    np.testing.assert_array_equal(js.sample(nnx_model, js.heun(), ts, noise, cond={"label": labels}), want)
    net = js.teachers.load_network("digits_flow", nnx=True)
    assert isinstance(net, nnx.Module)
    with pytest.raises(ValueError, match="params do not match"):
        nets.to_nnx(nets.MLP(features=(4,)), {"Dense_0": {}}, jnp.zeros((1, 2)), jnp.zeros((1,)))
