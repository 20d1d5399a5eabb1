"""Explicit Runge-Kutta solvers from Butcher tableaux, on the probability-flow ODE.

Two equivalent forms of the ODE, chosen by ``space``:

- ``'t'`` (default): ``dx/dt = model.velocity(x, t)`` in the path's own time. Natural
  for rectified flow (straight paths) and EDM (where it is EDM's ODE).
- ``'edm'``: Karras et al. (2022)'s form, ``dy/dr = eps(x, t)`` with ``y = x / alpha``
  and ``r = sigma / alpha``; this is how EDM and k-diffusion run Heun on VP models,
  and it avoids the stiffness of VP paths in t near the data end. Needs alpha > 0
  on the grid (so not t = 1 on rectified flow). On the EDM path both forms agree.

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
    space: str = eqx.field(static=True, default="t")

    def __check_init__(self):
        self.tableau.validate()
        if self.space not in ("t", "edm"):
            raise ValueError(f"space must be 't' or 'edm', got {self.space!r}")

    @property
    def order(self) -> int:
        return self.nominal_order

    @property
    def num_stages(self) -> int:
        return len(self.tableau.b)

    def nfe(self, num_steps: int) -> int:
        return self.num_stages * num_steps

    def step(self, model, ts, i, state, cond, key):
        path = model.path
        t, t_next = ts[i], ts[i + 1]
        if self.space == "t":
            y, s0, s1 = state.x, t, t_next
            to_time = lambda s: s  # noqa: E731
            to_x = lambda y, tt: y  # noqa: E731
            field = lambda y, tt: model.velocity(y, tt, **cond)  # noqa: E731
        else:
            y, s0, s1 = state.x / path.alpha(t), jnp.exp(-path.lam(t)), jnp.exp(-path.lam(t_next))
            to_time = lambda r: path.t_from_lam(-jnp.log(r))  # noqa: E731
            to_x = lambda y, tt: path.alpha(tt) * y  # noqa: E731
            field = lambda y, tt: model.eps(path.alpha(tt) * y, tt, **cond)  # noqa: E731
        h = s1 - s0
        a, b, c = self.tableau
        ks = []
        for j in range(self.num_stages):
            yj = y
            for coeff, k in zip(a[j], ks):
                if coeff != 0.0:
                    yj = yj + (h * coeff) * k
            tj = t if c[j] == 0.0 else t_next if c[j] == 1.0 else to_time(s0 + c[j] * h)
            ks.append(field(yj, tj))
        y_next = y + sum((h * bj) * k for bj, k in zip(b, ks) if bj != 0.0)
        return SimpleState(to_x(y_next, t_next))


def euler(space: str = "t") -> ExplicitRungeKutta:
    """Forward Euler, order 1, one model call a step.

    Args:
        space: ``'t'`` (``dx/dt = velocity``) or ``'edm'`` (Karras et al.'s ``x / alpha`` form).

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(js.RectifiedFlow(), "velocity")
        >>> x = js.sample(model, js.euler(), js.uniform(model.path, 10), js.initial_noise(jax.random.key(1), (4, 2)))
        >>> x.shape, js.euler().order, js.euler().nfe(10)
        ((4, 2), 1, 10)
    """
    return ExplicitRungeKutta(ButcherTableau(((),), (1.0,), (0.0,)), 1, "euler", space)


def heun(space: str = "t") -> ExplicitRungeKutta:
    """Heun's method (explicit trapezoid), order 2, two model calls a step.

    With ``space='edm'`` this is the deterministic sampler of Karras et al. (2022), arXiv 2206.00364.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(js.VPCosine(), "eps")
        >>> ts = js.edm(model.path, 9, **js.compare.edm_interval(model.path))
        >>> solver = js.heun(space="edm")
        >>> js.sample(model, solver, ts, js.initial_noise(jax.random.key(1), (4, 2))).shape, solver.nfe(9)
        ((4, 2), 18)
    """
    return ExplicitRungeKutta(ButcherTableau(((), (1.0,)), (0.5, 0.5), (0.0, 1.0)), 2, "heun", space)


def midpoint(space: str = "t") -> ExplicitRungeKutta:
    """Explicit midpoint, order 2, two model calls a step.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(js.RectifiedFlow(), "velocity")
        >>> x = js.sample(model, js.midpoint(), js.power(model.path, 4), js.initial_noise(jax.random.key(1), (4, 2)))
        >>> x.shape, js.midpoint().nfe(4)
        ((4, 2), 8)
    """
    return ExplicitRungeKutta(ButcherTableau(((), (0.5,)), (0.0, 1.0), (0.0, 0.5)), 2, "midpoint", space)


def kutta3(space: str = "t") -> ExplicitRungeKutta:
    """Kutta's third-order method, three model calls a step.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(js.RectifiedFlow(), "velocity")
        >>> x = js.sample(model, js.kutta3(), js.uniform(model.path, 4), js.initial_noise(jax.random.key(1), (4, 2)))
        >>> x.shape, js.kutta3().order, js.kutta3().nfe(4)
        ((4, 2), 3, 12)
    """
    return ExplicitRungeKutta(
        ButcherTableau(((), (0.5,), (-1.0, 2.0)), (1 / 6, 2 / 3, 1 / 6), (0.0, 0.5, 1.0)), 3, "kutta3", space)


def rk4(space: str = "t") -> ExplicitRungeKutta:
    """The classical fourth-order Runge-Kutta method, four model calls a step.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(js.RectifiedFlow(), "velocity")
        >>> noise = js.initial_noise(jax.random.key(1), (4, 2))
        >>> x = js.sample(model, js.rk4(), js.uniform(model.path, 4), noise)
        >>> x.shape, js.rk4().order, js.rk4().nfe(4)
        ((4, 2), 4, 16)
    """
    return ExplicitRungeKutta(
        ButcherTableau(((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6),
                       (0.0, 0.5, 0.5, 1.0)), 4, "rk4", space)
