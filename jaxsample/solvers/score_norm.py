"""DEIS-SN: score-normalised DEIS, and the same normalisation for DPM-Solver.

Score normalisation (Xia et al. 2023, arXiv 2311.00157) divides the noise
prediction by a scalar statistic of the model, ``r(t) = E|eps_hat(x_t, t)|`` (the mean over a
batch and all dimensions, measured once along a high-NFE sampling run; see
:func:`jaxsample.distill.deis_sn.calibrate`), extrapolates the normalised
``eps_tilde = eps_hat / r`` with the solver's polynomial, and multiplies ``r`` back *inside* the
exponential integral. In noise-prediction form (``lam = log(alpha / sigma)``)

    x_t = (alpha_t / alpha_s) x_s - alpha_t int_{lam_s}^{lam_t} e^{-l} r(l) eps_tilde(l) dl,

which is exact whatever ``r`` is; only the approximation of the integrand changes: the
polynomial now interpolates ``eps_tilde``, which varies less over a step than ``eps_hat`` where
``r`` carries most of its change (``r`` falls from ``sqrt(2/pi) ~ 0.80`` at high noise towards 0
as ``t -> 0`` for data concentrated near a low-dimensional set). For tAB-DEIS the coefficients
become (the authors' ``eps_integrand`` with ``K = sigma / r``)

    C~_ij = int_{t_i}^{t_{i+1}} Psi(t_{i+1}, tau) (1/2) g^2(tau) r(tau) / sigma(tau) l_j(tau) dtau,

and with ``r`` constant, ``C~ = r C`` and ``eps_tilde = eps_hat / r``: the update is exactly
tAB-DEIS's. The derivation holds for any exponential integrator that approximates the noise
prediction inside this integral by a polynomial in some time variable: here DEIS (tAB, rhoAB,
log-rho AB, orders 1-4; order 1 normalises DDIM) and singlestep DPM-Solver-1/2/3 (Taylor in
``lam``; its ``phi_k`` integrals become the weighted moments ``int e^{-l} r(l) (l - lam_s)^k dl``,
computed by Gauss-Legendre quadrature). It does *not* apply as such to data-prediction solvers
(DDIM in x0 form, DPM-Solver++, UniPC), whose integrand is ``e^{l} x0_hat``: normalising
them would need a statistic of ``x0_hat`` instead; :func:`score_normalise` refuses them.

The statistic ``r`` is a :class:`ScoreNormStats`: the times of the calibration run (increasing),
the values of ``r`` there, and how many of the smallest-``t`` entries were clamped to the next
value (the authors clamp 5 of 1000 for CIFAR-10, 1 for LSUN-Church, because ``r`` falls steeply
at the very end). ``r(t)`` is its linear interpolation, constant beyond the ends.

Example:
    >>> import jax
    >>> from jaxsample import grids, models, paths, sample
    >>> from jaxsample import solvers
    >>> from jaxsample.solvers import score_norm
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    >>> model = gmm.model(paths.VPLinear(), "eps")
    >>> ts = grids.power(model.path, 10)
    >>> noise = jax.random.normal(jax.random.key(1), (8, 4))
    >>> stats = score_norm.ScoreNormStats.constant(0.8)          # r constant: exactly tAB-DEIS
    >>> x_sn = sample(model, score_norm.deis_sn(stats, 3), ts, noise)
    >>> x = sample(model, solvers.deis(3), ts, noise)
    >>> bool(abs(x_sn - x).max() < 1e-5)
    True

References:
    Zhang & Chen, "Fast Sampling of Diffusion Models with Exponential Integrator", ICLR 2023
    (arXiv 2204.13902); Lu et al., "DPM-Solver", NeurIPS 2022 (arXiv 2206.00927);
    Xia et al., "Score Normalization for a Faster Diffusion Exponential Integrator Sampler",
    NeurIPS 2023 Diffusion Models workshop (arXiv 2311.00157); code mtkresearch/Diffusion-DEIS-SN (``core/deis_ab_ode.py``,
    ``DEISABSNODEScheduler``; ``core/pipelines/deisabode_pipeline.py`` for the statistic).
"""

from __future__ import annotations

from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.solvers._base import AbstractSolver, SimpleState
from jaxsample.solvers._exponential import check_choice as _check_choice
from jaxsample.solvers._exponential import sched as _sched
from jaxsample.solvers.ddim import DDIM
from jaxsample.solvers.deis import DEIS, DEISState, check_deis_settings, deis_init, deis_step
from jaxsample.solvers.dpm_solver import DPMSolver

__all__ = [
    "ScoreNormStats",
    "DEISSNState",
    "DEISSN",
    "deis_sn",
    "DPMSolverSN",
    "dpm_solver_sn",
    "score_normalise",
]


