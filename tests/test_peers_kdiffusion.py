"""Equivalence with k-diffusion's samplers (crowsonkb/k-diffusion ``k_diffusion/sampling.py``).

Both sides get the same exact Gaussian-mixture denoiser ``D(x; sigma)`` (jaxsample's
``model.x0`` on the EDM path, wrapped as a torch function), the same sigmas and, for the
stochastic samplers, the same noise: k-diffusion's ``noise_sampler`` argument is fed the
noise that jaxsample's driver draws (step i, sample k: ``per_sample_normal`` of
``fold_in(fold_in(key, k), i)``; each of our solvers draws exactly once a step). For
``sample_heun`` with churn, which has no ``noise_sampler``, ``torch.randn_like`` is
patched for the call. Our grids never reach sigma = 0 (the EDM path has t_min = 0.002), so
k-diffusion is given our sigmas without the trailing 0 and every step is compared;
agreement is to 1e-4 relative in float32.

Installing the peer: k-diffusion's wheel depends on torchvision (and wandb, kornia, clip...),
and its ``k_diffusion/__init__.py`` imports all its submodules, ``utils`` among them, which
imports torchvision. ``k_diffusion/sampling.py`` itself needs only torch, scipy, torchsde,
torchdiffeq, tqdm and ``utils.append_dims``. So the package is installed without its
dependencies::

    pip install torch==2.13.0            # CPU build
    pip install --no-deps k-diffusion==0.1.1.post1 torchsde torchdiffeq trampoline
    pip install scipy tqdm

and :func:`_kdiffusion_sampling` loads ``sampling.py`` from the installed package directory
under a private package name whose ``utils`` holds just ``append_dims`` (copied verbatim
below), without running ``k_diffusion/__init__.py``. Where the full package imports (e.g.
with torchvision installed) it is used as is.
"""

import importlib
import importlib.util
import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import grids, models, paths
from jaxsample.sampling import sample, sample_keys
from jaxsample.solvers import runge_kutta
from jaxsample.solvers._base import per_sample_normal
from jaxsample.solvers import ddpm_ancestral, dpm_solver_pp_2m_sde, edm_stochastic_heun

pytestmark = pytest.mark.peer

RTOL = 1e-4
_PRIVATE = "_jaxsample_peer_k_diffusion"


def _append_dims(x, target_dims):
    """k_diffusion.utils.append_dims (verbatim)."""
    dims_to_append = target_dims - x.ndim
    if dims_to_append < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * dims_to_append]


def _kdiffusion_sampling():
    """``k_diffusion.sampling``, or its file loaded without the package ``__init__`` (see above)."""
    for dep in ("torch", "scipy", "torchsde", "torchdiffeq", "tqdm"):
        pytest.importorskip(dep)
    try:
        return importlib.import_module("k_diffusion.sampling")
    except ImportError:
        pass
    if _PRIVATE + ".sampling" in sys.modules:
        return sys.modules[_PRIVATE + ".sampling"]
    spec = importlib.util.find_spec("k_diffusion")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed")
    pkg_dir = list(spec.submodule_search_locations)[0]
    pkg = types.ModuleType(_PRIVATE)
    pkg.__path__ = [pkg_dir]
    utils = types.ModuleType(_PRIVATE + ".utils")
    utils.append_dims = _append_dims
    sys.modules[_PRIVATE], sys.modules[_PRIVATE + ".utils"] = pkg, utils
    pkg.utils = utils
    file_spec = importlib.util.spec_from_file_location(_PRIVATE + ".sampling", os.path.join(pkg_dir, "sampling.py"))
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[_PRIVATE + ".sampling"] = module
    file_spec.loader.exec_module(module)
    return module


def _exponential(name):
    """A factory from jaxsample.solvers, or skip if it is not there (yet)."""
    module = pytest.importorskip("jaxsample.solvers")
    if not hasattr(module, name):
        pytest.skip(f"jaxsample.solvers.{name} is not available")
    return getattr(module, name)


