"""Grids: shapes, exact endpoints, monotonicity, known values, validation."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import grids, paths

ALL_PATHS = [paths.VPCosine(), paths.VPLinear(), paths.DiscreteDDPM(), paths.EDM(), paths.RectifiedFlow()]
IDS = [type(p).__name__ for p in ALL_PATHS]


@pytest.mark.parametrize("path", ALL_PATHS, ids=IDS)
@pytest.mark.parametrize("name", ["uniform", "power", "logsnr", "edm"])
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
