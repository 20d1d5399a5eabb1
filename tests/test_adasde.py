"""AdaSDE: the step against DPM-Solver-2, the plug-in form, the noise injection, distillation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js
from jaxsample.distill import adasde
from jaxsample.solvers.adasde import AdaSDE, NoiseInjected, inject_noise, noise_injected


def _grid(path, n):
    return js.edm(path, n, **js.compare.edm_interval(path))


@pytest.fixture(scope="module")
def gmm():
    return js.compare.benchmark_mixture(dim=4, num_components=3)


def test_gamma_zero_midpoint_half_is_dpm_solver_2(gmm, x64):
    """gamma = 0, r = 1/2, a = c = 1 reproduces DPM-Solver-2 to 1e-10 in float64 (on the EDM path, whose
    sigma/alpha is t itself, the step is literally the official code's)."""
    path = js.EDM()
    model = gmm.model(path, "x0")
    ts = jnp.asarray(_grid(path, 5), jnp.float64)
    noise = jax.random.normal(jax.random.key(0), (32, 4), jnp.float64)
    ref = js.sample(model, js.dpm_solver(2), ts, noise)
    x = js.sample(model, AdaSDE.dpm_solver_2(5, dtype=jnp.float64), ts, noise, key=jax.random.key(1))
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-10 * float(jnp.abs(ref).max()))


def test_dpm_solver_2_in_float32(gmm):
    """The same in float32: agreement to 1e-5 relative to the sample scale (rounding only)."""
    model = gmm.model(js.VPCosine(), "v")
    ts = _grid(model.path, 4)
    noise = jax.random.normal(jax.random.key(0), (32, 4))
    ref = js.sample(model, js.dpm_solver(2), ts, noise)
    x = js.sample(model, AdaSDE.dpm_solver_2(4), ts, noise, key=jax.random.key(1))
    np.testing.assert_allclose(x, ref, atol=1e-5 * float(jnp.abs(ref).max()))


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_solver_2", "ipndm"])
def test_plug_in_with_gamma_zero_is_the_base_solver(gmm, name):
    base = js.solvers.registry.get(name).make()
    model = gmm.model(js.VPCosine(), "eps")
    steps = 4
    ts = _grid(model.path, steps)
    noise = jax.random.normal(jax.random.key(0), (16, 4))
    ref = js.sample(model, base, ts, noise)
    x = js.sample(model, noise_injected(base, jnp.zeros(steps)), ts, noise, key=jax.random.key(1))
    np.testing.assert_allclose(x, ref, atol=1e-6)
    # With noise the samples move, and the run uses the base's model calls.
    g = noise_injected(base, jnp.array([0.0, 0.02, 0.02, 0.0]))
    y = js.sample(model, g, ts, noise, key=jax.random.key(1))
    assert float(jnp.abs(y - ref).max()) > 1e-3
    assert g.nfe(steps) == base.nfe(steps)


def test_plug_in_on_dpm_solver_2_is_the_adasde_step(gmm, x64):
    """Noise injection + DPM-Solver-2 = the AdaSDE step with r = 1/2, a = c = 1, for the same keys
    (to 1e-9 in float64; float32 rounding is amplified by the noise on a few samples)."""
    model = gmm.model(js.VPCosine(), "eps")
    ts = jnp.asarray(_grid(model.path, 4), jnp.float64)
    gamma = jnp.array([0.0, 0.02, 0.01, 0.005], jnp.float64)
    noise = jax.random.normal(jax.random.key(0), (32, 4), jnp.float64)
    solver = AdaSDE.dpm_solver_2(4, dtype=jnp.float64).with_gamma(gamma)
    a = js.sample(model, solver, ts, noise, key=jax.random.key(3))
    b = js.sample(model, noise_injected(js.dpm_solver(2), gamma), ts, noise, key=jax.random.key(3))
    np.testing.assert_allclose(a, b, atol=1e-9)
    # Per-sample keys: the first 8 samples do not depend on the batch they are drawn in.
    c = js.sample(model, solver, ts, noise[:8], key=jax.random.key(3))
    np.testing.assert_allclose(c, a[:8], atol=1e-12)


