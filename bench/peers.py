"""jaxsample against its PyTorch peers, k-diffusion and diffusers: the same network weights, the
same noise and the same grid, every solver the two sides share, speed and agreement (issue 24).

Networks. Two small networks are built once in Flax linen and their weights are copied into
an identical ``torch.nn.Module`` (the two forward passes are checked to agree before anything
is timed): an MLP on 64-d data (3 hidden layers of 256, SiLU) and a small conv net on 8x8x1
images (three 3x3 convolutions of 32 channels, SiLU; NHWC in JAX, NCHW in torch, as each
framework is used). Both take the noise level through fixed sine/cosine features. The weights
are random but fixed (linen's default initialisation, seed 0, random biases): this is a bench
of speed and of agreement, not of sample quality, and an untrained network costs exactly what a
trained one of the same shape costs.

Peers and models. The raw network ``F(x, c)`` is wrapped per peer, identically on both sides:

- k-diffusion (``k_diffusion/sampling.py``, loaded as in ``tests/test_peers_kdiffusion.py``):
  an EDM denoiser ``D(x; sigma) = c_skip x + c_out F(c_in x, log(sigma) / 4)`` (sigma_data
  0.5), i.e. a ``x0`` model on jaxsample's ``EDM`` path; sigmas are ``grids.edm(path, steps)``
  (rho 7, 80 down to 0.002) without a trailing 0, as in the peer tests.
- diffusers (the scheduler ``step`` loop, as in ``tests/test_peers_diffusers.py``): an ``eps``
  model ``F(x, t)`` on jaxsample's ``DiscreteDDPM`` path (1000 linear betas), diffusers'
  integer timestep ``k`` being our ``t = (k + 1) / 1000``; the scheduler gets our
  ``alphas_cumprod`` table.

Solvers (name: jaxsample solver == peer sampler; NFE per step):

- k-diffusion: ``euler`` == ``sample_euler`` (1); ``heun`` == ``sample_heun`` (2);
  ``dpm_solver_2`` == ``sample_dpm_2`` (2); ``dpm_solver_pp_2s`` == ``sample_dpmpp_2s_ancestral``
  with eta 0 (2); ``dpm_solver_pp_2m`` (no lower-order final step) == ``sample_dpmpp_2m`` (1);
  ``deis_rhoab_4`` (``deis(4, 'rhoab')``) == ``sample_lms`` (order 4: on the EDM path rhoAB-DEIS
  is linear multistep in sigma) (1); ``ddpm_ancestral`` (eta 1) == ``sample_euler_ancestral``
  (1); ``dpm_solver_pp_2m_sde`` (eta 1, midpoint) == ``sample_dpmpp_2m_sde`` (1);
  ``edm_stochastic_heun`` (churn 20 between sigma 0.05 and 30) == ``sample_heun`` with churn (2).
- diffusers: ``ddim`` == ``DDIMScheduler`` (leading spacing, steps_offset 1) (1);
  ``dpm_solver_pp_2m`` / ``_3m`` (lower-order final below 15 steps) ==
  ``DPMSolverMultistepScheduler`` (dpmsolver++, midpoint, order 2 / 3) (1); ``unipc_bh1_2``,
  ``unipc_bh2_2``, ``unipc_bh1_3``, ``unipc_bh2_3`` == ``UniPCMultistepScheduler`` (predict_x0,
  corrector on) (1); ``deis_logrho_2`` / ``_3`` (``deis(order, 'logrho')``, lower-order final
  below 15) == ``DEISMultistepScheduler`` (1).

At NFE n a solver runs n / (NFE per step) steps. Stochastic solvers are compared on the same
noise (the peer's noise sampler is fed the noise jaxsample's driver draws, as in the peer tests)
and timed with each library's own noise: k-diffusion with ``default_noise_sampler`` (i.i.d.
``torch.randn_like`` a step; its default for ``sample_dpmpp_2m_sde`` is a Brownian tree, which
is slower), jaxsample with its per-sample keys.

Measurements, per (network, batch, NFE, solver): jaxsample's ``js.sample`` (jitted and cached
by the library), the peer in eager PyTorch, and the peer with its model ``torch.compile``d
(``dynamic=False``; the samplers themselves are Python loops and stay eager). One warm-up call
each (compilation excluded, its time recorded), then ``--repeats`` interleaved repeats (jax,
eager, compiled, jax, ...): median, min and max seconds, samples/s, and the ratio
``peer median / jaxsample median`` (> 1: jaxsample is faster). Agreement: the max abs
difference between jaxsample's and the peer's samples (float32) and that difference relative to
the largest sample value; a row whose relative difference exceeds ``--tolerance`` (default
1e-3: float32, two BLAS libraries, up to 16 steps) is flagged ``agrees: false`` and gets no ratio.
If ``torch.compile`` fails, or its first call takes longer than ``--compile-timeout`` seconds,
that is recorded in the JSON (``compile``) and the remaining rows run without it.

Devices and precision: JAX runs on its default backend; torch on ``--torch-device`` (default
``cuda`` where torch sees one, else ``cpu``): the networks, sigmas, initial samples, timestep
inputs and fed noises are made there, diffusers' timesteps too (``set_timesteps(n, device=)``, as
its pipelines do; its ``alphas_cumprod`` and sigmas stay on the CPU, where diffusers keeps them),
and samples come back with ``.cpu()`` for the comparison. Every timed peer call ends with the
device synchronised (``torch.cuda.synchronize``), as jaxsample's ends with ``block_until_ready``.
``--matmul-precision`` (default ``highest``) sets both frameworks' float32 matmuls and
convolutions alike: JAX's ``jax_default_matmul_precision``, and torch's TF32 flags
(``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``) on unless
``highest``; on a GPU JAX's own default would use TF32 where torch's matmuls do not. Both are
recorded in the JSON and in the table's header line.

Threads: both frameworks keep their defaults (XLA's CPU thread pool, ``torch.get_num_threads()``),
recorded in the JSON with the load average before and after the run; run it on a quiet machine.

Writes the JSON (``--out``, default ``bench/results/peers.json``), a bar chart of the ratios
beside it (same name, ``.png``) and a markdown table (``.md``); ``--readme FILE`` also replaces
the table between the ``<!-- peers table -->`` markers of FILE (``bench/README.md``).

    python bench/peers.py                                   # full run: MLP + conv, batch 256 and 4096, NFE 8 and 16
    python bench/peers.py --quick --out /tmp/peers.json     # smoke test: MLP, batch 256, NFE 8, 3 repeats
    jaxsample bench peers --out bench/results/peers.json --readme bench/README.md
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import linen as nn  # noqa: E402

import jaxsample as js  # noqa: E402
from jaxsample import grids, paths  # noqa: E402
from jaxsample import solvers as S  # noqa: E402
from jaxsample._files import save_figure, write_json, write_text  # noqa: E402
from jaxsample.sampling import sample_keys  # noqa: E402
from jaxsample.solvers._base import per_sample_normal  # noqa: E402
from _common import environment  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "bench", "results", "peers.json")
README_BEGIN, README_END = "<!-- peers table -->", "<!-- /peers table -->"

DIM, WIDTH, DEPTH = 64, 256, 3  # the MLP (as in sampler_overhead.py)
IMAGE, CHANNELS = (8, 8, 1), 32  # the conv net
FREQS = (2.0 ** np.arange(8)).astype(np.float32)  # noise-level features: sin/cos(c * 2^k), k < 8
SIGMA_DATA = 0.5
CHURN = dict(s_churn=20.0, s_tmin=0.05, s_tmax=30.0, s_noise=1.0)


# ----------------------------------------------------------------------------- networks (JAX side)


def _features(c):
    angles = c[:, None] * jnp.asarray(FREQS)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], -1)


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, c):
        h = jnp.concatenate([x, _features(c)], -1)
        for i in range(DEPTH):
            h = jax.nn.silu(nn.Dense(WIDTH, name=f"hidden_{i}")(h))
        return nn.Dense(x.shape[-1], name="out")(h)


class ConvNet(nn.Module):
    @nn.compact
    def __call__(self, x, c):  # x: (batch, 8, 8, 1), NHWC
        emb = jax.nn.silu(nn.Dense(CHANNELS, name="emb")(_features(c)))
        h = jax.nn.silu(nn.Conv(CHANNELS, (3, 3), padding="SAME", name="conv_in")(x))
        h = h + emb[:, None, None, :]
        h = jax.nn.silu(nn.Conv(CHANNELS, (3, 3), padding="SAME", name="conv_mid")(h))
        return nn.Conv(x.shape[-1], (3, 3), padding="SAME", name="conv_out")(h)


NETS = {"mlp": (MLP, (DIM,)), "conv": (ConvNet, IMAGE)}


def init_network(name):
    """``(module, params)``: linen's default initialisation (seed 0) with random biases."""
    module, shape = NETS[name]
    module = module()
    params = module.init(jax.random.key(0), jnp.zeros((1, *shape)), jnp.zeros((1,)))["params"]
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    new = [0.1 * jax.random.normal(k, v.shape) if "bias" in jax.tree_util.keystr(p) else v
           for (p, v), k in zip(leaves, keys)]
    return module, jax.tree_util.tree_unflatten(treedef, new)