# --------------------------------------------------------------------------- the statistic


class ScoreNormStats(eqx.Module):
    """The score-normalisation statistic ``r(t) = E|eps_hat(x_t, t)|``, tabulated.

    Attributes:
        times: strictly increasing times, shape ``(m,)``.
        values: ``r`` at ``times`` (positive), shape ``(m,)``.
        num_clamped: how many entries at the smallest times were set to the value just after
            them (``values[:num_clamped] == values[num_clamped]``).

    ``stats(t)`` is the linear interpolation (constant beyond the ends), for scalar or array ``t``.
    """

    times: jax.Array
    values: jax.Array
    num_clamped: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if isinstance(self.times, jax.core.Tracer) or isinstance(self.values, jax.core.Tracer):
            return  # built inside a transformation: checked where it was made
        times, values = np.asarray(self.times), np.asarray(self.values)
        if times.ndim != 1 or times.shape[0] < 1:
            raise ValueError(f"times must be a non-empty 1-D array, got shape {times.shape}")
        if values.shape != times.shape:
            raise ValueError(f"values must have the shape of times {times.shape}, got {values.shape}")
        if not (np.all(np.isfinite(times)) and np.all(np.diff(times) > 0)):
            raise ValueError("times must be finite and strictly increasing")
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise ValueError("values must be finite and positive")
        if isinstance(self.num_clamped, bool) or not isinstance(self.num_clamped, (int, np.integer)) \
                or not 0 <= self.num_clamped < times.shape[0]:
            raise ValueError(f"num_clamped must be an integer in [0, {times.shape[0]}), got {self.num_clamped!r}")

    @classmethod
    def constant(cls, value: float = float(np.sqrt(2.0 / np.pi))) -> "ScoreNormStats":
        """``r(t) = value`` everywhere (DEIS-SN is then exactly DEIS)."""
        return cls(jnp.zeros((1,), jnp.float32), jnp.full((1,), value, jnp.float32), 0)

    @classmethod
    def from_measurements(cls, times, values, num_clamped: int = 0) -> "ScoreNormStats":
        """From raw measurements at any (distinct) times, in any order: sorts them by time and
        clamps the ``num_clamped`` smallest-time entries to the value just after them."""
        times, values = np.asarray(times, np.float64), np.asarray(values, np.float64)
        if times.ndim != 1 or values.shape != times.shape:
            raise ValueError(f"times and values must be 1-D of the same length, got {times.shape} and {values.shape}")
        if isinstance(num_clamped, bool) or not isinstance(num_clamped, (int, np.integer)) \
                or not 0 <= num_clamped < max(times.shape[0], 1):
            raise ValueError(f"num_clamped must be an integer in [0, {times.shape[0]}), got {num_clamped!r}")
        order = np.argsort(times)
        times, values = times[order], values[order].copy()
        values[:num_clamped] = values[num_clamped]
        return cls(jnp.asarray(times, jnp.float32), jnp.asarray(values, jnp.float32), int(num_clamped))

    def __call__(self, t):
        t = jnp.asarray(t)
        dt = t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else jnp.float32
        return jnp.interp(t, self.times.astype(dt), self.values.astype(dt))


def _check_stats(stats):
    if not isinstance(stats, ScoreNormStats):
        raise ValueError(f"stats must be a ScoreNormStats, got {type(stats).__name__}")
    return stats


# --------------------------------------------------------------------------- DEIS-SN


#: DEIS-SN's state is DEIS's (:class:`~jaxsample.solvers.deis.DEISState`); its history
#: holds the normalised ``eps / r`` and its coefficients ``C~[i, j]`` weigh ``eps_tilde(t_{i-j})``.
DEISSNState = DEISState


class DEISSN(AbstractSolver):
    """Score-normalised multistep DEIS (tAB / rhoAB / log-rho AB), one model call a step.

    Identical to :class:`~jaxsample.solvers.deis.DEIS` except that the Lagrange
    polynomial extrapolates ``eps / r(t)`` and ``r`` multiplies the coefficient integrand.
    """

    stats: ScoreNormStats
    solver_order: int = eqx.field(static=True, default=3)
    kind: str = eqx.field(static=True, default="tab")
    lower_order_final: bool = eqx.field(static=True, default=False)
    lower_order_final_below: Optional[int] = eqx.field(static=True, default=None)
    num_quadrature: int = eqx.field(static=True, default=64)

    def __check_init__(self):
        _check_stats(self.stats)
        check_deis_settings(self)

    @property
    def order(self) -> int:
        return self.solver_order

    def init(self, model, ts, x, cond):
        return deis_init(self, model, ts, x, weight=self.stats)

    def step(self, model, ts, i, state, cond, key):
        return deis_step(model, ts, i, state, cond, normaliser=self.stats)


