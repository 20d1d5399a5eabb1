"""The recipes of jaxsample.peers against the peers themselves, with the peers' default settings.

Each case runs the peer's own loop (diffusers: ``set_timesteps`` and ``step``; k-diffusion:
``sample_<name>`` on ``get_sigmas_karras``) from its own initial sample, and jaxsample through
the recipe (``recipe.model(network)``, ``recipe.sample(model, x_init)``), on the same network: an
exact Gaussian mixture written once in the peer's convention (diffusers: noise prediction at the
integer timestep; k-diffusion: the denoiser ``D(x, sigma)``). Float32 on both sides; stated
tolerance: 1e-4 of the largest output value. ``docs/coming_from_peers.md`` tabulates the measured
differences (``python -m tests.test_peers_recipes``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import models, paths, peers

pytestmark = pytest.mark.peer

RTOL = 1e-4
STEPS = (4, 6, 10)

# name -> (scheduler class, config overrides): the peers' defaults unless a setting is needed.
DIFFUSERS_CASES = {
    "DDIM (clip_sample=False)": ("DDIMScheduler", dict(clip_sample=False)),
    "DPM-Solver++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM-Solver++ 2M, scaled_linear (SD)": ("DPMSolverMultistepScheduler",
                                           dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    "DPM-Solver++ 3M (sigma_min)": ("DPMSolverMultistepScheduler", dict(solver_order=3,
                                                                         final_sigmas_type="sigma_min")),
    "UniPC bh2": ("UniPCMultistepScheduler", {}),
    # diffusers 0.42.1's bh1 with its default final_sigmas_type="zero" returns NaN (its B(h) = -h at h = inf)
    "UniPC bh1 (sigma_min)": ("UniPCMultistepScheduler", dict(solver_type="bh1", final_sigmas_type="sigma_min")),
    "UniPC 3 (sigma_min)": ("UniPCMultistepScheduler", dict(solver_order=3, final_sigmas_type="sigma_min")),
    "DEIS": ("DEISMultistepScheduler", {}),
    "DEIS 3": ("DEISMultistepScheduler", dict(solver_order=3)),
    "DPM-Solver++ 2M, v prediction": ("DPMSolverMultistepScheduler", dict(prediction_type="v_prediction")),
}
K_DIFFUSION_CASES = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m")


def _gmm():
    return models.GaussianMixture.random(jax.random.key(0), dim=6, num_components=3, std_range=(0.2, 0.5))


def _diffusers_case(label, num_steps):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    cls, overrides = DIFFUSERS_CASES[label]
    scheduler = getattr(diffusers, cls)(**overrides)
    recipe = peers.from_diffusers(scheduler, num_steps)
    exact = _gmm().model(recipe.path, recipe.prediction)

    def network(x, k):  # the pipeline's network: prediction at diffusers' timestep k
        return exact(x, (jnp.asarray(k, jnp.float32) + 1.0) / scheduler.config.num_train_timesteps)

    noise = np.asarray(jax.random.normal(jax.random.key(1), (16, 6)))
    x = torch.from_numpy(noise) * scheduler.init_noise_sigma
    scheduler.set_timesteps(num_steps)
    for k in scheduler.timesteps:
        out = network(jnp.asarray(x.numpy()), float(k))
        x = scheduler.step(torch.from_numpy(np.array(out)), k, x).prev_sample
    theirs = x.numpy()
    ours = np.asarray(recipe.sample(recipe.model(network), noise * scheduler.init_noise_sigma))
    return ours, theirs


def _kdiffusion_case(name, num_steps):
    torch = pytest.importorskip("torch")
    from tests.test_peers_kdiffusion import _kdiffusion_sampling

    ks = _kdiffusion_sampling()
    sigmas = ks.get_sigmas_karras(num_steps, 0.002, 80.0)  # k-diffusion's own list, ending with 0
    recipe = peers.from_k_diffusion(name, sigmas)
    exact = _gmm().model(paths.EDM(), "x0")

    def denoiser(x, sigma):
        return exact.x0(x, sigma)

    noise = np.asarray(jax.random.normal(jax.random.key(1), (16, 6)))
    x = torch.from_numpy(noise) * sigmas[0]

    def torch_denoiser(x, sigma):
        return torch.from_numpy(np.array(denoiser(jnp.asarray(x.numpy()), jnp.asarray(sigma.numpy()))))

    theirs = getattr(ks, f"sample_{name}")(torch_denoiser, x, sigmas, disable=True).numpy()
    ours = np.asarray(recipe.sample(recipe.model(denoiser), x.numpy()))
    return ours, theirs


def _relative(ours, theirs):
    assert np.isfinite(theirs).all() and np.isfinite(ours).all()
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


@pytest.mark.parametrize("num_steps", STEPS)
@pytest.mark.parametrize("label", sorted(DIFFUSERS_CASES))
def test_diffusers_recipe(label, num_steps):
    err = _relative(*_diffusers_case(label, num_steps))
    assert err < RTOL, f"{label} at {num_steps} steps: relative max deviation {err:.2e}"


@pytest.mark.parametrize("num_steps", STEPS)
@pytest.mark.parametrize("name", K_DIFFUSION_CASES)
def test_k_diffusion_recipe(name, num_steps):
    err = _relative(*_kdiffusion_case(name, num_steps))
    assert err < RTOL, f"sample_{name} at {num_steps} steps: relative max deviation {err:.2e}"


def test_unreproduced_settings_are_named():
    diffusers = pytest.importorskip("diffusers")
    with pytest.raises(ValueError, match="clip_sample"):
        peers.from_diffusers(diffusers.DDIMScheduler(), 10)
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        peers.from_diffusers(diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True), 10)
    with pytest.raises(ValueError, match="sigma_min"):
        peers.from_diffusers(diffusers.DPMSolverMultistepScheduler(solver_order=3), 10)
    with pytest.raises(ValueError, match="beta_schedule"):
        peers.from_diffusers(diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False), 10)
    with pytest.raises(ValueError, match="scheduler must be one of"):
        peers.from_diffusers(diffusers.EulerDiscreteScheduler(), 10)
    with pytest.raises(ValueError, match="num_inference_steps"):
        peers.from_diffusers(diffusers.DPMSolverMultistepScheduler(), 1)
    with pytest.raises(ValueError, match="sampler must be one of"):
        peers.from_k_diffusion("dpmpp_sde", [80.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="strictly decreasing"):
        peers.from_k_diffusion("euler", [1.0, 80.0, 0.0])


def test_this_page():
    """docs/coming_from_peers.md: its examples run against the peers and give their numbers."""
    import doctest
    import os

    pytest.importorskip("diffusers")
    page = os.path.join(os.path.dirname(__file__), "..", "docs", "coming_from_peers.md")
    result = doctest.testfile(page, module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


if __name__ == "__main__":  # the table of docs/coming_from_peers.md
    print("| peer sampler | " + " | ".join(f"{n} steps" for n in STEPS) + " |")
    print("|---|" + "---|" * len(STEPS))
    for label in sorted(DIFFUSERS_CASES):
        print(f"| diffusers {label} | " + " | ".join(f"{_relative(*_diffusers_case(label, n)):.1e}" for n in STEPS)
              + " |")
    for name in K_DIFFUSION_CASES:
        print(f"| k-diffusion sample_{name} | " + " | ".join(f"{_relative(*_kdiffusion_case(name, n)):.1e}"
                                                               for n in STEPS) + " |")