def _per_sample(t, x):
    return jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:1])


def jax_models(module, params):
    """The jaxsample models of the two peers: EDM ``x0`` (k-diffusion) and DDPM ``eps`` (diffusers)."""
    def edm_x0(params, x, t):
        sigma = _per_sample(t, x)
        s = sigma.reshape((-1,) + (1,) * (x.ndim - 1))
        scale = jnp.sqrt(s ** 2 + SIGMA_DATA ** 2)
        out = module.apply({"params": params}, x / scale, jnp.log(sigma) / 4)
        return (SIGMA_DATA ** 2 / scale ** 2) * x + (s * SIGMA_DATA / scale) * out

    def ddpm_eps(params, x, t):
        return module.apply({"params": params}, x, _per_sample(t, x))

    return {"k-diffusion": js.Model(jax.tree_util.Partial(edm_x0, params), paths.EDM(), "x0"),
            "diffusers": js.Model(jax.tree_util.Partial(ddpm_eps, params), paths.DiscreteDDPM(), "eps")}


# ----------------------------------------------------------------------------- networks (torch side)


def torch_networks(name, params, device="cpu"):
    """The same network in torch with the weights of ``params``, and its two peer wrappers, all on
    ``device`` (the network's parameters and its noise-level frequencies)."""
    import torch
    import torch.nn.functional as F

    freqs = torch.from_numpy(FREQS).to(device)

    def features(c):
        angles = c[:, None] * freqs
        return torch.cat([torch.sin(angles), torch.cos(angles)], -1)

    def linear(p):
        layer = torch.nn.Linear(*p["kernel"].shape)
        layer.weight.data = torch.from_numpy(np.array(p["kernel"]).T.copy())
        layer.bias.data = torch.from_numpy(np.array(p["bias"]))
        return layer

    def conv(p):
        kh, kw, cin, cout = p["kernel"].shape
        layer = torch.nn.Conv2d(cin, cout, (kh, kw), padding=(kh // 2, kw // 2))
        layer.weight.data = torch.from_numpy(np.array(p["kernel"]).transpose(3, 2, 0, 1).copy())
        layer.bias.data = torch.from_numpy(np.array(p["bias"]))
        return layer

    class TorchMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = torch.nn.ModuleList(linear(params[f"hidden_{i}"]) for i in range(DEPTH))
            self.out = linear(params["out"])

        def forward(self, x, c):
            h = torch.cat([x, features(c)], -1)
            for layer in self.hidden:
                h = F.silu(layer(h))
            return self.out(h)

    class TorchConvNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = linear(params["emb"])
            self.conv_in, self.conv_mid, self.conv_out = (conv(params[k]) for k in ("conv_in", "conv_mid", "conv_out"))

        def forward(self, x, c):  # x: (batch, 1, 8, 8), NCHW
            emb = F.silu(self.emb(features(c)))
            h = F.silu(self.conv_in(x)) + emb[:, :, None, None]
            h = F.silu(self.conv_mid(h))
            return self.conv_out(h)

    class EDMDenoiser(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, sigma):
            s = sigma.reshape((-1,) + (1,) * (x.ndim - 1))
            scale = torch.sqrt(s ** 2 + SIGMA_DATA ** 2)
            out = self.net(x / scale, torch.log(sigma) / 4)
            return (SIGMA_DATA ** 2 / scale ** 2) * x + (s * SIGMA_DATA / scale) * out

    class DDPMEps(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, t):
            return self.net(x, t)

    net = (TorchMLP if name == "mlp" else TorchConvNet)().to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, {"k-diffusion": EDMDenoiser(net).to(device).eval(), "diffusers": DDPMEps(net).to(device).eval()}


def to_torch_layout(x):
    """NHWC (JAX) -> NCHW (torch) for images; vectors unchanged."""
    x = np.array(x)  # a writable copy (torch.from_numpy warns on JAX's read-only buffers)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def from_torch_layout(x):
    x = np.asarray(x)
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def to_torch(x, device):
    """A JAX or numpy array as a torch tensor on ``device`` (NCHW for images)."""
    import torch

    return torch.from_numpy(to_torch_layout(x)).to(device)


def from_torch(x):
    """A torch tensor (on any device) as a numpy array in JAX's layout (NHWC for images)."""
    return from_torch_layout(x.detach().cpu().numpy())


def torch_synchronizer(device):
    """``() -> None`` that waits for the torch work queued on ``device`` (a no-op on CPU): called
    before the clock is read, as jaxsample's side is timed with ``jax.block_until_ready``."""
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type != "cpu" and hasattr(getattr(torch, device.type, None), "synchronize"):
        return getattr(torch, device.type).synchronize
    return lambda: None


# ----------------------------------------------------------------------------- k-diffusion


_PRIVATE = "_jaxsample_peer_k_diffusion"  # the name tests/test_peers_kdiffusion.py uses


def _append_dims(x, target_dims):
    """k_diffusion.utils.append_dims (verbatim)."""
    dims_to_append = target_dims - x.ndim
    if dims_to_append < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * dims_to_append]


def kdiffusion_sampling():
    """``k_diffusion.sampling``, or its file loaded without the package ``__init__`` (which imports
    torchvision); see tests/test_peers_kdiffusion.py. Raises ImportError if it is not installed."""
    try:
        return importlib.import_module("k_diffusion.sampling")
    except ImportError:
        pass
    if _PRIVATE + ".sampling" in sys.modules:
        return sys.modules[_PRIVATE + ".sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("k-diffusion is not installed")
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
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_PRIVATE + ".sampling"]
        raise
    return module


# (name, jaxsample solver, k-diffusion function, its keyword arguments, NFE per step, stochastic)
KDIFFUSION = [
    ("euler", lambda: S.euler(), "sample_euler", {}, 1, False),
    ("heun", lambda: S.heun(), "sample_heun", {}, 2, False),
    ("dpm_solver_2", lambda: S.dpm_solver(2), "sample_dpm_2", {}, 2, False),
    ("dpm_solver_pp_2s", lambda: S.dpm_solver_pp_2s(), "sample_dpmpp_2s_ancestral", {"eta": 0.0}, 2, False),
    ("dpm_solver_pp_2m", lambda: S.dpm_solver_pp_2m(lower_order_final=False), "sample_dpmpp_2m", {}, 1, False),
    ("deis_rhoab_4", lambda: S.deis(4, "rhoab"), "sample_lms", {"order": 4}, 1, False),
    ("ddpm_ancestral", lambda: S.ddpm_ancestral(eta=1.0), "sample_euler_ancestral", {"eta": 1.0}, 1, True),
    ("dpm_solver_pp_2m_sde", lambda: S.dpm_solver_pp_2m_sde(eta=1.0, solver_type="midpoint"), "sample_dpmpp_2m_sde",
     {"eta": 1.0, "solver_type": "midpoint"}, 1, True),
    ("edm_stochastic_heun", lambda: S.edm_stochastic_heun(CHURN["s_churn"], CHURN["s_tmin"], CHURN["s_tmax"],
                                                          CHURN["s_noise"]), "sample_heun", CHURN, 2, True),
]


def _diffusers_schedulers():
    import diffusers

    def dpm(order):
        return lambda: diffusers.DPMSolverMultistepScheduler(
            solver_order=order, algorithm_type="dpmsolver++", solver_type="midpoint",
            final_sigmas_type="sigma_min", timestep_spacing="linspace", lower_order_final=True)

    def unipc(order, variant):
        return lambda: diffusers.UniPCMultistepScheduler(
            solver_order=order, solver_type=variant, predict_x0=True, lower_order_final=True,
            final_sigmas_type="sigma_min", timestep_spacing="linspace")

    def deis(order):
        return lambda: diffusers.DEISMultistepScheduler(solver_order=order, timestep_spacing="linspace",
                                                        lower_order_final=True)

    ddim = lambda: diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1,  # noqa: E731
                                           timestep_spacing="leading")
    # (name, jaxsample solver, scheduler factory, scheduler name)
    return [
        ("ddim", lambda: S.ddim(), ddim, "DDIMScheduler"),
        ("dpm_solver_pp_2m", lambda: S.dpm_solver_pp_2m(lower_order_final=True, lower_order_final_below=15), dpm(2),
         "DPMSolverMultistepScheduler(order=2)"),
        ("dpm_solver_pp_3m", lambda: S.dpm_solver_pp_3m(lower_order_final=True, lower_order_final_below=15), dpm(3),
         "DPMSolverMultistepScheduler(order=3)"),
        *[(f"unipc_{v}_{o}", (lambda o=o, v=v: S.unipc(o, v)), unipc(o, v), f"UniPCMultistepScheduler({v}, order={o})")
          for o in (2, 3) for v in ("bh1", "bh2")],
        *[(f"deis_logrho_{o}", (lambda o=o: S.deis(o, "logrho", lower_order_final=True, lower_order_final_below=15)),
           deis(o), f"DEISMultistepScheduler(order={o})") for o in (2, 3)],
    ]


