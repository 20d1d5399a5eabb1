"""Coming from diffusers or k-diffusion: the jaxsample call that gives the same numbers.

:func:`from_k_diffusion` takes a k-diffusion sampler name and its ``sigmas`` (with or without the
trailing 0), :func:`from_diffusers` a diffusers scheduler and a number of inference steps; both
return a :class:`Recipe`: the path, the solver, the time grid, whether to end with the step to
sigma = 0 (``final_x0``), how to wrap the peer's network as a :class:`~jaxsample.models.Model`
(:meth:`Recipe.model`) and how to start from the peer's initial sample (:meth:`Recipe.sample`).
The agreement of every recipe with its peer is tested in ``tests/test_peers_recipes.py`` and
tabulated in ``docs/coming_from_peers.md``.

Example (k-diffusion's ``sample_dpmpp_2m`` on Karras sigmas, with an EDM denoiser ``D(x, sigma)``):
    >>> import jax, numpy as np
    >>> import jaxsample as js
    >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    >>> denoiser = lambda x, sigma: gmm.model(js.EDM(), "x0").x0(x, sigma)
    >>> sigmas = np.append(js.edm(js.EDM(), 10), 0.0)      # k-diffusion's get_sigmas_karras(11, 0.002, 80)
    >>> recipe = js.peers.from_k_diffusion("dpmpp_2m", sigmas)
    >>> model = recipe.model(denoiser)
    >>> x = recipe.sample(model, 80.0 * jax.random.normal(jax.random.key(1), (8, 4)))  # k-diffusion's x
    >>> recipe.final_x0, x.shape
    (True, (8, 4))
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from jaxsample import grids, models, paths, solvers
from jaxsample.sampling import sample as _sample

__all__ = ["Recipe", "from_k_diffusion", "from_diffusers", "K_DIFFUSION_SAMPLERS", "DIFFUSERS_SCHEDULERS"]


class Recipe(NamedTuple):
    """How to reproduce a peer's sampler with jaxsample.

    Attributes:
        path: the path the network is read on (:class:`~jaxsample.paths.EDM` for a k-diffusion
            denoiser, :class:`~jaxsample.paths.DiscreteDDPM` with the scheduler's betas for diffusers).
        prediction: what the peer's network predicts, in jaxsample's names.
        solver: the solver.
        ts: the time grid (without a final sigma = 0; see ``final_x0``).
        final_x0: end with the x0 prediction, the peer's step to sigma = 0.
        time_to_peer: maps jaxsample's time ``t`` to the time argument the peer's network takes
            (``sigma`` for k-diffusion, the integer-valued timestep ``1000 t - 1`` for diffusers).
        init_scale: the peer's initial sample is ``init_scale * noise`` (k-diffusion: ``sigmas[0]``;
            diffusers: its ``init_noise_sigma``).
        x0_transform: a model wrapper the peer applies to x0 (diffusers' ``thresholding``), or None.
    """

    path: Any
    prediction: str
    solver: Any
    ts: Any
    final_x0: bool
    time_to_peer: Callable
    init_scale: float = 1.0
    x0_transform: Optional[Callable] = None

    def model(self, network: Callable) -> models.Model:
        """The peer's network ``network(x, peer_time, **cond)`` as a jaxsample model on this recipe's path."""
        fn = _PeerTime(network, self.time_to_peer)
        model = models.Model(fn, self.path, self.prediction)
        return self.x0_transform(model) if self.x0_transform is not None else model

    def sample(self, model: models.Model, x_init, **kwargs):
        """Sample from the peer's initial sample ``x_init`` (the array the peer's loop starts from:
        ``init_scale * noise``); keyword arguments go to :func:`~jaxsample.sample`."""
        x_init = jnp.asarray(x_init)
        scale = self.path.sigma(jnp.asarray(self.ts[0], x_init.dtype))  # sample starts at sigma(ts[0]) * noise
        return _sample(model, self.solver, self.ts, x_init / scale, final_x0=self.final_x0, **kwargs)


class _PeerTime:
    def __init__(self, network, time_to_peer):
        self.network, self.time_to_peer = network, time_to_peer

    def __call__(self, x, t, **cond):
        return self.network(x, self.time_to_peer(t), **cond)


# ----------------------------------------------------------------------------- k-diffusion

def _kd_solver(name, eta, s_noise, solver_type, s_churn, s_tmin, s_tmax):
    if name == "heun" and s_churn:
        return solvers.edm_stochastic_heun(s_churn, s_tmin, s_tmax, s_noise)
    return {
        "euler": lambda: solvers.euler(),
        "heun": lambda: solvers.heun(),
        "dpm_2": lambda: solvers.dpm_solver(2),
        "lms": lambda: solvers.deis(4, "rhoab"),
        "dpmpp_2m": lambda: solvers.dpm_solver_pp_2m(lower_order_final=False),
        "euler_ancestral": lambda: solvers.ddpm_ancestral(eta=eta),
        "dpmpp_2m_sde": lambda: solvers.dpm_solver_pp_2m_sde(eta=eta, solver_type=solver_type, s_noise=s_noise),
    }[name]()


#: The k-diffusion samplers :func:`from_k_diffusion` maps (``sample_<name>``).
K_DIFFUSION_SAMPLERS = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "euler_ancestral", "dpmpp_2m_sde")


def from_k_diffusion(sampler: str, sigmas, *, eta: float = 1.0, s_noise: float = 1.0, solver_type: str = "midpoint",
                     s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf")) -> Recipe:
    """The recipe for k-diffusion's ``sample_<sampler>(model, x, sigmas, ...)``.

    The network is k-diffusion's denoiser ``D(x, sigma)`` (its ``model``), read on the EDM path
    (t = sigma) as an x0 prediction. A trailing 0 in ``sigmas`` becomes ``final_x0=True``.
    Deterministic samplers give k-diffusion's numbers to float32 rounding; the stochastic ones
    (``euler_ancestral``, ``dpmpp_2m_sde``, ``heun`` with ``s_churn``) draw their noise from
    jaxsample's keys, so they agree in distribution, and exactly when k-diffusion is fed the same
    noise (``noise_sampler``; see ``tests/test_peers_kdiffusion.py``). ``lms`` is k-diffusion's
    order 4.

    Args:
        sampler: one of :data:`K_DIFFUSION_SAMPLERS`.
        sigmas: decreasing noise levels, as k-diffusion's ``get_sigmas_*`` return them (a torch
            tensor, numpy array or list), with or without the final 0.
        eta, s_noise, solver_type, s_churn, s_tmin, s_tmax: the sampler's own arguments.
    """
    if sampler not in K_DIFFUSION_SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(K_DIFFUSION_SAMPLERS)}, got {sampler!r}")
    s = _as_numpy(sigmas, "sigmas")
    final = bool(s[-1] == 0)
    path = paths.EDM()
    ts = grids.from_sigmas(path, s[:-1] if final else s)
    solver = _kd_solver(sampler, eta, s_noise, solver_type, s_churn, s_tmin, s_tmax)
    return Recipe(path, "x0", solver, ts, final, lambda t: t, init_scale=float(s[0]))


# ----------------------------------------------------------------------------- diffusers

#: The diffusers schedulers :func:`from_diffusers` maps.
DIFFUSERS_SCHEDULERS = ("DDIMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler",
                        "DEISMultistepScheduler")
_PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


def from_diffusers(scheduler, num_inference_steps: int) -> Recipe:
    """The recipe for a diffusers scheduler (one of :data:`DIFFUSERS_SCHEDULERS`) at
    ``num_inference_steps``, with the scheduler's own configuration (its ``set_timesteps`` is
    called here for the timesteps).

    The network is the one the pipeline calls, ``network(x, timestep)``: :meth:`Recipe.model`
    feeds it diffusers' timestep ``k = 1000 t - 1`` (continuous between the integers). The path
    is :class:`~jaxsample.paths.DiscreteDDPM` with the scheduler's ``beta_start``, ``beta_end``,
    ``beta_schedule`` and ``num_train_timesteps``; the start is diffusers' ``init_noise_sigma *
    noise`` (:meth:`Recipe.sample`); ``final_sigmas_type="zero"`` (and DDIM's ``set_alpha_to_one``)
    is ``final_x0=True``.

    Raises:
        ValueError: for a configuration jaxsample does not reproduce, naming the setting: other
            beta schedules, Karras / exponential / beta sigmas, DDIM's ``clip_sample`` or
            ``thresholding`` (diffusers' DDIM keeps the unclipped noise prediction) and ``eta``,
            noise-prediction multistep DPM-Solver (``algorithm_type="dpmsolver"``; jaxsample has
            the singlestep one), and order-3 multistep with a final step to sigma = 0 under 15
            steps (diffusers lowers the order of the step before it, which jaxsample's
            ``lower_order_final`` does not count).
    """
    name = type(scheduler).__name__
    if name not in DIFFUSERS_SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(DIFFUSERS_SCHEDULERS)}, got {name}")
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)) \
            or num_inference_steps < 2:
        raise ValueError(f"num_inference_steps must be an int >= 2, got {num_inference_steps!r}")
    c = dict(scheduler.config)
    unsupported = [f"{k}={c[k]!r}" for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                                            "use_lu_lambdas", "use_flow_sigmas", "thresholding")
                   if c.get(k) and not (k == "thresholding" and name != "DDIMScheduler")]
    if c.get("beta_schedule", "linear") not in ("linear", "scaled_linear"):
        unsupported.append(f"beta_schedule={c['beta_schedule']!r}")
    if c.get("trained_betas") is not None:
        unsupported.append("trained_betas")
    if c.get("prediction_type", "epsilon") not in _PREDICTIONS:
        unsupported.append(f"prediction_type={c['prediction_type']!r}")
    if name == "DDIMScheduler" and c.get("clip_sample", True):
        unsupported.append("clip_sample=True (pass clip_sample=False; diffusers' DDIM clips x0 but keeps the "
                           "unclipped noise prediction)")
    if unsupported:
        raise ValueError(f"{name} with {', '.join(unsupported)} is not reproduced by a jaxsample recipe")
    n_train = int(c.get("num_train_timesteps", 1000))
    path = paths.DiscreteDDPM(n_train, float(c["beta_start"]), float(c["beta_end"]), c.get("beta_schedule", "linear"))
    scheduler.set_timesteps(int(num_inference_steps))
    ks = np.asarray(scheduler.timesteps, np.float64)
    ts = (ks + 1.0) / n_train
    n = len(ts)
    if name == "DDIMScheduler":
        final = bool(c.get("set_alpha_to_one", True))
        solver = solvers.ddim()
    else:
        final = c.get("final_sigmas_type", "sigma_min") == "zero"  # DEIS has no such setting: sigma_min
        order = int(c.get("solver_order", 2))
        small = n < 15  # diffusers' lower_order_final applies to grids of fewer than 15 steps
        if final and order >= 3 and (name == "UniPCMultistepScheduler" or small):
            raise ValueError(f"{name} with solver_order={order}, final_sigmas_type='zero' and {n} steps: diffusers "
                             f"lowers the order of the step before the final one, which jaxsample's lower_order_final "
                             f"does not reproduce; pass final_sigmas_type='sigma_min'")
        lof = dict(lower_order_final=False) if final else dict(lower_order_final=bool(c.get("lower_order_final", True)))
        if name == "DPMSolverMultistepScheduler":
            if c.get("algorithm_type", "dpmsolver++") != "dpmsolver++":
                raise ValueError(f"{name} with algorithm_type={c['algorithm_type']!r} is not reproduced (jaxsample has "
                                 f"the data-prediction multistep DPM-Solver++ only)")
            if c.get("solver_type", "midpoint") != "midpoint" or order not in (2, 3) or c.get("euler_at_final"):
                raise ValueError(f"{name} with solver_type={c.get('solver_type')!r}, solver_order={order}, "
                                 f"euler_at_final={c.get('euler_at_final')!r} is not reproduced (midpoint, order 2 "
                                 f"or 3)")
            make = solvers.dpm_solver_pp_2m if order == 2 else solvers.dpm_solver_pp_3m
            solver = make(**lof, **({} if final else dict(lower_order_final_below=15)))
        elif name == "UniPCMultistepScheduler":
            if not c.get("predict_x0", True) or c.get("disable_corrector"):
                raise ValueError(f"{name} with predict_x0=False or disable_corrector is not reproduced")
            solver = solvers.unipc(order, c.get("solver_type", "bh2"), **lof)
        else:  # DEIS
            solver = solvers.deis(order, "logrho", **lof, **({} if final else dict(lower_order_final_below=15)))
    if not final and ts[-1] > path.t_min * (1 + 1e-9):
        ts = np.append(ts, path.t_min)  # diffusers' last step lands on alphas_cumprod[0]
    thresh = None
    if c.get("thresholding"):
        ratio, smax = float(c.get("dynamic_thresholding_ratio", 0.995)), float(c.get("sample_max_value", 1.0))
        thresh = lambda m: models.dynamic_threshold(m, ratio, smax)  # noqa: E731
    init = float(getattr(scheduler, "init_noise_sigma", 1.0))
    return Recipe(path, _PREDICTIONS[c.get("prediction_type", "epsilon")], solver, jnp.asarray(ts), final,
                  lambda t: t * n_train - 1.0, init_scale=init, x0_transform=thresh)


def _as_numpy(a, name) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    a = np.asarray(a, np.float64)
    if a.ndim != 1 or a.shape[0] < 2 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a 1-D list of at least 2 finite noise levels, got shape {a.shape}")
    if not np.all(np.diff(a) < 0):
        raise ValueError(f"{name} must be strictly decreasing")
    return a
