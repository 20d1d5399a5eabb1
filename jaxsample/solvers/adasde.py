"""AdaSDE: a second-order step with learned per-step noise injection (and its plug-in form).

Wang et al., "Adaptive Stochastic Coefficients for Accelerating Diffusion Sampling"
(AdaSDE, arXiv 2510.23285; code Westlake-AGI-Lab/AdaSDE ``solvers.py``). The step is written in
EDM's variables ``x~ = x / alpha`` and ``s = sigma / alpha = exp(-lam)`` (as EDM does for VP
models) and mapped back to ``x``, so it runs on every path and prediction type. Step i, from
``s_i`` to ``s_{i+1}``, with per-step scalars ``gamma_i`` (noise), ``r_i`` (midpoint),
``a_i`` (time scale) and ``c_i`` (direction scale)::

    s_hat = (1 + gamma) s_i;            x~_hat = x~_i + sqrt(s_hat^2 - s_i^2) z      (z ~ N(0, I))
    d_hat = (x~_hat - D(x~_hat, s_hat)) / s_hat                                    (= eps)
    s_j = s_{i+1}^r s_hat^(1 - r);      x~_j = x~_hat + (s_j - s_hat) d_hat
    d_j = (x~_j - D(x~_j, a s_j)) / s_j
    x~_{i+1} = x~_hat + (s_{i+1} - s_hat) c d_j

``gamma = 0, r = 1/2, a = c = 1`` is exactly DPM-Solver-2 (:func:`~jaxsample.solvers.dpm_solver`
with ``order=2``, whose midpoint is at ``lam_s + h/2``); ``gamma = 0`` alone is the deterministic,
AMED-like solver. With ``afs=True`` the first step replaces its first model call by the
analytic first step ``eps ~ x / sqrt(alpha^2 + sigma^2)`` (EDM's ``x~ / sqrt(1 + s^2)``), so
``n`` steps cost ``2n - 1`` model calls.

:class:`NoiseInjected` is the plug-in form: the same noise injection (``t_i -> t_hat``) in front
of any deterministic base solver's step (Euler, Heun, DPM-Solver-2, iPNDM, ...).

:class:`LearnedAdaSDE` is the trained form of both: its float leaves are the unconstrained
parameters (mapped to ``gamma, r, a, c`` as the official predictor does), so the shared distillation
routine trains it and :func:`~jaxsample.solvers.save_solver` stores it like every learned solver.
The learned values come from :mod:`jaxsample.distill.adasde`.

Example:
    >>> import jax
    >>> import jaxsample as js
    >>> from jaxsample.solvers.adasde import AdaSDE
    >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=2)
    >>> model = gmm.model(js.VPCosine(), "eps")
    >>> ts = js.edm(model.path, 3, **js.compare.edm_interval(model.path))
    >>> solver = AdaSDE.dpm_solver_2(3).with_gamma([0.0, 0.01, 0.01])
    >>> noise = jax.random.normal(jax.random.key(0), (5, 4))
    >>> x = js.sample(model, solver, ts, noise, key=jax.random.key(1))
    >>> x.shape, solver.nfe(3)
    ((5, 4), 6)
"""

from __future__ import annotations

from typing import ClassVar, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.models import expand_to
from jaxsample.solvers._base import AbstractSolver, per_sample_normal

__all__ = ["AdaSDE", "NoiseInjected", "LearnedAdaSDE", "inject_noise", "noise_injected"]


def _vector(name, value, dtype=None):
    a = jnp.asarray(value, dtype)
    if a.ndim != 1 or a.shape[0] < 1:
        raise ValueError(f"{name} must be a 1-D array with one value per step, got shape {a.shape}")
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.float32)
    return a


def _check_values(name, a, low=None, high=None, open_low=False):
    """Range check of a concrete array (skipped under tracing)."""
    try:
        v = np.asarray(a)
    except Exception:  # a tracer: values are unknown here
        return
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {v}")
    if low is not None and (np.any(v <= low) if open_low else np.any(v < low)):
        raise ValueError(f"{name} must be {'>' if open_low else '>='} {low}, got {v}")
    if high is not None and np.any(v > high):
        raise ValueError(f"{name} must be <= {high}, got {v}")


