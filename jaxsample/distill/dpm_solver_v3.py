"""DPM-Solver-v3 calibration: estimate the empirical model statistics (EMS) of a model.

The EMS (Zheng et al. 2023, arXiv 2310.13268, section 3 and appendix C) are three functions of the
half log-SNR ``lam``, one value per element of a sample (or per channel, or one in all), tabulated
on a grid uniform in ``lam`` between ``lam(t_start)`` and ``lam(t_end)``:

- ``l = E[diag(sigma d eps / dx)]``, estimated with Rademacher probes ``v`` and forward-mode JVPs:
  ``l ~ mean(sigma (J_x eps . v) * v)`` (Hutchinson's diagonal estimator);
- ``s, b``: the least-squares fit ``f' ~ s f + b`` of the derivative along the ODE of
  ``f = (sigma eps - l x) / alpha``, ``s = Cov(f, f') / Var(f)``, ``b = E f' - s E f``, where
  ``f' = e^{-lam} ((l - 1) eps + eps') - l' x / alpha``, ``eps' = d eps(x(lam), lam) / dlam`` is
  one JVP of the model along the probability-flow ODE, and ``l'`` the derivative of ``l`` on the
  grid (central differences, then a moving average over ``+-smoothing`` points).

The expectations are over ``x = alpha x0 + sigma z`` with ``x0`` from ``data`` when given, and
otherwise from the model itself: ``x0`` is the model's data prediction at ``t_end`` of an adaptive
reference solve (:func:`~jaxsample.sampling.reference_sample`) from ``t_start``, as
:func:`jaxsample.distill.bns.make_pairs` makes its targets. Calibration runs in two passes over the
samples (``l`` first, since ``f`` and ``f'`` need ``l`` and ``l'`` on the whole grid; then the
moments of ``f`` and ``f'``), each one jitted ``lax.scan`` over the grid per batch, with a tqdm
bar. Sample ``k`` draws its noise and probes from ``fold_in(key(seed), k)``, so the statistics do
not depend on the batch size. The moments are combined across batches in float64 (Chan's
pairwise update of the centred sums), so ``Var(f)`` keeps its precision where ``alpha`` is small.

Where this follows the official code and where not: the official repository ships its EMS files
(``l.npz``, ``sb.npz``, per (C, H, W) element) but not the script that computed them (its README's
EMS section is a TODO); this module implements the paper's definitions (appendix C) in the form
described in ALGORITHMS.md section 11, which is read from a third-party script, not from the
authors. The choices that are ours: the moving average is applied to ``l'`` (not to ``l``), one
fresh ``z`` per sample and grid point, ``s = 0`` where ``f`` is constant up to float32 rounding
(``Var f`` below ``1e-11`` of ``Var(sigma eps / alpha) + l^2 Var(x / alpha)``: Gaussian data, where
``s`` would be noise over noise), and the teacher's samples are its x0 prediction at ``t_end`` (the
official statistics use training data).

Accuracy of the statistics: ``l`` is well determined. ``s = Cov(f, f') / Var(f)`` is not where ``f``
is nearly constant, at the high-noise end: there ``f'`` holds ``l' x / alpha`` with ``x / alpha``
large, so the sampling error of ``l'`` reaches ``s``. Use many samples (the official statistics use
1024 to 4096) and a fine grid (the official 1201 points for fewer than 10 steps): on
:func:`jaxsample.compare.benchmark_mixture` (64-d) the NFE-10 error of DPM-Solver-v3 falls from
0.066 (1024 samples, 81 points) to 0.036 (4096 samples, 401 points), against 0.068 for
DPM-Solver++(3M).

Example:
    >>> import jax
    >>> import jaxsample as js
    >>> from jaxsample.distill import dpm_solver_v3 as v3
    >>> from jaxsample.solvers.dpm_solver_v3 import dpm_solver_v3
    >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=3)
    >>> model = gmm.model(js.EDM(), "eps")
    >>> data = gmm.sample(jax.random.key(0), 256)
    >>> ems = v3.calibrate(model, (4,), data=data, num_lambdas=101, progress=False)
    >>> ems.l.shape, ems.lam.shape
    ((101, 4), (101,))
    >>> ts = js.logsnr_uniform(model.path, 5)
    >>> x = js.sample(model, dpm_solver_v3(ems), ts, jax.random.normal(jax.random.key(1), (8, 4)))
    >>> x.shape
    (8, 4)
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.grids import logsnr_uniform
from jaxsample.models import Model
from jaxsample.solvers.dpm_solver_v3 import EMS
from jaxsample.distill._checks import check_int as _check_int, check_model_and_shape

__all__ = ["EMS", "calibrate"]

_GRANULARITIES = ("element", "channel", "scalar")


def _draw(key, shape, num_probes, dtype):
    """Sample ``z`` and ``num_probes`` Rademacher probes for one sample at one grid point."""
    kz, kv = jax.random.split(key)
    z = jax.random.normal(kz, shape, dtype)
    v = jax.random.rademacher(kv, (num_probes,) + shape, dtype)
    return z, v


def _weighted_sum(a, w, axes):
    """Sum of ``w a`` over the batch axis and the ``axes`` of one sample (kept as size 1)."""
    out = jnp.sum(a * w, axis=tuple(1 + ax for ax in axes), keepdims=True)
    return jnp.sum(out, axis=0)


@eqx.filter_jit
def _l_sums(model, x0, keys, t_grid, mask, num_probes, axes):
    """Per grid point: the sum over valid samples (and the pooled axes) of
    ``sigma mean_probes((J_x eps . v) * v)``."""
    path = model.path
    dt = x0.dtype
    w = mask.reshape((-1,) + (1,) * (x0.ndim - 1)).astype(dt)

    def body(_, j):
        t = t_grid[j]
        z, v = jax.vmap(lambda k: _draw(jax.random.fold_in(k, j), x0.shape[1:], num_probes, dt))(keys)
        a, sg = path.alpha(t), path.sigma(t)
        x = a * x0 + sg * z
        _, lin = jax.linearize(lambda y: model.eps(y, t), x)
        jv = jax.vmap(lin, in_axes=1, out_axes=1)(v)
        h = sg * jnp.mean(jv * v, axis=1)
        return None, _weighted_sum(h, w, axes)

    _, sums = jax.lax.scan(body, None, jnp.arange(t_grid.shape[0]))
    return sums


@eqx.filter_jit
def _f_moments(model, x0, keys, t_grid, lam_grid, l, dl, mask, num_probes, axes):
    """Per grid point: count, means of ``f`` and ``f'``, the centred sums ``sum (f - mf)^2`` and
    ``sum (f - mf)(f' - mf')`` over the valid samples (and the pooled axes), and the scale of
    ``sum (f - mf)^2``'s cancellation."""
    path = model.path
    dt = x0.dtype
    w = mask.reshape((-1,) + (1,) * (x0.ndim - 1)).astype(dt)
    pooled = math.prod(x0.shape[1 + ax] for ax in axes)
    count = jnp.sum(mask.astype(dt)) * pooled

    def body(_, j):
        t, lam, l_j, dl_j = t_grid[j], lam_grid[j], l[j], dl[j]
        z, _ = jax.vmap(lambda k: _draw(jax.random.fold_in(k, j), x0.shape[1:], num_probes, dt))(keys)
        a, sg = path.alpha(t), path.sigma(t)
        da, ds = path.d_alpha(t), path.d_sigma(t)
        x = a * x0 + sg * z
        eps, lin = jax.linearize(lambda y, tt: model.eps(y, tt), x, t)
        dxdt = (da / a) * x + (ds - da * sg / a) * eps  # the probability-flow ODE in t
        eps_lam = lin(dxdt, jnp.ones_like(t)) / path.d_lam(t)  # d eps / dlam along the ODE
        e = jnp.exp(-lam)
        p, q, r = e * eps, x / a, e * eps_lam
        f = p - l_j * q
        df = (l_j - 1.0) * p + r - dl_j * q
        mf = _weighted_sum(f, w, axes) / count
        mdf = _weighted_sum(df, w, axes) / count
        m2 = _weighted_sum((f - mf) ** 2, w, axes)
        c = _weighted_sum((f - mf) * (df - mdf), w, axes)
        # the scale of the cancellation in f = p - l q: sum (p - mp)^2 + l^2 sum (q - mq)^2
        centred = lambda a: a - _weighted_sum(a, w, axes) / count  # noqa: E731
        scale = _weighted_sum(centred(p) ** 2 + (l_j * centred(q)) ** 2, w, axes)
        return None, (mf, mdf, m2, c, scale)

    _, out = jax.lax.scan(body, None, jnp.arange(t_grid.shape[0]))
    return count, out


