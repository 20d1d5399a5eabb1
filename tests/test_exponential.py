"""Exponential integrators: DDIM, DPM-Solver, DPM-Solver++, UniPC, DEIS, iPNDM.

Convergence orders are measured against a Dopri8 reference in float64 on an exact
Gaussian mixture (VP linear path, t from 1 to 0.1, quadratic or logSNR grids with 32 to
96 steps, where the asymptotic regime is reached).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import grids, models, paths, sample
from jaxsample.sampling import reference_sample
from jaxsample import solvers as E
from jaxsample.solvers.dpm_solver import effective_order

T0, T1 = 1.0, 0.1


def _problem():
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3, std_range=(0.3, 0.8))
    gmm = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), gmm)
    model = gmm.model(paths.VPLinear(), "eps")
    noise = jax.random.normal(jax.random.key(1), (8, 4), jnp.float64)
    return model, noise


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True):
        model, noise = _problem()
        ref = reference_sample(model, noise, t_start=T0, t_end=T1)
        jax.block_until_ready(ref)
    return model, noise, ref


def _grid(name, path, n):
    if name == "quadratic":
        return grids.power(path, n, kappa=2.0, t_start=T0, t_end=T1)
    if name == "logsnr":
        return grids.logsnr_uniform(path, n, t_start=T0, t_end=T1)
    raise AssertionError(name)


# (id, solver, grid, step counts, nominal order). The multistep methods warm up with lower
# orders and UniPC-3's first corrector is second order; those few low-order steps sit at
# high noise, where the data prediction hardly moves, so the nominal order is what one
# measures over these step counts.
CONVERGENCE = [
    ("ddim", E.ddim(), "quadratic", (32, 48, 64), 1),
    ("dpm_solver_2", E.dpm_solver(2), "quadratic", (32, 48, 64), 2),
    ("dpm_solver_3", E.dpm_solver(3), "quadratic", (32, 48, 64), 3),
    ("dpm_solver_pp_2s", E.dpm_solver_pp_2s(), "quadratic", (32, 48, 64), 2),
    ("dpm_solver_pp_2m", E.dpm_solver_pp_2m(lower_order_final=False), "quadratic", (32, 48, 64), 2),
    ("dpm_solver_pp_3m", E.dpm_solver_pp_3m(lower_order_final=False), "quadratic", (32, 48, 64), 3),
    ("unipc_2_bh1", E.unipc(2, "bh1", lower_order_final=False), "quadratic", (32, 48, 64), 3),
    ("unipc_2_bh2", E.unipc(2, "bh2", lower_order_final=False), "quadratic", (32, 48, 64), 3),
    ("unipc_3_bh2", E.unipc(3, "bh2", lower_order_final=False), "quadratic", (48, 64, 96), 4),
    ("deis_tab_2", E.deis(2, "tab"), "quadratic", (32, 48, 64), 2),
    ("deis_tab_3", E.deis(3, "tab"), "quadratic", (32, 48, 64), 3),
    ("deis_rhoab_2", E.deis(2, "rhoab"), "quadratic", (32, 48, 64), 2),
    ("deis_logrho_3", E.deis(3, "logrho"), "quadratic", (32, 48, 64), 3),
]


def _slope(ns, errs):
    return -np.polyfit(np.log(ns), np.log(errs), 1)[0]


@pytest.mark.parametrize("name,solver,grid,ns,nominal", CONVERGENCE, ids=[c[0] for c in CONVERGENCE])
def test_convergence_order(x64, problem, name, solver, grid, ns, nominal):
    model, noise, ref = problem
    errs = []
    for n in ns:
        x = sample(model, solver, _grid(grid, model.path, n), noise)
        errs.append(float(jnp.sqrt(jnp.mean((x - ref) ** 2))))
    slope = _slope(ns, errs)
    assert solver.order == nominal
    assert abs(slope - nominal) < 0.3, f"{name}: slope {slope:.2f}, errors {errs}"
    assert errs[-1] < 0.05


def test_ipndm_order_on_nonuniform_grid(x64, problem):
    """iPNDM's fixed Adams-Bashforth weights assume equal steps in rho: on a quadratic
    grid the higher orders only reach second order, and all stay convergent and at least
    as accurate as second order."""
    model, noise, ref = problem
    ns = (32, 64)
    for order in (4,):
        errs = []
        for n in ns:
            x = sample(model, E.ipndm(order), _grid("quadratic", model.path, n), noise)
            errs.append(float(jnp.sqrt(jnp.mean((x - ref) ** 2))))
        assert 1.7 < _slope(ns, errs) < 2.5, errs


def test_singlestep_first_orders_equal_ddim(x64, problem):
    """DDIM (data form), DPM-Solver-1 (noise form), iPNDM-1, UniP-1 and DPM-Solver++ multistep
    at order 1 are one method (DEIS-1 == DDIM is in test_deis.py)."""
    model, noise, _ = problem
    ts = _grid("quadratic", model.path, 12)
    x_ddim = sample(model, E.ddim(), ts, noise)
    for solver in (E.dpm_solver(1), E.ipndm(1),
                   E.unipc(1, corrector=False), E.DPMSolverPPMultistep(1)):
        np.testing.assert_allclose(sample(model, solver, ts, noise), x_ddim, rtol=1e-10, atol=1e-10)


def test_unip2_equals_dpm_solver_pp_2m(x64, problem):
    """UniP-2 with B(h) = e^{-h} - 1 and rho = 1/2 is algebraically DPM-Solver++(2M)."""
    model, noise, _ = problem
    ts = _grid("logsnr", model.path, 9)
    a = sample(model, E.unipc(2, "bh2", corrector=False), ts, noise)
    b = sample(model, E.dpm_solver_pp_2m(lower_order_final_below=None), ts, noise)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


# Diffrax equivalence and NFE counts of every registered solver: tests/test_registry.py.


# ------------------------------------------------------------------ every path and prediction


@pytest.mark.parametrize("path,prediction,t_start", [
    (paths.VPCosine(), "eps", None), (paths.VPLinear(), "x0", None), (paths.DiscreteDDPM(), "v", None),
    (paths.EDM(), "score", None), (paths.RectifiedFlow(), "velocity", 0.99)])
def test_every_path_and_prediction(path, prediction, t_start):
    """Each solver runs on every path and prediction type and lands close to the reference."""
    gmm = models.GaussianMixture.random(jax.random.key(4), dim=4, num_components=2, std_range=(0.3, 0.6))
    model = gmm.model(path, prediction)
    noise = jax.random.normal(jax.random.key(5), (8, 4))
    ts = grids.logsnr_uniform(path, 24, t_start=t_start)
    ref = reference_sample(model, noise, t_start=ts[0], t_end=ts[-1], rtol=1e-5, atol=1e-5)
    for solver in (E.dpm_solver(2), E.dpm_solver_pp_3m(), E.unipc(2), E.deis(3, "logrho")):
        x = sample(model, solver, ts, noise)
        err = float(jnp.sqrt(jnp.mean((x - ref) ** 2)) / jnp.sqrt(jnp.mean(ref**2)))
        tol = 0.06
        assert err < tol, (type(solver).__name__, err)


def test_jit_grad_vmap():
    """Pure state: jit-able, differentiable in the noise, vmap-able over grids."""
    gmm = models.GaussianMixture.random(jax.random.key(6), dim=3, num_components=2)
    model = gmm.model(paths.VPCosine(), "eps")
    noise = jax.random.normal(jax.random.key(7), (4, 3))
    ts = grids.logsnr_uniform(model.path, 6, t_start=0.95, t_end=0.05)
    for solver in (E.dpm_solver_pp_3m(), E.unipc(3), E.deis(2)):
        g = jax.grad(lambda z: jnp.sum(sample(model, solver, ts, z) ** 2))(noise)
        assert g.shape == noise.shape and bool(jnp.all(jnp.isfinite(g)))


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("make,arg", [
    (lambda: E.dpm_solver(4), "order"),
    (lambda: E.dpm_solver(0), "order"),
    (lambda: E.dpm_solver_pp_2s(r1=0.0), "r1"),
    (lambda: E.dpm_solver_pp_2m(lower_order_final="yes"), "lower_order_final"),
    (lambda: E.dpm_solver_pp_3m(lower_order_final_below=0), "lower_order_final_below"),
    (lambda: E.unipc(4), "order"),
    (lambda: E.unipc(2, variant="bh3"), "variant"),
    (lambda: E.unipc(2, corrector=1), "corrector"),
    (lambda: E.deis(5), "order"),
    (lambda: E.deis(2, kind="xab"), "kind"),
    (lambda: E.deis(2, num_quadrature=1), "num_quadrature"),
    (lambda: E.ipndm(5), "order"),
    (lambda: E.ipndm(True), "order"),
])
def test_bad_hyperparameters_raise(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


def test_lower_order_final_rules():
    steps = lambda q: [int(effective_order(3, i, len(q), True, 10)) for i in range(len(q))]  # noqa: E731
    assert steps([0] * 6) == [1, 2, 3, 3, 2, 1]
    assert [int(effective_order(3, i, 12, True, 10)) for i in range(12)] == [1, 2] + [3] * 10
    assert [int(effective_order(2, i, 12, True, None)) for i in range(12)] == [1] + [2] * 10 + [1]
    assert [int(effective_order(3, i, 4, False, None)) for i in range(4)] == [1, 2, 3, 3]
