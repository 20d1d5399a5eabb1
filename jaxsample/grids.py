"""Time grids: pure functions from (path, num_steps, options) to a decreasing time array.

Every grid has ``num_steps + 1`` times, runs from ``t_start`` (default
``path.t_max``) down to ``t_end`` (default ``path.t_min``), and is strictly
decreasing. Endpoints are exact.

Example:
    >>> from jaxsample import grids, paths
    >>> ts = grids.edm(paths.EDM(), 4)
    >>> [round(float(t), 3) for t in ts]
    [80.0, 17.528, 2.515, 0.17, 0.002]
"""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.paths import AbstractPath

__all__ = ["uniform", "power", "logsnr_uniform", "edm", "time_uniform", "shifted", "from_sigmas", "ays_sigmas",
           "AYS_SIGMAS", "get_grid", "check_grid", "GRIDS"]


def _check_num_steps(num_steps) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return int(num_steps)


def _ends(path: AbstractPath, t_start, t_end, names=("t_start", "t_end")):
    """The grid's ends (None: the path's own), checked against the path; errors use ``names``."""
    hi, lo = names
    t_start = path.t_max if t_start is None else float(t_start)
    t_end = path.t_min if t_end is None else float(t_end)
    path.check_times(hi, [t_start])
    path.check_times(lo, [t_end])
    if not t_start > t_end:
        raise ValueError(f"{hi} must be greater than {lo} (sampling runs from noise to data), "
                         f"got {hi}={t_start}, {lo}={t_end}")
    return t_start, t_end


def _with_exact_ends(ts, t_start, t_end):
    return ts.at[0].set(t_start).at[-1].set(t_end)