def test_noise_injection_maps_the_marginal_exactly(x64):
    """On a single Gaussian, x_t ~ N(0, alpha^2 s0^2 + sigma^2) is mapped onto the marginal at t_hat."""
    path, s0, gamma = js.VPCosine(), 0.3, 0.5
    t = jnp.asarray(0.6, jnp.float64)
    n = 200_000
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x0 = s0 * jax.random.normal(k1, (n, 1), jnp.float64)
    x = path.alpha(t) * x0 + path.sigma(t) * jax.random.normal(k2, (n, 1), jnp.float64)
    x_hat, t_hat = inject_noise(path, x, t, gamma, jax.random.split(k3, n))
    assert float(jnp.exp(-path.lam(t_hat)) / jnp.exp(-path.lam(t))) == pytest.approx(1 + gamma, rel=1e-10)
    var = float(path.alpha(t_hat) ** 2 * s0**2 + path.sigma(t_hat) ** 2)
    assert float(jnp.var(x_hat)) == pytest.approx(var, rel=0.01)  # 200k samples: ~0.3 % std error
    # gamma = 0: unchanged, and a finite gradient there.
    same, t_same = inject_noise(path, x[:4], t, 0.0, jax.random.split(k3, 4))
    np.testing.assert_array_equal(same, x[:4])
    grad = jax.grad(lambda g: jnp.sum(inject_noise(path, x[:4], t, g, jax.random.split(k3, 4))[0]))(0.0)
    assert np.isfinite(float(grad))


def test_model_calls_and_afs(gmm):
    model = gmm.model(js.VPCosine(), "eps")
    ts = _grid(model.path, 3)
    noise = jax.random.normal(jax.random.key(0), (2, 4))
    for afs, expected in [(False, 6), (True, 5)]:
        solver = AdaSDE.dpm_solver_2(3, afs=afs).with_gamma([0.0, 0.01, 0.01])
        assert solver.nfe(3) == expected
        assert js.count_model_calls(model, solver, ts, noise, key=jax.random.key(1)) == expected


