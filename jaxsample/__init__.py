"""jaxsample: fast samplers for diffusion and flow models in JAX.

Layers (see docs/DESIGN.md): paths -> models -> grids -> solvers -> sampling -> distill.

The public names below load on first use (PEP 562), so ``import jaxsample.solvers`` or
``import jaxsample.sampling`` pulls in neither flax, optax, orbax nor matplotlib: only the
layers a program touches are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Sub-modules reachable as ``jaxsample.<name>``.
_MODULES = ("compare", "data", "distill", "features", "grids", "metrics", "models", "nets", "objectives", "parallel",
            "paths", "peers", "sampling", "solvers", "tasks", "teachers", "train")

#: Public name -> the module that defines it.
_NAMES = {
    "jaxsample.distill.catch_up": ("CatchUpNet", "catch_up_model", "train_catch_up"),
    "jaxsample.distill.progressive": ("progressive_distill", "student_model"),
    "jaxsample.distill.ld3": ("LearnedGrid",),
    "jaxsample.teachers": ("list_teachers", "load_teacher"),
    "jaxsample.data": ("ArrayBatcher", "image_batches", "load_digits", "toy_batches"),
    "jaxsample.features": ("digits_frechet_distance",),
    "jaxsample.metrics": ("frechet_distance", "kid", "mmd", "sliced_wasserstein", "mean_log_likelihood", "psnr",
                          "rmse"),
    "jaxsample.grids": ("ays_sigmas", "check_grid", "edm", "from_sigmas", "get_grid", "logsnr_uniform", "power",
                        "shifted", "time_uniform", "uniform"),
    "jaxsample.models": ("PREDICTIONS", "GaussianMixture", "Model", "change_path", "clip_x0", "convert_prediction",
                         "dynamic_threshold", "equivalent_time", "flip_time"),
    "jaxsample.nets": ("MLP", "UNet", "guided", "network_model"),
    "jaxsample.objectives": ("diffusion_loss", "flow_matching_loss"),
    "jaxsample.paths": ("EDM", "AbstractPath", "DiscreteDDPM", "NoiseScaled", "RectifiedFlow", "VPCosine", "VPLinear",
                        "get_path"),
    "jaxsample.sampling": ("count_model_calls", "initial_noise", "reference_sample", "sample", "sample_keys"),
    "jaxsample.solvers": ("AbstractSolver", "AdaSDE", "ScoreNormStats", "noise_injected", "as_diffrax", "cfg_pp", "ddim",
                          "ddpm_ancestral", "deis", "deis_sn", "dpm_solver", "dpm_solver_v3", "DPMSolverV3", "EMS", "dpm_solver_pp_2m", "dpm_solver_pp_2m_sde",
                          "dpm_solver_pp_2s", "dpm_solver_pp_3m", "dpm_solver_sn", "edm_stochastic_heun", "embed",
                          "euler", "euler_maruyama", "heun", "ipndm", "kutta3", "midpoint", "probability_flow_term",
                          "restart", "rk4", "score_normalise", "unic", "unipc", "load_solver", "save_solver", "read_header", "registry",
                          "BespokeNonStationary", "LearnedAdaSDE"),
    "jaxsample.train": ("TrainState", "fit", "make_mesh", "make_optimizer", "replicate", "shard_batch", "train_step"),
}
_HOME = {name: module for module, names in _NAMES.items() for name in names}

__all__ = [*_MODULES, *_HOME]


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"jaxsample.{name}")
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'jaxsample' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see the eager imports  # pragma: no cover
    from jaxsample import (compare, data, distill, features, grids, metrics, models, nets, objectives,  # noqa: F401
                           parallel, paths, peers, sampling, solvers, tasks, teachers, train)
