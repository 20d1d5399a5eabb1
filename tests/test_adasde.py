"""AdaSDE: the step against DPM-Solver-2, the plug-in form, the noise injection, distillation."""

import functools

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


# ------------------------------------------------------------------ the official recipe, part by part


def _official_schedule(num_points, sigma_min, sigma_max, kind, rho):
    """WLU-wry02/AdaSDE ``solver_utils.get_schedule`` transcribed in numpy (float64)."""
    i = np.arange(num_points)
    if kind == "polynomial":
        return (sigma_max ** (1 / rho) + i / (num_points - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    eps_s = 1e-3  # time_uniform
    beta_d = 2 * (np.log(sigma_min**2 + 1) / eps_s - np.log(sigma_max**2 + 1)) / (eps_s - 1)
    beta_min = np.log(sigma_max**2 + 1) - 0.5 * beta_d
    tau = (1 + i / (num_points - 1) * (eps_s ** (1 / rho) - 1)) ** rho
    return np.sqrt(np.exp(0.5 * beta_d * tau**2 + beta_min * tau) - 1)


def _official_teacher_times(N, M, sigma_min=0.002, sigma_max=80.0):
    """The times ``dpm_sampler`` visits in ``get_teacher_traj``: the (M+1)(N-1)+1-point time_uniform
    (rho 1) schedule, every interval cut by a 3-point polynomial (rho 7) schedule."""
    fine = _official_schedule((M + 1) * (N - 1) + 1, sigma_min, sigma_max, "time_uniform", 1.0)
    out = [fine[0]]
    for t_cur, t_next in zip(fine[:-1], fine[1:]):
        out += list(_official_schedule(3, t_next, t_cur, "polynomial", 7)[1:])
    return np.asarray(out)


def test_official_teacher_grid_is_the_official_schedule():
    """N = 3 (2 coarse steps), M = 3 on EDM's path (t = sigma): the 17 teacher times equal the official
    formulas to 2e-6 relative (float32 rounding), and every 8th is the student's grid [80, 2.823689, 0.002]."""
    path = js.EDM()
    times, stride = adasde.official_teacher_grid(path, "time_uniform", 2, 3, 2, t_start=80.0, t_end=0.002)
    expected = _official_teacher_times(3, 3)
    assert stride == 8 and times.shape == (17,) == expected.shape
    np.testing.assert_allclose(np.asarray(times), expected, rtol=2e-6)
    np.testing.assert_allclose(np.asarray(times[::8]), [80.0, 2.823689, 0.002], rtol=1e-6)


def test_official_teacher_is_dpm_sampler(gmm, x64):
    """make_pairs(teacher='official') equals a transcription of ``dpm_sampler`` (AFS off, r = 1/2,
    inner_steps = 3) on EDM's path with the mixture's exact denoiser, to 1e-9 in float64."""
    path = js.EDM()
    model = gmm.model(path, "x0")
    ts = js.grids.time_uniform(path, 2, t_start=80.0, t_end=0.002)
    pairs = adasde.make_pairs(model, ts, 8, (4,), seed=0, teacher="official", grid="time_uniform",
                              grid_kwargs=dict(t_start=80.0, t_end=0.002))
    fine = _official_schedule(9, 0.002, 80.0, "time_uniform", 1.0)
    x = path.prior_scale(jnp.float64(80.0)) * pairs["noise"]
    D = lambda x, t: model.x0(x, jnp.full((x.shape[0],), t))  # noqa: E731
    out = []
    for j, (t_cur, t_next) in enumerate(zip(fine[:-1], fine[1:])):
        t_s = _official_schedule(3, t_next, t_cur, "polynomial", 7)
        for t_c, t_n in zip(t_s[:-1], t_s[1:]):
            d_cur = (x - D(x, t_c)) / t_c
            t_mid = np.sqrt(t_n * t_c)
            x_mid = x + (t_mid - t_c) * d_cur
            x = x + (t_n - t_c) * (x_mid - D(x_mid, t_mid)) / t_mid
        if (j + 1) % 4 == 0:
            out.append(x)
    np.testing.assert_allclose(pairs["traj"], jnp.stack(out, 1), rtol=0, atol=1e-9 * float(jnp.abs(x).max()))
    with pytest.raises(ValueError, match="is not the 'logsnr' grid"):
        adasde.make_pairs(model, ts, 2, (4,), seed=0, teacher="official", grid="logsnr",
                          grid_kwargs=dict(t_start=80.0, t_end=0.002))


def test_official_gamma_map():
    """gamma = gmin + (gmax - gmin) sigmoid((raw + 2 ln 1.5) / 2), gamma_0 = 0: raw 0 gives
    gmin + 0.6 (gmax - gmin) (to 1e-7); the initialisation at that gamma is raw 0."""
    gmin, gmax = 2e-4, 0.02
    spec = adasde.Parameterisation(3, official_gamma=True, gamma_max=gmax, gamma_init=gmin + 0.6 * (gmax - gmin))
    assert adasde.GAMMA_OFFSET == pytest.approx(2 * np.log(1.5), rel=1e-12)
    params = spec.init_params()
    np.testing.assert_allclose(params["gamma"], 0.0, atol=1e-5)
    raw = jnp.array([0.3, 0.0, -1.7])
    gamma = spec.solver({**params, "gamma": raw}).gamma
    np.testing.assert_allclose(gamma, [0.0, gmin + 0.6 * (gmax - gmin), gmin + (gmax - gmin) / (1 + np.exp(
        -(-1.7 + 2 * np.log(1.5)) / 2))], rtol=1e-6, atol=1e-9)
    # The shared recipe's map (official_gamma=False) at raw 0 is the midpoint of the range.
    plain = adasde.Parameterisation(3, gamma_max=gmax).solver({"gamma": jnp.zeros(3)})
    np.testing.assert_allclose(plain.gamma[1:], gmin + 0.5 * (gmax - gmin), rtol=1e-6)
    # The official initialisation: N(0, 1) raw draws, reproducible from the key.
    a = spec.init_params(noise=1.0, key=jax.random.key(0))
    chex.assert_trees_all_equal(a, spec.init_params(noise=1.0, key=jax.random.key(0)))
    assert 0.1 < float(jnp.std(jnp.concatenate(list(a.values())))) < 3.0


def test_official_step_loss():
    """Intermediate steps: sum((x_S - x_T)^2 / alpha_t^2) / B; the last step: alpha * D * MSE of features
    (here a fixed linear map; raw coordinates without one). Exact to 1e-6 relative."""
    path = js.VPCosine()
    k1, k2 = jax.random.split(jax.random.key(0))
    xs, xt = jax.random.normal(k1, (8, 3, 2)), jax.random.normal(k2, (8, 3, 2))
    w = jnp.arange(12.0).reshape(6, 2) / 10
    feats = lambda x: x.reshape(x.shape[0], -1) @ w  # noqa: E731
    t = jnp.asarray(0.4)
    mid = adasde.step_loss(path, t, xs, xt, last=False, loss="official")
    assert float(mid) == pytest.approx(float(jnp.sum((xs - xt) ** 2)) / float(path.alpha(t)) ** 2 / 8, rel=1e-6)
    last = adasde.step_loss(path, t, xs, xt, last=True, loss="official", features=feats, alpha=20.0)
    assert float(last) == pytest.approx(20.0 * 6 * float(jnp.mean((feats(xs) - feats(xt)) ** 2)), rel=1e-6)
    raw = adasde.step_loss(path, t, xs, xt, last=True, loss="official", alpha=20.0)
    assert float(raw) == pytest.approx(20.0 * float(jnp.sum((xs - xt) ** 2)) / 8, rel=1e-6)
    mean = adasde.step_loss(path, t, xs, xt, last=True, loss="mean", final_weight=3.0)
    assert float(mean) == pytest.approx(3.0 * float(jnp.mean((xs - xt) ** 2)), rel=1e-6)


def test_fresh_pairs_differ_between_batches_and_repeat_from_the_seed(gmm):
    model = gmm.model(js.VPCosine(), "eps")
    ts = _grid(model.path, 2)
    a0 = adasde.fresh_pairs(model, ts, 8, (4,), 0, seed=3, m=1)
    a1 = adasde.fresh_pairs(model, ts, 8, (4,), 1, seed=3, m=1)
    again = adasde.fresh_pairs(model, ts, 8, (4,), 1, seed=3, m=1)
    chex.assert_trees_all_equal(a1, again)
    assert float(jnp.abs(a0["noise"] - a1["noise"]).min()) > 0 and float(jnp.abs(a0["traj"] - a1["traj"]).min()) > 0
    np.testing.assert_array_equal(a1["index"], np.arange(8, 16))  # new student noise too
    # The teacher of a fresh batch is the same as make_pairs' on that noise.
    x = js.sample(model, js.dpm_solver(2), adasde.teacher_grid(model.path, ts, 1), a1["noise"])
    np.testing.assert_allclose(a1["traj"][:, -1], x, atol=1e-6)


def test_official_lr_is_cosine_annealing_with_an_absolute_floor():
    """torch CosineAnnealingLR(T_max = batches + 1, eta_min = 0.01), exact."""
    assert adasde.official_lr(0.2, 0, 99) == pytest.approx(0.2, rel=1e-12)
    assert adasde.official_lr(0.2, 50, 99) == pytest.approx(0.105, rel=1e-12)
    assert adasde.official_lr(0.2, 100, 99) == pytest.approx(0.01, rel=1e-12)
    assert adasde.official_lr(0.005, 50, 99) == pytest.approx(0.0075, rel=1e-12)  # below the floor: rises


def test_per_step_update_is_the_official_order(pairs):
    """One batch of the per-step loop (n = 2, AFS) equals two Adam steps written out by hand: step 0's loss
    at the initial values, then step 1's loss with step 0 run at the values it had (the retained graph)
    and step 1 at the updated ones, through the full-trajectory rollout. To 1e-6."""
    import optax

    gmm_model, _, _, _, _ = pairs
    ts = _grid(gmm_model.path, 2)
    batch = adasde.make_pairs(gmm_model, ts, 16, (4,), seed=5)
    spec = adasde.Parameterisation(2, afs=True, official_gamma=True, gamma_init=2e-4 + 0.6 * (0.02 - 2e-4))
    p0 = spec.init_params(noise=1.0, key=jax.random.key(1))
    lr = 0.05
    solver, log = adasde.distill(gmm_model, spec, ts, batch, batch, num_steps=1, batch_size=16, learning_rate=lr,
                                 update="per_step", schedule="official", init_params=p0, loss="official",
                                 seed=4, progress=False)
    from jaxsample.data import ArrayBatcher

    # The loop's first batch: all 16 examples, shuffled by the seed, with the student noise of batch 0.
    perm_batch = ArrayBatcher({k: np.asarray(v) for k, v in batch.items()}, 16, seed=4)(0)
    keys = adasde._student_keys(jax.random.key_data(jax.random.fold_in(jax.random.key(4), 0)), perm_batch["index"])

    def rollout(p):
        s = spec.solver(p).as_solver()
        return js.sample(gmm_model, s, ts, perm_batch["noise"], key=keys, return_trajectory=True,
                         check_finite=False)[1]

    def loss(p, k, used=None):
        q = p if used is None else {n: v.at[0].set(used[n][0]) for n, v in p.items()}
        traj = rollout(q)
        return adasde.step_loss(gmm_model.path, ts[k + 1], traj[k + 1], perm_batch["traj"][:, k], last=k == 1,
                                loss="official")

    tx = optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)
    state = tx.init(p0)
    u, state = tx.update(jax.grad(loss)(p0, 0), state, p0)
    p1 = optax.apply_updates(p0, u)
    u, state = tx.update(jax.grad(loss)(p1, 1, used=p0), state, p1)
    p2 = optax.apply_updates(p1, u)
    for k in p2:
        np.testing.assert_allclose(log["params"][k], p2[k], atol=1e-6)


def test_official_loop_beats_its_initialisation(pairs):
    """Fresh trajectories, per-step Adam, official loss, schedule and gamma map: the held-out trajectory
    loss (official form) falls at least 2x below the DPM-Solver-2 start in 12 batches."""
    model, ts, _, val, _ = pairs
    spec = adasde.Parameterisation(3, official_gamma=True, gamma_init=2e-4 + 0.6 * (0.02 - 2e-4))
    batches = functools.partial(adasde.fresh_pairs, model, ts, 32, (4,), seed=0)
    solver, log = adasde.distill(model, spec, ts, batches, val, num_steps=12, batch_size=32, update="per_step",
                                 schedule="official", loss="official", progress=False)
    assert log["val_loss"] * 2.0 <= log["init_val_loss"], log
    assert float(solver.gamma[0]) == 0.0 and len(log["loss_history"]) == 12
