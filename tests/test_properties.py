"""Property-based tests (hypothesis) of the public sampling entry points: random solvers, grids,
shapes, dtypes and batch sizes either give finite samples that do not depend on the batch, or a
``ValueError`` that names the argument at fault. A bounded number of examples runs in CI (each
example compiles anew); ``--hypothesis-profile=thorough`` (or HYPOTHESIS_PROFILE=thorough) runs more."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import jaxsample as js  # noqa: E402
from jaxsample.solvers import registry  # noqa: E402

settings.register_profile("ci", max_examples=8, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SOLVERS = registry.names(constructible=True, aliases=False)
#: the arguments a ValueError may name (each message starts with or contains one of them)
ARGUMENTS = ("ts", "t_start", "t_end", "num_steps", "noise", "key", "grid", "solver", "model")


def _mixture(dim):
    return js.GaussianMixture.random(jax.random.key(dim), dim=dim, num_components=3, std_range=(0.3, 0.8))


@given(name=st.sampled_from(SOLVERS), grid=st.sampled_from(sorted(js.grids.GRIDS)), steps=st.integers(1, 6),
       batch=st.integers(1, 4), dim=st.sampled_from([1, 3]), dtype=st.sampled_from(["float32", "bfloat16"]),
       t_start=st.floats(0.3, 1.0), t_end=st.floats(0.0, 0.35), path=st.sampled_from(["vp", "flow"]))
def test_sample_is_finite_and_batch_independent_or_a_named_error(name, grid, steps, batch, dim, dtype, t_start,
                                                                  t_end, path):
    entry = registry.get(name)
    if path == "flow" and not entry.on_flow:
        path = "vp"
    p = js.VPLinear() if path == "vp" else js.RectifiedFlow()
    model = _mixture(dim).model(p, "velocity" if path == "flow" else "eps")
    solver = entry.make()
    key = jax.random.key(5) if solver.is_stochastic else None
    noise = js.initial_noise(jax.random.key(1), (batch, dim)).astype(dtype)
    # start VP grids below t = 1 and flow grids above t = 0: an eps model is singular at alpha = 0
    t_start = min(t_start, 0.98) if path == "vp" else t_start
    t_end = max(t_end, 0.02)
    try:
        ts = js.get_grid(grid, p, steps, t_start=t_start, t_end=t_end)
        x = js.sample(model, solver, ts, noise, key=key)
    except ValueError as err:
        assert any(a in str(err) for a in ARGUMENTS), str(err)
        return
    assert x.shape == noise.shape and x.dtype == noise.dtype
    x = np.asarray(x, np.float32)
    assert np.all(np.isfinite(x)), (name, grid, steps)
    one = np.asarray(js.sample(model, solver, ts, noise[:1], key=None if key is None else js.sample_keys(key, batch)[:1]),
                     np.float32)
    tol = 1e-2 if dtype == "bfloat16" else 1e-4
    np.testing.assert_allclose(one, x[:1], rtol=tol, atol=tol)


@given(shape=st.lists(st.integers(0, 3), min_size=0, max_size=3), dtype=st.sampled_from(["float32", "int32", "bool"]),
       ts=st.lists(st.one_of(st.floats(-0.5, 1.5), st.just(float("nan"))), min_size=0, max_size=4))
def test_bad_noise_and_grids_are_named_value_errors(shape, dtype, ts):
    model = _mixture(2).model(js.VPLinear(), "eps")
    noise = jnp.zeros(tuple(shape) + (2,) if shape else (), dtype)
    good_ts = len(ts) >= 2 and all(np.isfinite(ts)) and all(a > b for a, b in zip(ts, ts[1:])) \
        and all(0.0 <= t <= 1.0 for t in ts)
    good_noise = dtype == "float32" and len(shape) == 1 and shape[0] >= 1
    try:
        x = js.sample(model, js.euler(), jnp.asarray(ts, jnp.float32), noise)
    except ValueError as err:
        assert not (good_ts and good_noise), str(err)
        assert ("ts" in str(err)) != good_ts or ("noise" in str(err)) != good_noise, str(err)
        return
    assert good_ts and good_noise and x.shape == noise.shape