@pytest.fixture(scope="module")
def ks():
    return _kdiffusion_sampling()


@pytest.fixture(scope="module")
def setup():
    # Component stds >= 0.2: with sharper components float32 rounding differences between the two
    # implementations get amplified along a few trajectories (in float64 both agree to ~1e-8).
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3, std_range=(0.2, 0.6))
    model = gmm.model(paths.EDM(), "x0")
    ts = grids.edm(model.path, 12)
    noise = jax.random.normal(jax.random.key(1), (8, 4))
    return model, ts, noise


def _torch_denoiser(model):
    import torch

    def denoise(x, sigma):
        out = model.x0(jnp.asarray(x.numpy()), jnp.asarray(sigma.numpy()))
        return torch.from_numpy(np.array(out))

    return denoise


def _our_step_noises(key, noise, num_steps):
    """The noise our driver hands each step: per sample k, step i, fold_in(fold_in(key, k), i)."""
    keys = sample_keys(key, noise.shape[0])
    return [np.array(per_sample_normal(jax.vmap(jax.random.fold_in, (0, None))(keys, i), noise))
            for i in range(num_steps)]


class _FeedNoise:
    """A k-diffusion noise_sampler (or randn_like) returning our per-step noises in order."""

    def __init__(self, noises):
        self.noises, self.calls = list(noises), 0

    def __call__(self, *args):
        import torch

        out = torch.from_numpy(self.noises[self.calls])
        self.calls += 1
        return out


def _run_k(ks, fn, model, ts, noise, **kwargs):
    import torch

    sigmas = torch.from_numpy(np.array(ts))
    x = torch.from_numpy(np.array(noise)) * sigmas[0]
    return fn(_torch_denoiser(model), x, sigmas, disable=True, **kwargs).numpy()


def _assert_close(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    err = np.abs(ours - theirs).max() / np.abs(theirs).max()
    print(f"max relative difference {err:.2e}")
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * np.abs(theirs).max())


# ------------------------------------------------------------------ deterministic samplers


def test_sample_euler(ks, setup):
    model, ts, noise = setup
    _assert_close(sample(model, runge_kutta.euler(), ts, noise), _run_k(ks, ks.sample_euler, model, ts, noise))


def test_sample_heun(ks, setup):
    model, ts, noise = setup
    theirs = _run_k(ks, ks.sample_heun, model, ts, noise)
    _assert_close(sample(model, runge_kutta.heun(), ts, noise), theirs)
    _assert_close(sample(model, edm_stochastic_heun(s_churn=0.0), ts, noise, key=jax.random.key(0)), theirs)


def test_sample_dpm_2(ks, setup):
    """k-diffusion's DPM-2 (midpoint in log sigma) is DPM-Solver-2 (noise prediction, r1 = 1/2) on EDM."""
    model, ts, noise = setup
    ours = sample(model, _exponential("dpm_solver")(2), ts, noise)
    _assert_close(ours, _run_k(ks, ks.sample_dpm_2, model, ts, noise))


def test_sample_dpmpp_2m(ks, setup):
    model, ts, noise = setup
    ours = sample(model, _exponential("dpm_solver_pp_2m")(lower_order_final=False), ts, noise)
    theirs = _run_k(ks, ks.sample_dpmpp_2m, model, ts, noise)
    _assert_close(ours, theirs)
    _assert_close(sample(model, dpm_solver_pp_2m_sde(eta=0.0), ts, noise, key=jax.random.key(0)), theirs)


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2", "dpmpp_2m", "lms"])
def test_final_step_to_sigma_zero(ks, setup, name):
    """k-diffusion's own sigma list ends with 0 and its last step is the denoiser's output; ours is
    the same grid without the 0 and ``final_x0=True`` (no hand-made final step)."""
    import torch

    model, ts, noise = setup
    ours_solver = {"euler": runge_kutta.euler(), "heun": runge_kutta.heun(),
                   "dpm_2": _exponential("dpm_solver")(2),
                   "dpmpp_2m": _exponential("dpm_solver_pp_2m")(lower_order_final=False),
                   "lms": _exponential("deis")(4, "rhoab")}[name]
    sigmas = torch.from_numpy(np.append(np.array(ts), 0.0).astype(np.float32))
    x = torch.from_numpy(np.array(noise)) * sigmas[0]
    theirs = getattr(ks, f"sample_{name}")(_torch_denoiser(model), x, sigmas, disable=True).numpy()
    assert np.isfinite(theirs).all()
    _assert_close(sample(model, ours_solver, ts, noise, final_x0=True), theirs)