def deis_sn(stats: ScoreNormStats, order: int = 3, kind: str = "tab", lower_order_final: bool = False,
            lower_order_final_below: Optional[int] = None, num_quadrature: int = 64) -> DEISSN:
    """Score-normalised DEIS (DEIS-SN), one model call a step.

    Args:
        stats: the statistic ``r(t)`` (:func:`jaxsample.distill.deis_sn.calibrate`, or
            :meth:`ScoreNormStats.load`).
        order: convergence order 1..4 as in :func:`~jaxsample.solvers.deis.deis` (the
            authors' polynomial degree is ``order - 1``; their released configuration is degree 2,
            i.e. ``order=3``).
        kind: ``'tab'`` (the paper's), ``'rhoab'`` or ``'logrho'``: the Lagrange variable.
        lower_order_final, lower_order_final_below: as in :func:`~jaxsample.solvers.deis.deis`.
        num_quadrature: Gauss-Legendre nodes per step for the coefficient integrals (``r`` is
            piecewise linear, so more than DEIS's 32 by default).

    Raises:
        ValueError: naming the bad argument.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxsample import grids, models, paths, sample
        >>> from jaxsample.solvers import score_norm
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.VPCosine(), "eps")
        >>> ts = grids.logsnr_uniform(model.path, 8, t_start=0.99, t_end=0.01)
        >>> stats = score_norm.ScoreNormStats(jnp.array([0.0, 0.5, 1.0]), jnp.array([0.1, 0.6, 0.8]))
        >>> x = sample(model, score_norm.deis_sn(stats, 2), ts, jax.random.normal(jax.random.key(1), (4, 2)))
        >>> x.shape
        (4, 2)
    """
    return DEISSN(stats, order, kind, lower_order_final, lower_order_final_below, num_quadrature)


# --------------------------------------------------------------------------- DPM-Solver-SN


class DPMSolverSN(AbstractSolver):
    """Singlestep DPM-Solver-k (noise prediction, k = 1, 2, 3) with score normalisation.

    Every ``sigma phi_k`` coefficient of :class:`~jaxsample.solvers.dpm_solver.DPMSolver` is
    replaced by its weighted moment ``A_k = alpha_end int e^{-l} r(l) (l - lam_s)^k dl`` over the
    (sub)step and every model output ``eps`` by ``eps / r``; the intermediate points
    (``r1 = 1/2``; ``r1 = 1/3, r2 = 2/3``) and the structure of each update are unchanged, so
    with ``r`` constant this is exactly DPM-Solver-k.
    """

    stats: ScoreNormStats
    solver_order: int = eqx.field(static=True, default=2)
    num_quadrature: int = eqx.field(static=True, default=64)

    def __check_init__(self):
        _check_stats(self.stats)
        _check_choice("order", self.solver_order, (1, 2, 3))
        if isinstance(self.num_quadrature, bool) or not isinstance(self.num_quadrature, int) \
                or self.num_quadrature < 2:
            raise ValueError(f"num_quadrature must be an integer >= 2, got {self.num_quadrature!r}")

    @property
    def order(self) -> int:
        return self.solver_order

    def nfe(self, num_steps: int) -> int:
        return self.solver_order * num_steps

    def _moments(self, path, a_s, sig_s, lam_s, a_end, big_h, num, dt):
        """``[alpha_end int_{lam_s}^{lam_s + H} e^{-l} r(l) (l - lam_s)^k dl for k < num]``."""
        u, w = np.polynomial.legendre.leggauss(self.num_quadrature)
        u, w = jnp.asarray(0.5 * (u + 1.0), dt), jnp.asarray(0.5 * w, dt)
        v = big_h * u
        r = self.stats(path.t_from_lam(lam_s + v).astype(dt)).astype(dt)
        base = (a_end * sig_s / a_s) * big_h * w * jnp.exp(-v) * r
        return [jnp.sum(base * v**k) for k in range(num)]

    def step(self, model, ts, i, state, cond, key):
        x = state.x
        dt = x.dtype
        path = model.path
        s, t = jnp.asarray(ts[i], dt), jnp.asarray(ts[i + 1], dt)
        a_s, sig_s, lam_s = _sched(path, s, dt, exact_lam=False)
        a_t, sig_t, lam_t = _sched(path, t, dt, exact_lam=False)
        h = lam_t - lam_s

        def eps_tilde(y, tau):
            return model.eps(y, tau, **cond) / self.stats(tau).astype(dt)

        e_s = eps_tilde(x, s)
        k = self.solver_order
        if k == 1:
            (a0,) = self._moments(path, a_s, sig_s, lam_s, a_t, h, 1, dt)
            return SimpleState((a_t / a_s) * x - a0 * e_s)
        if k == 2:
            r1 = 0.5
            s1 = path.t_from_lam(lam_s + r1 * h).astype(dt)
            a_1, _, _ = _sched(path, s1, dt)
            (a0_1,) = self._moments(path, a_s, sig_s, lam_s, a_1, r1 * h, 1, dt)
            e_1 = eps_tilde((a_1 / a_s) * x - a0_1 * e_s, s1)
            (a0,) = self._moments(path, a_s, sig_s, lam_s, a_t, h, 1, dt)
            # DPM-Solver-2's 'dpmsolver' form: the first moment taken as (h / 2) times the zeroth.
            return SimpleState((a_t / a_s) * x - a0 * e_s - (0.5 / r1) * a0 * (e_1 - e_s))
        r1, r2 = 1.0 / 3.0, 2.0 / 3.0
        s1 = path.t_from_lam(lam_s + r1 * h).astype(dt)
        s2 = path.t_from_lam(lam_s + r2 * h).astype(dt)
        a_1, _, _ = _sched(path, s1, dt)
        a_2, _, _ = _sched(path, s2, dt)
        (a0_1,) = self._moments(path, a_s, sig_s, lam_s, a_1, r1 * h, 1, dt)
        e_1 = eps_tilde((a_1 / a_s) * x - a0_1 * e_s, s1)
        a0_2, a1_2 = self._moments(path, a_s, sig_s, lam_s, a_2, r2 * h, 2, dt)
        e_2 = eps_tilde((a_2 / a_s) * x - a0_2 * e_s - (a1_2 / (r1 * h)) * (e_1 - e_s), s2)
        a0, a1 = self._moments(path, a_s, sig_s, lam_s, a_t, h, 2, dt)
        return SimpleState((a_t / a_s) * x - a0 * e_s - (a1 / (r2 * h)) * (e_2 - e_s))


