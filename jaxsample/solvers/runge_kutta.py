"""Explicit Runge-Kutta solvers from Butcher tableaux, on the probability-flow ODE.

The ODE is ``dx/dt = model.velocity(x, t)``, in the path's own time variable.

Example:
    >>> import jax
    >>> from jaxsample import grids, models, paths, sample, solvers
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
    >>> model = gmm.model(paths.RectifiedFlow(), "velocity")
    >>> ts = grids.uniform(model.path, 8)
    >>> x = sample(model, solvers.heun(), ts, jax.random.normal(jax.random.key(1), (3, 2)))
    >>> x.shape, solvers.heun().nfe(8)
    ((3, 2), 16)
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp

from jaxsample.solvers._base import AbstractSolver, SimpleState

__all__ = ["ButcherTableau", "ExplicitRungeKutta", "euler", "heun", "midpoint", "kutta3", "rk4"]


class ButcherTableau(NamedTuple):
    """An explicit tableau: ``a`` strictly lower triangular (as rows), weights ``b``, nodes ``c``."""

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]

    def validate(self) -> None:
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s:
            raise ValueError(f"tableau needs s = {s} rows of a and s nodes c")
        for j, row in enumerate(self.a):
            if len(row) != j:
                raise ValueError(f"row {j} of a must have {j} entries (explicit method), got {len(row)}")
            if abs(sum(row) - self.c[j]) > 1e-12:
                raise ValueError(f"row {j} of a must sum to c[{j}] = {self.c[j]}")
        if abs(sum(self.b) - 1.0) > 1e-12:
            raise ValueError("weights b must sum to 1")


class ExplicitRungeKutta(AbstractSolver):
    """Explicit Runge-Kutta on ``dx/dt = velocity(x, t)``: ``len(b)`` model calls a step."""

    tableau: ButcherTableau = eqx.field(static=True)
    nominal_order: int = eqx.field(static=True)
    name: str = eqx.field(static=True, default="rk")

    def __check_init__(self):
        self.tableau.validate()

    @property
    def order(self) -> int:
        return self.nominal_order

    @property
    def num_stages(self) -> int:
        return len(self.tableau.b)

    def nfe(self, num_steps: int) -> int:
        return self.num_stages * num_steps

    def init(self, model, ts, x, cond):
        return SimpleState(x)

    def step(self, model, ts, i, state, cond, key):
        x, t = state.x, ts[i]
        h = ts[i + 1] - t
        a, b, c = self.tableau
        ks = []
        for j in range(self.num_stages):
            xj = x
            for coeff, k in zip(a[j], ks):
                if coeff != 0.0:
                    xj = xj + (h * coeff) * k
            ks.append(model.velocity(xj, t + c[j] * h, **cond))
        dx = sum((h * bj) * k for bj, k in zip(b, ks) if bj != 0.0)
        return SimpleState(x + dx)


def euler() -> ExplicitRungeKutta:
    """Forward Euler, order 1."""
    return ExplicitRungeKutta(ButcherTableau(((),), (1.0,), (0.0,)), 1, "euler")


def heun() -> ExplicitRungeKutta:
    """Heun's method (explicit trapezoid), order 2."""
    return ExplicitRungeKutta(ButcherTableau(((), (1.0,)), (0.5, 0.5), (0.0, 1.0)), 2, "heun")


def midpoint() -> ExplicitRungeKutta:
    """Explicit midpoint, order 2."""
    return ExplicitRungeKutta(ButcherTableau(((), (0.5,)), (0.0, 1.0), (0.0, 0.5)), 2, "midpoint")


def kutta3() -> ExplicitRungeKutta:
    """Kutta's third-order method."""
    return ExplicitRungeKutta(
        ButcherTableau(((), (0.5,), (-1.0, 2.0)), (1 / 6, 2 / 3, 1 / 6), (0.0, 0.5, 1.0)), 3, "kutta3")


def rk4() -> ExplicitRungeKutta:
    """The classical fourth-order Runge-Kutta method."""
    return ExplicitRungeKutta(
        ButcherTableau(((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6),
                       (0.0, 0.5, 0.5, 1.0)), 4, "rk4")