def _check_num_steps(solver, ts, n):
    steps = int(ts.shape[0]) - 1
    if steps != n:
        raise ValueError(f"ts has {steps} steps but {type(solver).__name__} holds parameters for {n} steps")


def inject_noise(path, x, t, gamma, key):
    """AdaSDE's noise injection: raise the EDM noise level ``s = sigma/alpha`` at ``t`` by ``1 + gamma``.

    Returns ``(x_hat, t_hat)`` with ``s(t_hat) = (1 + gamma) s(t)`` and
    ``x~_hat = x~ + s sqrt((1 + gamma)^2 - 1) z`` (``x~ = x / alpha``), which maps the marginal at
    ``t`` exactly onto the marginal at ``t_hat``. ``gamma = 0`` returns ``(x, t)`` unchanged, and the
    gradient with respect to ``gamma`` stays finite there. ``t_hat`` lies above ``t``: the path
    must extend beyond it (start grids below ``t_max`` or keep ``gamma = 0`` on the first step).
    """
    gamma = jnp.asarray(gamma, x.dtype)
    positive = gamma > 0
    g = jnp.where(positive, gamma, 1.0)  # safe branch: no inf gradient of sqrt at 0
    root = jnp.where(positive, jnp.sqrt(g * (2.0 + g)), 0.0)
    t_hat = jnp.where(positive, path.t_from_lam(path.lam(t) - jnp.log1p(jnp.where(positive, gamma, 0.0))), t)
    t_hat = t_hat.astype(x.dtype)
    alpha, sigma = path.alpha(t), path.sigma(t)
    alpha_hat = path.alpha(t_hat)
    z = per_sample_normal(key, x)
    # x_hat = alpha_hat (x / alpha + (sigma / alpha) root z)
    x_hat = expand_to(alpha_hat / alpha, x) * x + expand_to(alpha_hat * sigma / alpha * root, x) * z
    return x_hat, t_hat