def dpm_solver_sn(stats: ScoreNormStats, order: int = 3, num_quadrature: int = 64) -> DPMSolverSN:
    """Singlestep DPM-Solver (noise prediction) of order 1-3 with score normalisation.

    Args:
        stats: the statistic ``r(t)``.
        order: 1, 2 or 3 (``order`` model calls a step).
        num_quadrature: Gauss-Legendre nodes for each weighted ``phi`` integral.

    Raises:
        ValueError: naming the bad argument.

    Example:
        >>> import jax
        >>> from jaxsample import grids, models, paths, sample
        >>> from jaxsample import solvers
        >>> from jaxsample.solvers import score_norm
        >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(paths.VPLinear(), "eps")
        >>> ts = grids.logsnr_uniform(model.path, 4)
        >>> noise = jax.random.normal(jax.random.key(1), (4, 2))
        >>> solver = score_norm.dpm_solver_sn(score_norm.ScoreNormStats.constant(0.5), 3)
        >>> x = sample(model, solver, ts, noise)
        >>> bool(abs(x - sample(model, solvers.dpm_solver(3), ts, noise)).max() < 1e-4), solver.nfe(4)
        (True, 12)
    """
    return DPMSolverSN(stats, order, num_quadrature)


def score_normalise(solver: AbstractSolver, stats: ScoreNormStats) -> AbstractSolver:
    """The score-normalised version of an exponential integrator in noise-prediction form.

    DEIS (any kind and order) becomes :class:`DEISSN` with the same settings, DPM-Solver-k
    becomes :class:`DPMSolverSN`, DDIM becomes DEIS-SN of order 1 (DDIM's noise form).

    Raises:
        ValueError: for ``stats`` that is not a :class:`ScoreNormStats`, and for ``solver``s
            the derivation does not cover (data-prediction solvers such as DPM-Solver++ and
            UniPC, Runge-Kutta and stochastic solvers).

    Example:
        >>> from jaxsample import solvers
        >>> from jaxsample.solvers import score_norm
        >>> sn = score_norm.score_normalise(solvers.deis(2, "rhoab"), score_norm.ScoreNormStats.constant())
        >>> type(sn).__name__, sn.order, sn.kind
        ('DEISSN', 2, 'rhoab')
    """
    _check_stats(stats)
    if isinstance(solver, DEIS):
        return DEISSN(stats, solver.solver_order, solver.kind, solver.lower_order_final,
                      solver.lower_order_final_below, max(64, solver.num_quadrature))
    if isinstance(solver, DPMSolver):
        return DPMSolverSN(stats, solver.solver_order)
    if isinstance(solver, DDIM):
        return DEISSN(stats, 1, "tab")
    raise ValueError(f"solver must be DEIS, DPM-Solver (noise prediction) or DDIM to be score-normalised, "
                     f"got {type(solver).__name__}")
