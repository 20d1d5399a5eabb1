"""Solvers: immutable pytrees with pure ``init`` and ``step`` (see :class:`AbstractSolver`)."""

from jaxsample.solvers._base import AbstractSolver, SimpleState, per_sample_normal
from jaxsample.solvers.diffrax_interop import DiffraxAdapter, ProbabilityFlow, as_diffrax, probability_flow_term
from jaxsample.solvers.runge_kutta import ButcherTableau, ExplicitRungeKutta, euler, heun, kutta3, midpoint, rk4

__all__ = [
    "AbstractSolver", "SimpleState", "per_sample_normal",
    "DiffraxAdapter", "ProbabilityFlow", "as_diffrax", "probability_flow_term",
    "ButcherTableau", "ExplicitRungeKutta", "euler", "heun", "midpoint", "kutta3", "rk4",
]