def solver_names():
    return sorted({r[0] for r in KDIFFUSION} | {"ddim", "dpm_solver_pp_3m", "unipc_bh1_2", "unipc_bh2_2",
                                                 "unipc_bh1_3", "unipc_bh2_3", "deis_logrho_2", "deis_logrho_3"})


class _FeedNoise:
    """A noise sampler (or ``torch.randn_like``) returning given per-step noises in order."""

    def __init__(self, noises, device="cpu"):
        import torch

        self.noises, self.calls = [torch.from_numpy(n).to(device) for n in noises], 0

    def __call__(self, *args, **kwargs):
        out = self.noises[self.calls]
        self.calls += 1
        return out


def our_step_noises(key, noise, num_steps):
    """The noise jaxsample's driver hands step i to sample k: normal(fold_in(fold_in(key, k), i))."""
    keys = sample_keys(key, noise.shape[0])
    return [to_torch_layout(per_sample_normal(jax.vmap(jax.random.fold_in, (0, None))(keys, i), noise))
            for i in range(num_steps)]


# ----------------------------------------------------------------------------- one case = one peer row


class Case:
    """One (peer, solver) at one NFE on one batch: jaxsample, eager peer and compiled peer callables."""

    def __init__(self, peer, name, peer_sampler, solver, ts, noise, model, run_peer, stochastic, feed_noise):
        self.peer, self.name, self.peer_sampler, self.solver, self.ts = peer, name, peer_sampler, solver, ts
        self.noise, self.model, self.run_peer, self.stochastic = noise, model, run_peer, stochastic
        self.feed_noise = feed_noise  # () -> peer output on jaxsample's noise (stochastic cases)
        self.key = jax.random.key(2)

    def ours(self):
        return js.sample(self.model, self.solver, self.ts, self.noise, key=self.key if self.stochastic else None)


