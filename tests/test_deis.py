"""DEIS: coefficients against the authors' Riemann sum, exactness, DEIS-1 == DDIM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import grids, models, paths, sample
from jaxsample import solvers as E
from jaxsample.solvers.deis import deis_coefficients, step_orders


def _riemann_coefficients(path, ts, order, num_item=10_000):
    """The authors' tAB coefficients (qsh-zh/deis ``jax_deis/multistep.py``): a left
    Riemann sum of ``psi(t_{i+1}, tau) * eps_integrand(tau) * l_j(tau)`` with ``num_item``
    points from ``t_i`` towards ``t_{i+1}``, in the VP form
    ``psi = sqrt(abar_{i+1} / abar_tau)``, ``eps_integrand = -(1/2) dlog abar / sqrt(1 - abar)``."""
    ts = np.asarray(ts, np.float64)
    n = len(ts) - 1

    def log_abar(t):
        return -0.5 * t**2 * (path.beta_max - path.beta_min) - t * path.beta_min

    def d_log_abar(t):
        return -t * (path.beta_max - path.beta_min) - path.beta_min

    out = np.zeros((n, order))
    for i in range(n):
        q = min(order, i + 1)
        t_start, t_end = ts[i], ts[i + 1]
        dt = (t_end - t_start) / num_item
        tau = np.linspace(t_start, t_end, num_item, endpoint=False)
        psi = np.exp(0.5 * (log_abar(t_end) - log_abar(tau)))
        integrand = -0.5 * d_log_abar(tau) / np.sqrt(-np.expm1(log_abar(tau)))
        nodes = ts[[i - k for k in range(q)]]
        for j in range(q):
            basis = np.ones_like(tau)
            for k in range(q):
                if k != j:
                    basis *= (tau - nodes[k]) / (nodes[j] - nodes[k])
            out[i, j] = np.sum(psi * integrand * basis) * dt
    return out


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_tab_coefficients_match_authors_riemann_sum(x64, order):
    """Gauss-Legendre coefficients agree with the 10,000-point left Riemann sum to its own
    O(1/N) error: within 5e-4 relative to the step's largest coefficient; and doubling the
    Riemann points halves the gap (so the gap is the Riemann sum's error, not ours)."""
    path = paths.VPLinear()
    ts = grids.power(path, 10, kappa=2.0)
    ours = np.asarray(deis_coefficients(path, ts, order, "tab"))
    r1 = _riemann_coefficients(path, ts, order, 10_000)
    scale = np.max(np.abs(r1), axis=1, keepdims=True)
    gap1 = np.max(np.abs(ours - r1) / scale)
    assert gap1 < 5e-4, gap1
    r2 = _riemann_coefficients(path, ts, order, 20_000)
    gap2 = np.max(np.abs(ours - r2) / scale)
    assert 0.4 < gap2 / gap1 < 0.6, (gap1, gap2)


@pytest.mark.parametrize("kind,variable", [
    ("tab", lambda path, t: t),
    ("rhoab", lambda path, t: jnp.exp(-path.lam(t))),
    ("logrho", lambda path, t: path.lam(t)),
])
@pytest.mark.parametrize("order", [2, 3])
def test_coefficients_integrate_polynomials_exactly(x64, kind, variable, order):
    """For eps a polynomial of degree < order in the interpolation variable, a full-order step
    is exact: sum_j C_ij p(s_{i-j}) = alpha_{i+1} int_{rho_i}^{rho_{i+1}} p(s(rho)) drho.
    (rhoAB with a rho-polynomial is the 'exact for the linear part' case.)"""
    path = paths.VPCosine()
    ts = grids.logsnr_uniform(path, 8, t_start=0.9, t_end=0.1)
    coeffs = np.asarray(deis_coefficients(path, ts, order, kind))
    s_nodes = np.asarray(variable(path, ts))
    # a polynomial of degree order - 1 in s, centred to keep it well scaled
    c = np.array([0.7, -1.3, 0.4, 0.2])[:order]
    s_mid = s_nodes.mean()
    poly = lambda s: sum(ck * (s - s_mid) ** k for k, ck in enumerate(c))  # noqa: E731
    u, w = np.polynomial.legendre.leggauss(200)
    for i in range(order - 1, len(ts) - 1):
        # exact integral in t: int p(s(t)) drho/dt dt, with drho/dt = -rho lam'(t)
        a, b = float(ts[i]), float(ts[i + 1])
        tt = jnp.asarray(0.5 * (b - a) * u + 0.5 * (a + b))
        drho = -jnp.exp(-path.lam(tt)) * path.d_lam(tt)
        exact = float(path.alpha(ts[i + 1])) * float(jnp.sum(w * poly(variable(path, tt)) * drho) * 0.5 * (b - a))
        approx = sum(coeffs[i, j] * poly(s_nodes[i - j]) for j in range(order))
        np.testing.assert_allclose(approx, exact, rtol=1e-9)


def test_deis_order_1_is_ddim(x64):
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=5, num_components=3)
    model = gmm.model(paths.VPLinear(), "x0")
    noise = jax.random.normal(jax.random.key(1), (8, 5), jnp.float64)
    ts = grids.power(model.path, 7)
    x = sample(model, E.ddim(), ts, noise)
    for kind in ("tab", "rhoab", "logrho"):
        np.testing.assert_allclose(sample(model, E.deis(1, kind), ts, noise), x, rtol=1e-11, atol=1e-11)


def test_warm_start_and_lower_order_final():
    """Step i uses min(order, i + 1) coefficients (zeros beyond), and with lower_order_final
    at most num_steps - i."""
    path = paths.VPLinear()
    ts = grids.uniform(path, 6)
    c = np.asarray(deis_coefficients(path, ts, 3, "tab"))
    assert np.all(c[0, 1:] == 0) and np.all(c[1, 2:] == 0) and np.all(c[2:] != 0)
    c = np.asarray(deis_coefficients(path, ts, 3, "tab", lower_order_final=True))
    assert np.all(c[-1, 1:] == 0) and np.all(c[-2, 2:] == 0) and np.all(c[2:4] != 0)
    assert list(step_orders(3, 6, True, None)) == [1, 2, 3, 3, 2, 1]


def test_coefficients_are_traceable():
    """init computes the coefficients with jnp, so grids may be traced (jit over ts)."""
    path = paths.VPCosine()
    f = jax.jit(lambda ts: deis_coefficients(path, ts, 3, "rhoab"))
    ts = grids.logsnr_uniform(path, 5, t_start=0.9, t_end=0.1)
    np.testing.assert_allclose(f(ts), deis_coefficients(path, ts, 3, "rhoab"), rtol=1e-5)
