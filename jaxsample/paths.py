"""Noise paths: x_t = alpha(t) * x0 + sigma(t) * noise.

One time convention holds across jaxsample: ``t`` runs from ``t_min`` (data, low
noise) to ``t_max`` (high noise), and sampling goes from ``t_max`` down to
``t_min``. Models trained with the opposite convention (flow matching's
``t = 0`` noise) are wrapped once, at the edge (see :func:`jaxsample.models.Model`).

Every path gives ``alpha``, ``sigma``, the half log-SNR
``lam = log(alpha / sigma)``, their time derivatives, and the inverse ``t_from_lam``.
All functions act elementwise on arrays of times and are finite on the closed
range ``[t_min, t_max]``.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxsample import paths
    >>> path = paths.VPCosine()
    >>> t = jnp.array([0.25, 0.5])
    >>> bool(jnp.allclose(path.alpha(t) ** 2 + path.sigma(t) ** 2, 1.0))
    True
    >>> bool(jnp.allclose(path.t_from_lam(path.lam(t)), t, atol=1e-5))
    True
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AbstractPath",
    "AbstractVPPath",
    "VPCosine",
    "VPLinear",
    "DiscreteDDPM",
    "EDM",
    "RectifiedFlow",
    "NoiseScaled",
    "get_path",
]


def _asarray(t):
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    return t


class AbstractPath(eqx.Module):
    """A noise path. Subclasses define alpha, sigma, lam and their derivatives."""

    @property
    @abc.abstractmethod
    def t_min(self) -> float:
        """Smallest time (least noise); samplers end here by default."""

    @property
    @abc.abstractmethod
    def t_max(self) -> float:
        """Largest time (most noise); samplers start here by default."""

    @abc.abstractmethod
    def alpha(self, t): ...

    @abc.abstractmethod
    def sigma(self, t): ...

    @abc.abstractmethod
    def d_alpha(self, t): ...

    @abc.abstractmethod
    def d_sigma(self, t): ...

    def lam(self, t):
        """Half log-SNR, log(alpha / sigma)."""
        t = _asarray(t)
        return jnp.log(self.alpha(t)) - jnp.log(self.sigma(t))

    def d_lam(self, t):
        t = _asarray(t)
        return self.d_alpha(t) / self.alpha(t) - self.d_sigma(t) / self.sigma(t)

    @abc.abstractmethod
    def t_from_lam(self, lam): ...

    @property
    def is_variance_preserving(self) -> bool:
        return False

    def prior_scale(self, t):
        """Std of x_t for standard-normal data noise, used to draw x at t_max."""
        return self.sigma(t)

    def check_times(self, name: str, ts) -> None:
        """Raise ValueError if concrete times ``ts`` fall outside [t_min, t_max]."""
        ts = np.asarray(ts)
        lo, hi = self.t_min, self.t_max
        tol = 1e-6 * max(1.0, abs(hi))
        if ts.size and (ts.min() < lo - tol or ts.max() > hi + tol):
            raise ValueError(
                f"{name} must lie in the {type(self).__name__} range [{lo}, {hi}], "
                f"got values in [{ts.min()}, {ts.max()}]"
            )


class AbstractVPPath(AbstractPath):
    """Variance-preserving path defined by its half log-SNR: alpha^2 = sigmoid(2 lam)."""

    @abc.abstractmethod
    def lam(self, t): ...

    @abc.abstractmethod
    def d_lam(self, t): ...

    def alpha(self, t):
        return jnp.sqrt(jax.nn.sigmoid(2.0 * self.lam(t)))

    def sigma(self, t):
        return jnp.sqrt(jax.nn.sigmoid(-2.0 * self.lam(t)))

    def d_alpha(self, t):
        lam = self.lam(t)
        return jnp.sqrt(jax.nn.sigmoid(2 * lam)) * jax.nn.sigmoid(-2 * lam) * self.d_lam(t)

    def d_sigma(self, t):
        lam = self.lam(t)
        return -jnp.sqrt(jax.nn.sigmoid(-2 * lam)) * jax.nn.sigmoid(2 * lam) * self.d_lam(t)

    @property
    def is_variance_preserving(self) -> bool:
        return True


class VPCosine(AbstractVPPath):
    """Cosine VP schedule in log-SNR form (Nichol & Dhariwal 2021; diffusion_distillation).

    Full log-SNR 2*lam(t) = -2 log tan(a t + b), ranging over
    [logsnr_min, logsnr_max] = [-20, 20] for t in [0, 1].
    """

    logsnr_min: float = eqx.field(static=True, default=-20.0)
    logsnr_max: float = eqx.field(static=True, default=20.0)

    @property
    def t_min(self):
        return 0.0

    @property
    def t_max(self):
        return 1.0

    def _abc(self):
        # theta(t) = a t + b in (0, pi/2); c = pi/2 - a - b, so pi/2 - theta = a (1 - t) + c.
        b = float(np.arctan(np.exp(-0.5 * self.logsnr_max)))
        c = float(np.arctan(np.exp(0.5 * self.logsnr_min)))
        return float(np.pi / 2 - b - c), b, c

    def _angles(self, t):
        a, b, c = self._abc()
        t = _asarray(t)
        return a * t + b, a * (1.0 - t) + c  # theta and its complement, both exact near 0

    def lam(self, t):
        # -log tan(theta) = log tan(pi/2 - theta): use whichever angle is below pi/4.
        theta, comp = self._angles(t)
        return jnp.where(theta <= comp, -jnp.log(jnp.tan(theta)), jnp.log(jnp.tan(comp)))

    def d_lam(self, t):
        a, _, _ = self._abc()
        theta, comp = self._angles(t)
        return -2.0 * a / jnp.sin(2.0 * jnp.minimum(theta, comp))

    def t_from_lam(self, lam):
        a, b, c = self._abc()
        lam = _asarray(lam)
        low = (jnp.arctan(jnp.exp(-lam)) - b) / a  # accurate for lam >= 0 (small t)
        high = 1.0 - (jnp.arctan(jnp.exp(lam)) - c) / a  # accurate for lam < 0 (t near 1)
        return jnp.where(lam >= 0, low, high)


class VPLinear(AbstractVPPath):
    """Linear-beta VP SDE (DDPM continuous / DEIS / DPM-Solver `linear`).

    log alpha_bar(t) = -t^2 (beta_max - beta_min) / 2 - t beta_min, alpha = sqrt(alpha_bar).
    """

    beta_min: float = eqx.field(static=True, default=0.1)
    beta_max: float = eqx.field(static=True, default=20.0)
    eps: float = eqx.field(static=True, default=1e-3)

    @property
    def t_min(self):
        return self.eps

    @property
    def t_max(self):
        return 1.0

    def _log_alpha_bar(self, t):
        t = _asarray(t)
        return -0.5 * t**2 * (self.beta_max - self.beta_min) - t * self.beta_min

    def _d_log_alpha_bar(self, t):
        return -_asarray(t) * (self.beta_max - self.beta_min) - self.beta_min

    def alpha(self, t):
        return jnp.exp(0.5 * self._log_alpha_bar(t))

    def sigma(self, t):
        return jnp.sqrt(-jnp.expm1(self._log_alpha_bar(t)))

    def lam(self, t):
        lab = self._log_alpha_bar(t)
        return 0.5 * lab - 0.5 * jnp.log(-jnp.expm1(lab))

    def d_lam(self, t):
        # lam = 0.5 lab - 0.5 log(1 - e^lab); d lam / d lab = 0.5 / (1 - e^lab)
        lab = self._log_alpha_bar(t)
        return 0.5 * self._d_log_alpha_bar(t) / (-jnp.expm1(lab))

    def t_from_lam(self, lam):
        big_l = jnp.logaddexp(-2.0 * _asarray(lam), 0.0)  # = -log alpha_bar
        delta = self.beta_min**2 + 2.0 * (self.beta_max - self.beta_min) * big_l
        return 2.0 * big_l / (jnp.sqrt(delta) + self.beta_min)


class DiscreteDDPM(AbstractVPPath):
    """Discrete DDPM schedule (betas in [beta_start, beta_end] over N steps), interpolated in
    continuous time as in DPM-Solver's `NoiseScheduleVP('discrete')`: log alpha is piecewise
    linear between t_n = n / N, n = 1..N. ``beta_schedule``: ``"linear"`` (DDPM's) or
    ``"scaled_linear"`` (Stable Diffusion's: linear in sqrt(beta)), as diffusers names them.
    diffusers' integer timestep ``k`` is ``t = (k + 1) / N`` here.
    """

    num_train_steps: int = eqx.field(static=True, default=1000)
    beta_start: float = eqx.field(static=True, default=1e-4)
    beta_end: float = eqx.field(static=True, default=0.02)
    beta_schedule: str = eqx.field(static=True, default="linear")

    def __check_init__(self):
        if self.beta_schedule not in ("linear", "scaled_linear"):
            raise ValueError(f"beta_schedule must be 'linear' or 'scaled_linear', got {self.beta_schedule!r}")

    @property
    def t_min(self):
        return 1.0 / self.num_train_steps

    @property
    def t_max(self):
        return 1.0

    def _tables(self):
        n = self.num_train_steps
        if self.beta_schedule == "scaled_linear":
            betas = np.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, n, dtype=np.float64) ** 2
        else:
            betas = np.linspace(self.beta_start, self.beta_end, n, dtype=np.float64)
        log_alpha = 0.5 * np.cumsum(np.log1p(-betas))
        t = np.arange(1, n + 1, dtype=np.float64) / n
        lam = log_alpha - 0.5 * np.log(-np.expm1(2.0 * log_alpha))
        return t, log_alpha, lam

    def lam(self, t):
        tt, _, lam = self._tables()
        t = _asarray(t)
        return jnp.interp(t, jnp.asarray(tt, t.dtype), jnp.asarray(lam, t.dtype))

    def d_lam(self, t):
        tt, _, lam = self._tables()
        t = _asarray(t)
        slopes = np.diff(lam) / np.diff(tt)
        idx = jnp.clip(jnp.searchsorted(jnp.asarray(tt, t.dtype), t, side="right") - 1, 0, len(slopes) - 1)
        return jnp.asarray(slopes, t.dtype)[idx]

    def t_from_lam(self, lam):
        tt, _, lams = self._tables()
        lam = _asarray(lam)
        # lam decreases with t: interpolate on the reversed table.
        return jnp.interp(lam, jnp.asarray(lams[::-1], lam.dtype), jnp.asarray(tt[::-1], lam.dtype))


class EDM(AbstractPath):
    """EDM / variance-exploding path (Karras et al. 2022): alpha = 1, sigma = t."""

    sigma_min: float = eqx.field(static=True, default=0.002)
    sigma_max: float = eqx.field(static=True, default=80.0)

    @property
    def t_min(self):
        return self.sigma_min

    @property
    def t_max(self):
        return self.sigma_max

    def alpha(self, t):
        return jnp.ones_like(_asarray(t))

    def sigma(self, t):
        return _asarray(t)

    def d_alpha(self, t):
        return jnp.zeros_like(_asarray(t))

    def d_sigma(self, t):
        return jnp.ones_like(_asarray(t))

    def lam(self, t):
        return -jnp.log(_asarray(t))

    def d_lam(self, t):
        return -1.0 / _asarray(t)

    def t_from_lam(self, lam):
        return jnp.exp(-_asarray(lam))


class RectifiedFlow(AbstractPath):
    """Rectified flow / conditional OT path: alpha = 1 - t, sigma = t, t in [0, 1].

    Flow-matching code often writes t = 0 for noise; here t = 1 is noise. lam is
    infinite at both ends, so it is evaluated with t clipped to [clip, 1 - clip]
    (default 1e-6), which keeps it finite; alpha and sigma are exact.
    """

    clip: float = eqx.field(static=True, default=1e-6)

    @property
    def t_min(self):
        return 0.0

    @property
    def t_max(self):
        return 1.0

    def alpha(self, t):
        return 1.0 - _asarray(t)

    def sigma(self, t):
        return _asarray(t)

    def d_alpha(self, t):
        return -jnp.ones_like(_asarray(t))

    def d_sigma(self, t):
        return jnp.ones_like(_asarray(t))

    def _clipped(self, t):
        return jnp.clip(_asarray(t), self.clip, 1.0 - self.clip)

    def lam(self, t):
        t = self._clipped(t)
        return jnp.log1p(-t) - jnp.log(t)

    def d_lam(self, t):
        t = self._clipped(t)
        return -1.0 / (1.0 - t) - 1.0 / t

    def t_from_lam(self, lam):
        return jax.nn.sigmoid(-_asarray(lam))


_PATHS = {
    "vp_cosine": VPCosine,
    "vp_linear": VPLinear,
    "ddpm": DiscreteDDPM,
    "edm": EDM,
    "rectified_flow": RectifiedFlow,
}


def get_path(name: str, **kwargs) -> AbstractPath:
    """Build a path by name: one of 'vp_cosine', 'vp_linear', 'ddpm', 'edm', 'rectified_flow'."""
    if name not in _PATHS:
        raise ValueError(f"path must be one of {sorted(_PATHS)}, got {name!r}")
    return _PATHS[name](**kwargs)


class NoiseScaled(AbstractPath):
    """``base`` with its noise scaled by ``sigma0``: alpha = alpha_base, sigma = sigma0 * sigma_base.

    With :func:`jaxsample.models.change_path` this is the scale-time transform that BNS uses
    to precondition guided models (source noise N(0, sigma0^2 I); Shaul et al. 2024, after
    Bespoke Solvers, arXiv 2310.19075). Same time range as ``base``.
    """

    base: AbstractPath
    sigma0: float = eqx.field(static=True, default=1.0)

    def __check_init__(self):
        if not self.sigma0 > 0:
            raise ValueError(f"sigma0 must be positive, got {self.sigma0}")

    @property
    def t_min(self):
        return self.base.t_min

    @property
    def t_max(self):
        return self.base.t_max

    def alpha(self, t):
        return self.base.alpha(t)

    def sigma(self, t):
        return self.sigma0 * self.base.sigma(t)

    def d_alpha(self, t):
        return self.base.d_alpha(t)

    def d_sigma(self, t):
        return self.sigma0 * self.base.d_sigma(t)

    def lam(self, t):
        return self.base.lam(t) - float(np.log(self.sigma0))

    def d_lam(self, t):
        return self.base.d_lam(t)

    def t_from_lam(self, lam):
        return self.base.t_from_lam(_asarray(lam) + float(np.log(self.sigma0)))
