"""The scan driver: jit, vmap, grad, trajectories, batch invariance, input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js


@pytest.fixture(scope="module")
def setup():
    gmm = js.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    model = gmm.model(js.VPCosine(), "eps")
    ts = js.logsnr_uniform(model.path, 6)
    noise = js.initial_noise(jax.random.key(1), (8, 4))
    return gmm, model, ts, noise


def python_loop(model, solver, ts, noise):
    state = solver.init(model, ts, model.path.sigma(ts[0]) * noise, {})
    for i in range(len(ts) - 1):
        state = solver.step(model, ts, i, state, {}, None)
    return state.x


def test_scan_equals_python_loop(setup, x64):
    _, model, ts, noise = setup
    ts, noise = jnp.asarray(ts, jnp.float64), jnp.asarray(noise, jnp.float64)
    np.testing.assert_allclose(js.sample(model, js.heun(), ts, noise), python_loop(model, js.heun(), ts, noise),
                               rtol=1e-12, atol=1e-12)


def test_trajectory(setup):
    _, model, ts, noise = setup
    x, traj = js.sample(model, js.euler(), ts, noise, return_trajectory=True)
    assert traj.shape == (len(ts),) + noise.shape
    np.testing.assert_allclose(traj[0], model.path.sigma(ts[0]) * noise)
    np.testing.assert_array_equal(traj[-1], x)


def test_jit_vmap_and_batch_invariance(setup):
    _, model, ts, noise = setup
    full = js.sample(model, js.rk4(), ts, noise)
    jitted = jax.jit(lambda n: js.sample(model, js.rk4(), ts, n))(noise)
    per_sample = jax.vmap(lambda n: js.sample(model, js.rk4(), ts, n[None])[0])(noise)
    np.testing.assert_allclose(jitted, full, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(per_sample, full, rtol=1e-5, atol=1e-6)
    # initial_noise extends: the first 3 of a batch of 8 are a batch of 3.
    np.testing.assert_array_equal(js.initial_noise(jax.random.key(1), (3, 4)), noise[:3])


def test_gradients_wrt_noise_and_solver_parameters(setup, x64):
    gmm, model, ts, _ = setup
    model = gmm.model(js.VPCosine(), "eps")
    noise = js.initial_noise(jax.random.key(5), (3, 4), jnp.float64)
    ts = jnp.asarray(ts, jnp.float64)

    def loss(noise, b):  # a one-parameter family of second-order RK methods (b = 1/2 is Heun)
        solver = _ParamRK(b)
        return jnp.sum(js.sample(model, solver, ts, noise, checkpoint=True) ** 2)

    g_noise, g_b = jax.grad(loss, argnums=(0, 1))(noise, jnp.float64(0.5))
    e = 1e-6
    dn = jnp.zeros_like(noise).at[1, 2].set(e)
    fd_noise = (loss(noise + dn, 0.5) - loss(noise - dn, 0.5)) / (2 * e)
    fd_b = (loss(noise, 0.5 + e) - loss(noise, 0.5 - e)) / (2 * e)
    np.testing.assert_allclose(g_noise[1, 2], fd_noise, rtol=1e-5)
    np.testing.assert_allclose(g_b, fd_b, rtol=1e-5)


class _ParamRK(js.solvers.AbstractSolver):
    """x + h [(1 - b) k1 + b k2], k2 at t + h / (2b): second order for any b; b is a traced leaf."""

    b: jax.Array

    order = 2

    def nfe(self, n):
        return 2 * n

    def init(self, model, ts, x, cond):
        return js.solvers.SimpleState(x)

    def step(self, model, ts, i, state, cond, key):
        t, h, x = ts[i], ts[i + 1] - ts[i], state.x
        k1 = model.velocity(x, t)
        c = 1.0 / (2.0 * self.b)
        k2 = model.velocity(x + c * h * k1, t + c * h)
        return js.solvers.SimpleState(x + h * ((1 - self.b) * k1 + self.b * k2))


def test_bad_inputs_raise_value_errors_naming_the_argument(setup):
    gmm, model, ts, noise = setup
    with pytest.raises(ValueError, match="ts must be strictly decreasing"):
        js.sample(model, js.euler(), jnp.array([1.0, 0.3, 0.6, 0.1]), noise)
    with pytest.raises(ValueError, match="ts must be a 1-D array of at least 2 times"):
        js.sample(model, js.euler(), jnp.array([1.0]), noise)
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        js.logsnr_uniform(model.path, 0)
    with pytest.raises(ValueError, match=r"noise of shape \(8, 5\) is rejected by the model"):
        js.sample(model, js.euler(), ts, jnp.zeros((8, 5)))
    with pytest.raises(ValueError, match="prediction must be one of"):
        gmm.model(js.VPCosine(), "noise")
    with pytest.raises(ValueError, match="solver must be a jaxsample AbstractSolver"):
        js.sample(model, "euler", ts, noise)
    with pytest.raises(ValueError, match="noise must be a floating-point array"):
        js.sample(model, js.euler(), ts, jnp.zeros((8, 4), jnp.int32))


def test_non_finite_samples_are_not_silent(setup):
    gmm, _, _, noise = setup
    path = js.RectifiedFlow()
    bad = gmm.model(path, "eps")  # x0 = (x - t eps) / (1 - t) is singular at t = 1
    with pytest.raises(Exception, match="NaN or inf"):
        js.sample(bad, js.euler(), js.uniform(path, 4), noise)


def test_non_finite_samples_under_the_users_own_jit_say_the_same(setup):
    """Under ``jax.jit`` the check surfaces as XLA's runtime error, carrying the same message."""
    gmm, _, _, noise = setup
    path = js.RectifiedFlow()
    bad = gmm.model(path, "eps")
    with pytest.raises(Exception, match="sample: ExplicitRungeKutta produced NaN or inf samples"):
        jax.block_until_ready(jax.jit(lambda n: js.sample(bad, js.euler(), js.uniform(path, 4), n))(noise))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_noise_is_solved_in_float32(setup, dtype):
    """The dtype rule: arithmetic in promote_types(noise dtype, float32), samples in the noise's dtype."""
    _, model, ts, noise = setup
    half = noise.astype(dtype)
    x = js.sample(model, js.heun(), ts, half)
    assert x.dtype == dtype
    want = js.sample(model, js.heun(), ts, half.astype(jnp.float32))  # same noise, float32 throughout
    np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(want.astype(dtype), np.float32))
    assert js.reference_sample(model, half).dtype == dtype


