"""Non-stationary solvers: exact embedding of classical solvers, parameter counts, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js
from jaxsample.solvers import nonstationary as ns

RK = ["euler", "heun", "midpoint", "kutta3", "rk4"]


@pytest.fixture(scope="module")
def gmm():
    return js.GaussianMixture.random(jax.random.key(0), dim=6, num_components=3)


# Every RK solver once, and every (field, space) pair once (on Heun), rather than the full product.
VP_CASES = [(name, "x0", "edm") for name in RK] + [("heun", f, sp) for f in ("velocity", "x0", "eps")
                                                   for sp in ("t", "edm") if (f, sp) != ("x0", "edm")]


@pytest.mark.parametrize("name,field,space", VP_CASES)
def test_embedding_reproduces_runge_kutta_on_vp(gmm, name, field, space, x64):
    """Exact in float64 (1e-9). In float32, t-space on VP is stiff and loses ~2e-5 to rounding."""
    path = js.VPCosine()
    model = gmm.model(path, "eps")
    ts = jnp.asarray(js.edm(path, 5, **js.compare.edm_interval(path)), jnp.float64)
    solver = getattr(js.solvers, name)(space)
    embedded = ns.embed(solver, path, ts, field=field, dtype=jnp.float64)
    noise = js.initial_noise(jax.random.key(1), (8, 6), jnp.float64)
    np.testing.assert_allclose(js.sample(model, embedded, embedded.times, noise),
                               js.sample(model, solver, ts, noise), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", RK)
def test_embedding_reproduces_runge_kutta_on_flow(gmm, name):
    path = js.RectifiedFlow()
    model = gmm.model(path, "velocity")
    ts = js.uniform(path, 6)
    solver = getattr(js.solvers, name)()
    embedded = ns.embed(solver, path, ts)
    assert embedded.num_steps == solver.nfe(6)
    noise = js.initial_noise(jax.random.key(2), (8, 6))
    np.testing.assert_allclose(js.sample(model, embedded, embedded.times, noise),
                               js.sample(model, solver, ts, noise), atol=1e-5, rtol=1e-5)


def test_euler_embedding_is_the_textbook_one(x64):
    """Euler: a_i = 1, b_ij = h_j for j <= i (ALGORITHMS.md section 5)."""
    path = js.RectifiedFlow()
    ts = np.array([1.0, 0.7, 0.3, 0.0])
    e = ns.embed(js.euler(), path, ts, dtype=jnp.float64)
    h = np.diff(ts)
    np.testing.assert_allclose(e.a, np.ones(3), atol=1e-12)
    np.testing.assert_allclose(e.b, np.tril(np.broadcast_to(h, (3, 3))), atol=1e-12)
    np.testing.assert_allclose(e.times, ts, atol=1e-12)


def test_parameter_counts():
    # n (n + 5) / 2: 18, 52, 168 at NFE 4, 8, 16 (BNS paper, Table 3).
    path = js.RectifiedFlow()
    counts = [ns.embed(js.euler(), path, js.uniform(path, n)).num_parameters for n in (4, 8, 16)]
    assert counts == [18, 52, 168]


def test_gradients_through_an_ns_rollout(gmm, x64):
    path = js.RectifiedFlow()
    model = gmm.model(path, "velocity")
    base = ns.embed(js.midpoint(), path, js.uniform(path, 3), dtype=jnp.float64)
    noise = js.initial_noise(jax.random.key(3), (4, 6), jnp.float64)

    def loss(b):
        s = ns.NonStationary(base.times, base.a, b, base.field)
        return jnp.sum(js.sample(model, s, s.times, noise, checkpoint=True) ** 2)

    g = jax.grad(loss)(base.b)
    e = 1e-6
    db = jnp.zeros_like(base.b).at[4, 2].set(e)
    np.testing.assert_allclose(g[4, 2], (loss(base.b + db) - loss(base.b - db)) / (2 * e), rtol=1e-6)
    assert np.all(np.asarray(g)[np.triu_indices(6, 1)] == 0)  # the upper triangle is unused


def test_embedding_errors(gmm):
    path = js.RectifiedFlow()
    with pytest.raises(ValueError, match="non-finite coefficients"):
        ns.embed(js.heun(), path, js.uniform(path, 3), field="eps")
    with pytest.raises(ValueError, match="field must be one of"):
        ns.embed(js.euler(), path, js.uniform(path, 3), field="score_fn")
    with pytest.raises(ValueError, match="needs times of shape"):
        ns.NonStationary(jnp.zeros(3), jnp.zeros(3), jnp.zeros((3, 3)))


EXPONENTIAL = {"ddim": js.ddim, "dpm_solver_2": lambda: js.dpm_solver(2), "dpm_solver_pp_2m": js.dpm_solver_pp_2m,
               "dpm_solver_pp_3m": js.dpm_solver_pp_3m, "unipc_bh2_3": lambda: js.unipc(3, "bh2"),
               "deis_tab_3": lambda: js.deis(3), "ipndm (Adams-Bashforth)": js.ipndm}


@pytest.mark.parametrize("name", list(EXPONENTIAL))
def test_embedding_reproduces_exponential_integrators(gmm, name, x64):
    """DDIM, DPM-Solver(++), UniPC (whose last step skips its corrector under lax.cond), DEIS and
    iPNDM embed exactly (float64, 1e-9)."""
    path = js.VPCosine()
    model = gmm.model(path, "eps")
    ts = jnp.asarray(js.power(path, 6, **js.compare.edm_interval(path)), jnp.float64)
    solver = EXPONENTIAL[name]()
    embedded = ns.embed(solver, path, ts, field="x0", dtype=jnp.float64)
    assert embedded.num_steps == solver.nfe(6)
    noise = js.initial_noise(jax.random.key(8), (6, 6), jnp.float64)
    np.testing.assert_allclose(js.sample(model, embedded, embedded.times, noise),
                               js.sample(model, solver, ts, noise), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", ["heun", "ddim", "dpm_solver_pp_2m", "unipc_bh2_3"])
def test_embedding_onto_a_noise_scaled_path(gmm, name, x64):
    """``ns_path``: a classical solver run on VP is expressed as an NS solver for the
    change_path model on NoiseScaled(VP, 5) (BNS's preconditioning); from the same noise it
    reaches the classical solver's samples, mapped by the paths' scale at the end (float64, 1e-9)."""
    path = js.VPCosine()
    new = js.NoiseScaled(path, 5.0)
    model = gmm.model(path, "eps")
    ts = jnp.asarray(js.power(path, 4, **js.compare.edm_interval(path)), jnp.float64)
    solver = js.heun() if name == "heun" else EXPONENTIAL[name]()
    embedded = ns.embed(solver, path, ts, field="x0", dtype=jnp.float64, ns_path=new)
    r = np.asarray([js.models.equivalent_time(path, new, t) for t in ts])
    np.testing.assert_allclose(np.asarray(embedded.times)[[0, -1]], r[[0, -1]], rtol=1e-12)
    noise = js.initial_noise(jax.random.key(3), (6, 6), jnp.float64)
    x_ns = js.sample(js.models.change_path(model, new), embedded, embedded.times, noise)
    scale_end = js.models.path_scale(path, new, embedded.times[-1])[1]
    np.testing.assert_allclose(x_ns / scale_end, js.sample(model, solver, ts, noise), atol=1e-9, rtol=1e-9)
    # Without the change of path the same solver embeds with other coefficients.
    assert not np.allclose(ns.embed(solver, path, ts, field="x0", dtype=jnp.float64).b, embedded.b)