def _moving_average(a, half_width: int):
    """Mean over ``[j - half_width, j + half_width]`` (truncated at the ends), along axis 0."""
    if half_width == 0:
        return a
    n = a.shape[0]
    c = np.concatenate([np.zeros_like(a[:1]), np.cumsum(a, axis=0)], axis=0)
    lo = np.clip(np.arange(n) - half_width, 0, n)
    hi = np.clip(np.arange(n) + half_width + 1, 0, n)
    return (c[hi] - c[lo]) / (hi - lo).reshape((-1,) + (1,) * (a.ndim - 1))


def _batches(num_samples, batch_size):
    size = min(batch_size, num_samples)
    for start in range(0, num_samples, size):
        stop = min(start + size, num_samples)
        idx = np.minimum(np.arange(start, start + size), num_samples - 1)  # the last batch padded
        yield idx, np.arange(start, start + size) < stop


def _teacher_x0(model, num_samples, sample_shape, key, t_start, t_end, batch_size, dtype, reference_kwargs,
                progress):
    from tqdm.auto import tqdm

    from jaxsample.sampling import reference_sample

    out = []
    for idx, mask in tqdm(list(_batches(num_samples, batch_size)), desc="DPM-Solver-v3 teacher samples",
                          disable=not progress, leave=False):
        keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.asarray(idx))
        noise = jax.vmap(lambda k: jax.random.normal(k, sample_shape, dtype))(keys)
        x = reference_sample(model, noise, t_start=t_start, t_end=t_end, **reference_kwargs)
        x0 = model.x0(x, jnp.asarray(t_end, dtype))
        out.append(np.asarray(x0)[mask])
    return np.concatenate(out)


