"""Paths: closed-form derivatives against jax.grad, inverse round trips, finiteness at the ends."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import paths

ALL_PATHS = [paths.VPCosine(), paths.VPLinear(), paths.DiscreteDDPM(), paths.EDM(), paths.RectifiedFlow()]
IDS = [type(p).__name__ for p in ALL_PATHS]


def interior_times(path, n=37):
    # Avoid the knots of DiscreteDDPM's piecewise-linear table (t = k/1000).
    u = np.linspace(0.02, 0.98, n) + 1.234e-4
    return jnp.asarray(path.t_min + u * (path.t_max - path.t_min))


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_derivatives_match_autodiff(path, x64):
    t = interior_times(path).astype(jnp.float64)
    for f, df in [(path.alpha, path.d_alpha), (path.sigma, path.d_sigma), (path.lam, path.d_lam)]:
        auto = jax.vmap(jax.grad(f))(t)
        np.testing.assert_allclose(df(t), auto, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_lambda_is_log_alpha_over_sigma(path, x64):
    t = interior_times(path).astype(jnp.float64)
    np.testing.assert_allclose(path.lam(t), jnp.log(path.alpha(t) / path.sigma(t)), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_inverse_round_trip(path):
    t = jnp.linspace(path.t_min, path.t_max, 101)
    back = path.t_from_lam(path.lam(t))
    np.testing.assert_allclose(back, t, atol=1e-5 * max(1.0, path.t_max), rtol=1e-5)


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
def test_finite_at_the_ends(path):
    t = jnp.asarray([path.t_min, path.t_max], jnp.float32)
    for f in [path.alpha, path.sigma, path.lam, path.d_alpha, path.d_sigma, path.d_lam]:
        assert np.all(np.isfinite(np.asarray(f(t)))), f.__name__
    assert float(path.lam(t[0])) > float(path.lam(t[1])), "lambda must decrease from data to noise"


def test_vp_paths_preserve_variance():
    for path in [paths.VPCosine(), paths.VPLinear(), paths.DiscreteDDPM()]:
        t = jnp.linspace(path.t_min, path.t_max, 50)
        np.testing.assert_allclose(path.alpha(t) ** 2 + path.sigma(t) ** 2, 1.0, atol=1e-6)


def test_vp_cosine_log_snr_range():
    p = paths.VPCosine()
    np.testing.assert_allclose(2 * p.lam(jnp.array([0.0, 0.5, 1.0])), [20.0, 0.0, -20.0], atol=1e-4)


def test_discrete_ddpm_matches_its_table():
    # At t = n/1000 the continuous path gives the discrete alphas_cumprod exactly.
    p = paths.DiscreteDDPM()
    betas = np.linspace(1e-4, 0.02, 1000)
    alphas_cumprod = np.cumprod(1 - betas)
    n = np.array([1, 10, 500, 999, 1000])
    np.testing.assert_allclose(p.alpha(jnp.asarray(n / 1000.0)) ** 2, alphas_cumprod[n - 1], rtol=1e-5)


def test_vp_linear_closed_form():
    p = paths.VPLinear()
    t = jnp.asarray([0.1, 0.5, 1.0])
    log_alpha_bar = -0.5 * t**2 * 19.9 - 0.1 * t
    np.testing.assert_allclose(p.alpha(t), jnp.exp(0.5 * log_alpha_bar), rtol=1e-6)


def test_get_path_rejects_unknown_name():
    with pytest.raises(ValueError, match="path must be one of"):
        paths.get_path("vp_quadratic")