def test_bad_input_is_rejected(gmm):
    model = gmm.model(js.VPCosine(), "eps")
    noise = jnp.zeros((2, 4))
    with pytest.raises(ValueError, match="same length"):
        AdaSDE.create([0.0, 0.0], [0.5], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        AdaSDE.create([-0.1], [0.5], [1.0], [1.0])
    with pytest.raises(ValueError, match="r must be > 0"):
        AdaSDE.create([0.0], [0.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="ts has 4 steps"):
        js.sample(model, AdaSDE.dpm_solver_2(3), _grid(model.path, 4), noise, key=jax.random.key(0))
    with pytest.raises(ValueError, match="deterministic"):
        NoiseInjected(js.euler_maruyama(), jnp.zeros(3))
    with pytest.raises(ValueError, match="key is required"):
        js.sample(model, AdaSDE.dpm_solver_2(3), _grid(model.path, 3), noise)
    with pytest.raises(ValueError, match="gamma_init"):
        adasde.Parameterisation(3, gamma_init=0.5)
    with pytest.raises(ValueError, match="ts must hold"):
        adasde.distill(model, adasde.Parameterisation(3), _grid(model.path, 4), {}, {})


def test_save_and_load_round_trip(tmp_path):
    """Concrete and learned AdaSDE solvers, the plug-in form included, go through the one file format."""
    solver = AdaSDE.create([0.0, 0.01], [0.4, 0.6], [1.1, 0.9], [1.0, 1.02], times=[0.9, 0.5, 0.1], afs=True)
    f = str(tmp_path / "adasde.npz")
    js.save_solver(f, solver, nfe=3)
    back = js.load_solver(f)
    assert isinstance(back, AdaSDE) and back.afs
    chex.assert_trees_all_equal(back, solver)
    assert js.solvers.read_header(f)["metadata"]["nfe"] == 3
    spec = adasde.Parameterisation(2, base=js.ipndm())
    plug = spec.solver({"gamma": jnp.asarray([0.3, -1.2])}, times=[0.9, 0.5, 0.1])
    js.save_solver(str(tmp_path / "plug.npz"), plug)
    back = js.load_solver(str(tmp_path / "plug.npz"))
    assert isinstance(back, js.solvers.LearnedAdaSDE) and isinstance(back.base, type(js.ipndm()))
    np.testing.assert_array_equal(back.gamma_raw, plug.gamma_raw)  # stored unconstrained
    np.testing.assert_array_equal(back.gamma, plug.gamma)
    learned = adasde.Parameterisation(2, afs=True).solver(adasde.Parameterisation(2, afs=True).init_params(),
                                                          times=[0.9, 0.5, 0.1])
    js.save_solver(str(tmp_path / "learned.npz"), learned)
    chex.assert_trees_all_equal(js.load_solver(str(tmp_path / "learned.npz")), learned)
    with pytest.raises(ValueError, match="does not exist"):
        js.load_solver(str(tmp_path / "missing.npz"))


@pytest.fixture(scope="module")
def pairs(gmm):
    model = gmm.model(js.VPCosine(), "eps")
    ts = _grid(model.path, 3)
    train = adasde.make_pairs(model, ts, 256, (4,), seed=0)
    val = adasde.make_pairs(model, ts, 128, (4,), seed=1)
    test = adasde.make_pairs(model, ts, 256, (4,), seed=2)
    return model, ts, train, val, test


def test_teacher_trajectory_matches_its_fine_grid(pairs):
    model, ts, _, val, _ = pairs
    fine = adasde.teacher_grid(model.path, ts, 3)
    assert fine.shape == (3 * 4 + 1,)
    np.testing.assert_allclose(fine[::4], ts, rtol=1e-6)
    x = js.sample(model, js.dpm_solver(2), fine, val["noise"][:8])
    np.testing.assert_allclose(val["traj"][:8, -1], x, atol=1e-6)


def test_distilled_adasde_beats_its_gamma_zero_initialisation_on_held_out_noise(pairs):
    """From DPM-Solver-2 (gamma ~ 0): the learned (gamma, r, a, c) cut the held-out trajectory loss
    against the teacher at least 3x (measured: about 60x), with held-out student noise."""
    model, ts, train, val, test = pairs
    spec = adasde.Parameterisation(num_steps=3)
    solver, log = adasde.distill(model, spec, ts, train, val, num_steps=80, eval_every=40, batch_size=64,
                                 progress=False)
    key = jax.random.key(99)  # student noise the training never saw, on held-out initial noise
    before = adasde.evaluate(model, AdaSDE.dpm_solver_2(3), ts, test, key=key)
    after = adasde.evaluate(model, solver, ts, test, key=key)
    assert after["loss"] * 3.0 <= before["loss"], (before, after)
    assert after["final_mse"] * 3.0 <= before["final_mse"], (before, after)
    assert float(solver.gamma[0]) == 0.0 and bool(jnp.all(solver.gamma[1:] >= spec.gamma_min))
    np.testing.assert_allclose(solver.times, ts)
    x = js.sample(model, solver, solver.times, test["noise"], key=key)  # used like any solver
    assert x.shape == test["noise"].shape


def test_training_is_the_same_on_one_and_on_eight_devices(pairs):
    model, ts, train, val, _ = pairs
    spec = adasde.Parameterisation(num_steps=3)
    out = []
    for devices in (1, 8):
        _, log = adasde.distill(model, spec, ts, train, {k: v[:16] for k, v in val.items()}, num_steps=3, eval_every=3, batch_size=16,
                                learning_rate=0.01, progress=False, mesh=js.make_mesh(devices))
        out.append(log["params"])
    for k in out[0]:
        np.testing.assert_allclose(out[0][k], out[1][k], atol=1e-5)
    assert any(float(jnp.abs(v).max()) > 1e-3 for v in out[0].values())  # it did train


def test_make_pairs_under_x64_keeps_float64(x64):
    """``make_pairs`` under ``jax_enable_x64`` (it failed with a float32/float64 carry mismatch):
    float64 noise and trajectories, the DPM-Solver-2 teacher close to the exact ODE solution."""
    mixture = js.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3, std_range=(0.3, 0.8))
    gmm64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), mixture)
    model = gmm64.model(js.VPCosine(), "eps")
    ts = _grid(model.path, 3)
    pairs = adasde.make_pairs(model, ts, 4, (4,), seed=0, m=15)
    assert pairs["noise"].dtype == pairs["traj"].dtype == jnp.float64 and pairs["traj"].shape == (4, 3, 4)
    exact = adasde.make_pairs(model, ts, 4, (4,), seed=0, teacher="reference", rtol=1e-9, atol=1e-9)
    assert exact["traj"].dtype == jnp.float64
    np.testing.assert_array_equal(exact["noise"], pairs["noise"])
    np.testing.assert_allclose(pairs["traj"], exact["traj"], atol=1e-2)  # 16 DPM-Solver-2 steps per interval
