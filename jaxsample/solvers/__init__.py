"""Solvers: immutable pytrees with pure ``init`` and ``step`` (see :class:`AbstractSolver`).

- Runge-Kutta from Butcher tableaux: :func:`euler`, :func:`heun`, :func:`midpoint`, :func:`kutta3`, :func:`rk4`.
- Exponential integrators: :func:`ddim`, :func:`dpm_solver`, :func:`dpm_solver_pp_2s`, :func:`dpm_solver_pp_2m`,
  :func:`dpm_solver_pp_3m`, :func:`unipc`, :func:`deis`, :func:`ipndm`;
  :func:`unic` plugs UniPC's corrector into any of the one-call multistep ones.
- Stochastic: :func:`euler_maruyama`, :func:`ddpm_ancestral`, :func:`edm_stochastic_heun`,
  :func:`dpm_solver_pp_2m_sde`, :func:`restart` (the Restart sampler; the exponential ones beside their ODE versions, in :mod:`~jaxsample.solvers.ddim`
  and :mod:`~jaxsample.solvers.dpm_solver`).
- Non-stationary: :class:`NonStationary`, :func:`embed` (any linear solver as NS coefficients) and the
  learned :class:`BespokeNonStationary` (BNS).
- Learned-noise stochastic: :class:`AdaSDE` and :func:`noise_injected` (AdaSDE's gamma on any solver).
- DPM-Solver-v3: :func:`dpm_solver_v3` with calibrated empirical model statistics (:class:`EMS`).
- Score-normalised: :func:`deis_sn`, :func:`dpm_solver_sn`, :func:`score_normalise` with a calibrated
  :class:`ScoreNormStats` (DEIS-SN).

:mod:`~jaxsample.solvers.registry` is the one list of named solvers; :func:`save_solver` and
:func:`load_solver` the one file format of learned ones.
"""

from jaxsample.solvers._base import AbstractSolver, SimpleState, per_sample_normal
from jaxsample.solvers.adasde import AdaSDE, LearnedAdaSDE, NoiseInjected, inject_noise, noise_injected
from jaxsample.solvers.score_norm import (DEISSN, DPMSolverSN, ScoreNormStats, deis_sn, dpm_solver_sn,
                                       score_normalise)
from jaxsample.solvers.diffrax_interop import DiffraxAdapter, ProbabilityFlow, as_diffrax, probability_flow_term
from jaxsample.solvers.ddim import DDIM, CFGPlusPlus, DDPMAncestral, cfg_pp, ddim, ddpm_ancestral
from jaxsample.solvers.deis import DEIS, deis
from jaxsample.solvers.dpm_solver import (DPMSolver, DPMSolverPP2MSDE, DPMSolverPP2S, DPMSolverPPMultistep, dpm_solver,
                                          dpm_solver_pp_2m, dpm_solver_pp_2m_sde, dpm_solver_pp_2s, dpm_solver_pp_3m)
from jaxsample.solvers.ipndm import IPNDM, ipndm
from jaxsample.solvers.unipc import UniPC, unipc
from jaxsample.solvers.unic import UniC, unic
from jaxsample.solvers.dpm_solver_v3 import EMS, DPMSolverV3, dpm_solver_v3
from jaxsample.solvers.nonstationary import BespokeNonStationary, NonStationary, embed
from jaxsample.solvers import _registry as registry
from jaxsample.solvers._io import load_solver, read_header, save_solver
from jaxsample.solvers.runge_kutta import ButcherTableau, ExplicitRungeKutta, euler, heun, kutta3, midpoint, rk4
from jaxsample.solvers.stochastic import EDMStochasticHeun, EulerMaruyama, edm_stochastic_heun, euler_maruyama
from jaxsample.solvers.restart import Restart, restart

__all__ = [
    "AbstractSolver", "SimpleState", "per_sample_normal",
    "DiffraxAdapter", "ProbabilityFlow", "as_diffrax", "probability_flow_term",
    "ButcherTableau", "ExplicitRungeKutta", "euler", "heun", "midpoint", "kutta3", "rk4",
    "DDIM", "cfg_pp", "DEIS", "IPNDM", "DPMSolver", "DPMSolverPP2S", "DPMSolverPPMultistep", "UniPC",
    "ddim", "deis", "dpm_solver", "dpm_solver_pp_2m", "dpm_solver_pp_2s", "dpm_solver_pp_3m", "ipndm", "unipc",
    "UniC", "unic",
    "EMS", "DPMSolverV3", "dpm_solver_v3",
    "NonStationary", "BespokeNonStationary", "embed",
    "registry", "save_solver", "load_solver", "read_header",
    "AdaSDE", "LearnedAdaSDE", "NoiseInjected", "inject_noise", "noise_injected",
    "ScoreNormStats", "DEISSN", "DPMSolverSN", "deis_sn", "dpm_solver_sn", "score_normalise",
    "DDPMAncestral", "DPMSolverPP2MSDE", "EDMStochasticHeun", "EulerMaruyama",
    "ddpm_ancestral", "dpm_solver_pp_2m_sde", "edm_stochastic_heun", "euler_maruyama",
    "Restart", "restart",
]