def kdiffusion_case(ks, entry, model, torch_model, noise, nfe, device="cpu"):
    import torch

    name, make_solver, fn_name, kwargs, per_step, stochastic = entry
    steps = nfe // per_step
    ts = grids.edm(model.path, steps)
    sigmas = to_torch(ts, device)  # on the device, as k-diffusion's get_sigmas_*(..., device=) make them
    x_init = to_torch(noise, device) * sigmas[0]
    fn = getattr(ks, fn_name)

    def run_peer(denoiser, noise_sampler=None):
        extra = dict(kwargs)
        if fn_name in ("sample_euler_ancestral", "sample_dpmpp_2m_sde", "sample_dpmpp_2s_ancestral"):
            extra["noise_sampler"] = noise_sampler or ks.default_noise_sampler(x_init)
        return fn(denoiser, x_init, sigmas, disable=True, **extra)

    def feed(denoiser):
        fed = _FeedNoise(our_step_noises(jax.random.key(2), noise, steps), device)
        if fn_name == "sample_heun":  # no noise_sampler argument: patch torch.randn_like for the call
            saved = torch.randn_like
            torch.randn_like = fed
            try:
                out = run_peer(denoiser)
            finally:
                torch.randn_like = saved
        else:
            out = run_peer(denoiser, fed)
        if fed.calls != steps:
            raise RuntimeError(f"{fn_name} drew noise {fed.calls} times in {steps} steps")
        return out

    peer_sampler = fn_name + "".join(f", {k}={v}" for k, v in kwargs.items())
    return Case("k-diffusion", name, peer_sampler, make_solver(), ts, noise, model,
                run_peer, stochastic, feed if stochastic else None)


