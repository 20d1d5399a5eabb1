"""Tests of the stochastic samplers (jaxsample.solvers.stochastic).

Weak convergence is measured against an exact answer: for single-Gaussian data
N(mu, s0^2 I) the marginal at every time is N(alpha mu, (alpha^2 s0^2 + sigma^2) I), and
every sampler here targets the marginals of the reverse SDE. The start is exact too: the
``noise`` handed to ``sample`` is a draw from the marginal at ``ts[0]`` divided by
``sigma(ts[0])`` (``sample`` starts from ``sigma(ts[0]) * noise``), so all the error at
``ts[-1]`` comes from the solver. Errors are Monte-Carlo estimates: the dimensions are
independent and identically distributed, so the mean and variance biases are pooled over
them (N_SAMPLES * DIM scalars). See MC_TOL.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import grids, models, paths
from jaxsample.sampling import count_model_calls, sample, sample_keys
from jaxsample.solvers import runge_kutta
from jaxsample.solvers._base import per_sample_normal
from jaxsample.solvers import (DDPMAncestral, DPMSolverPP2MSDE, EDMStochasticHeun, EulerMaruyama, ddpm_ancestral,
                               dpm_solver_pp_2m_sde, edm_stochastic_heun, euler_maruyama)

from tests.helpers import fitted_order

DIM, N_SAMPLES = 32, 25_000
MU, S0 = 1.0, 0.5
# One standard error of the pooled estimates, from N_SAMPLES * DIM = 8e5 scalars with
# variance ~0.3: mean ~ sqrt(0.3/8e5) = 0.0006, variance ~ 0.3 sqrt(2/8e5) = 0.0005.
# MC_TOL is about 4 standard errors; every error used to fit an order is > 2 MC_TOL.
MC_TOL = 0.0025


def _gaussian():
    return models.GaussianMixture(means=jnp.full((1, DIM), MU), stds=jnp.full((1, DIM), S0))


def _marginal_noise(path, t, key, n):
    """``noise`` such that ``sigma(t) * noise`` is an exact draw from the marginal at t."""
    a, s = path.alpha(t), path.sigma(t)
    z = jax.random.normal(key, (n, DIM))
    return (a * MU + jnp.sqrt(a**2 * S0**2 + s**2) * z) / s


def _weak_errors(path, prediction, solver, ts, seed=0):
    """(|mean bias|, |variance bias|) at ts[-1], pooled over dimensions."""
    model = _gaussian().model(path, prediction)
    noise = _marginal_noise(path, ts[0], jax.random.key(100 + seed), N_SAMPLES)
    x = sample(model, solver, ts, noise, key=jax.random.key(200 + seed))
    a, s = path.alpha(ts[-1]), path.sigma(ts[-1])
    mean_err = float(jnp.mean(x.mean(0)) - a * MU)
    var_err = float(jnp.mean(x.var(0)) - (a**2 * S0**2 + s**2))
    return abs(mean_err), abs(var_err)


WEAK_CASES = {
    # name: (solver, path, prediction, grid, step counts, grid kwargs)
    "euler_maruyama-vplinear-eps": (euler_maruyama(), paths.VPLinear(), "eps", grids.uniform, (16, 32, 64), {}),
    "ddpm_ancestral-vpcosine-eps": (ddpm_ancestral(1.0), paths.VPCosine(), "eps", grids.uniform, (16, 32, 64),
                                    dict(t_start=0.8, t_end=0.2)),
    "ddpm_ancestral_eta0.5-edm-x0": (ddpm_ancestral(0.5), paths.EDM(), "x0", grids.edm, (8, 16, 32),
                                     dict(t_start=10.0, t_end=0.1)),
    "edm_heun_churn-edm-x0": (edm_stochastic_heun(s_churn=10.0), paths.EDM(), "x0", grids.edm, (8, 16, 32), {}),
    "edm_heun_churn-vpcosine-v": (edm_stochastic_heun(s_churn=10.0, s_max=50.0), paths.VPCosine(), "v",
                                  grids.edm, (8, 16, 32), dict(t_start=0.99)),
    "dpmpp_2m_sde-edm-x0": (dpm_solver_pp_2m_sde(1.0), paths.EDM(), "x0", grids.edm, (12, 24, 48), {}),
    "dpmpp_2m_sde_heun-edm-x0": (dpm_solver_pp_2m_sde(1.0, "heun"), paths.EDM(), "x0", grids.edm,
                                 (16, 32, 64), {}),
}


@pytest.mark.parametrize("name", sorted(WEAK_CASES))
def test_weak_convergence_on_a_gaussian(name):
    solver, path, prediction, grid, steps, kw = WEAK_CASES[name]
    errors = []
    for n in steps:
        mean_err, var_err = _weak_errors(path, prediction, solver, grid(path, n, **kw))
        errors.append(max(mean_err, var_err))
    errors = np.asarray(errors)
    print(name, "errors", errors, "order", fitted_order(steps, errors))
    assert np.all(errors > 2 * MC_TOL), f"{name}: errors {errors} are too close to the Monte-Carlo noise"
    assert np.all(np.diff(errors) < 0), f"{name}: errors {errors} do not decrease with the number of steps"
    order = fitted_order(steps, errors)
    assert order > solver.order - 0.3, f"{name}: weak order {order:.2f} (errors {errors}), expected {solver.order}"


@pytest.mark.parametrize("solver", [ddpm_ancestral(1.0), dpm_solver_pp_2m_sde(1.0)], ids=["ddpm", "dpmpp_2m_sde"])
def test_data_mean_is_exact_for_gaussian_data(solver):
    """With an exact x0 predictor on Gaussian data both samplers keep E[x_t] = alpha_t mu at any step size."""
    path = paths.VPCosine()
    mean_err, _ = _weak_errors(path, "eps", solver, grids.logsnr_uniform(path, 4, t_start=0.95), seed=1)
    assert mean_err < MC_TOL


# ----------------------------------------------------------------- deterministic limits


def _ddim_reference(model, ts, noise):
    """DDIM written out: x_t = (sigma_t/sigma_s) x - alpha_t (e^{-h} - 1) x0."""
    path = model.path
    x = path.sigma(ts[0]) * noise
    for i in range(len(ts) - 1):
        s, t = ts[i], ts[i + 1]
        h = path.lam(t) - path.lam(s)
        x = path.sigma(t) / path.sigma(s) * x - path.alpha(t) * jnp.expm1(-h) * model.x0(x, s)
    return x


def _dpmpp_2m_reference(model, ts, noise):
    """DPM-Solver++(2M) written out (k-diffusion ``sample_dpmpp_2m`` on any path, no lower-order end)."""
    path = model.path
    x = path.sigma(ts[0]) * noise
    x0_prev = None
    for i in range(len(ts) - 1):
        s, t = ts[i], ts[i + 1]
        h = path.lam(t) - path.lam(s)
        x0 = model.x0(x, s)
        d = x0
        if x0_prev is not None:
            r = (path.lam(s) - path.lam(ts[i - 1])) / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        x = path.sigma(t) / path.sigma(s) * x - path.alpha(t) * jnp.expm1(-h) * d
        x0_prev = x0
    return x


def _mixture_model(path, prediction, dim=4):
    return models.GaussianMixture.random(jax.random.key(3), dim=dim, num_components=3).model(path, prediction)


@pytest.mark.parametrize("path,prediction", [(paths.VPCosine(), "eps"), (paths.EDM(), "x0"),
                                             (paths.RectifiedFlow(), "velocity")])
def test_eta_zero_is_ddim_and_dpmpp_2m(x64, path, prediction):
    """In float64 the eta = 0 samplers agree with DDIM and DPM-Solver++(2M) to rounding."""
    model = _mixture_model(path, prediction)
    kw = dict(t_start=0.99, t_end=0.01) if path.t_min == 0 else {}
    ts = grids.logsnr_uniform(path, 12, **kw)
    noise = jax.random.normal(jax.random.key(4), (16, 4), jnp.float64)
    key = jax.random.key(5)
    x_ddpm = sample(model, ddpm_ancestral(eta=0.0), ts, noise, key=key)
    np.testing.assert_allclose(x_ddpm, jax.jit(_ddim_reference)(model, ts, noise), rtol=1e-10, atol=1e-10)
    x_sde = sample(model, dpm_solver_pp_2m_sde(eta=0.0), ts, noise, key=key)
    np.testing.assert_allclose(x_sde, jax.jit(_dpmpp_2m_reference)(model, ts, noise), rtol=1e-10, atol=1e-10)
    try:  # the exponential module's own solvers, where present
        from jaxsample.solvers import ddim, dpm_solver_pp_2m
    except ImportError:
        return
    np.testing.assert_allclose(x_ddpm, sample(model, ddim(), ts, noise), rtol=1e-10, atol=1e-10)
    x_2m = sample(model, dpm_solver_pp_2m(lower_order_final=False), ts, noise)
    np.testing.assert_allclose(x_sde, x_2m, rtol=1e-10, atol=1e-10)


def test_zero_churn_is_heun_on_edm(x64):
    model = _mixture_model(paths.EDM(), "x0")
    ts = grids.edm(model.path, 10)
    noise = jax.random.normal(jax.random.key(6), (16, 4), jnp.float64)
    x = sample(model, edm_stochastic_heun(s_churn=0.0), ts, noise, key=jax.random.key(7))
    np.testing.assert_allclose(x, sample(model, runge_kutta.heun(), ts, noise), rtol=1e-10, atol=1e-10)


def test_zero_noise_solvers_ignore_the_key():
    model = _mixture_model(paths.VPCosine(), "eps")
    ts = grids.logsnr_uniform(model.path, 6)
    noise = jax.random.normal(jax.random.key(8), (4, 4))
    for solver in [ddpm_ancestral(0.0), dpm_solver_pp_2m_sde(0.0), edm_stochastic_heun(0.0)]:
        a = sample(model, solver, ts, noise, key=jax.random.key(0))
        b = sample(model, solver, ts, noise, key=jax.random.key(1))
        np.testing.assert_array_equal(a, b)


def test_edm_heun_churn_matches_edm_sampler_written_out():
    """Churn on the EDM path, against NVlabs/edm ``edm_sampler`` transcribed with the same noise."""
    s_churn, s_min, s_max, s_noise = 30.0, 0.05, 20.0, 1.007
    model = _mixture_model(paths.EDM(), "x0")
    n_steps = 8
    ts = grids.edm(model.path, n_steps)
    noise = jax.random.normal(jax.random.key(9), (6, 4))
    key = jax.random.key(10)
    ours = sample(model, edm_stochastic_heun(s_churn, s_min, s_max, s_noise), ts, noise, key=key)
    keys = sample_keys(key, noise.shape[0])
    ts_np = np.asarray(ts, np.float64)
    x_next = ts_np[0] * np.asarray(noise, np.float64)
    for i, (t_cur, t_next) in enumerate(zip(ts_np[:-1], ts_np[1:])):
        x_cur = x_next
        gamma = min(s_churn / n_steps, np.sqrt(2) - 1) if s_min <= t_cur <= s_max else 0
        t_hat = t_cur + gamma * t_cur
        step_noise = np.asarray(per_sample_normal(jax.vmap(jax.random.fold_in, (0, None))(keys, i), noise))
        x_hat = x_cur + np.sqrt(t_hat**2 - t_cur**2) * s_noise * step_noise
        denoised = np.asarray(model.x0(jnp.asarray(x_hat, jnp.float32), jnp.float32(t_hat)), np.float64)
        d_cur = (x_hat - denoised) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        denoised = np.asarray(model.x0(jnp.asarray(x_next, jnp.float32), jnp.float32(t_next)), np.float64)
        d_prime = (x_next - denoised) / t_next
        x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    np.testing.assert_allclose(ours, x_next, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------- keys, batches, NFE

ALL_SOLVERS = {
    "euler_maruyama": euler_maruyama(),
    "ddpm_ancestral": ddpm_ancestral(1.0),
    "ddpm_ancestral_eta0.3": ddpm_ancestral(0.3),
    "edm_heun_churn": edm_stochastic_heun(s_churn=20.0, s_min=0.01, s_max=10.0, s_noise=1.003),
    "dpmpp_2m_sde": dpm_solver_pp_2m_sde(1.0),
    "dpmpp_2m_sde_heun": dpm_solver_pp_2m_sde(0.7, "heun"),
}


@pytest.mark.parametrize("name", ["euler_maruyama", "ddpm_ancestral_eta0.3", "edm_heun_churn", "dpmpp_2m_sde_heun"])
def test_batch_size_invariance_and_key_determinism(name):
    solver = ALL_SOLVERS[name]
    assert solver.is_stochastic
    model = _mixture_model(paths.VPLinear(), "eps")
    ts = grids.logsnr_uniform(model.path, 8)
    noise = jax.random.normal(jax.random.key(11), (8, 4))
    key = jax.random.key(12)
    x8 = sample(model, solver, ts, noise, key=key)
    x4 = sample(model, solver, ts, noise[:4], key=key)
    np.testing.assert_allclose(x4, x8[:4], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(x8, sample(model, solver, ts, noise, key=key))
    other = sample(model, solver, ts, noise, key=jax.random.key(13))
    assert np.all(np.abs(np.asarray(other - x8)).max(axis=1) > 1e-6), "another key must change every sample"
    with pytest.raises(ValueError, match="key"):
        sample(model, solver, ts, noise)


@pytest.mark.parametrize("name", sorted(ALL_SOLVERS))
def test_count_model_calls_equals_nfe(name):
    solver = ALL_SOLVERS[name]
    model = _mixture_model(paths.EDM(), "x0", dim=2)
    ts = grids.edm(model.path, 5)
    noise = jax.random.normal(jax.random.key(14), (3, 2))
    assert count_model_calls(model, solver, ts, noise, key=jax.random.key(15)) == solver.nfe(5)


def test_edm_heun_skips_the_correction_at_sigma_zero():
    model = _mixture_model(paths.RectifiedFlow(), "velocity", dim=2)
    ts = grids.uniform(model.path, 5, t_start=0.98)  # ends at t = 0, sigma = 0
    noise = jax.random.normal(jax.random.key(16), (3, 2))
    solver = edm_stochastic_heun(s_churn=5.0)
    assert count_model_calls(model, solver, ts, noise, key=jax.random.key(17)) == solver.nfe(5) - 1


# ----------------------------------------------------------------- every path and prediction

PATH_GRIDS = {
    "vp_cosine": (paths.VPCosine(), dict(t_start=0.99)),
    "vp_linear": (paths.VPLinear(), {}),
    "ddpm": (paths.DiscreteDDPM(), {}),
    "edm": (paths.EDM(), {}),
    "rectified_flow": (paths.RectifiedFlow(), dict(t_start=0.99)),  # alpha(1) = 0: g is infinite there
}


@pytest.mark.parametrize("path_name", sorted(PATH_GRIDS))
def test_every_path_and_prediction_agree(path_name):
    """Same key, same noise: an exact model gives the same samples whatever its prediction type.

    Each solver runs on every path; the prediction compared with 'x0' cycles over the other
    four types, so every solver meets every type (and every path four of them).
    """
    path, kw = PATH_GRIDS[path_name]
    ts = grids.logsnr_uniform(path, 4, **kw)
    noise = jax.random.normal(jax.random.key(18), (3, 4))
    key = jax.random.key(19)
    others = ("eps", "v", "velocity", "score")
    offset = sorted(PATH_GRIDS).index(path_name)
    for j, name in enumerate(["euler_maruyama", "ddpm_ancestral", "edm_heun_churn", "dpmpp_2m_sde_heun"]):
        solver = ALL_SOLVERS[name]
        prediction = others[(offset + j) % len(others)]
        ref = np.asarray(sample(_mixture_model(path, "x0"), solver, ts, noise, key=key))
        out = np.asarray(sample(_mixture_model(path, prediction), solver, ts, noise, key=key))
        assert np.all(np.isfinite(ref)) and np.all(np.isfinite(out))
        np.testing.assert_allclose(out, ref, atol=2e-3 * max(1.0, np.abs(ref).max()),
                                   err_msg=f"{name} {prediction}")


def test_ends_at_sigma_zero():
    model = _mixture_model(paths.RectifiedFlow(), "velocity", dim=2)
    ts = grids.uniform(model.path, 6)  # from alpha = 0 to sigma = 0
    noise = jax.random.normal(jax.random.key(20), (5, 2))
    for solver in [ddpm_ancestral(1.0), dpm_solver_pp_2m_sde(1.0), dpm_solver_pp_2m_sde(1.0, "heun")]:
        x, traj = sample(model, solver, ts, noise, key=jax.random.key(21), return_trajectory=True)
        assert np.all(np.isfinite(traj))
        # the last step lands on the data prediction (sigma = 0, alpha = 1)
        np.testing.assert_allclose(x, model.x0(traj[-2], ts[-2]), rtol=1e-5, atol=1e-5)


def test_jit_and_vmap_over_keys():
    model = _mixture_model(paths.EDM(), "x0", dim=2)
    ts = grids.edm(model.path, 4)
    noise = jax.random.normal(jax.random.key(22), (3, 2))
    keys = jax.random.split(jax.random.key(23), 2)
    solver = dpm_solver_pp_2m_sde()
    out = jax.vmap(lambda k: sample(model, solver, ts, noise, key=k))(keys)
    np.testing.assert_allclose(out[1], sample(model, solver, ts, noise, key=keys[1]), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------- hyperparameter errors


@pytest.mark.parametrize("factory,kwargs,arg", [
    (ddpm_ancestral, dict(eta=-0.1), "eta"),
    (ddpm_ancestral, dict(eta=1.5), "eta"),
    (ddpm_ancestral, dict(eta=float("nan")), "eta"),
    (ddpm_ancestral, dict(eta="1"), "eta"),
    (edm_stochastic_heun, dict(s_churn=-1.0), "s_churn"),
    (edm_stochastic_heun, dict(s_noise=-1.0), "s_noise"),
    (edm_stochastic_heun, dict(s_min=-1.0), "s_min"),
    (edm_stochastic_heun, dict(s_min=2.0, s_max=1.0), "s_min"),
    (edm_stochastic_heun, dict(s_churn=float("inf")), "s_churn"),
    (dpm_solver_pp_2m_sde, dict(eta=-1.0), "eta"),
    (dpm_solver_pp_2m_sde, dict(solver_type="euler"), "solver_type"),
    (dpm_solver_pp_2m_sde, dict(s_noise=-0.5), "s_noise"),
])
def test_bad_hyperparameters_raise(factory, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        factory(**kwargs)


def test_solvers_are_pytrees_with_static_hyperparameters():
    for solver in ALL_SOLVERS.values():
        assert jax.tree_util.tree_leaves(solver) == []
    assert isinstance(euler_maruyama(), EulerMaruyama) and isinstance(ddpm_ancestral(), DDPMAncestral)
    assert isinstance(edm_stochastic_heun(), EDMStochasticHeun) and isinstance(dpm_solver_pp_2m_sde(), DPMSolverPP2MSDE)
    assert euler_maruyama().order == 1 and ddpm_ancestral().order == 1
    assert edm_stochastic_heun(s_churn=1.0).order == 2
    assert dpm_solver_pp_2m_sde(eta=0.0).order == 2 and dpm_solver_pp_2m_sde().order == 1