def calibrate(model: Model, sample_shape, *, data=None, num_samples: Optional[int] = None,
              num_lambdas: int = 1201, num_probes: int = 1, seed: int = 0, batch_size: int = 256,
              t_start=None, t_end=None, granularity: str = "element", channel_axis: int = -1,
              smoothing: int = 5, reference_kwargs: Optional[Mapping] = None, progress: bool = True,
              dtype=jnp.float32) -> EMS:
    """Estimate the empirical model statistics of ``model`` for DPM-Solver-v3.

    Args:
        model: the model (any prediction type; its eps and JVPs of it are used).
        sample_shape: the shape of one sample, e.g. ``(8, 8, 1)``.
        data: clean samples ``x0``, shape ``(M, *sample_shape)`` (sample ``k`` uses ``data[k % M]``).
            Without it, ``x0`` comes from the model: its x0 prediction at ``t_end`` after a
            reference solve from ``t_start`` (:func:`~jaxsample.sampling.reference_sample`).
        num_samples: how many ``x0`` (default with ``data``: ``M``; required without).
        num_lambdas: grid points in ``lam`` (``N_ems + 1``; the official CIFAR-10 statistics use
            1201 for fewer than 10 steps, 121 for more).
        num_probes: Rademacher probes per sample and grid point for ``l``.
        seed: sample ``k`` draws its teacher noise, ``z`` and probes from ``fold_in(key(seed), k)``.
        batch_size: samples per jitted call.
        t_start, t_end: the interval (defaults: the path's ``t_max`` and ``t_min``): the grid runs
            from ``lam(t_start)`` to ``lam(t_end)``, and sampling grids must stay inside it.
        granularity: ``'element'`` (one statistic per element of a sample, as the official ones),
            ``'channel'`` (pooled over all axes but ``channel_axis``) or ``'scalar'``.
        channel_axis: the channel axis of a sample (default last, jaxsample's image layout).
        smoothing: half-width of the moving average applied to ``l'`` (official: 5).
        reference_kwargs: options of the reference solve (default ``rtol = atol = 1e-5``).
        progress: show tqdm bars.
        dtype: the dtype of the computation (float32; float64 needs ``jax_enable_x64``).

    Returns:
        An :class:`~jaxsample.solvers.dpm_solver_v3.EMS` on
        :func:`~jaxsample.solvers.dpm_solver_v3.lambda_grid` ``(model.path, num_lambdas, t_start, t_end)``, statistics of shape ``(num_lambdas, *stat_shape)`` with
        ``stat_shape`` ``sample_shape``, or with ones on the pooled axes.

    Raises:
        ValueError: naming the bad argument.
    """
    from tqdm.auto import tqdm

    sample_shape = check_model_and_shape(model, sample_shape)
    if data is not None:
        data = np.asarray(data)
        if data.ndim != len(sample_shape) + 1 or tuple(data.shape[1:]) != sample_shape or data.shape[0] < 1:
            raise ValueError(f"data must have shape (M, *sample_shape) = (M, {', '.join(map(str, sample_shape))}), "
                             f"got {data.shape}")
        if not np.all(np.isfinite(data)):
            raise ValueError("data must be finite")
        if num_samples is None:
            num_samples = data.shape[0]
    elif num_samples is None:
        raise ValueError("num_samples is required without data (how many teacher samples to draw)")
    num_samples = _check_int("num_samples", num_samples, 2)
    num_lambdas = _check_int("num_lambdas", num_lambdas, 3)
    num_probes = _check_int("num_probes", num_probes, 1)
    seed = _check_int("seed", seed, 0)
    batch_size = _check_int("batch_size", batch_size, 1)
    smoothing = _check_int("smoothing", smoothing, 0)
    if granularity not in _GRANULARITIES:
        raise ValueError(f"granularity must be one of {_GRANULARITIES}, got {granularity!r}")
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)) \
            or not -len(sample_shape) <= channel_axis < len(sample_shape):
        raise ValueError(f"channel_axis must be an axis of a sample (shape {sample_shape}), got {channel_axis!r}")
    if granularity == "element":
        axes = ()
    elif granularity == "channel":
        axes = tuple(ax for ax in range(len(sample_shape)) if ax != channel_axis % len(sample_shape))
    else:
        axes = tuple(range(len(sample_shape)))
    path = model.path
    t_start = path.t_max if t_start is None else float(t_start)
    t_end = path.t_min if t_end is None else float(t_end)
    t_grid = jnp.asarray(logsnr_uniform(path, num_lambdas - 1, t_start, t_end), dtype)  # checks t_start, t_end
    lam_grid = path.lam(t_grid)  # = lambda_grid(path, num_lambdas, t_start, t_end)
    lam = np.asarray(lam_grid, np.float64)
    if not (np.all(np.isfinite(np.asarray(lam_grid))) and np.all(np.isfinite(np.asarray(path.alpha(t_grid))))
            and float(np.min(np.asarray(path.alpha(t_grid)))) > 0):
        raise ValueError("t_start and t_end must lie where alpha > 0 and sigma > 0 (finite log-SNR)")
    reference_kwargs = {"rtol": 1e-5, "atol": 1e-5, **dict(reference_kwargs or {})}

    base = jax.random.key(seed)
    if data is None:
        x0_all = _teacher_x0(model, num_samples, sample_shape, jax.random.fold_in(base, 0), t_start, t_end,
                             batch_size, dtype, reference_kwargs, progress)
    else:
        x0_all = data[np.arange(num_samples) % data.shape[0]]
    if not np.all(np.isfinite(x0_all)):
        raise ValueError("the teacher's samples are not finite: is the model finite on [t_start, t_end]?")
    sample_key = jax.random.fold_in(base, 1)
    batches = list(_batches(num_samples, batch_size))

    def batch_args(idx, mask):
        keys = jax.vmap(lambda k: jax.random.fold_in(sample_key, k))(jnp.asarray(idx))
        return jnp.asarray(x0_all[idx], dtype), keys, jnp.asarray(mask)

    # Pass 1: l.
    pooled = math.prod(sample_shape[ax] for ax in axes)
    l_sum = 0.0
    for idx, mask in tqdm(batches, desc="DPM-Solver-v3 EMS: l", disable=not progress, leave=False):
        x0, keys, m = batch_args(idx, mask)
        l_sum = l_sum + np.asarray(_l_sums(model, x0, keys, t_grid, m, num_probes, axes), np.float64)
    l = l_sum / (num_samples * pooled)
    dl = _moving_average(np.gradient(l, lam, axis=0), smoothing)

    # Pass 2: the moments of f and f', combined across batches in float64 (Chan et al.).
    l_d, dl_d = jnp.asarray(l, dtype), jnp.asarray(dl, dtype)
    n_tot, mean_f, mean_df, m2, c, scale = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for idx, mask in tqdm(batches, desc="DPM-Solver-v3 EMS: s, b", disable=not progress, leave=False):
        x0, keys, m = batch_args(idx, mask)
        count, (mf, mdf, m2_b, c_b, scale_b) = _f_moments(model, x0, keys, t_grid, lam_grid, l_d, dl_d, m,
                                                          num_probes, axes)
        n_b = float(count)
        mf, mdf, m2_b, c_b = (np.asarray(a, np.float64) for a in (mf, mdf, m2_b, c_b))
        scale = scale + np.asarray(scale_b, np.float64)
        n_new = n_tot + n_b
        delta_f, delta_df = mf - mean_f, mdf - mean_df
        m2 = m2 + m2_b + delta_f**2 * n_tot * n_b / n_new
        c = c + c_b + delta_f * delta_df * n_tot * n_b / n_new
        mean_f = mean_f + delta_f * n_b / n_new
        mean_df = mean_df + delta_df * n_b / n_new
        n_tot = n_new
    # Where f is constant up to rounding (Var f below 1e-11 of the variance of the two terms it is the
    # difference of, i.e. ~1e3 float32 rounding errors: Gaussian data, where sigma eps - l x is deterministic),
    # s would be noise / noise: set 0.
    var_ok = m2 > 1e-11 * scale
    s = np.where(var_ok, c / np.where(var_ok, m2, 1.0), 0.0)
    b = mean_df - s * mean_f
    for name, a in (("l", l), ("s", s), ("b", b)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"calibration produced non-finite values of {name}: is the model finite and "
                             f"differentiable on [t_start, t_end]?")
    try:
        return EMS.from_statistics(lam, l, s, b, dtype=jnp.zeros((), dtype).dtype)
    except ValueError as err:
        raise ValueError(f"{err} (here max |s| = {np.max(np.abs(s)):.3g}: s = Cov(f, f') / Var(f) is noisy where f "
                         f"is nearly constant; use more samples (num_samples) and a finer grid (num_lambdas))"
                         ) from None