# ------------------------------------------------------------------ stochastic samplers


@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_sample_euler_ancestral(ks, setup, eta):
    model, ts, noise = setup
    key = jax.random.key(2)
    ours = sample(model, ddpm_ancestral(eta=eta), ts, noise, key=key)
    feed = _FeedNoise(_our_step_noises(key, noise, len(ts) - 1))
    theirs = _run_k(ks, ks.sample_euler_ancestral, model, ts, noise, eta=eta, noise_sampler=feed)
    assert feed.calls == len(ts) - 1
    _assert_close(ours, theirs)


@pytest.mark.parametrize("eta,solver_type,s_noise", [(1.0, "midpoint", 1.0), (1.0, "heun", 1.0),
                                                     (0.5, "midpoint", 1.0), (0.7, "heun", 0.9)])
def test_sample_dpmpp_2m_sde(ks, setup, eta, solver_type, s_noise):
    model, ts, noise = setup
    key = jax.random.key(3)
    ours = sample(model, dpm_solver_pp_2m_sde(eta=eta, solver_type=solver_type, s_noise=s_noise), ts, noise,
                  key=key)
    feed = _FeedNoise(_our_step_noises(key, noise, len(ts) - 1))
    theirs = _run_k(ks, ks.sample_dpmpp_2m_sde, model, ts, noise, eta=eta, s_noise=s_noise,
                    solver_type=solver_type, noise_sampler=feed)
    assert feed.calls == len(ts) - 1
    _assert_close(ours, theirs)


def _churn_case(ks, model, ts, noise, monkeypatch):
    import torch

    key = jax.random.key(4)
    s_churn, s_tmin, s_tmax, s_noise = 20.0, 0.05, 30.0, 1.003
    ours = sample(model, edm_stochastic_heun(s_churn, s_tmin, s_tmax, s_noise), ts, noise, key=key)
    feed = _FeedNoise(_our_step_noises(key, noise, len(ts) - 1))
    with monkeypatch.context() as patch:
        patch.setattr(torch, "randn_like", feed)
        theirs = _run_k(ks, ks.sample_heun, model, ts, noise, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax,
                        s_noise=s_noise)
    assert feed.calls == len(ts) - 1
    return ours, theirs


def test_sample_heun_with_churn(ks, setup, monkeypatch):
    """EDM Algorithm 2 with churn; k-diffusion draws one ``torch.randn_like`` a step, patched here."""
    model, ts, noise = setup
    _assert_close(*_churn_case(ks, model, ts, noise, monkeypatch))


def test_sample_heun_with_churn_float64(ks, x64, monkeypatch):
    """The same in float64 on both sides: the algorithms agree to rounding, not just to 1e-4."""
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    gmm = models.GaussianMixture(gmm.means.astype(jnp.float64), gmm.stds.astype(jnp.float64),
                                 jnp.exp(gmm.log_weights).astype(jnp.float64))
    model = gmm.model(paths.EDM(), "x0")
    ts = grids.edm(model.path, 12).astype(jnp.float64)
    noise = jax.random.normal(jax.random.key(1), (8, 4), jnp.float64)
    ours, theirs = _churn_case(ks, model, ts, noise, monkeypatch)
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-7 * np.abs(theirs).max())