def test_a_bfloat16_model_runs_with_float32_solver_arithmetic(setup):
    gmm, _, ts, noise = setup
    # an x0 network: an eps network in bfloat16 is ill-conditioned near alpha = 0 (x0 = (x - sigma eps) / alpha)
    model = gmm.model(js.VPCosine(), "x0")
    bf16 = js.Model(lambda x, t: model(x, t).astype(jnp.bfloat16), model.path, "x0")  # bfloat16 outputs
    x = js.sample(bf16, js.dpm_solver_pp_2m(), ts, noise)
    assert x.dtype == jnp.float32
    # bfloat16 has 8 bits of mantissa: the samples agree with the float32 model's to about 1e-2
    np.testing.assert_allclose(x, js.sample(model, js.dpm_solver_pp_2m(), ts, noise), atol=5e-2)


def test_under_x64_float32_noise_and_a_float64_model_mix(setup):
    gmm, _, _, noise = setup
    with jax.enable_x64(True):
        gmm64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), gmm)
        model64 = gmm64.model(js.VPCosine(), "eps")
        assert js.initial_noise(jax.random.key(1), (8, 4)).dtype == jnp.float64  # the default float
        ts = js.logsnr_uniform(model64.path, 6)
        x32 = js.sample(model64, js.heun(), ts, noise)
        x64 = js.sample(model64, js.heun(), ts, noise.astype(jnp.float64))
        assert x32.dtype == jnp.float32 and x64.dtype == jnp.float64
        np.testing.assert_allclose(x32, x64, rtol=1e-4, atol=1e-5)
        ref32 = js.reference_sample(model64, noise, rtol=1e-5, atol=1e-5)
        assert ref32.dtype == jnp.float32
        np.testing.assert_allclose(ref32, js.reference_sample(model64, noise.astype(jnp.float64), rtol=1e-5,
                                                              atol=1e-5), rtol=1e-4, atol=1e-5)