def diffusers_case(entry, model, noise, nfe, device="cpu"):
    import torch

    name, make_solver, make_scheduler, sched_name = entry
    path = model.path
    _, log_alpha, _ = path._tables()
    scheduler = make_scheduler()
    # alphas_cumprod stays on the CPU, where the scheduler's __init__ puts it and diffusers' pipelines
    # leave it: the multistep schedulers' set_timesteps take np.array of it, and they keep their
    # sigmas on the CPU by design; DDIM indexes it with a 0-d timestep (an int on any device). The
    # timesteps go to the device, as the pipelines' set_timesteps(n, device=device) put them.
    scheduler.alphas_cumprod = torch.from_numpy(np.exp(2.0 * log_alpha).astype(np.float32))
    scheduler.set_timesteps(nfe, device=device)
    timesteps = [int(k) for k in scheduler.timesteps]
    ts = jnp.asarray(np.concatenate([(np.array(timesteps, np.float64) + 1.0) / 1000.0, [1.0 / 1000.0]]), jnp.float32)
    x_init = to_torch(np.asarray(path.sigma(ts[0]) * noise), device)
    batch = noise.shape[0]
    t_inputs = [torch.full((batch,), (k + 1) / 1000.0, device=device) for k in timesteps]

    @torch.no_grad()
    def run_peer(eps_model, noise_sampler=None):
        scheduler.set_timesteps(nfe, device=device)
        x = x_init
        for k, t in zip(scheduler.timesteps, t_inputs):
            x = scheduler.step(eps_model(x, t), k, x).prev_sample
        return x

    return Case("diffusers", name, sched_name, make_solver(), ts, noise, model, run_peer, False, None)


# ----------------------------------------------------------------------------- timing


def _summary(times, batch):
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "max_s": max(times), "samples_per_s": batch / med, "times_s": times}


def measure(case, variants, repeats, tolerance, compile_state, sync=lambda: None):
    """Warm up every variant, check agreement, then time them interleaved. ``variants``: name -> the
    torch model the peer calls (``eager``, ``compiled``); ``sync``: waits for the torch device
    (:func:`torch_synchronizer`), called after every peer call before the clock is read."""
    batch = case.noise.shape[0]
    row = {"peer": case.peer, "solver": case.name, "peer_sampler": case.peer_sampler,
           "steps": int(len(case.ts) - 1), "stochastic": case.stochastic}
    t0 = time.perf_counter()
    ours = np.asarray(jax.block_until_ready(case.ours()))
    row["jaxsample_first_call_s"] = time.perf_counter() - t0
    calls = {"jaxsample": lambda: jax.block_until_ready(case.ours())}
    for variant, torch_model in variants.items():
        entry = {}
        t0 = time.perf_counter()
        try:
            out = case.run_peer(torch_model)
            sync()  # on CUDA an asynchronous error surfaces here, inside the try
        except Exception as e:  # torch.compile on CPU can fail (no compiler, unsupported op): record it
            entry["error"] = f"{type(e).__name__}: {e}"[:2000]
            row[variant] = entry
            if variant == "compiled":
                compile_state[case.peer].update(ok=False, error=entry["error"])
            continue
        entry["first_call_s"] = time.perf_counter() - t0
        if variant == "compiled":
            compile_state[case.peer].setdefault("first_call_s", []).append(entry["first_call_s"])
        if case.feed_noise is not None:
            out = case.feed_noise(torch_model)
        theirs = from_torch(out)
        diff = float(np.abs(ours - theirs).max())
        entry.update(max_abs_diff=diff, max_rel_diff=diff / float(np.abs(theirs).max()),
                     finite=bool(np.isfinite(theirs).all() and np.isfinite(ours).all()))
        entry["agrees"] = entry["finite"] and entry["max_rel_diff"] <= tolerance
        row[variant] = entry
        calls[variant] = (lambda m=torch_model: (case.run_peer(m), sync()))
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, f in calls.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    row["jaxsample"] = _summary(times.pop("jaxsample"), batch)
    for variant, ts in times.items():
        row[variant].update(_summary(ts, batch))
        ratio = row[variant]["median_s"] / row["jaxsample"]["median_s"]
        row[variant]["ratio_to_jaxsample"] = ratio if row[variant]["agrees"] else None
        if not row[variant]["agrees"]:
            row[variant]["ratio_excluded"] = ratio
    return row


