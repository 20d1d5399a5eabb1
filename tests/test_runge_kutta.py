"""Runge-Kutta solvers: measured convergence order, NFE, diffrax interop."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js
from jaxsample import solvers
from tests.helpers import fitted_order

RK = {"euler": solvers.euler, "heun": solvers.heun, "midpoint": solvers.midpoint,
      "kutta3": solvers.kutta3, "rk4": solvers.rk4}
NOMINAL = {"euler": 1, "heun": 2, "midpoint": 2, "kutta3": 3, "rk4": 4}


@pytest.fixture(scope="module")
def gmm8():
    # d = 8, four anisotropic components.
    return js.GaussianMixture.random(jax.random.key(0), dim=8, num_components=4, std_range=(0.2, 0.6))


@pytest.mark.parametrize("name", list(RK))
def test_convergence_order(gmm8, name, x64):
    """Error against the adaptive reference at 8..256 steps; slope within 0.3 of nominal."""
    path = js.RectifiedFlow()
    model = gmm8.model(path, "velocity")
    noise = js.initial_noise(jax.random.key(1), (16, 8), jnp.float64)
    ref = js.reference_sample(model, noise, rtol=1e-10, atol=1e-10)
    steps = [8, 16, 32, 64, 128, 256]
    errors = [float(js.rmse(js.sample(model, RK[name](), js.uniform(path, n), noise), ref)) for n in steps]
    order = fitted_order(steps, errors)
    assert abs(order - NOMINAL[name]) <= 0.3, (name, order, errors)


def test_reference_matches_closed_form_gaussian(x64):
    """For Gaussian data N(mu, s0^2) the PF-ODE flow is affine: x_t - a_t mu scales by std_t / std_T."""
    mu, s0 = jnp.array([[0.7, -1.2, 0.1]]), jnp.array([[0.3, 1.5, 0.05]])
    g = js.GaussianMixture(mu, s0)
    for path in [js.VPCosine(), js.VPLinear(), js.EDM(), js.RectifiedFlow()]:
        pred = "velocity" if isinstance(path, js.RectifiedFlow) else "eps"
        model = g.model(path, pred)
        noise = js.initial_noise(jax.random.key(2), (5, 3), jnp.float64)
        T, t = path.t_max, path.t_min
        std = lambda tt: jnp.sqrt(path.alpha(tt) ** 2 * s0**2 + path.sigma(tt) ** 2)  # noqa: E731
        xT = path.sigma(T) * noise
        exact = path.alpha(t) * mu + std(t) / std(T) * (xT - path.alpha(T) * mu)
        ref = js.reference_sample(model, noise, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ref, exact, atol=1e-6, err_msg=type(path).__name__)


@pytest.mark.parametrize("name", list(RK))
def test_nfe_is_counted(gmm8, name):
    model = gmm8.model(js.VPCosine(), "eps")
    ts = js.logsnr_uniform(model.path, 5)
    noise = js.initial_noise(jax.random.key(3), (2, 8))
    assert js.count_model_calls(model, RK[name](), ts, noise) == RK[name]().nfe(5) == 5 * (NOMINAL[name] if name != "midpoint" else 2)


# Each RK solver on one of the three paths in turn (every solver and every path is covered).
DIFFRAX_CASES = [("euler", js.VPCosine()), ("heun", js.EDM()), ("midpoint", js.RectifiedFlow()),
                 ("kutta3", js.VPCosine()), ("rk4", js.RectifiedFlow())]


@pytest.mark.parametrize("name,path", DIFFRAX_CASES, ids=[f"{n}-{type(p).__name__}" for n, p in DIFFRAX_CASES])
def test_runs_in_diffrax_with_same_result(gmm8, name, path):
    # x0 and eps models are singular at sigma = 0 (t = 0 on rectified flow): use velocity there.
    model = gmm8.model(path, "velocity" if isinstance(path, js.RectifiedFlow) else "x0")
    ts = js.logsnr_uniform(path, 12)
    noise = js.initial_noise(jax.random.key(4), (4, 8))
    ours = js.sample(model, RK[name](), ts, noise)
    sol = diffrax.diffeqsolve(
        solvers.probability_flow_term(model), solvers.as_diffrax(RK[name](), ts), t0=ts[0], t1=ts[-1],
        dt0=None, y0=path.sigma(ts[0]) * noise, args={}, stepsize_controller=diffrax.StepTo(ts))
    np.testing.assert_allclose(sol.ys[-1], ours, atol=1e-6, rtol=1e-6)
    assert int(sol.stats["num_steps"]) == 12


def test_butcher_tableau_validation():
    with pytest.raises(ValueError, match="must sum to c"):
        solvers.ExplicitRungeKutta(solvers.ButcherTableau(((), (0.4,)), (0.5, 0.5), (0.0, 0.5)), 2)
    with pytest.raises(ValueError, match="explicit"):
        solvers.ExplicitRungeKutta(solvers.ButcherTableau(((0.0,), (1.0,)), (0.5, 0.5), (0.0, 1.0)), 2)


@pytest.mark.parametrize("name", list(RK))
def test_edm_space_equals_t_space_on_the_edm_path(gmm8, name, x64):
    """On the EDM path (alpha = 1, sigma = t) the two forms of the ODE are the same."""
    model = gmm8.model(js.EDM(), "x0")
    ts = js.edm(model.path, 7)
    noise = js.initial_noise(jax.random.key(6), (4, 8), jnp.float64)
    np.testing.assert_allclose(js.sample(model, RK[name]("edm"), ts, noise),
                               js.sample(model, RK[name]("t"), ts, noise), rtol=1e-10, atol=1e-10)


def test_edm_space_converges_on_vp(gmm8, x64):
    """Heun in EDM's variables on a VP path approaches the reference at second order (8..128 steps)."""
    model = gmm8.model(js.VPLinear(), "eps")
    noise = js.initial_noise(jax.random.key(7), (8, 8), jnp.float64)
    ref = js.reference_sample(model, noise, rtol=1e-10, atol=1e-10)
    steps = [16, 32, 64, 128]
    errors = [float(js.rmse(js.sample(model, solvers.heun("edm"), js.edm(model.path, n), noise), ref)) for n in steps]
    assert abs(fitted_order(steps, errors) - 2) <= 0.3, errors


def test_unknown_space_is_rejected():
    with pytest.raises(ValueError, match="space must be 't' or 'edm'"):
        solvers.heun("sigma")
