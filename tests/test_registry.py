"""Every registered solver, tested by being registered: NFE, convergence order, batch independence,
diffrax equivalence; and the registry is the one list the CLI, the baseline search and the docs read."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js
from jaxsample import cli, compare
from jaxsample.solvers import registry
from jaxsample.solvers._base import AbstractSolver

CONSTRUCTIBLE = registry.entries(constructible=True, aliases=False)
DETERMINISTIC = [e for e in CONSTRUCTIBLE if not e.stochastic]
STOCHASTIC = [e for e in CONSTRUCTIBLE if e.stochastic]
IDS = lambda entries: [e.name for e in entries]  # noqa: E731


@pytest.fixture(scope="module")
def mixture():
    return js.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3, std_range=(0.3, 0.8))


def _model(mixture, entry):
    # Every registered solver starts on a VP path (noise-prediction updates are singular at alpha = 0).
    return mixture.model(js.VPLinear(), "eps")


@pytest.mark.parametrize("entry", CONSTRUCTIBLE, ids=IDS(CONSTRUCTIBLE))
def test_nfe_counts_real_model_calls(mixture, entry):
    solver = entry.make()
    assert isinstance(solver, AbstractSolver) and solver.is_stochastic == entry.stochastic
    model = _model(mixture, entry)
    key = jax.random.key(0) if entry.stochastic else None
    for n in (1, 5):
        ts = js.logsnr_uniform(model.path, n, t_start=0.98, t_end=0.05)
        assert js.count_model_calls(model, solver, ts, jnp.ones((2, 4)), key=key) == solver.nfe(n)


@pytest.mark.parametrize("entry", STOCHASTIC, ids=IDS(STOCHASTIC))
def test_samples_do_not_depend_on_the_batch(mixture, entry):
    """Sample k depends on its own noise and key alone: one batch of 6 equals two batches of 3
    (deterministic solvers: in test_diffrax_gives_the_same_numbers)."""
    solver, model = entry.make(), _model(mixture, entry)
    ts = js.logsnr_uniform(model.path, 6, t_start=0.98, t_end=0.05)
    noise = jax.random.normal(jax.random.key(1), (6, 4))
    keys = js.sample_keys(jax.random.key(2), 6) if entry.stochastic else None
    whole = js.sample(model, solver, ts, noise, key=keys)
    parts = [js.sample(model, solver, ts, noise[i:i + 3], key=None if keys is None else keys[i:i + 3])
             for i in (0, 3)]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-6)
    assert bool(jnp.all(jnp.isfinite(whole)))


@pytest.fixture(scope="module")
def reference(mixture):
    with jax.enable_x64(True):
        gmm = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), mixture)
        model = gmm.model(js.VPLinear(), "eps")
        noise = jax.random.normal(jax.random.key(3), (8, 4), jnp.float64)
        ref = js.reference_sample(model, noise, t_start=1.0, t_end=0.1)
        jax.block_until_ready(ref)
    return model, noise, ref


@pytest.mark.parametrize("entry", DETERMINISTIC, ids=IDS(DETERMINISTIC))
def test_converges_to_the_exact_ode_solution(x64, reference, entry):
    """Error against a float64 adaptive solve falls from 24 to 48 steps at least as fast as
    min(order, 2) - 0.3 (the registered settings keep their warm-up and final lower-order steps,
    so orders above 2 are measured exactly in the per-family tests)."""
    model, noise, ref = reference
    solver = entry.make()
    steps = (24, 48)
    errs = []
    for n in steps:
        x = js.sample(model, solver, js.power(model.path, n, t_start=1.0, t_end=0.1), noise)
        errs.append(float(jnp.sqrt(jnp.mean((x - ref) ** 2))))
    slope = np.log(errs[0] / errs[1]) / np.log(steps[1] / steps[0])
    assert slope > min(solver.order, 2) - 0.3, (entry.name, solver.order, errs)
    assert errs[-1] < 0.02, (entry.name, errs)


@pytest.mark.parametrize("entry", DETERMINISTIC, ids=IDS(DETERMINISTIC))
def test_diffrax_gives_the_same_numbers(mixture, entry):
    """Also: sample k depends on its own noise alone (the first half of the batch alone, the same)."""
    solver, model = entry.make(), _model(mixture, entry)
    ts = js.logsnr_uniform(model.path, 7, t_start=0.95, t_end=0.05)
    noise = jax.random.normal(jax.random.key(4), (8, 4))
    x = js.sample(model, solver, ts, noise)
    np.testing.assert_allclose(js.sample(model, solver, ts, noise[:4]), x[:4], rtol=1e-5, atol=1e-6)
    assert bool(jnp.all(jnp.isfinite(x)))
    y0 = model.path.prior_scale(ts[0]) * noise
    sol = diffrax.diffeqsolve(js.probability_flow_term(model), js.as_diffrax(solver, ts), t0=ts[0], t1=ts[-1],
                              dt0=None, y0=y0, args={}, stepsize_controller=diffrax.StepTo(ts))
    np.testing.assert_allclose(sol.ys[-1], x, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------- the one list


def test_the_cli_offers_exactly_the_constructible_registered_solvers():
    assert cli.solver_names() == sorted(registry.names(constructible=True))


@pytest.mark.parametrize("path", [js.VPCosine(), js.RectifiedFlow()], ids=["vp", "flow"])
def test_the_baseline_search_is_the_registry_baseline_set(path):
    flow = isinstance(path, js.RectifiedFlow)
    want = [e.name for e in registry.entries(baseline=True, stochastic=False) if e.on_flow or not flow]
    assert list(compare.baseline_suite(path)) == want
    with_sde = list(compare.baseline_suite(path, stochastic=True))
    assert with_sde == [e.name for e in registry.entries(baseline=True) if e.on_flow or not flow]


def test_every_exported_solver_class_is_reachable_from_the_registry():
    """A solver class exported by jaxsample.solvers is built by a registered entry, is a learned class,
    or is the concrete form of one (AdaSDE, NoiseInjected: LearnedAdaSDE.as_solver; NonStationary:
    BespokeNonStationary.as_ns): a new solver must be registered to be exported. (CFG++, which needs a
    class-conditional model and its null label, is exported as its constructor ``cfg_pp`` only: it is no
    baseline and no ``--solver NAME``.)"""
    built = {type(e.make()).__name__ for e in CONSTRUCTIBLE}
    learned = set(registry.learned_classes())
    concrete = {"AdaSDE", "NoiseInjected", "NonStationary", "DiffraxAdapter"}
    exported = {n for n in js.solvers.__all__ if isinstance(getattr(js.solvers, n), type)
                and issubclass(getattr(js.solvers, n), AbstractSolver) and n != "AbstractSolver"}
    assert exported - built - learned - concrete == set()


def test_bad_names_and_entries_are_clear_errors():
    with pytest.raises(ValueError, match="solver must be one of .*euler.*; got 'eulr'"):
        registry.get("eulr")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.SolverEntry("euler", "runge_kutta", js.euler))
    with pytest.raises(ValueError, match="only learned solvers may have no make"):
        registry.register(registry.SolverEntry("nothing", "runge_kutta"))
    with pytest.raises(ValueError, match="entry must be a SolverEntry"):
        registry.register("euler")