def uniform(path: AbstractPath, num_steps: int, t_start=None, t_end=None):
    """Uniform in t.

    Example:
        >>> from jaxsample import grids, paths
        >>> grids.uniform(paths.RectifiedFlow(), 4).tolist()
        [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    n = _check_num_steps(num_steps)
    t_start, t_end = _ends(path, t_start, t_end)
    return jnp.linspace(t_start, t_end, n + 1)


def power(path: AbstractPath, num_steps: int, kappa: float = 2.0, t_start=None, t_end=None):
    """Uniform in t^(1/kappa): kappa = 2 is DPM-Solver's and DEIS's `time_quadratic`.

    Example:
        >>> from jaxsample import grids, paths
        >>> grids.power(paths.RectifiedFlow(), 2).tolist()      # finer near the data end, t = 0
        [1.0, 0.25, 0.0]
    """
    n = _check_num_steps(num_steps)
    if not kappa > 0:
        raise ValueError(f"kappa must be positive, got {kappa}")
    t_start, t_end = _ends(path, t_start, t_end)
    u = jnp.linspace(t_start ** (1.0 / kappa), t_end ** (1.0 / kappa), n + 1)
    return _with_exact_ends(u**kappa, t_start, t_end)


def logsnr_uniform(path: AbstractPath, num_steps: int, t_start=None, t_end=None):
    """Uniform in half log-SNR lam (DPM-Solver's `logSNR`, DEIS's uniform in log rho).

    Example:
        >>> import numpy as np
        >>> from jaxsample import grids, paths
        >>> path = paths.VPCosine()
        >>> ts = grids.logsnr_uniform(path, 4, t_start=0.9, t_end=0.1)
        >>> steps = np.diff(np.asarray(path.lam(ts)))
        >>> bool(np.allclose(steps, steps[0], rtol=1e-4)), bool(steps[0] > 0)
        (True, True)
    """
    n = _check_num_steps(num_steps)
    t_start, t_end = _ends(path, t_start, t_end)
    lam = jnp.linspace(path.lam(t_start), path.lam(t_end), n + 1)
    return _with_exact_ends(path.t_from_lam(lam), t_start, t_end)


def edm(path: AbstractPath, num_steps: int, rho: float = 7.0, t_start=None, t_end=None):
    """Karras et al. (2022) spacing, uniform in r^(1/rho) for r = sigma / alpha.

    On the EDM path (alpha = 1) these are exactly EDM's sigmas without the final 0.

    Example:
        >>> from jaxsample import grids, paths
        >>> [round(float(t), 3) for t in grids.edm(paths.EDM(), 2)]
        [80.0, 2.515, 0.002]
    """
    n = _check_num_steps(num_steps)
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    t_start, t_end = _ends(path, t_start, t_end)
    r_max, r_min = jnp.exp(-path.lam(t_start)), jnp.exp(-path.lam(t_end))
    i = jnp.arange(n + 1) / n
    r = (r_max ** (1 / rho) + i * (r_min ** (1 / rho) - r_max ** (1 / rho))) ** rho
    return _with_exact_ends(path.t_from_lam(-jnp.log(r)), t_start, t_end)


def time_uniform(path: AbstractPath, num_steps: int, rho: float = 1.0, eps_s: float = 1e-3, t_start=None,
                 t_end=None):
    """EDM's ``time_uniform`` discretisation (Karras et al. 2022, the VP-SDE time steps; AdaSDE's
    and AMED's default grid): uniform in the VP time ``tau`` from 1 to ``eps_s`` (warped by ``rho``;
    AdaSDE runs it with ``rho = 1``), mapped to ``r = sigma / alpha`` by the VP schedule
    ``r(tau) = sqrt(exp(beta_d tau^2 / 2 + beta_min tau) - 1)`` whose ``beta_d, beta_min`` are
    fitted so that ``r(1)`` and ``r(eps_s)`` are the grid's end points. Read from
    WLU-wry02/AdaSDE ``solver_utils.py`` ``get_schedule`` (``schedule_type='time_uniform'``).

    Example:
        >>> from jaxsample import grids, paths
        >>> [round(float(t), 6) for t in grids.time_uniform(paths.EDM(), 2)]   # AdaSDE's NFE-3 grid
        [80.0, 2.823689, 0.002]
    """
    n = _check_num_steps(num_steps)
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    if not 0 < eps_s < 1:
        raise ValueError(f"eps_s must be in (0, 1), got {eps_s}")
    t_start, t_end = _ends(path, t_start, t_end)
    # the schedule in float64 (numpy): its exponentials span many orders of magnitude
    r_max, r_min = (float(np.exp(-np.float64(path.lam(t)))) for t in (t_start, t_end))
    if not (np.isfinite(r_max) and r_min > 0):
        raise ValueError(f"t_start and t_end must have a finite, positive sigma / alpha for the time_uniform grid, "
                         f"got {r_max} at t_start={t_start} and {r_min} at t_end={t_end} (start a flow below t = 1)")
    lmax, lmin = np.log1p(r_max**2), np.log1p(r_min**2)
    beta_d = 2 * (lmin / eps_s - lmax) / (eps_s - 1)
    beta_min = lmax - 0.5 * beta_d
    tau = (1 + np.arange(n + 1) / n * (eps_s ** (1 / rho) - 1)) ** rho
    r = np.sqrt(np.expm1(0.5 * beta_d * tau**2 + beta_min * tau))
    return _with_exact_ends(path.t_from_lam(jnp.asarray(-np.log(r), jnp.result_type(float))), t_start, t_end)


def shifted(path: AbstractPath, num_steps: int, shift: float = 3.0, t_start=None, t_end=None):
    """The time-shifted uniform grid of flow-matching image models (SD3's and Flux's ``shift``):
    ``t' = shift t / (1 + (shift - 1) t)`` applied to a uniform grid in t (t in [0, 1]; on
    :class:`~jaxsample.paths.RectifiedFlow` t is diffusers' flow sigma). ``shift = 1`` is the uniform
    grid; Flux's resolution-dependent ``mu`` is ``shift = exp(mu)``. Read from diffusers'
    ``FlowMatchEulerDiscreteScheduler`` (``time_shift``).

    Example:
        >>> from jaxsample import grids, paths
        >>> [round(float(t), 4) for t in grids.shifted(paths.RectifiedFlow(), 4, shift=3.0)]
        [1.0, 0.9, 0.75, 0.5, 0.0]
    """
    n = _check_num_steps(num_steps)
    if not shift > 0:
        raise ValueError(f"shift must be positive, got {shift}")
    t_start, t_end = _ends(path, t_start, t_end)
    if t_start > 1 or t_end < 0:
        raise ValueError(f"the shifted grid needs times in [0, 1], got [{t_end}, {t_start}]")
    t = np.linspace(t_start, t_end, n + 1)
    t = shift * t / (1 + (shift - 1) * t)
    return _with_exact_ends(jnp.asarray(t, jnp.result_type(float)), float(t[0]), float(t[-1]))


def from_sigmas(path: AbstractPath, sigmas):
    """A grid from a user-given decreasing list of noise levels ``sigma / alpha`` (e.g. Align Your
    Steps' or a scheduler's ``sigmas``, without a final 0): the times on ``path`` with those levels.

    Example:
        >>> from jaxsample import grids, paths
        >>> [round(float(t), 4) for t in grids.from_sigmas(paths.EDM(), [14.6, 1.88, 0.029])]
        [14.6, 1.88, 0.029]
    """
    r = np.asarray(sigmas, np.float64)
    if r.ndim != 1 or r.shape[0] < 2 or not np.all(np.isfinite(r)) or not np.all(r > 0):
        raise ValueError(f"sigmas must be a 1-D list of at least 2 finite, positive noise levels (leave out a final 0), "
                         f"got {sigmas!r}")
    if not np.all(np.diff(r) < 0):
        raise ValueError(f"sigmas must be strictly decreasing, got {sigmas!r}")
    ts = path.t_from_lam(jnp.asarray(-np.log(r), jnp.result_type(float)))
    check_grid(path, ts, "sigmas (as times)")
    return ts


#: Align Your Steps' 10-step noise levels (Sabour et al. 2024), as diffusers' ``AysSchedules`` and
#: ComfyUI ship them, for Stable Diffusion 1.5 and SDXL (the last value is replaced by 0 when used).
AYS_SIGMAS = {
    "sd15": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
             0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "sdxl": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
             0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
}


def ays_sigmas(num_steps: int, model: str = "sd15") -> np.ndarray:
    """Align Your Steps' noise levels for ``num_steps`` steps: the 10-step list interpolated
    log-linearly (ComfyUI's ``loglinear_interp``), ``num_steps + 1`` values ending at the list's
    smallest (nonzero) level; ``num_steps = 10`` returns the list itself. Use with :func:`from_sigmas`.

    Example:
        >>> from jaxsample import grids
        >>> bool((grids.ays_sigmas(10) == grids.AYS_SIGMAS["sd15"]).all())
        True
    """
    n = _check_num_steps(num_steps)
    if model not in AYS_SIGMAS:
        raise ValueError(f"model must be one of {sorted(AYS_SIGMAS)}, got {model!r}")
    table = np.asarray(AYS_SIGMAS[model], np.float64)
    if n == len(table) - 1:
        return table.copy()
    ys = np.log(table[::-1])
    out = np.exp(np.interp(np.linspace(0, 1, n + 1), np.linspace(0, 1, len(ys)), ys))
    return out[::-1].copy()


GRIDS = {"uniform": uniform, "power": power, "quadratic": power, "logsnr": logsnr_uniform, "edm": edm,
         "time_uniform": time_uniform, "shifted": shifted}


def get_grid(name: str, path: AbstractPath, num_steps: int, **kwargs):
    """A grid by name: 'uniform', 'power'/'quadratic', 'logsnr', 'edm' or 'time_uniform'.

    Example:
        >>> from jaxsample import grids, paths
        >>> grids.get_grid("quadratic", paths.RectifiedFlow(), 2).tolist()
        [1.0, 0.25, 0.0]
    """
    if name not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)}, got {name!r}")
    return GRIDS[name](path, num_steps, **kwargs)


def check_grid(path: AbstractPath, ts, name: str = "ts", strict: bool = True) -> None:
    """Raise ValueError unless concrete ``ts`` is a valid sampling grid for ``path``.

    Valid: 1-D, at least two times (one step), finite, strictly decreasing, inside
    the path's range. With ``strict=False``, repeated times are allowed (``ts[0] > ts[-1]``
    still). Traced grids (inside jit) are not checked.

    Example:
        >>> from jaxsample import grids, paths
        >>> grids.check_grid(paths.RectifiedFlow(), [1.0, 0.5, 0.0])   # valid: returns None
        >>> grids.check_grid(paths.RectifiedFlow(), [0.0, 1.0])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ts must be strictly decreasing ...
    """
    # A jax array cannot change: one that passed for this path is not checked again (sample's
    # fixed cost per call at small batches)
    cache_key = (id(ts), id(path), strict) if isinstance(ts, jax.Array) else None
    hit = _CHECKED_GRIDS.get(cache_key)
    if hit is not None and hit[0]() is ts and hit[1] is path:
        return
    try:
        arr = np.asarray(ts)
    except Exception:  # a tracer: cannot check inside jit
        return
    _check_grid(path, arr, name, strict)
    if cache_key is not None:
        if len(_CHECKED_GRIDS) >= 256:
            _CHECKED_GRIDS.pop(next(iter(_CHECKED_GRIDS)))
        _CHECKED_GRIDS[cache_key] = (weakref.ref(ts), path)


#: Jax-array grids that passed :func:`check_grid`: ``(id(ts), id(path), strict) -> (weakref(ts), path)``.
_CHECKED_GRIDS: dict = {}


def _check_grid(path, arr, name, strict):
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(f"{name} must be a 1-D array of at least 2 times (at least one step), "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr}")
    if not strict:
        if np.all(np.diff(arr) <= 0) and arr[0] > arr[-1]:
            return path.check_times(name, arr)
        raise ValueError(f"{name} must be non-increasing from high noise to low noise, got {arr}")
    if not np.all(np.diff(arr) < 0):
        raise ValueError(f"{name} must be strictly decreasing (sampling runs from high noise at "
                         f"t_max to low noise at t_min), got {arr}")
    path.check_times(name, arr)