def test_keys_may_be_typed_legacy_or_integer_seeds(setup):
    _, model, ts, noise = setup
    run = lambda key: js.sample(model, js.ddpm_ancestral(), ts, noise, key=key)  # noqa: E731
    want = run(jax.random.key(7))
    for key in (jax.random.PRNGKey(7), 7, np.int64(7), jnp.asarray(7)):
        np.testing.assert_array_equal(run(key), want)
    per_sample = js.sample_keys(jax.random.key(7), 8)
    np.testing.assert_array_equal(run(jax.random.key_data(per_sample)), want)  # legacy (8, 2) key data
    np.testing.assert_array_equal(js.initial_noise(3, (8, 4)), js.initial_noise(jax.random.key(3), (8, 4)))
    for bad, words in [(True, "got True"), ("7", "got str"), (jnp.zeros((3, 2), jnp.uint32), r"shape \(3, 2\)"),
                       (jnp.zeros(2), "dtype float32"), (js.sample_keys(jax.random.key(0), 3), r"shape \(3,\)")]:
        with pytest.raises(ValueError, match="key must be a jax.random.key, a jax.random.PRNGKey or an integer "
                                             f"seed.*{words}"):
            run(bad)


def test_reference_is_batch_independent(setup):
    _, model, _, noise = setup
    full = js.reference_sample(model, noise)
    part = js.reference_sample(model, noise[:3])
    np.testing.assert_allclose(part, full[:3], rtol=1e-6, atol=1e-6)
    ts = js.logsnr_uniform(model.path, 4)
    traj = js.reference_sample(model, noise, save_ts=ts)
    assert traj.shape == (5,) + noise.shape
    np.testing.assert_allclose(traj[-1], full, atol=1e-5)


def test_the_model_check_runs_once_per_signature(setup):
    """The model/noise check traces the model once per signature (structure, shapes, dtypes), not
    on every call: a repeated call runs no Python in the model; a new shape is checked again; a
    rejected shape is rejected every time."""
    gmm, model, ts, noise = setup
    calls = []

    def fn(x, t):
        calls.append(x.shape)
        return model(x, t)

    counted = js.Model(jax.tree_util.Partial(fn), model.path, "eps")
    js.sample(counted, js.euler(), ts, noise)
    assert calls  # traced for the check and for the compile
    calls.clear()
    js.sample(counted, js.euler(), ts, noise + 1.0)  # same signature, other values
    assert calls == []
    js.sample(counted, js.euler(), ts, noise[:3])
    assert (3, 4) in calls
    for _ in range(2):
        with pytest.raises(ValueError, match=r"noise of shape \(8, 5\) is rejected by the model"):
            js.sample(counted, js.euler(), ts, jnp.zeros((8, 5)))