class AdaSDE(AbstractSolver):
    """The AdaSDE step with per-step ``gamma``, ``r``, ``a``, ``c`` (arrays of shape ``(n,)``).

    See the module docstring for the update. Two model calls a step (``2n - 1`` in all with
    ``afs``). ``times`` optionally stores the grid the values were learned on, so that a loaded
    solver is used as ``sample(model, solver, solver.times, noise, key=key)``. The grid must keep
    ``0 < sigma / alpha < inf`` at every time (e.g. EDM's interval ``[0.002, 80]``).

    Attributes:
        gamma: noise injection, ``>= 0`` (``gamma_0 = 0`` in the paper).
        r: midpoint exponents in ``(0, 1]``.
        a: time scales of the second model call, ``> 0``.
        c: direction scales of the final update.
        times: optional grid (``n + 1`` decreasing times) that goes with the values.
        afs: analytic first step (static).
    """

    gamma: jax.Array
    r: jax.Array
    a: jax.Array
    c: jax.Array
    times: Optional[jax.Array] = None
    afs: bool = eqx.field(static=True, default=False)

    is_stochastic: ClassVar[bool] = True

    def __check_init__(self):
        n = None
        for name in ("gamma", "r", "a", "c"):
            v = getattr(self, name)
            if not hasattr(v, "shape") or v.ndim != 1:
                raise ValueError(f"{name} must be a 1-D array with one value per step, got {v!r}")
            if n is not None and v.shape[0] != n:
                raise ValueError(f"gamma, r, a and c must have the same length, got {name} of length {v.shape[0]}"
                                 f" and {n}")
            n = v.shape[0]
        if self.times is not None and (self.times.ndim != 1 or self.times.shape[0] != n + 1):
            raise ValueError(f"times must hold n + 1 = {n + 1} times, got shape {self.times.shape}")
        _check_values("gamma", self.gamma, low=0.0)
        _check_values("r", self.r, low=0.0, high=1.0, open_low=True)
        _check_values("a", self.a, low=0.0, open_low=True)
        _check_values("c", self.c)

    @classmethod
    def create(cls, gamma, r, a, c, *, times=None, afs: bool = False) -> "AdaSDE":
        """From array-likes, with validation (see :class:`AdaSDE`)."""
        gamma = _vector("gamma", gamma)
        dt = gamma.dtype
        return cls(gamma, _vector("r", r, dt), _vector("a", a, dt), _vector("c", c, dt),
                   None if times is None else jnp.asarray(times, dt), afs=bool(afs))

    @classmethod
    def dpm_solver_2(cls, num_steps: int, *, times=None, afs: bool = False, dtype=jnp.float32) -> "AdaSDE":
        """``gamma = 0, r = 1/2, a = c = 1``: DPM-Solver-2 (with ``afs=False``), the usual initialisation."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        n = num_steps
        return cls.create(jnp.zeros(n, dtype), jnp.full(n, 0.5, dtype), jnp.ones(n, dtype), jnp.ones(n, dtype),
                          times=times, afs=afs)

    def with_gamma(self, gamma) -> "AdaSDE":
        """The same solver with other noise levels."""
        return AdaSDE.create(gamma, self.r, self.a, self.c, times=self.times, afs=self.afs)

    @property
    def num_steps(self) -> int:
        return int(self.gamma.shape[0])

    @property
    def order(self) -> int:
        return 2

    def nfe(self, num_steps: int) -> int:
        return 2 * num_steps - (1 if self.afs and num_steps > 0 else 0)

    def init(self, model, ts, x, cond):
        _check_num_steps(self, ts, self.num_steps)
        return super().init(model, ts, x, cond)

    def step(self, model, ts, i, state, cond, key):
        path, x = model.path, state.x
        dt = x.dtype
        t, t_next = ts[i], ts[i + 1]
        gamma, r, a, c = (jnp.asarray(p[i], dt) for p in (self.gamma, self.r, self.a, self.c))
        x_hat, t_hat = inject_noise(path, x, t, gamma, key)
        lam_hat, lam_next = path.lam(t_hat), path.lam(t_next)
        alpha_hat, sigma_hat = path.alpha(t_hat), path.sigma(t_hat)

        def model_eps(x_hat):
            return model.eps(x_hat, t_hat, **cond)

        if self.afs:
            def analytic(x_hat):  # eps ~ x~ / sqrt(1 + s^2) = x / sqrt(alpha^2 + sigma^2)
                return x_hat / expand_to(jnp.sqrt(alpha_hat**2 + sigma_hat**2), x_hat)

            eps_hat = jax.lax.cond(i == 0, analytic, model_eps, x_hat)
        else:
            eps_hat = model_eps(x_hat)
        # Midpoint s_j = s_next^r s_hat^(1-r), i.e. lam_j = r lam_next + (1 - r) lam_hat.
        lam_j = lam_hat + r * (lam_next - lam_hat)
        t_j = path.t_from_lam(lam_j).astype(dt)
        alpha_j, sigma_j = path.alpha(t_j), path.sigma(t_j)
        # x_j = alpha_j (x~_hat + (s_j - s_hat) eps_hat), with alpha_j (s_j - s_hat) = -sigma_j expm1(lam_j - lam_hat).
        x_j = (expand_to(alpha_j / alpha_hat, x) * x_hat
               - expand_to(sigma_j * jnp.expm1(lam_j - lam_hat), x) * eps_hat)
        # d_j = (x~_j - D(x~_j, a s_j)) / s_j = a eps(alpha_a x~_j, t_a) where s(t_a) = a s_j.
        t_a = jnp.where(a == 1, t_j, path.t_from_lam(lam_j - jnp.log(a))).astype(dt)
        alpha_a = path.alpha(t_a)
        d_j = a * model.eps(expand_to(alpha_a / alpha_j, x) * x_j, t_a, **cond)
        # x_{i+1} = alpha_next (x~_hat + (s_next - s_hat) c d_j).
        alpha_next, sigma_next = path.alpha(t_next), path.sigma(t_next)
        x_next = (expand_to(alpha_next / alpha_hat, x) * x_hat
                  - expand_to(sigma_next * jnp.expm1(lam_next - lam_hat) * c, x) * d_j)
        return state._replace(x=x_next)


class NoiseInjected(AbstractSolver):
    """Plug-in AdaSDE: per-step noise injection ``gamma`` in front of a deterministic base solver.

    Step i lifts ``(x_i, t_i)`` to ``(x_hat, t_hat)`` with :func:`inject_noise` and then runs the
    base solver's step ``i`` from ``t_hat`` to ``t_{i+1}`` (the base sees ``ts`` with ``ts[i]``
    replaced by ``t_hat``; multistep bases keep their history). ``gamma = 0`` is the base solver
    exactly. Same model calls as the base.
    """

    base: AbstractSolver
    gamma: jax.Array
    times: Optional[jax.Array] = None

    is_stochastic: ClassVar[bool] = True

    def __check_init__(self):
        if not isinstance(self.base, AbstractSolver):
            raise ValueError(f"base must be a jaxsample AbstractSolver, got {type(self.base).__name__}")
        if self.base.is_stochastic:
            raise ValueError(f"base must be a deterministic solver, got the stochastic {type(self.base).__name__}")
        if not hasattr(self.gamma, "shape") or self.gamma.ndim != 1:
            raise ValueError(f"gamma must be a 1-D array with one value per step, got {self.gamma!r}")
        if self.times is not None and (self.times.ndim != 1 or self.times.shape[0] != self.gamma.shape[0] + 1):
            raise ValueError(f"times must hold n + 1 = {self.gamma.shape[0] + 1} times, got shape {self.times.shape}")
        _check_values("gamma", self.gamma, low=0.0)

    @property
    def strict_grid(self):  # noqa: D401 - mirrors the base solver
        return self.base.strict_grid

    @property
    def num_steps(self) -> int:
        return int(self.gamma.shape[0])

    @property
    def order(self) -> int:
        return self.base.order

    def nfe(self, num_steps: int) -> int:
        return self.base.nfe(num_steps)

    def init(self, model, ts, x, cond):
        _check_num_steps(self, ts, self.num_steps)
        return self.base.init(model, ts, x, cond)

    def step(self, model, ts, i, state, cond, key):
        x_hat, t_hat = inject_noise(model.path, state.x, ts[i], self.gamma[i].astype(state.x.dtype), key)
        return self.base.step(model, ts.at[i].set(t_hat.astype(ts.dtype)), i, state._replace(x=x_hat), cond, None)


def noise_injected(base: AbstractSolver, gamma, *, times=None) -> NoiseInjected:
    """Plug-in AdaSDE noise injection ``gamma`` (one value per step) on a deterministic ``base`` solver.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> from jaxsample.solvers.adasde import noise_injected
        >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=2)
        >>> model = gmm.model(js.VPCosine(), "eps")
        >>> ts = js.edm(model.path, 4, **js.compare.edm_interval(model.path))
        >>> solver = noise_injected(js.ipndm(), [0.0, 0.02, 0.02, 0.0])
        >>> js.sample(model, solver, ts, jax.random.normal(jax.random.key(0), (3, 4)), key=jax.random.key(1)).shape
        (3, 4)
    """
    gamma = _vector("gamma", gamma)
    return NoiseInjected(base, gamma, None if times is None else jnp.asarray(times, gamma.dtype))


class LearnedAdaSDE(AbstractSolver):
    """AdaSDE (or its plug-in form) as trained: float leaves are the unconstrained parameters.

    The raw leaves map to the per-step values as in the official predictor (Westlake-AGI-Lab/AdaSDE):
    ``gamma = gamma_min + (gamma_max - gamma_min) sigmoid(.)`` with ``gamma_0 = 0`` (no injection
    on the first step), ``r = sigmoid(.)``, ``a = 1 + min(scale_time, 0.99) tanh(./2)`` and
    ``c = 1 + min(scale_dir, 0.99) tanh(./2)``. A leaf that is None is not learned: ``gamma = 0``
    (the deterministic, AMED-like solver), or DPM-Solver-2's ``r = 1/2, a = c = 1``. With a
    ``base`` solver only the gammas exist and the step is :class:`NoiseInjected`'s.
    Build one with :meth:`jaxsample.distill.adasde.Parameterisation.solver`.

    Attributes:
        gamma_raw, r_raw, a_raw, c_raw: unconstrained parameters, shape ``(n,)``, or None.
        grid: the ``n + 1`` times the values are learned on (static; ``times`` as an array).
        base: None for the AdaSDE step, else a deterministic registered solver (plug-in form).
        afs, gamma_min, gamma_max, scale_time, scale_dir: static settings.
    """

    gamma_raw: Optional[jax.Array]
    r_raw: Optional[jax.Array] = None
    a_raw: Optional[jax.Array] = None
    c_raw: Optional[jax.Array] = None
    grid: Optional[tuple] = eqx.field(static=True, default=None)
    base: Optional[AbstractSolver] = None
    num_steps: int = eqx.field(static=True, default=0)
    afs: bool = eqx.field(static=True, default=False)
    gamma_min: float = eqx.field(static=True, default=2e-4)
    gamma_max: float = eqx.field(static=True, default=0.02)
    scale_time: float = eqx.field(static=True, default=0.2)
    scale_dir: float = eqx.field(static=True, default=0.05)

    is_stochastic: ClassVar[bool] = True

    def __check_init__(self):
        n = self.num_steps
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_steps must be a positive integer, got {n!r}")
        for name in ("gamma_raw", "r_raw", "a_raw", "c_raw"):
            v = getattr(self, name)
            if v is not None and (not hasattr(v, "shape") or v.shape != (n,)):
                raise ValueError(f"{name} must be None or an array of shape ({n},), got {v!r}")
        if self.base is not None:
            if not isinstance(self.base, AbstractSolver) or self.base.is_stochastic:
                raise ValueError(f"base must be None or a deterministic jaxsample solver, got {self.base!r}")
            if jax.tree_util.tree_leaves(eqx.filter(self.base, eqx.is_inexact_array)):
                raise ValueError(f"base must have no float leaves (they would be trained), got {self.base!r}")
            if any(getattr(self, k) is not None for k in ("r_raw", "a_raw", "c_raw")) or self.afs:
                raise ValueError("the plug-in form (base=...) learns only gammas and has no afs")
        if self.grid is not None and len(self.grid) != n + 1:
            raise ValueError(f"grid must hold n + 1 = {n + 1} times, got {len(self.grid)}")

    @property
    def dtype(self):
        leaves = [v for v in (self.gamma_raw, self.r_raw, self.a_raw, self.c_raw) if v is not None]
        return jnp.result_type(*leaves) if leaves else jnp.float32

    @property
    def times(self):
        return None if self.grid is None else jnp.asarray(self.grid, self.dtype)

    @property
    def gamma(self):
        if self.gamma_raw is None:
            return jnp.zeros((self.num_steps,), self.dtype)
        g = self.gamma_min + (self.gamma_max - self.gamma_min) * jax.nn.sigmoid(self.gamma_raw)
        return g.at[0].set(0.0)

    @property
    def r(self):
        return jnp.full((self.num_steps,), 0.5, self.dtype) if self.r_raw is None else jax.nn.sigmoid(self.r_raw)

    @property
    def a(self):
        if self.a_raw is None:
            return jnp.ones((self.num_steps,), self.dtype)
        return 1.0 + min(self.scale_time, 0.99) * jnp.tanh(self.a_raw / 2.0)

    @property
    def c(self):
        if self.c_raw is None:
            return jnp.ones((self.num_steps,), self.dtype)
        return 1.0 + min(self.scale_dir, 0.99) * jnp.tanh(self.c_raw / 2.0)

    def as_solver(self):
        """The :class:`AdaSDE` (or :class:`NoiseInjected`) with these values."""
        if self.base is not None:
            return NoiseInjected(self.base, self.gamma, self.times)
        return AdaSDE(self.gamma, self.r, self.a, self.c, self.times, afs=self.afs)

    @property
    def strict_grid(self):  # noqa: D401 - the base's
        return True if self.base is None else self.base.strict_grid

    @property
    def order(self) -> int:
        return 2 if self.base is None else self.base.order

    def nfe(self, num_steps: int) -> int:
        return self.as_solver().nfe(num_steps)

    def init(self, model, ts, x, cond):
        return self.as_solver().init(model, ts, x, cond)

    def step(self, model, ts, i, state, cond, key):
        return self.as_solver().step(model, ts, i, state, cond, key)