# ----------------------------------------------------------------------------- outputs


def _fmt_ratio(entry):
    if entry is None:
        return "-"
    if "error" in entry:
        return "failed"
    if entry.get("ratio_to_jaxsample") is None:
        return "disagrees"
    return f"{entry['ratio_to_jaxsample']:.2f}"


def markdown_table(result):
    cfg = result["config"]
    lines = [f"Peer time / jaxsample time (> 1: jaxsample is faster), medians of {cfg['repeats']} interleaved repeats; "
             f"samples/s of jaxsample; max abs difference of the samples (eager peer). "
             f"{result['environment']['machine_note']}",
             "",
             "| network | batch | NFE | peer | solver | jaxsample samples/s | eager | torch.compile | max abs diff |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        eager = r.get("eager")
        lines.append(f"| {r['network']} | {r['batch']} | {r['nfe']} | {r['peer']} | {r['solver']} | "
                     f"{r['jaxsample']['samples_per_s']:.0f} | {_fmt_ratio(eager)} | {_fmt_ratio(r.get('compiled'))} | "
                     f"{eager.get('max_abs_diff', float('nan')):.1e} |")
    return "\n".join(lines) + "\n"


def update_readme(readme, table):
    text = open(readme).read() if os.path.exists(readme) else ""
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        tail = rest.split(README_END, 1)[1]
        text = f"{head}{README_BEGIN}\n{table}{README_END}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{README_BEGIN}\n{table}{README_END}\n".lstrip()
    write_text(readme, text)
    print(f"updated the table in {readme}")


def plot(result, filename):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["network"], r["batch"], r["nfe"]) for r in result["rows"]},
                    key=lambda g: (list(NETS).index(g[0]), g[1], g[2]))
    fig, axes = plt.subplots(len(groups), 1, figsize=(12, 3.6 * len(groups)), squeeze=False)
    for ax, (net, batch, nfe) in zip(axes[:, 0], groups):
        rows = [r for r in result["rows"] if (r["network"], r["batch"], r["nfe"]) == (net, batch, nfe)]
        x = np.arange(len(rows))
        for j, variant in enumerate(("eager", "compiled")):
            vals = [(r.get(variant) or {}).get("ratio_to_jaxsample") for r in rows]
            ax.bar(x + (j - 0.5) * 0.4, [v if v is not None else np.nan for v in vals], 0.4,
                   label=f"{variant} PyTorch" if variant == "eager" else "torch.compile")
            for xi, v, r in zip(x, vals, rows):
                if v is None and variant in r:
                    ax.text(xi + (j - 0.5) * 0.4, 1.0, "x", ha="center", va="bottom", color="red")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(x, [f"{'kd' if r['peer'] == 'k-diffusion' else 'df'}:{r['solver']}" for r in rows],
                      rotation=40, ha="right", fontsize=8)
        ax.set_ylabel("peer time / jaxsample time")
        ax.set_title(f"{net}, batch {batch}, NFE {nfe} (> 1: jaxsample faster; x: disagrees or failed)", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, filename, dpi=110)
    plt.close(fig)
    print(f"wrote {filename}")


# ----------------------------------------------------------------------------- main


