"""UniC as a plug-in corrector (solvers.unic): exact reductions to UniPC, its gain, NFE and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import grids, models, paths, sample
from jaxsample import solvers as S
from jaxsample.sampling import count_model_calls, reference_sample


def _mixture_model(prediction="eps", path=None, dtype=jnp.float64):
    gmm = models.GaussianMixture.random(jax.random.key(2), dim=4, num_components=3, std_range=(0.3, 0.8))
    gmm = jax.tree_util.tree_map(lambda a: a.astype(dtype), gmm)
    return gmm.model(path or paths.VPLinear(), prediction)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_on_ddim_it_is_unipc_order_1(x64, variant, prediction):
    """DDIM is UniP-1: UniC-1 on it is UniPC(1) to float64 rounding (1e-12)."""
    model = _mixture_model(prediction)
    noise = jax.random.normal(jax.random.key(3), (6, 4), jnp.float64)
    ts = grids.logsnr_uniform(model.path, 7, t_start=0.95, t_end=0.02)
    ours = sample(model, S.unic(S.ddim(), 1, variant, reuse="x0"), ts, noise)
    theirs = sample(model, S.unipc(1, variant), ts, noise)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lower_order_final", [True, False])
def test_on_dpm_solver_pp_2m_it_is_unipc_bh2_order_2(x64, lower_order_final):
    """UniP-2 with B(h) = e^h - 1 is DPM-Solver++(2M): UniC-2 bh2 on it is UniPC(2, 'bh2')."""
    model = _mixture_model("eps")
    noise = jax.random.normal(jax.random.key(4), (6, 4), jnp.float64)
    ts = grids.power(model.path, 8, t_end=0.02)
    pred = S.dpm_solver_pp_2m(lower_order_final=lower_order_final, lower_order_final_below=None)
    ours = sample(model, S.unic(pred, 2, "bh2", reuse="x0", lower_order_final=lower_order_final), ts, noise)
    theirs = sample(model, S.unipc(2, "bh2", lower_order_final=lower_order_final), ts, noise)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    # and the corrector is really there: the bare predictor differs
    assert float(jnp.max(jnp.abs(sample(model, pred, ts, noise) - theirs))) > 1e-4


@pytest.mark.parametrize("make", [lambda: S.ddim(), lambda: S.dpm_solver_pp_3m(), lambda: S.deis(3)],
                         ids=["ddim", "dpm_solver_pp_3m", "deis_tab_3"])
def test_unic_lowers_the_error_of_multistep_predictors(x64, make):
    """At NFE 5, 6 and 10 on a VP mixture, UniC (bh2, its default order, keeping eps) lowers the RMSE
    against the exact ODE solution (Dopri8, rtol 1e-10) of DDIM, DPM-Solver++(3M) and DEIS-3 by at
    least 25% (measured: 40-60%)."""
    model = _mixture_model("eps")
    noise = jax.random.normal(jax.random.key(5), (32, 4), jnp.float64)
    for n in (5, 6, 10):
        ts = grids.logsnr_uniform(model.path, n, t_start=0.99, t_end=0.02)
        ref = reference_sample(model, noise, t_start=ts[0], t_end=ts[-1], rtol=1e-10, atol=1e-10)
        err = lambda s: float(jnp.sqrt(jnp.mean((sample(model, s, ts, noise) - ref) ** 2)))  # noqa: E731
        plain, corrected = err(make()), err(S.unic(make()))
        assert corrected < 0.75 * plain, (n, plain, corrected)


def test_raw_reuse_is_the_reuse_of_the_models_own_prediction(x64):
    """``reuse='raw'`` (diffusers' solver_p) hands DDIM the model's own output: for an x0 model it
    is ``reuse='x0'``, for an eps model ``reuse='eps'``, and the two differ."""
    noise = jax.random.normal(jax.random.key(6), (6, 4), jnp.float64)
    for prediction, same in (("x0", True), ("eps", False)):
        model = _mixture_model(prediction)
        ts = grids.logsnr_uniform(model.path, 6, t_start=0.95, t_end=0.02)
        a = sample(model, S.unic(S.ddim(), 1, reuse="x0"), ts, noise)
        b = sample(model, S.unic(S.ddim(), 1, reuse="raw"), ts, noise)
        c = sample(model, S.unic(S.ddim(), 1, reuse="eps"), ts, noise)
        assert (float(jnp.max(jnp.abs(a - b))) < 1e-12) == same
        assert (float(jnp.max(jnp.abs(c - b))) < 1e-12) != same


def test_one_model_call_a_step():
    model = _mixture_model("eps", dtype=jnp.float32)
    for n in (3, 6):
        ts = grids.logsnr_uniform(model.path, n, t_start=0.95, t_end=0.05)
        solver = S.unic(S.dpm_solver_pp_3m())
        assert count_model_calls(model, solver, ts, jnp.ones((2, 4))) == n == solver.nfe(n)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="predictor must be a solver that calls the model once"):
        S.unic(S.heun())
    with pytest.raises(ValueError, match="predictor must be a jaxsample solver"):
        S.unic("ddim")
    with pytest.raises(ValueError, match="order must be one of"):
        S.unic(S.ddim(), 4)
    with pytest.raises(ValueError, match="variant must be one of"):
        S.unic(S.ddim(), 1, "bh3")
    with pytest.raises(ValueError, match="reuse must be one of"):
        S.unic(S.ddim(), reuse="v")
    assert S.unic(S.ipndm()).order == 4 and S.unic(S.ddim()).order == 2
