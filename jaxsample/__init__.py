"""jaxsample: fast samplers for diffusion and flow models in JAX.

Layers (see DESIGN.md): paths -> models -> grids -> solvers -> sampling -> distill.
"""

from jaxsample import (compare, data, distill, features, grids, metrics, models, nets, objectives, parallel, paths,
                       solvers, teachers, train)
from jaxsample.distill.bns import BespokeNonStationary
from jaxsample.distill.catch_up import CatchUpNet, catch_up_model, train_catch_up
from jaxsample.distill.progressive import progressive_distill, student_model
from jaxsample.teachers import list_teachers, load_teacher
from jaxsample.data import ArrayBatcher, image_batches, load_digits, toy_batches
from jaxsample.features import digits_frechet_distance, frechet_distance, kid, mmd, sliced_wasserstein
from jaxsample.grids import check_grid, edm, get_grid, logsnr_uniform, power, uniform
from jaxsample.metrics import mean_log_likelihood, psnr, rmse
from jaxsample.models import (PREDICTIONS, GaussianMixture, Model, change_path, convert_prediction, equivalent_time,
                              flip_time)
from jaxsample.nets import MLP, UNet, guided, network_model
from jaxsample.objectives import diffusion_loss, flow_matching_loss
from jaxsample.paths import EDM, AbstractPath, DiscreteDDPM, NoiseScaled, RectifiedFlow, VPCosine, VPLinear, get_path
from jaxsample.sampling import count_model_calls, initial_noise, reference_sample, sample, sample_keys
from jaxsample.solvers import (AbstractSolver, AdaSDE, ScoreNormStats, noise_injected, as_diffrax, ddim, ddpm_ancestral, deis, deis_sn,
                               dpm_solver, dpm_solver_pp_2m, dpm_solver_pp_2m_sde, dpm_solver_pp_2s, dpm_solver_pp_3m,
                               dpm_solver_sn, edm_stochastic_heun, embed, euler, euler_maruyama, heun, ipndm, kutta3,
                               midpoint, probability_flow_term, rk4, score_normalise, unipc)
from jaxsample.train import TrainState, fit, make_mesh, make_optimizer, replicate, shard_batch, train_step

__version__ = "0.1.0"

__all__ = [
    "compare", "data", "distill", "features", "grids", "metrics", "models", "nets", "objectives", "parallel", "paths", "solvers",
    "teachers", "train", "list_teachers", "load_teacher",
    "ArrayBatcher", "image_batches", "load_digits", "toy_batches",
    "digits_frechet_distance", "frechet_distance", "kid", "mmd", "sliced_wasserstein",
    "MLP", "UNet", "guided", "network_model", "diffusion_loss", "flow_matching_loss",
    "change_path", "equivalent_time", "NoiseScaled",
    "TrainState", "fit", "make_mesh", "make_optimizer", "replicate", "shard_batch", "train_step",
    "check_grid", "edm", "get_grid", "logsnr_uniform", "power", "uniform",
    "mean_log_likelihood", "psnr", "rmse",
    "PREDICTIONS", "GaussianMixture", "Model", "convert_prediction", "flip_time",
    "EDM", "AbstractPath", "DiscreteDDPM", "RectifiedFlow", "VPCosine", "VPLinear", "get_path",
    "count_model_calls", "initial_noise", "reference_sample", "sample", "sample_keys",
    "AbstractSolver", "as_diffrax", "euler", "heun", "kutta3", "midpoint", "probability_flow_term", "rk4",
    "ddim", "deis", "dpm_solver", "dpm_solver_pp_2m", "dpm_solver_pp_2s", "dpm_solver_pp_3m", "ipndm", "unipc",
    "ddpm_ancestral", "dpm_solver_pp_2m_sde", "edm_stochastic_heun", "euler_maruyama", "embed",
    "AdaSDE", "noise_injected", "ScoreNormStats", "deis_sn", "dpm_solver_sn", "score_normalise",
    "BespokeNonStationary", "progressive_distill", "student_model", "CatchUpNet", "catch_up_model", "train_catch_up",
]