def _ints(s):
    return [int(v) for v in s.split(",") if v]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON file to write (the .png and .md go beside it)")
    p.add_argument("--quick", action="store_true", help="smoke test: MLP, batch 256, NFE 8, 3 repeats "
                                                        "(each can still be overridden)")
    p.add_argument("--nets", help="comma-separated, of mlp,conv (default: both)")
    p.add_argument("--batches", type=_ints, help="default: 256,4096")
    p.add_argument("--nfes", type=_ints, help="default: 8,16")
    p.add_argument("--repeats", type=int, help="interleaved timed repeats (default 7)")
    p.add_argument("--solvers", help=f"comma-separated subset of: {','.join(solver_names())}")
    p.add_argument("--peers", default="k-diffusion,diffusers")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--compile-timeout", type=float, default=600.0,
                   help="if one torch.compile warm-up takes longer (s), drop torch.compile for the remaining rows")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="max |difference| / max |peer sample| for a row to count as a comparison")
    p.add_argument("--torch-threads", type=int,
                   help="torch.set_num_threads (default: torch's own default, recorded in the JSON). On a loaded "
                        "machine torch's OpenMP threads contend for the busy cores and eager times inflate many-fold")
    p.add_argument("--torch-device",
                   help='device of the torch networks and tensors (default: "cuda" if torch.cuda.is_available() '
                        'else "cpu"); JAX uses its default backend')
    p.add_argument("--matmul-precision", choices=("default", "high", "highest"), default="highest",
                   help="float32 matmul/conv precision of both frameworks (default: highest): JAX's "
                        "jax_default_matmul_precision, and torch's TF32 (cuda.matmul.allow_tf32, cudnn.allow_tf32) "
                        "allowed unless highest. On a GPU, JAX's default would use TF32 while torch's matmuls do not")
    p.add_argument("--readme", help="also replace the table between the peers markers of this markdown file")
    args = p.parse_args(argv)
    nets = (args.nets or ("mlp" if args.quick else "mlp,conv")).split(",")
    batches = args.batches or ([256] if args.quick else [256, 4096])
    nfes = args.nfes or ([8] if args.quick else [8, 16])
    repeats = args.repeats or (3 if args.quick else 7)
    peers = args.peers.split(",")
    wanted = set(args.solvers.split(",")) if args.solvers else None
    if unknown := [n for n in nets if n not in NETS]:
        p.error(f"--nets: unknown {unknown}")
    if wanted and (unknown := wanted - set(solver_names())):
        p.error(f"--solvers: unknown {sorted(unknown)}")
    if bad := [n for n in nfes if n % 2]:
        p.error(f"--nfes must be even (two-evaluation solvers run NFE / 2 steps), got {bad}")
    if repeats < 1:
        p.error("--repeats must be positive")

    import torch

    try:
        device = torch.device(args.torch_device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as e:
        p.error(f"--torch-device: {e}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--torch-device {device}: torch sees no CUDA device")
    with matmul_precision(args.matmul_precision):
        return run(args, nets, batches, nfes, repeats, peers, wanted, device)


@contextlib.contextmanager
def matmul_precision(precision):
    """Both frameworks' float32 matmuls and convolutions at ``precision`` for the run (before anything is
    traced), the previous settings restored after it (``jaxsample bench peers`` runs this file in-process):
    JAX's ``jax_default_matmul_precision``; torch's TF32 flags, allowed unless ``highest``."""
    import torch

    tf32 = precision != "highest"
    saved = (jax.config.jax_default_matmul_precision, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    jax.config.update("jax_default_matmul_precision", precision)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        jax.config.update("jax_default_matmul_precision", saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1:]


def run(args, nets, batches, nfes, repeats, peers, wanted, device):
    """The benchmark proper, torch on ``device`` (``main`` parses the arguments and sets the precision)."""
    import torch

    sync = torch_synchronizer(device)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    versions = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    ks, entries = None, {}
    if "k-diffusion" in peers:
        try:
            ks = kdiffusion_sampling()
            from importlib.metadata import version
            versions["k_diffusion"] = version("k-diffusion")
            entries["k-diffusion"] = [e for e in KDIFFUSION if not wanted or e[0] in wanted]
        except Exception as e:  # noqa: BLE001
            versions["k_diffusion"] = f"not available: {e}"
    if "diffusers" in peers:
        try:
            import diffusers
            versions["diffusers"] = diffusers.__version__
            entries["diffusers"] = [e for e in _diffusers_schedulers() if not wanted or e[0] in wanted]
        except Exception as e:  # noqa: BLE001
            versions["diffusers"] = f"not available: {e}"
    env = environment() | versions | {"cpu_count": os.cpu_count(), "load_average_start": list(os.getloadavg())}
    jax_device = jax.devices()[0]
    env |= {"torch_device": str(device),
            "torch_device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            "torch_cuda": torch.version.cuda, "jax_backend": jax.default_backend(),
            "jax_device_kind": jax_device.device_kind,
            "torch_tf32": {"cuda_matmul": torch.backends.cuda.matmul.allow_tf32,
                           "cudnn": torch.backends.cudnn.allow_tf32},
            "jax_default_matmul_precision": jax.config.jax_default_matmul_precision}
    env["machine_note"] = (f"torch on {device} ({env['torch_device_name']}), JAX on {env['jax_backend']} "
                           f"({env['jax_device_kind']}); float32 matmul precision {args.matmul_precision} "
                           f"(torch TF32 {'on' if args.matmul_precision != 'highest' else 'off'}). "
                           "Threads: framework defaults (torch " f"{versions['torch_threads']}, "
                           f"{os.cpu_count()} CPUs); load average at start {os.getloadavg()[0]:.1f}.")
    print(env["machine_note"], flush=True)

    compile_state = {peer: {"ok": None} for peer in entries} if not args.no_compile else {}
    networks, rows = {}, []
    for net_name in nets:
        module, params = init_network(net_name)
        shape = NETS[net_name][1]
        jmodels = jax_models(module, params)
        tnet, twrappers = torch_networks(net_name, params, device)
        # the two forward passes agree before anything is timed
        x = jax.random.normal(jax.random.key(3), (64, *shape))
        c = jnp.linspace(-1.5, 1.5, 64)
        with torch.no_grad():
            theirs = from_torch(tnet(to_torch(x, device), to_torch(c, device)))
        ours = np.asarray(module.apply({"params": params}, x, c))
        fwd = float(np.abs(ours - theirs).max())
        networks[net_name] = {"data_shape": list(shape), "parameters": int(sum(v.size for v in jax.tree.leaves(params))),
                              "forward_max_abs_diff": fwd, "forward_max_abs_output": float(np.abs(ours).max())}
        print(f"{net_name}: {networks[net_name]['parameters']} parameters, forward max |jax - torch| {fwd:.1e}",
              flush=True)
        # float32 on both sides agrees to ~1e-6; TF32 (--matmul-precision default/high on a GPU) to ~1e-3
        fwd_tol = 1e-4 if args.matmul_precision == "highest" else 1e-2
        if not fwd <= fwd_tol * max(1.0, float(np.abs(ours).max())):
            raise SystemExit(f"the torch port of {net_name} disagrees with the JAX network ({fwd:.2e}): not timing")
        compiled = {}
        for peer in entries:
            if compile_state.get(peer, {}).get("ok") is not False and not args.no_compile:
                compiled[peer] = torch.compile(twrappers[peer], dynamic=False)
        for batch in batches:
            noise = jax.random.normal(jax.random.key(1), (batch, *shape))
            for nfe in nfes:
                for peer, peer_entries in entries.items():
                    for entry in peer_entries:
                        if peer == "k-diffusion":
                            case = kdiffusion_case(ks, entry, jmodels[peer], twrappers[peer], noise, nfe, device)
                        else:
                            case = diffusers_case(entry, jmodels[peer], noise, nfe, device)
                        variants = {"eager": twrappers[peer]}
                        if peer in compiled and compile_state[peer]["ok"] is not False:
                            variants["compiled"] = compiled[peer]
                        row = {"network": net_name, "batch": batch, "nfe": nfe}
                        row.update(measure(case, variants, repeats, args.tolerance, compile_state, sync))
                        cst = compile_state.get(peer)
                        if cst is not None and "compiled" in row and "error" not in row["compiled"]:
                            cst["ok"] = True
                            if row["compiled"]["first_call_s"] > args.compile_timeout:
                                cst.update(ok=False, error=f"first call took {row['compiled']['first_call_s']:.0f} s "
                                                           f"> --compile-timeout {args.compile_timeout:.0f} s")
                        rows.append(row)
                        e, cmp = row["eager"], row.get("compiled", {})
                        print(f"{net_name} b{batch} nfe{nfe} {peer:11s} {case.name:22s} "
                              f"jax {1e3 * row['jaxsample']['median_s']:8.1f} ms | eager x{_fmt_ratio(e):>9s} "
                              f"| compiled x{_fmt_ratio(cmp) if cmp else '-':>9s} "
                              f"| max|diff| {e.get('max_abs_diff', float('nan')):.1e} "
                              f"(rel {e.get('max_rel_diff', float('nan')):.1e})", flush=True)
    env["load_average_end"] = list(os.getloadavg())
    result = {"benchmark": "peers",
              "config": {"networks": nets, "batches": batches, "nfes": nfes, "repeats": repeats, "peers": list(entries),
                         "solvers": sorted(wanted) if wanted else "all shared", "quick": args.quick,
                         "torch_compile": not args.no_compile, "torch_threads_set": args.torch_threads, "compile_timeout_s": args.compile_timeout,
                         "torch_device": str(device), "matmul_precision": args.matmul_precision,
                         "tolerance_rel": args.tolerance, "dtype": "float32", "sigma_data": SIGMA_DATA,
                         "edm_stochastic_heun": CHURN},
              "environment": env, "networks": networks, "compile": compile_state, "rows": rows,
              "disagreeing_rows": [f"{r['network']} b{r['batch']} nfe{r['nfe']} {r['peer']} {r['solver']} {v}"
                                   for r in rows for v in ("eager", "compiled")
                                   if v in r and "error" not in r[v] and not r[v]["agrees"]]}
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    write_json(args.out, result)
    print(f"wrote {args.out}")
    stem = os.path.splitext(args.out)[0]
    table = markdown_table(result)
    write_text(stem + ".md", table)
    plot(result, stem + ".png")
    if args.readme:
        update_readme(args.readme, table)
    if result["disagreeing_rows"]:
        print("rows whose outputs disagree (no ratio):", *result["disagreeing_rows"], sep="\n  ")
    return result


if __name__ == "__main__":
    main()
