"""jaxsample: fast samplers for diffusion and flow models in JAX.

Layers (see DESIGN.md): paths -> models -> grids -> solvers -> sampling -> distill.
"""

from jaxsample import compare, grids, metrics, models, paths, solvers
from jaxsample.grids import check_grid, edm, get_grid, logsnr_uniform, power, uniform
from jaxsample.metrics import mean_log_likelihood, psnr, rmse
from jaxsample.models import PREDICTIONS, GaussianMixture, Model, convert_prediction, flip_time
from jaxsample.paths import EDM, AbstractPath, DiscreteDDPM, RectifiedFlow, VPCosine, VPLinear, get_path
from jaxsample.sampling import count_model_calls, initial_noise, reference_sample, sample, sample_keys
from jaxsample.solvers import AbstractSolver, as_diffrax, euler, heun, kutta3, midpoint, probability_flow_term, rk4

__version__ = "0.1.0"

__all__ = [
    "compare", "grids", "metrics", "models", "paths", "solvers",
    "check_grid", "edm", "get_grid", "logsnr_uniform", "power", "uniform",
    "mean_log_likelihood", "psnr", "rmse",
    "PREDICTIONS", "GaussianMixture", "Model", "convert_prediction", "flip_time",
    "EDM", "AbstractPath", "DiscreteDDPM", "RectifiedFlow", "VPCosine", "VPLinear", "get_path",
    "count_model_calls", "initial_noise", "reference_sample", "sample", "sample_keys",
    "AbstractSolver", "as_diffrax", "euler", "heun", "kutta3", "midpoint", "probability_flow_term", "rk4",
]
