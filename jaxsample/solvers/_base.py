"""The solver interface: an immutable pytree with pure ``init`` and ``step``."""

from __future__ import annotations

import abc
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax

__all__ = ["AbstractSolver", "SimpleState", "per_sample_normal"]


class SimpleState(NamedTuple):
    """State of a one-step solver: just the current sample."""

    x: jax.Array


class AbstractSolver(eqx.Module):
    """A sampler step for ``x_{t_i} -> x_{t_{i+1}}`` on a decreasing grid ``ts``.

    A solver is an immutable pytree: its hyperparameters are static fields, its
    learnable parameters (if any) are array leaves. ``init`` and ``step`` are pure:

    - ``init(model, ts, x, cond) -> state``: the state is a NamedTuple with field
      ``x`` (the current sample) plus fixed-shape buffers (e.g. a history of shape
      ``(order, *x.shape)``). ``init`` never calls the model.
    - ``step(model, ts, i, state, cond, key) -> state``: advances from ``ts[i]`` to
      ``ts[i + 1]``. ``i`` may be traced. ``cond`` is a dict of keyword arguments for
      the model. ``key`` is ``None`` for deterministic solvers, and for stochastic ones
      an array of per-sample keys of shape ``(batch,)`` so that the noise of sample k
      depends on its own key alone.
    """

    is_stochastic: ClassVar[bool] = False
    #: Whether ``ts`` must be strictly decreasing (the non-stationary family allows repeated times).
    strict_grid: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def order(self) -> int:
        """Nominal order of convergence (weak order for stochastic solvers)."""

    def nfe(self, num_steps: int) -> int:
        """Model evaluations used for ``num_steps`` steps (default: one a step)."""
        return num_steps

    def init(self, model, ts, x, cond) -> Any:
        """The initial state (default: just the sample, for solvers with no history)."""
        return SimpleState(x)

    @abc.abstractmethod
    def step(self, model, ts, i, state, cond, key) -> Any: ...


def per_sample_normal(keys, x):
    """Standard normal noise shaped like ``x``, drawn per sample from ``keys`` of shape (batch,)."""
    return jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(keys)