def test_final_x0_on_a_grid_ending_at_sigma_zero_keeps_every_solver_finite():
    """On rectified flow a grid that ends at t = 0 reaches sigma = 0 exactly. ``final_x0=True`` drops that
    last time and returns the x0 prediction at the one before (k-diffusion's rule for a trailing sigma 0).
    For Euler the step into sigma = 0 IS the x0 prediction, so Euler is unchanged; every deterministic
    baseline stays finite."""
    from jaxsample import compare

    gmm = js.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    model = gmm.model(js.RectifiedFlow(), "velocity")
    noise = js.initial_noise(jax.random.key(1), (8, 4))
    ts = js.uniform(model.path, 8, t_start=0.99, t_end=0.0)
    assert float(model.path.sigma(ts[-1])) == 0.0
    bad = []
    for name, (solver, _) in sorted(compare.baseline_suite(model.path, grids=["uniform"]).items()):
        n = max(3, 8 // solver.nfe(1))
        grid = js.uniform(model.path, n, t_start=0.99, t_end=0.0)
        x = js.sample(model, solver, grid, noise, key=jax.random.key(2), final_x0=True, check_finite=False)
        if not bool(jnp.isfinite(x).all()):
            bad.append(name)
    assert bad == []
    euler = js.sample(model, js.euler(), ts, noise)
    np.testing.assert_allclose(js.sample(model, js.euler(), ts, noise, final_x0=True), euler, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least 3"):
        js.sample(model, js.euler(), ts[-2:], noise, final_x0=True)


def test_final_x0_adds_one_denoising_call_and_a_trajectory_entry():
    gmm = js.GaussianMixture.random(jax.random.key(0), dim=3, num_components=2)
    model = gmm.model(js.EDM(), "x0")
    ts = js.edm(model.path, 6)
    noise = js.initial_noise(jax.random.key(1), (5, 3))
    x, traj = js.sample(model, js.heun(), ts, noise, final_x0=True, return_trajectory=True)
    last = js.sample(model, js.heun(), ts, noise)
    np.testing.assert_allclose(x, model.x0(last, ts[-1]), rtol=1e-6, atol=1e-6)
    assert traj.shape == (len(ts) + 1, 5, 3) and bool((traj[-1] == x).all())
    with pytest.raises(ValueError, match="final_x0"):
        js.sample(model, js.heun(), ts, noise, final_x0="yes")


def test_compiled_sampler_is_reused_only_for_the_same_static_structure(setup, x64):
    """``sample`` keys its compiled program on the static part of (model, solver, cond): new array
    values (noise, grid, the solver's coefficients) reuse it without tracing; a changed Python
    field of the solver compiles anew and gives that solver's answer (the python loop's)."""
    gmm, model, ts, noise = setup
    ts, noise = jnp.asarray(ts, jnp.float64), jnp.asarray(noise, jnp.float64)
    traces = []

    def fn(x, t):
        traces.append(1)
        return model(x, t)

    counted = js.Model(jax.tree_util.Partial(fn), model.path, "eps")
    js.sample(counted, js.euler(), ts, noise)
    traces.clear()
    other_ts = js.edm(model.path, 6).astype(jnp.float64)
    out = js.sample(counted, js.euler(), other_ts, noise - 0.5)
    assert traces == []
    np.testing.assert_allclose(out, python_loop(model, js.euler(), other_ts, noise - 0.5), rtol=1e-12, atol=1e-12)
    outs = {}
    for space in ("t", "edm", "t"):  # a non-array field of the solver: each value is its own program
        solver = js.heun(space)
        outs[space] = js.sample(model, solver, ts, noise)
        np.testing.assert_allclose(outs[space], python_loop(model, solver, ts, noise), rtol=1e-9, atol=1e-9)
    assert float(jnp.abs(outs["t"] - outs["edm"]).max()) > 1e-4  # a reused program would have been caught


def test_a_grid_checked_once_is_checked_again_for_another_path(setup):
    """The grid check is cached per jax array and path: the same array is still rejected by a path
    whose range it leaves, and a numpy grid (mutable) is checked on every call."""
    gmm, model, ts, noise = setup
    js.sample(model, js.euler(), ts, noise)
    other = gmm.model(js.RectifiedFlow(), "velocity")
    bad = jnp.asarray([2.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="ts"):
        js.sample(other, js.euler(), bad, noise)
    grid = np.array(js.uniform(other.path, 4))
    js.sample(other, js.euler(), grid, noise)
    grid[1] = grid[0] + 1.0  # the same numpy object, now not decreasing
    with pytest.raises(ValueError, match="strictly decreasing"):
        js.sample(other, js.euler(), grid, noise)


def test_under_the_users_jit_with_only_closed_over_inputs_the_check_stays_in_the_graph(setup):
    """``jax.jit(lambda: sample(...))()``: no argument is traced, yet the call is; the NaN check
    must not read a traced boolean, and still names the solver."""
    gmm, model, ts, noise = setup
    out = jax.jit(lambda: js.sample(model, js.euler(), ts, noise))()
    np.testing.assert_allclose(out, js.sample(model, js.euler(), ts, noise), rtol=1e-5, atol=1e-6)
    path = js.RectifiedFlow()
    bad = gmm.model(path, "eps")
    with pytest.raises(Exception, match="sample: ExplicitRungeKutta produced NaN or inf samples"):
        jax.block_until_ready(jax.jit(lambda: js.sample(bad, js.euler(), js.uniform(path, 4), noise))())
