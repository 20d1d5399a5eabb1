"""Grids: shapes, exact endpoints, monotonicity, known values, validation."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import grids, paths

ALL_PATHS = [paths.VPCosine(), paths.VPLinear(), paths.DiscreteDDPM(), paths.EDM(), paths.RectifiedFlow()]
IDS = [type(p).__name__ for p in ALL_PATHS]


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
@pytest.mark.parametrize("name", ["uniform", "power", "logsnr", "edm", "time_uniform"])
def test_grid_is_valid(path, name):
    for n in (1, 4, 17):
        ts = grids.get_grid(name, path, n)
        assert ts.shape == (n + 1,)
        grids.check_grid(path, ts)
        np.testing.assert_allclose([ts[0], ts[-1]], [path.t_max, path.t_min], rtol=1e-6)


def test_edm_grid_matches_karras_formula():
    n, rho = 18, 7.0
    i = np.arange(n + 1)
    expected = (80 ** (1 / rho) + i / n * (0.002 ** (1 / rho) - 80 ** (1 / rho))) ** rho
    np.testing.assert_allclose(grids.edm(paths.EDM(), n), expected, rtol=1e-5)


def test_time_uniform_grid_is_adasdes():
    """The values of AdaSDE's ``get_schedule(..., 'time_uniform')`` for sigma in [0.002, 80], rho = 1
    (the NFE-3 and NFE-5 grids of its shipped runs), and the VP schedule it inverts."""
    np.testing.assert_allclose(grids.time_uniform(paths.EDM(), 2), [80.0, 2.823689, 0.002], rtol=1e-6)
    np.testing.assert_allclose(grids.time_uniform(paths.EDM(), 3), [80.0, 6.950235, 1.286669, 0.002], rtol=1e-6)
    # rho = 7: tau = (1 + i/n (eps_s^(1/7) - 1))^7 through sigma(tau) = sqrt(exp(beta_d tau^2 / 2 + beta_min tau) - 1)
    beta_d, beta_min = 17.537957, -0.0047690  # ALGORITHMS.md section 9, for sigma in [0.002, 80]
    tau = (1 + np.arange(6) / 5 * (1e-3 ** (1 / 7) - 1)) ** 7
    want = np.sqrt(np.expm1(0.5 * beta_d * tau**2 + beta_min * tau))
    np.testing.assert_allclose(grids.time_uniform(paths.EDM(), 5, rho=7.0), want, rtol=2e-5)
    # on another path: the same sigma / alpha values between the same end points
    vp = paths.VPCosine()
    t_start, t_end = float(vp.t_from_lam(-np.log(80.0))), float(vp.t_from_lam(-np.log(0.002)))
    r = np.exp(-np.asarray(vp.lam(grids.time_uniform(vp, 3, t_start=t_start, t_end=t_end))))
    np.testing.assert_allclose(r, [80.0, 6.950235, 1.286669, 0.002], rtol=1e-4)
    assert grids.get_grid("time_uniform", vp, 3, t_start=t_start, t_end=t_end).shape == (4,)


def test_logsnr_grid_is_uniform_in_lambda():
    path = paths.VPLinear()
    ts = grids.logsnr_uniform(path, 10)
    lam = np.asarray(path.lam(ts))
    np.testing.assert_allclose(np.diff(lam), np.full(10, (lam[-1] - lam[0]) / 10), rtol=1e-4)


def test_quadratic_grid():
    ts = grids.power(paths.VPLinear(), 4, kappa=2.0)
    expected = np.linspace(1.0, np.sqrt(1e-3), 5) ** 2
    np.testing.assert_allclose(ts, expected, rtol=1e-6)


def test_bad_grids_are_rejected():
    path = paths.VPCosine()
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        grids.uniform(path, 0)
    with pytest.raises(ValueError, match="num_steps"):
        grids.uniform(path, 2.5)
    with pytest.raises(ValueError, match="strictly decreasing"):
        grids.check_grid(path, jnp.array([1.0, 0.2, 0.5, 0.0]))
    with pytest.raises(ValueError, match="at least one step"):
        grids.check_grid(path, jnp.array([1.0]))
    with pytest.raises(ValueError, match=r"range \[0.0, 1.0\]"):
        grids.check_grid(path, jnp.array([1.5, 0.5]))
    with pytest.raises(ValueError, match="t_start must be greater than t_end"):
        grids.uniform(path, 4, t_start=0.2, t_end=0.5)
    with pytest.raises(ValueError, match="grid must be one of"):
        grids.get_grid("cosine", path, 4)


def test_shifted_grid_is_the_sd3_flux_time_shift():
    flow = paths.RectifiedFlow()
    np.testing.assert_allclose(grids.shifted(flow, 8, shift=1.0), grids.uniform(flow, 8), atol=1e-7)
    mu = 1.15  # Flux at 4096 tokens: exponential shift e^mu / (e^mu + 1/t - 1) = static shift exp(mu)
    t = np.linspace(1.0, 0.0, 9)[:-1]
    want = np.exp(mu) / (np.exp(mu) + 1 / t - 1)
    np.testing.assert_allclose(grids.shifted(flow, 8, shift=float(np.exp(mu)))[:-1], want, rtol=1e-6)
    with pytest.raises(ValueError, match="shift must be positive"):
        grids.shifted(flow, 4, shift=0.0)


def test_align_your_steps_and_user_sigmas():
    np.testing.assert_array_equal(grids.ays_sigmas(10, "sdxl"), grids.AYS_SIGMAS["sdxl"])
    s = grids.ays_sigmas(20)
    assert s.shape == (21,) and np.all(np.diff(s) < 0)
    np.testing.assert_allclose(s[::2], grids.AYS_SIGMAS["sd15"], rtol=1e-12)  # log-linear between the knots
    vp = paths.VPCosine()
    ts = grids.from_sigmas(vp, s)
    np.testing.assert_allclose(np.exp(-np.asarray(vp.lam(ts))), s, rtol=1e-4)  # the same sigma / alpha
    with pytest.raises(ValueError, match="sigmas must be strictly decreasing"):
        grids.from_sigmas(vp, [1.0, 2.0])
    with pytest.raises(ValueError, match="leave out a final 0"):
        grids.from_sigmas(vp, [14.6, 1.0, 0.0])
    with pytest.raises(ValueError, match="model must be one of"):
        grids.ays_sigmas(10, "sd3")
