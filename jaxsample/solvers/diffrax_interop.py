"""Run jaxsample solvers inside ``diffrax.diffeqsolve``.

Example:
    >>> import diffrax, jax
    >>> from jaxsample import grids, models, paths, solvers, sample
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
    >>> model = gmm.model(paths.RectifiedFlow(), "velocity")
    >>> ts = grids.uniform(model.path, 10)
    >>> noise = jax.random.normal(jax.random.key(1), (4, 2))
    >>> sol = diffrax.diffeqsolve(
    ...     solvers.probability_flow_term(model), solvers.as_diffrax(solvers.heun(), ts),
    ...     t0=ts[0], t1=ts[-1], dt0=None, y0=noise, args={},
    ...     stepsize_controller=diffrax.StepTo(ts))
    >>> bool(abs(sol.ys[-1] - sample(model, solvers.heun(), ts, noise)).max() < 1e-6)
    True
"""

from __future__ import annotations

from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from jaxsample.solvers._base import AbstractSolver

__all__ = ["ProbabilityFlow", "probability_flow_term", "DiffraxAdapter", "as_diffrax"]


class ProbabilityFlow(eqx.Module):
    """The probability-flow vector field ``(t, y, args) -> model.velocity(y, t, **args)``."""

    model: eqx.Module

    def __call__(self, t, y, args):
        return self.model.velocity(y, t, **(args or {}))


def probability_flow_term(model) -> diffrax.ODETerm:
    """A ``diffrax.ODETerm`` for the model's probability-flow ODE.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(js.RectifiedFlow(), "velocity")
        >>> term = js.probability_flow_term(model)
        >>> x, t = jnp.ones((3, 2)), jnp.asarray(0.5)
        >>> bool(jnp.allclose(term.vf(t, x, {}), model.velocity(x, t)))
        True
    """
    return diffrax.ODETerm(ProbabilityFlow(model))


class DiffraxAdapter(diffrax.AbstractSolver):
    """A deterministic jaxsample solver as a ``diffrax.AbstractSolver``.

    Use with ``stepsize_controller=diffrax.StepTo(ts)`` on the same ``ts`` the adapter
    holds, and the term from :func:`probability_flow_term`. The solver state carries
    the step index explicitly.
    """

    solver: AbstractSolver
    ts: jax.Array

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return self.solver.order

    def _model(self, terms):
        while not isinstance(terms, diffrax.ODETerm) and hasattr(terms, "term"):
            terms = terms.term  # diffrax wraps terms (WrapTerm) when integrating backwards in time
        vf = getattr(terms, "vector_field", None)
        if not isinstance(vf, ProbabilityFlow):
            raise ValueError("terms must come from jaxsample.solvers.probability_flow_term(model)")
        return vf.model

    def init(self, terms, t0, t1, y0, args):
        state = self.solver.init(self._model(terms), self.ts, y0, args or {})
        return jnp.asarray(0), state

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        i, state = solver_state
        state = self.solver.step(self._model(terms), self.ts, i, state._replace(x=y0), args or {}, None)
        y1 = state.x
        return y1, None, dict(y0=y0, y1=y1), (i + 1, state), diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


def as_diffrax(solver: AbstractSolver, ts) -> DiffraxAdapter:
    """Wrap a deterministic jaxsample solver for ``diffrax.diffeqsolve`` on grid ``ts``.

    Use it with ``stepsize_controller=diffrax.StepTo(ts)`` and :func:`probability_flow_term`;
    the solution at ``ts[-1]`` equals ``jaxsample.sample``'s (see the module example).

    Raises:
        ValueError: if ``solver`` is stochastic.

    Example:
        >>> import jax.numpy as jnp
        >>> import jaxsample as js
        >>> adapter = js.as_diffrax(js.dpm_solver_pp_2m(), jnp.linspace(1.0, 0.0, 5))
        >>> adapter.order(None)
        2
    """
    if solver.is_stochastic:
        raise ValueError(f"solver must be deterministic to run in diffrax, got {type(solver).__name__}")
    return DiffraxAdapter(solver, jnp.asarray(ts))
