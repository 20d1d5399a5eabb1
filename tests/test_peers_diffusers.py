"""Equivalence with diffusers' schedulers (a trusted peer), fed the same exact model.

The model is an exact Gaussian mixture on the DiscreteDDPM path (1000 linear betas
1e-4..0.02). diffusers' integer timestep ``k`` is our time ``t = (k + 1) / 1000`` (its
``alphas_cumprod[k]`` is our ``alpha(t)^2``), and its final ``sigma_min`` (``alphas_cumprod[0]``)
is our ``t_min = 1/1000``. diffusers computes ``alphas_cumprod`` by a float32 cumulative
product; we hand it the same table in float64 so that only its float32 ``sigmas`` remain
as a difference (about 1e-7 relative). Both sides then run in float64; the stated
tolerance is 1e-5 relative to the largest sample value (float32-level agreement). Observed
(diffusers 0.42.1): DDIM 7e-8, DPM-Solver++ 2M/3M 1e-7..8e-7, UniPC bh1/bh2 7e-8..1.3e-7,
DEIS log-rho 4e-7..4e-6.

Not compared: diffusers' ``algorithm_type='dpmsolver'`` (noise-prediction *multistep*
DPM-Solver): jaxsample implements the noise-prediction DPM-Solver as a singlestep method
only (as in the DPM-Solver paper), so there is no counterpart to compare with.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import models, paths, sample
from jaxsample import solvers as E

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.peer

RTOL = 1e-5


def _setup():
    path = paths.DiscreteDDPM()
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=6, num_components=3, std_range=(0.1, 0.5))
    gmm = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), gmm)
    model = gmm.model(path, "eps")
    noise = jax.random.normal(jax.random.key(1), (16, 6), jnp.float64)
    _, log_alpha, _ = path._tables()
    return path, model, noise, np.exp(2.0 * log_alpha)


def _run_diffusers(scheduler, model, x_init, acp, num_steps):
    scheduler.alphas_cumprod = torch.from_numpy(acp)
    scheduler.set_timesteps(num_steps)
    x = torch.from_numpy(np.array(x_init))
    for k in scheduler.timesteps:
        t = jnp.asarray((int(k) + 1) / 1000.0, jnp.float64)
        eps = model.eps(jnp.asarray(x.numpy()), t)
        x = scheduler.step(torch.from_numpy(np.array(eps)), k, x).prev_sample
    ts = np.concatenate([(scheduler.timesteps.numpy().astype(np.float64) + 1.0) / 1000.0, [1.0 / 1000.0]])
    return x.numpy(), ts


def _compare(x64, make_scheduler, solver, num_steps, final_t=None):
    path, model, noise, acp = _setup()
    sched = make_scheduler()
    # diffusers starts from x = sigma(t_0) * noise at its first timestep, as `sample` does.
    sched_probe = make_scheduler()
    sched_probe.set_timesteps(num_steps)
    t0 = (int(sched_probe.timesteps[0]) + 1) / 1000.0
    x_init = path.sigma(jnp.asarray(t0, jnp.float64)) * noise
    ours_ref, ts = _run_diffusers(sched, model, x_init, acp, num_steps)
    assert np.all(np.diff(ts) < 0)
    ours = np.asarray(sample(model, solver, jnp.asarray(ts), noise))
    err = np.max(np.abs(ours - ours_ref)) / np.max(np.abs(ours_ref))
    assert err < RTOL, f"relative max deviation {err:.2e}"
    return err


@pytest.mark.parametrize("num_steps", [8, 20])
@pytest.mark.parametrize("order", [2, 3])
def test_dpm_solver_pp_multistep(x64, order, num_steps):
    """DPMSolverMultistepScheduler(dpmsolver++, midpoint) == dpm_solver_pp_{2,3}m with
    diffusers' lower_order_final rule (grids of fewer than 15 steps)."""
    def make():
        return diffusers.DPMSolverMultistepScheduler(
            solver_order=order, algorithm_type="dpmsolver++", solver_type="midpoint",
            final_sigmas_type="sigma_min", timestep_spacing="linspace", lower_order_final=True)
    solver = (E.dpm_solver_pp_2m if order == 2 else E.dpm_solver_pp_3m)(
        lower_order_final=True, lower_order_final_below=15)
    _compare(x64, make, solver, num_steps)


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order,num_steps", [(2, 8), (3, 8), (3, 20)])
def test_unipc(x64, variant, order, num_steps):
    """UniPCMultistepScheduler (predict_x0, corrector on, lower_order_final always) == unipc."""
    def make():
        return diffusers.UniPCMultistepScheduler(
            solver_order=order, solver_type=variant, predict_x0=True, lower_order_final=True,
            final_sigmas_type="sigma_min", timestep_spacing="linspace")
    _compare(x64, make, E.unipc(order, variant), num_steps)


@pytest.mark.parametrize("order,num_steps", [(2, 8), (3, 8), (3, 20)])
def test_deis_logrho(x64, order, num_steps):
    """DEISMultistepScheduler is DEIS with the Lagrange basis in log rho (closed-form
    integrals there, Gauss-Legendre here) == deis(order, 'logrho', lower_order_final below 15)."""
    def make():
        return diffusers.DEISMultistepScheduler(solver_order=order, timestep_spacing="linspace",
                                                lower_order_final=True)
    _compare(x64, make, E.deis(order, "logrho", lower_order_final=True, lower_order_final_below=15), num_steps)


@pytest.mark.parametrize("num_steps", [10, 25])
def test_ddim(x64, num_steps):
    """DDIMScheduler (eta = 0, no clipping, 'leading' spacing with steps_offset = 1 so that
    its final step lands on alphas_cumprod[0]) == ddim()."""
    def make():
        return diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                       timestep_spacing="leading")
    _compare(x64, make, E.ddim(), num_steps)


def test_deis_tab_differs_from_logrho(x64):
    """The peer comparison can fail: tAB-DEIS (Lagrange in t) is a different method from
    diffusers' log-rho DEIS, and differs from it by far more than the tolerance."""
    def make():
        return diffusers.DEISMultistepScheduler(solver_order=3, timestep_spacing="linspace",
                                                lower_order_final=True)
    with pytest.raises(AssertionError, match="relative max deviation"):
        _compare(x64, make, E.deis(3, "tab", lower_order_final=True, lower_order_final_below=15), 8)


@pytest.mark.parametrize("percentile,max_value", [(0.995, 1.0), (0.9, 1.5), (0.8, float("inf"))])
def test_dynamic_thresholding_is_diffusers(percentile, max_value):
    """models.dynamic_threshold equals DDPMScheduler._threshold_sample on the x0 prediction
    (float32, per sample over the flattened image)."""
    from diffusers import DDPMScheduler

    x0 = 1.7 * np.random.default_rng(0).standard_normal((5, 3, 4, 4)).astype(np.float32)
    x0[0] *= 0.3  # a sample whose quantile is below 1: clamped up to s = 1
    sched = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=percentile, sample_max_value=max_value)
    want = sched._threshold_sample(torch.from_numpy(x0.copy())).numpy()
    raw = models.Model(lambda x, t: jnp.asarray(x0), paths.VPCosine(), "x0")
    got = models.dynamic_threshold(raw, percentile, max_value).x0(jnp.zeros(x0.shape), 0.5)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-6)
    clipped = models.clip_x0(raw).x0(jnp.zeros(x0.shape), 0.5)
    np.testing.assert_array_equal(np.asarray(clipped), np.clip(x0, -1, 1))
