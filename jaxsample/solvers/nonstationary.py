"""Non-stationary (NS) solvers and the exact embedding of classical solvers into them.

Shaul et al., "Bespoke Non-Stationary Solvers for Fast Sampling of Diffusion and Flow
Models" (ICML 2024, arXiv 2403.01329). With ``f_j`` the model's output (by default the
velocity ``u_j = dx/dt``) at state ``x_j`` and time ``t_j``, an NS solver with ``n``
model evaluations is

    x_{i+1} = a_i x_0 + sum_{j <= i} b_{ij} f_j,      i = 0, ..., n - 1,

with its own times ``t_0 >= t_1 >= ... >= t_n``. Every *linear* solver (Runge-Kutta,
Adams-Bashforth, DDIM, DPM-Solver++, ...) is an NS solver: each of its states is a fixed
linear combination of ``x_0`` and the model outputs so far. :func:`embed` computes those
coefficients exactly for any deterministic linear jaxsample solver, by differentiating its
own code with a scripted model (the map is linear, so the Jacobian is the coefficient table).

Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxsample as js
    >>> from jaxsample.solvers import nonstationary as ns
    >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=3, num_components=2)
    >>> model = gmm.model(js.RectifiedFlow(), "velocity")
    >>> ts = js.uniform(model.path, 4)
    >>> solver = ns.embed(js.midpoint(), model.path, ts)       # 8 evaluations
    >>> noise = js.initial_noise(jax.random.key(1), (5, 3))
    >>> x = js.sample(model, solver, solver.times, noise)
    >>> bool(jnp.allclose(x, js.sample(model, js.midpoint(), ts, noise), atol=1e-5))
    True
    >>> solver.num_parameters                                    # n (n + 5) / 2 for n = 8
    52
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.models import Model, change_path, check_prediction, equivalent_time, path_scale
from jaxsample.paths import AbstractPath
from jaxsample.solvers._base import AbstractSolver

__all__ = ["NonStationary", "NSState", "BespokeNonStationary", "embed", "parameter_count"]


def parameter_count(num_steps: int) -> int:
    """Free parameters of an n-step NS solver as BNS counts them: n times, n of a, n (n + 1) / 2 of b."""
    return num_steps * (num_steps + 5) // 2


class NSState(NamedTuple):
    x: jax.Array
    x_init: jax.Array
    outputs: jax.Array  # (n, *x.shape): the model outputs f_0 .. f_{n-1} so far (zeros after)


class NonStationary(AbstractSolver):
    """An NS solver: ``x_{i+1} = a_i x_0 + sum_{j <= i} b_ij f_j``, one model call per step.

    Args:
        times: (n + 1,) evaluation times t_0 .. t_{n-1} and the final time t_n; non-increasing
            (repeated times are allowed: RK4's two mid-step stages share one).
        a: (n,) coefficients of x_0.
        b: (n, n) coefficients of the outputs; only the lower triangle (j <= i) is used.
        field: the model output the coefficients multiply: 'velocity' (the BNS paper's choice),
            'x0' or 'eps'.

    Sample with ``sample(model, solver, solver.times, noise)``.
    """

    times: jax.Array
    a: jax.Array
    b: jax.Array
    field: str = eqx.field(static=True, default="velocity")

    strict_grid = False

    def __check_init__(self):
        check_prediction(self.field, "field")
        n = self.a.shape[0] if hasattr(self.a, "shape") else None
        if n is not None and (self.b.shape != (n, n) or self.times.shape != (n + 1,)):
            raise ValueError(f"an NS solver with n = {n} steps needs times of shape ({n + 1},), a of shape "
                             f"({n},) and b of shape ({n}, {n}); got {self.times.shape}, {self.a.shape}, "
                             f"{self.b.shape}")

    @property
    def num_steps(self) -> int:
        return self.a.shape[0]

    @property
    def num_parameters(self) -> int:
        """Free parameters as counted by BNS (see :func:`parameter_count`)."""
        return parameter_count(self.num_steps)

    @property
    def order(self) -> int:
        return 1  # no fixed order: depends on the coefficients

    def init(self, model, ts, x, cond):
        if ts.shape[0] != self.num_steps + 1:
            raise ValueError(f"ts must have {self.num_steps + 1} times for this NS solver, got {ts.shape[0]}")
        return NSState(x, x, jnp.zeros((self.num_steps,) + x.shape, x.dtype))

    def step(self, model, ts, i, state, cond, key):
        f = model.predict(self.field, state.x, ts[i], **cond)
        outputs = state.outputs.at[i].set(f)
        row = jnp.where(jnp.arange(self.num_steps) <= i, self.b[i], 0.0).astype(f.dtype)
        x_next = self.a[i].astype(f.dtype) * state.x_init + jnp.tensordot(row, outputs, axes=1)
        return NSState(x_next, state.x_init, outputs)


def embed(solver: AbstractSolver, path: AbstractPath, ts, *, field: str = "velocity",
          dtype=jnp.float32, ns_path: Optional[AbstractPath] = None) -> NonStationary:
    """The NS solver that reproduces a deterministic linear ``solver`` on grid ``ts`` exactly.

    Works for any jaxsample solver whose update is linear in the current state and the
    model's outputs (all the Runge-Kutta, multistep and exponential integrators; the
    coefficients may depend on the times in any way). The coefficients are computed in
    float64 by differentiating the solver's own ``init``/``step`` code against a scripted
    model, then cast to ``dtype``.

    Args:
        solver: the solver to embed (not stochastic).
        path: the path of the models it will run on (conversions between predictions depend on it).
        ts: the solver's grid.
        field: the model output the NS coefficients multiply ('velocity', 'x0' or 'eps').
        ns_path: the path the NS solver runs on, if not ``path``: the solver, run on ``path``,
            is expressed as an NS solver for :func:`~jaxsample.models.change_path` ``(model,
            ns_path)`` (times, states and outputs on ``ns_path``; e.g. a classical solver as
            the initialisation of a BNS solver on a :class:`~jaxsample.paths.NoiseScaled` path).

    Raises:
        ValueError: if the solver is stochastic, or turns out not to be linear and causal.

    Example:
        >>> import jaxsample as js
        >>> path = js.RectifiedFlow()
        >>> ns = js.embed(js.euler(), path, js.uniform(path, 2))   # Euler: x_{i+1} = x_0 + sum_j h_j u_j
        >>> ns.a.tolist(), ns.b.tolist()
        ([1.0, 1.0], [[-0.5, 0.0], [-0.5, -0.5]])
    """
    check_prediction(field, "field")
    if solver.is_stochastic:
        raise ValueError(f"solver must be deterministic to embed, got {type(solver).__name__}")
    # Eager mode: a lax.cond on the (concrete) step index then runs only its taken branch, so the
    # scripted model sees exactly the calls a real run makes.
    with jax.enable_x64(True), jax.disable_jit():
        ts64 = jnp.asarray(np.asarray(ts, np.float64))
        num_steps = ts64.shape[0] - 1
        n = solver.nfe(num_steps)

        def run(x_init, outputs):
            calls = []

            def scripted(x, t):
                k = len(calls)
                calls.append((x.reshape(()), t))
                return jnp.broadcast_to(outputs[min(k, n - 1)], x.shape)

            if ns_path is None:
                model, first, last = Model(scripted, path, field), 1.0, 1.0
            else:  # the scripted model lives on ns_path; the solver sees it through the transform
                model = change_path(Model(scripted, ns_path, field), path)
                first, last = (path_scale(ns_path, path, t)[1] for t in (ts64[0], ts64[-1]))
            state = solver.init(model, ts64, (x_init * first).reshape(1, 1), {})
            for i in range(num_steps):
                state = solver.step(model, ts64, i, state, {}, None)
            if len(calls) != n:
                raise ValueError(f"{type(solver).__name__} made {len(calls)} model calls on {num_steps} steps, "
                                 f"but declares nfe = {n}: cannot embed it")
            states = jnp.stack([c[0] for c in calls] + [state.x.reshape(()) / last])
            return states, [c[1] for c in calls]

        x_init = jnp.float64(0.0)
        outputs = jnp.zeros(n, jnp.float64)
        _, times = run(x_init, outputs)
        t_last = ts64[-1] if ns_path is None else equivalent_time(path, ns_path, ts64[-1])
        times = np.array([float(t) for t in times] + [float(t_last)])
        d_init, d_out = jax.jacobian(lambda x, o: run(x, o)[0], argnums=(0, 1))(x_init, outputs)
        a, b = np.asarray(d_init), np.asarray(d_out)
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise ValueError(f"embedding {type(solver).__name__} with field={field!r} gives non-finite "
                             f"coefficients: converting the {field!r} output divides by alpha or sigma = 0 "
                             f"somewhere on the grid; use field='velocity' there")
        if not (np.isclose(a[0], 1.0, rtol=0, atol=1e-12) and np.all(b[0] == 0)):
            raise ValueError(f"{type(solver).__name__} does not evaluate the model first at the initial state")
        a, b = a[1:], b[1:]
        # Linearity: the states at random inputs equal the linear map applied to them.
        probe_x, probe_o = np.float64(0.37), np.linspace(-1.0, 1.3, n)
        states, _ = run(jnp.float64(probe_x), jnp.asarray(probe_o))
        if not np.allclose(np.asarray(states)[1:], a * probe_x + b @ probe_o, rtol=1e-9, atol=1e-9):
            raise ValueError(f"{type(solver).__name__} is not linear in the state and model outputs")
        if np.any(np.abs(np.triu(b, 1)) > 1e-12):
            raise ValueError(f"{type(solver).__name__} is not causal: a state depends on a later output")
        b = np.tril(b)
    return NonStationary(jnp.asarray(times, dtype), jnp.asarray(a, dtype), jnp.asarray(b, dtype), field)


_MIN_INCREMENT = 1e-6


class BespokeNonStationary(AbstractSolver):
    """A learned NS solver: ``time_logits`` (n,), ``a`` (n,), ``b`` (n, n) (lower triangle used).

    The times run from ``t_start`` to ``t_end``: ``t_0 = t_start`` and
    ``t_{i+1} = t_start + (t_end - t_start) * sum_{k <= i} softmax(time_logits)_k``, so
    ``t_n = t_end`` and the times are strictly monotone. Sample with
    ``sample(model, solver, solver.times, noise)``.
    """

    time_logits: jax.Array
    a: jax.Array
    b: jax.Array
    t_start: float = eqx.field(static=True)
    t_end: float = eqx.field(static=True)
    field: str = eqx.field(static=True, default="velocity")

    strict_grid = False

    def __check_init__(self):
        check_prediction(self.field, "field")
        if not self.t_start > self.t_end:
            raise ValueError(f"t_start must be greater than t_end, got {self.t_start} and {self.t_end}")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_ns(cls, ns: NonStationary, t_start=None, t_end=None) -> "BespokeNonStationary":
        """Parameters that reproduce an NS solver (its times must be non-increasing)."""
        times = np.asarray(ns.times, np.float64)
        t_start = float(times[0]) if t_start is None else float(t_start)
        t_end = float(times[-1]) if t_end is None else float(t_end)
        frac = np.diff((times - t_start) / (t_end - t_start))
        if np.any(frac < -1e-9):
            raise ValueError("the NS solver's times must run monotonically from t_start to t_end")
        logits = np.log(np.maximum(frac, _MIN_INCREMENT))
        dtype = ns.a.dtype
        return cls(jnp.asarray(logits, dtype), ns.a, jnp.tril(ns.b), t_start, t_end, ns.field)

    @classmethod
    def from_solver(cls, solver: AbstractSolver, path: AbstractPath, ts, field: str = "velocity",
                    ns_path: Optional[AbstractPath] = None):
        """Initialise from the exact embedding of a classical solver on grid ``ts`` (run on
        ``path``; with ``ns_path``, expressed on that path: see :func:`~jaxsample.embed`)."""
        return cls.from_ns(embed(solver, path, ts, field=field, ns_path=ns_path))

    # -- the solver ---------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return self.a.shape[0]

    @property
    def num_parameters(self) -> int:
        return parameter_count(self.num_steps)

    @property
    def times(self):
        frac = jnp.cumsum(jax.nn.softmax(self.time_logits))
        ts = self.t_start + (self.t_end - self.t_start) * jnp.concatenate([jnp.zeros(1, frac.dtype), frac])
        return ts.at[-1].set(self.t_end)

    def as_ns(self) -> NonStationary:
        return NonStationary(self.times, self.a, jnp.tril(self.b), self.field)

    @property
    def order(self) -> int:
        return 1

    def init(self, model, ts, x, cond):
        return self.as_ns().init(model, ts, x, cond)

    def step(self, model, ts, i, state, cond, key):
        return self.as_ns().step(model, ts, i, state, cond, key)
