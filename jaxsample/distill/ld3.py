"""LD3: learn the time discretisation of a diffusion ODE solver for one model and one NFE.

Tong et al., "Learning to Discretize Denoising Diffusion ODEs" (arXiv 2405.15506), as read from the
official code (github vinhsuhi/LD3: ``trainer.py`` ``discretize_model_wrapper`` and ``LD3Trainer``
``_solve_ode``, ``_train_one_round``, ``_update_latents``, ``_examine_checkpoint``; ``utils.py``
``adjust_hyper``; ``configs/*.yml``; ``gen_data.py``).

LD3 keeps the solver and learns its grid. Two vectors of ``N + 1`` numbers (``N`` steps) are trained:

- ``xi1`` places the step times (:func:`ld3_grid`): in log-SNR mode (the pixel-space configs) the
  normalised cumulative sum of ``softmax(xi1)`` spaces ``lam`` between ``lam(t_max)`` and
  ``lam(t_min)``; in time mode (the latent-diffusion configs) it spaces ``t`` itself.
- ``xi2`` decouples the time the model is *called at* from the time the solver *steps on*:
  ``lam'_i = lam_i + clip(xi2_i, -m, m)`` at the interior points, ``m = 0.5 min |diff xi1|``. The
  solver's coefficients use ``ts``; the network sees ``ts_model`` (:func:`grid_model`).

They are fitted by backpropagating a per-sample loss between the student's sample (``N`` steps of
``solver`` on the learned grid) and the teacher's sample from the same noise, with the "soft
constraint" of the paper: the student may start from a moved noise ``x'_T`` within a small ball
around the teacher's ``x_T`` (:func:`distill`).

A learned grid is a :class:`LearnedGrid` (``ts``, ``ts_model``, and ``xi1, xi2``), run by any
jaxsample solver, saved to and loaded from one ``.npz`` file. It is not a solver of the learned-solver
registry: it is a grid (plus a model-time map) for any deterministic solver of the library.

Example:
    >>> import jax
    >>> import jaxsample as js
    >>> from jaxsample.distill import ld3
    >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=3)
    >>> model = gmm.model(js.VPCosine(), "eps")
    >>> ends = js.compare.edm_interval(model.path)                      # t_start, t_end
    >>> train = ld3.make_pairs(model, 8, (4,), seed=0, **ends)          # the code's UniPC teacher, NFE 20
    >>> val = ld3.make_pairs(model, 8, (4,), seed=1, **ends)
    >>> solver = js.dpm_solver_pp_2m()                  # the paper's student is js.unipc(3, "bh1")
    >>> grid, log = ld3.distill(model, solver, 4, train, val, rounds_xi1=1, rounds_both=1,
    ...                         t_max=ends["t_start"], t_min=ends["t_end"], progress=False, return_log=True)
    >>> grid.ts.shape, grid.ts_model.shape, log["best_val_loss"] <= log["init_val_loss"]
    ((5,), (5,), True)
    >>> x = js.sample(grid.model(model), solver, grid.ts, val["noise"])   # or grid.sample(model, solver, noise)
    >>> x.shape
    (8, 4)
"""

from __future__ import annotations

import math
import time
from typing import Callable, Mapping, Optional, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.models import PREDICTIONS, Model
from jaxsample.paths import AbstractPath
from jaxsample.solvers._base import AbstractSolver
from jaxsample.distill._checks import check_int as _check_int
from jaxsample.grids import _ends as grids_ends

__all__ = ["LearnedGrid", "ld3_grid", "grid_model", "make_pairs", "distill", "l2_loss", "l1_loss", "feature_loss",
           "TEACHER"]

#: The teacher of the official data generation (``gen_data.py`` with ``configs/cifar10.yml``): UniPC
#: ``bh1`` of order 3, 20 steps on the EDM (rho = 7) grid, over the same interval as the student.
TEACHER = {"solver": "unipc", "order": 3, "variant": "bh1", "grid": "edm", "steps": 20}

_FORMAT = "jaxsample.ld3/1"


# --------------------------------------------------------------------------- the parameterisation


def _ends(path: AbstractPath, t_max, t_min):
    if not isinstance(path, AbstractPath):
        raise ValueError(f"path must be a jaxsample AbstractPath, got {type(path).__name__}")
    if not all(v is None or math.isfinite(float(v)) for v in (t_max, t_min)):
        raise ValueError(f"t_max and t_min must be finite, got t_max={t_max}, t_min={t_min}")
    return grids_ends(path, t_max, t_min, names=("t_max", "t_min"))


def ld3_grid(path: AbstractPath, xi1, xi2=None, *, lam_mode: bool = True, t_max=None, t_min=None,
             win_rate: float = 0.5):
    """LD3's parameterisation: the step times ``ts`` and the model-input times ``ts_model``.

    As the official ``discretize_model_wrapper`` (``model_lambda_fn`` / ``model_time_fn``), with
    ``p = softmax(xi1)`` and ``c = cumsum(p)``:

    - ``lam_mode=True`` (pixel-space configs): ``u = (c - c_0) / (c_N - c_0)``,
      ``lam_i = lam(t_max) + u_i (lam(t_min) - lam(t_max))``, ``lam'_i = lam_i + clip(xi2_i, -m, m)``
      for ``0 < i < N`` (``lam'`` = ``lam`` at both ends), ``m = win_rate * min_i |xi1_{i+1} - xi1_i|``
      (the differences of the raw ``xi1``, as the code has it), ``ts = t_from_lam(lam)``,
      ``ts_model = t_from_lam(lam')``.
    - ``lam_mode=False`` (time mode, latent-space configs): ``u = flip(c)`` normalised the same way,
      ``ts = t_min + u (t_max - t_min)``, ``ts_model = ts + clip(xi2, -m, m)`` at the interior points,
      ``m = win_rate * min |diff ts|``.

    ``m`` carries no gradient (the code takes it with ``.item()``). ``xi1[0]`` has no effect (the
    normalisation cancels it); it is kept so that both vectors have ``N + 1`` entries as in the code.
    Departure: the two end times are pinned to the exact floats ``t_max`` and ``t_min`` (the code's
    ``inverse_lambda(lambda(t_max))`` returns them up to rounding, which can fall outside the path's range).

    Args:
        path: the :class:`~jaxsample.paths.AbstractPath` (``path.lam``, ``path.t_from_lam``).
        xi1: shape ``(N + 1,)``: ``ones`` gives the log-SNR-uniform (time-uniform) grid.
        xi2: shape ``(N + 1,)`` or ``None`` (zeros): the model-time shifts.
        lam_mode: log-SNR mode (default, as the pixel configs) or time mode.
        t_max, t_min: the interval, ``t_max`` the high-noise end; default the path's.
        win_rate: the clip window as a fraction of the smallest gap (the code's ``win_rate``, 0.5).

    Returns:
        ``(ts, ts_model)``: two decreasing-from-``t_max`` arrays of shape ``(N + 1,)``; ``ts`` is a
        jaxsample grid (``ts[0] = t_max``, ``ts[-1] = t_min``).

    Raises:
        ValueError: naming the bad argument.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxsample import paths
        >>> from jaxsample.distill.ld3 import ld3_grid
        >>> path = paths.VPCosine()
        >>> ts, ts_model = ld3_grid(path, jnp.ones(5), t_max=0.9, t_min=0.1)
        >>> bool(np.allclose(np.diff(path.lam(ts)), np.diff(path.lam(ts))[0], rtol=1e-4))  # uniform in lam
        True
        >>> bool((ts_model == ts).all())                                   # m = 0 at init
        True
    """
    t_max, t_min = _ends(path, t_max, t_min)
    if not (isinstance(win_rate, (int, float)) and not isinstance(win_rate, bool) and 0 <= win_rate <= 0.5):
        raise ValueError(f"win_rate must be a number in [0, 0.5], got {win_rate!r}")
    xi1 = jnp.asarray(xi1)
    if not jnp.issubdtype(xi1.dtype, jnp.floating):
        xi1 = xi1.astype(jnp.zeros(()).dtype)
    if xi1.ndim != 1 or xi1.shape[0] < 2:
        raise ValueError(f"xi1 must have shape (num_steps + 1,) with num_steps >= 1, got {xi1.shape}")
    xi2 = jnp.zeros_like(xi1) if xi2 is None else jnp.asarray(xi2, xi1.dtype)
    if xi2.shape != xi1.shape:
        raise ValueError(f"xi2 must have the shape of xi1 {xi1.shape}, got {xi2.shape}")
    dtype = xi1.dtype
    c = jnp.cumsum(jax.nn.softmax(xi1))
    mask = jnp.ones_like(xi1).at[0].set(0.0).at[-1].set(0.0)
    if lam_mode:
        lam_lo = jnp.asarray(path.lam(t_max), dtype)   # the code's lambda_min
        lam_hi = jnp.asarray(path.lam(t_min), dtype)   # the code's lambda_max
        u = (c - c[0]) / (c[-1] - c[0])                 # c is increasing: min c_0, max c_N
        lam = u * (lam_hi - lam_lo) + lam_lo
        m = jax.lax.stop_gradient(jnp.min(jnp.abs(jnp.diff(xi1)))) * win_rate
        lam_model = lam + jnp.clip(xi2, -m, m) * mask
        ts = path.t_from_lam(lam).astype(dtype)
        ts_model = path.t_from_lam(lam_model).astype(dtype)
    else:
        flipped = c[::-1]
        u = (flipped - flipped[-1]) / (flipped[0] - flipped[-1])
        ts = u * (t_max - t_min) + t_min
        m = jax.lax.stop_gradient(jnp.min(jnp.abs(jnp.diff(ts)))) * win_rate
        ts_model = ts + jnp.clip(xi2, -m, m) * mask
    ts = ts.at[0].set(t_max).at[-1].set(t_min)
    ts_model = ts_model.at[0].set(t_max).at[-1].set(t_min)
    return ts, ts_model


# --------------------------------------------------------------------------- running a solver on (ts, ts_model)


class _GridTimeFn(eqx.Module):
    model: Model
    ts: jax.Array
    ts_model: jax.Array
    prediction: str = eqx.field(static=True)

    def __call__(self, x, t, **cond):
        t = jnp.asarray(t)
        shift = (self.ts_model - self.ts).astype(t.dtype)
        # piecewise linear in t through (ts_i, ts_model_i - ts_i); ts is decreasing, interp wants increasing
        t_model = t + jnp.interp(t, self.ts[::-1].astype(t.dtype), shift[::-1])
        return self.model.predict(self.prediction, x, t_model, **cond)


def grid_model(model: Model, ts, ts_model, *, prediction: str = "x0") -> Model:
    """The model seen by a solver that steps on ``ts`` while the network is called at ``ts_model``.

    The result, called at a solver time ``t``, returns ``model``'s ``prediction`` at ``x`` and the
    model time ``t + s(t)``, where ``s`` is the shift ``ts_model - ts`` interpolated linearly in ``t``
    (exactly ``ts_model[i]`` at ``t = ts[i]``; the solvers of a multistep family only call the model
    there; the intermediate stages of a single-step solver get the interpolated shift). Sample
    with ``jaxsample.sample(grid_model(model, ts, ts_model), solver, ts, noise)``. Gradients reach
    both ``ts`` and ``ts_model`` (through the solver's coefficients and through the model time).

    ``prediction`` is the type the wrapper declares, and so the one evaluated wholly at the model
    time. The official code calls its (noise-prediction) model at ``t'`` and converts to data
    prediction with ``alpha(t'), sigma(t')``, so a data-prediction solver (UniPC, DPM-Solver++, DDIM:
    they call ``model.x0``) sees ``x0(x, t')``: that is ``prediction='x0'``, the default.
    Noise-prediction solvers (DPM-Solver, DEIS, iPNDM call ``model.eps``) match the code's
    noise-prediction branch with ``prediction='eps'``. Other types are derived from the declared one at
    the solver's ``t``.

    Args:
        model: a :class:`~jaxsample.models.Model`.
        ts: the solver's grid, strictly decreasing.
        ts_model: the model-input times, same shape, equal to ``ts`` at both ends.
        prediction: one of :data:`jaxsample.models.PREDICTIONS`.

    Raises:
        ValueError: naming the bad argument.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxsample as js
        >>> from jaxsample.distill.ld3 import grid_model
        >>> model = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2).model(js.VPCosine())
        >>> ts = jnp.array([0.9, 0.5, 0.1]); ts_model = jnp.array([0.9, 0.45, 0.1])
        >>> x = jnp.ones((3, 2))
        >>> bool(jnp.allclose(grid_model(model, ts, ts_model).x0(x, 0.5), model.x0(x, 0.45)))
        True
    """
    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxsample.Model, got {type(model).__name__}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    ts, ts_model = jnp.asarray(ts), jnp.asarray(ts_model)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D array of at least 2 times, got shape {ts.shape}")
    if ts_model.shape != ts.shape:
        raise ValueError(f"ts_model must have the shape of ts {ts.shape}, got {ts_model.shape}")
    try:
        concrete = np.asarray(ts)
    except Exception:  # traced: not checked
        concrete = None
    if concrete is not None and not np.all(np.diff(concrete) < 0):
        raise ValueError(f"ts must be strictly decreasing, got {concrete}")
    return Model(_GridTimeFn(model, ts, ts_model.astype(ts.dtype), prediction), model.path, prediction)


# --------------------------------------------------------------------------- the result


class LearnedGrid(eqx.Module):
    """A learned LD3 discretisation: the solver grid ``ts`` and the model-input times ``ts_model``.

    Run any deterministic jaxsample solver on it with
    ``jaxsample.sample(grid.model(model), solver, grid.ts, noise)`` (or :meth:`sample`). When
    ``ts_model == ts`` (``xi2 = 0``, or a grid trained with ``rounds_both=0``), :meth:`model` returns
    ``model`` itself and ``grid.ts`` is all there is.

    Attributes:
        ts: the solver's grid, shape ``(N + 1,)``, decreasing from ``t_max`` to ``t_min``.
        ts_model: the times the model is called at, shape ``(N + 1,)``.
        xi1, xi2: the raw parameters they come from (:func:`ld3_grid`).
        lam_mode: the parameterisation (log-SNR or time).
        prediction: the prediction evaluated at the model time (see :func:`grid_model`).
    """

    ts: jax.Array
    ts_model: jax.Array
    xi1: jax.Array
    xi2: jax.Array
    lam_mode: bool = eqx.field(static=True, default=True)
    prediction: str = eqx.field(static=True, default="x0")

    def __check_init__(self):
        shapes = {name: jnp.shape(getattr(self, name)) for name in ("ts", "ts_model", "xi1", "xi2")}
        if len(shapes["ts"]) != 1 or shapes["ts"][0] < 2 or len(set(shapes.values())) != 1:
            raise ValueError(f"ts, ts_model, xi1 and xi2 must all have shape (num_steps + 1,), got {shapes}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")

    @classmethod
    def from_params(cls, path: AbstractPath, xi1, xi2=None, *, lam_mode: bool = True, t_max=None, t_min=None,
                    win_rate: float = 0.5, prediction: str = "x0") -> "LearnedGrid":
        """The grid of parameters ``xi1, xi2`` (:func:`ld3_grid`).

        Example:
            >>> import jax.numpy as jnp
            >>> import jaxsample as js
            >>> from jaxsample.distill.ld3 import LearnedGrid
            >>> path = js.VPCosine()
            >>> grid = LearnedGrid.from_params(path, jnp.ones(5), t_max=0.9, t_min=0.1)
            >>> bool(jnp.allclose(grid.ts, js.logsnr_uniform(path, 4, t_start=0.9, t_end=0.1), atol=1e-6))
            True
        """
        xi1 = jnp.asarray(xi1)
        if not jnp.issubdtype(xi1.dtype, jnp.floating):
            xi1 = xi1.astype(jnp.zeros(()).dtype)
        xi2 = jnp.zeros_like(xi1) if xi2 is None else jnp.asarray(xi2)
        ts, ts_model = ld3_grid(path, xi1, xi2, lam_mode=lam_mode, t_max=t_max, t_min=t_min, win_rate=win_rate)
        return cls(ts, ts_model, xi1, xi2.astype(xi1.dtype), bool(lam_mode), prediction)

    @property
    def num_steps(self) -> int:
        return int(self.ts.shape[0]) - 1

    @property
    def shifted(self) -> bool:
        """Whether any model time differs from its step time (False under tracing only if equal)."""
        try:
            return bool(np.any(np.asarray(self.ts_model) != np.asarray(self.ts)))
        except Exception:  # traced
            return True

    def model(self, model: Model) -> Model:
        """``model`` as the solver must see it on this grid: :func:`grid_model` when the model
        times are shifted, ``model`` itself when they are not."""
        if not isinstance(model, Model):
            raise ValueError(f"model must be a jaxsample.Model, got {type(model).__name__}")
        return grid_model(model, self.ts, self.ts_model, prediction=self.prediction) if self.shifted else model

    def sample(self, model: Model, solver: AbstractSolver, noise, **kwargs):
        """``jaxsample.sample(self.model(model), solver, self.ts, noise, **kwargs)``."""
        from jaxsample.sampling import sample

        return sample(self.model(model), solver, self.ts, noise, **kwargs)

    def save(self, filename: str, **metadata) -> None:
        """Write the grid to ``filename`` (``.npz``) atomically; ``metadata`` (JSON-able values: the
        solver, the teacher, the NFE) is stored with it and read back by :meth:`load`.

        Example:
            >>> import os, tempfile
            >>> import jax.numpy as jnp
            >>> import jaxsample as js
            >>> from jaxsample.distill.ld3 import LearnedGrid
            >>> grid = LearnedGrid.from_params(js.VPCosine(), jnp.arange(5.0), 0.01 * jnp.ones(5))
            >>> f = os.path.join(tempfile.mkdtemp(), "ld3.npz")
            >>> grid.save(f, solver="unipc_bh1_3")
            >>> back, meta = LearnedGrid.load(f, with_metadata=True)
            >>> bool((back.ts == grid.ts).all() and (back.ts_model == grid.ts_model).all()), meta["solver"]
            (True, 'unipc_bh1_3')
        """
        import json

        from jaxsample._files import atomic_write

        if not isinstance(filename, str) or not filename.endswith(".npz"):
            raise ValueError(f"filename must be a str ending in '.npz', got {filename!r}")
        try:
            meta = json.dumps(metadata)
        except TypeError as err:
            raise ValueError(f"metadata must be JSON-serialisable: {err}") from err
        arrays = {name: np.asarray(getattr(self, name)) for name in ("ts", "ts_model", "xi1", "xi2")}
        with atomic_write(filename) as f:
            np.savez(f, format=np.array(_FORMAT), lam_mode=np.array(self.lam_mode),
                     prediction=np.array(self.prediction), metadata=np.array(meta), **arrays)

    @classmethod
    def load(cls, filename: str, *, with_metadata: bool = False):
        """Read a grid written by :meth:`save`; with ``with_metadata``, ``(grid, metadata)``."""
        import json
        import os

        if not isinstance(filename, str) or not os.path.isfile(filename):
            raise ValueError(f"filename {filename!r} does not exist")
        with np.load(filename, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != _FORMAT:
                raise ValueError(f"{filename!r} is not an LD3 grid file (format {_FORMAT})")
            grid = cls(jnp.asarray(z["ts"]), jnp.asarray(z["ts_model"]), jnp.asarray(z["xi1"]),
                       jnp.asarray(z["xi2"]), bool(z["lam_mode"]), str(z["prediction"]))
            metadata = json.loads(str(z["metadata"]))
        return (grid, metadata) if with_metadata else grid


# --------------------------------------------------------------------------- losses and teacher pairs


def _per_sample_mean(a):
    return jnp.mean(a.reshape(a.shape[0], -1), axis=1)


def l2_loss(x, target):
    """Per-sample mean squared difference (the code's ``compute_distance_between_two``: the sum over
    C, H, W divided by C H W), shape ``(batch,)``."""
    return _per_sample_mean((x - target) ** 2)


def l1_loss(x, target):
    """Per-sample mean absolute difference (the code's ``compute_distance_between_two_L1``)."""
    return _per_sample_mean(jnp.abs(x - target))


def feature_loss(features: Callable) -> Callable:
    """A per-sample loss in a feature space: ``mean((f(x) - f(target))^2)`` over the feature axes.

    ``features`` must be a differentiable JAX function from a batch of samples to a batch of features,
    e.g. the shipped digits classifier's penultimate layer (the features of
    :func:`jaxsample.features.digits_frechet_distance`)::

        module, params = jaxsample.teachers.load_digits_classifier()[:2]
        loss = feature_loss(lambda x: module.apply({"params": params}, x, return_features=True)[1])

    It stands in for the paper's LPIPS(VGG), which is not available offline.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxsample.distill.ld3 import feature_loss
        >>> loss = feature_loss(lambda x: 2 * x)
        >>> loss(jnp.ones((2, 3)), jnp.zeros((2, 3))).tolist()
        [4.0, 4.0]
    """
    if not callable(features):
        raise ValueError(f"features must be callable, got {type(features).__name__}")

    def loss(x, target):
        return _per_sample_mean((features(x) - features(target)) ** 2)

    return loss


_LOSSES = {"l2": l2_loss, "l1": l1_loss}


def make_pairs(model: Model, num: int, sample_shape, *, seed: int, t_start=None, t_end=None,
               cond: Optional[Mapping] = None, teacher: Optional[Mapping] = None, batch_size: int = 256) -> dict:
    """Teacher pairs as the official ``gen_data.py`` makes them: ``noise`` and the ``target`` sample
    of a high-NFE solver from it (default :data:`TEACHER`: UniPC ``bh1`` order 3, 20 steps, EDM grid).

    ``teacher`` overrides entries of :data:`TEACHER` (``order``, ``variant``, ``grid``, ``steps``; or
    ``"solver"`` set to a jaxsample solver object). Noise is drawn per sample
    (:func:`~jaxsample.sampling.initial_noise`), so a larger ``num`` extends a smaller one. For exact ODE
    solutions instead (analytic models, tests), use :func:`jaxsample.distill.bns.make_pairs`.

    Example:
        >>> import jaxsample as js
        >>> from jaxsample.distill import ld3
        >>> model = js.compare.benchmark_mixture(dim=4, num_components=3).model(js.VPCosine())
        >>> pairs = ld3.make_pairs(model, 6, (4,), seed=0, **js.compare.edm_interval(model.path))
        >>> pairs["noise"].shape, pairs["target"].shape
        ((6, 4), (6, 4))
    """
    from jaxsample.grids import get_grid
    from jaxsample.sampling import initial_noise, sample
    from jaxsample.solvers.unipc import unipc

    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxsample.Model, got {type(model).__name__}")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    spec = dict(TEACHER)
    unknown = set(teacher or {}) - set(TEACHER)
    if unknown:
        raise ValueError(f"teacher: unknown keys {sorted(unknown)}; known {sorted(TEACHER)}")
    spec.update(teacher or {})
    solver = spec["solver"]
    if solver == "unipc":
        solver = unipc(spec["order"], spec["variant"])
    elif not isinstance(solver, AbstractSolver):
        raise ValueError(f"teacher['solver'] must be 'unipc' or a jaxsample solver, got {solver!r}")
    if solver.is_stochastic:
        raise ValueError(f"teacher['solver'] must be deterministic, got {type(solver).__name__}")
    ts = get_grid(spec["grid"], model.path, spec["steps"], t_start=t_start, t_end=t_end)
    noise = initial_noise(jax.random.key(seed), (int(num), *tuple(sample_shape)))
    cond = {} if cond is None else {k: jnp.asarray(v) for k, v in cond.items()}
    out = []
    for lo in range(0, int(num), batch_size):
        c = {k: v[lo:lo + batch_size] for k, v in cond.items()}
        out.append(np.asarray(sample(model, solver, ts, noise[lo:lo + batch_size], cond=c)))
    return {"noise": noise, "target": jnp.asarray(np.concatenate(out)), **cond}


# --------------------------------------------------------------------------- training


def _check_float(name, value, minimum=0.0, strict=True, allow_none=False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value)) and (float(value) > minimum if strict else float(value) >= minimum)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def _check_pairs(name, pairs):
    if not isinstance(pairs, Mapping) or "noise" not in pairs or "target" not in pairs:
        raise ValueError(f"{name} must be a mapping holding 'noise' and 'target' arrays (see make_pairs)")
    noise, target = jnp.asarray(pairs["noise"]), jnp.asarray(pairs["target"])
    if noise.ndim < 1 or noise.shape[0] < 1:
        raise ValueError(f"{name}['noise'] must have a leading batch axis, got shape {noise.shape}")
    if target.shape[0] != noise.shape[0]:
        raise ValueError(f"{name}: 'noise' and 'target' must hold the same number of samples, "
                         f"got {noise.shape[0]} and {target.shape[0]}")
    cond = {k: jnp.asarray(v) for k, v in pairs.items() if k not in ("noise", "target")}
    for k, v in cond.items():
        if v.ndim < 1 or v.shape[0] != noise.shape[0]:
            raise ValueError(f"{name}[{k!r}] must hold one entry per sample ({noise.shape[0]}), got shape {v.shape}")
    return noise, target, cond


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def distill(model: Model, solver: AbstractSolver, num_steps: int, train_pairs: Mapping, val_pairs: Mapping, *,
            loss: Union[str, Callable] = "l2", lam_mode: bool = True, t_max=None, t_min=None,
            rounds_xi1: int = 2, rounds_both: int = 5, batch_size: int = 2, lr_xi1: float = 5e-3,
            momentum_xi1: float = 0.9, lr_xi2: Optional[float] = None, min_lr_xi1: float = 5e-5,
            min_lr_xi2: float = 1e-6, lr_decay: float = 0.8, patience: int = 5, lr2_patience: int = 5,
            clip_norm: float = 1.0, ball_radius: Optional[float] = None, ball_lr: Optional[float] = None,
            ball_lr_decay: float = 0.5, win_rate: float = 0.5, prediction: str = "x0",
            val_batch_size: Optional[int] = None, seed: int = 0, progress: bool = True,
            return_log: bool = False):
    """Learn an LD3 grid of ``num_steps`` steps for ``solver`` on ``model``, the official recipe.

    The recipe of ``LD3Trainer.train`` with ``configs/cifar10.yml`` and ``adjust_hyper``, with ``N`` the
    solver's NFE for ``num_steps`` steps (``adjust_hyper`` uses the configured NFE, ``args.steps``) and
    ``D`` the size of one sample:

    - ``xi1 = 1``, ``xi2 = 0`` (the log-SNR-uniform grid, or the time-uniform one in time mode);
      ``xi1`` by RMSprop(``lr_xi1`` 5e-3, momentum 0.9, torch's alpha 0.99 and eps 1e-8), ``xi2`` by
      SGD(``lr_xi2`` = 0.1 / N), each gradient clipped to norm ``clip_norm`` 1.0.
    - ``rounds_xi1`` rounds (2) training ``xi1`` only, then ``rounds_both`` rounds (5) training both.
      A round is one shuffled pass over ``train_pairs`` in batches of ``batch_size`` (2) and then one
      pass over ``val_pairs`` that moves their noise only; each round after the first starts from the
      best parameters so far.
    - The ball (soft constraint): every batch also takes one SGD step (``ball_lr`` = 12 / N) on its
      start noise ``x'_T``, projects it onto ``||x'_T - x_T|| <= ball_radius`` (0.001 D / N^2; on the
      standard-normal noise, before the scaling by ``sigma(t_max)``), re-solves with the current
      parameters and keeps the move per sample only if that sample's loss fell. ``ball_lr`` is multiplied by
      ``ball_lr_decay`` (0.5) after a round in which no validation sample moved.
    - Validation after every training iteration, on all of ``val_pairs`` (from their moved noise, as
      the code does), keeping the best parameters; after ``patience`` (5) iterations without a new best
      the best parameters (and the data saved with them) are reloaded and the learning
      rates multiplied by ``lr_decay`` (0.8; ``xi2``'s only in the second phase), floored at
      ``min_lr_xi1`` 5e-5 and ``min_lr_xi2`` 1e-6. The first time patience runs out the code only
      reloads (its ``eval_on_one`` switch), and so does this. Training stops early once ``xi2``'s rate
      has sat at its floor at ``lr2_patience`` (5) decays.

    Departures from the official code:

    - Loss: per-sample L2 (the code's ``L2`` option, its mean over C, H, W) by default instead of
      LPIPS(VGG), which is not available offline; ``'l1'`` or a callable ``loss(x, target) -> (batch,)``
      (e.g. :func:`feature_loss` on a classifier's features) can be given instead.
    - Teacher pairs are made by jaxsample's solvers (:func:`make_pairs`, the code's UniPC teacher; or
      the exact ODE solution, :func:`jaxsample.distill.bns.make_pairs`) and passed in.
    - The model-time shift runs through :func:`grid_model` (the code passes ``timesteps2`` to its own
      samplers); with data-prediction solvers the model sees exactly the code's ``x0(x, t')``.
    - The end times of the grid are pinned to the exact floats (see :func:`ld3_grid`).
    - Shuffling is numpy's (``seed``), not torch's DataLoader; the parameters are in the noise's
      float dtype (float32, or float64 under x64) rather than always float32, and ``lr_xi2``,
      ``ball_radius``, ``ball_lr`` are not rounded to 8 decimals as ``adjust_hyper`` does.
    - Kept on purpose, although they look like accidents: the optimiser state survives a reload of the
      best parameters; the first exhausted patience only reloads (``eval_on_one``); validation runs on
      the moved validation noise; a reload during a pass does not change the data that pass runs over.
    - Its per-iteration checkpoints, figures, GIFs and logs to disk are not reproduced (``return_log``
      gives the history instead); the code's ``match_prior`` and ``no_v1`` options are not offered.

    Args:
        model: the teacher's :class:`~jaxsample.models.Model` (the student is the same model).
        solver: a deterministic jaxsample solver (the code uses UniPC ``bh1`` of order 3).
        num_steps: the number of steps ``N`` of the grid.
        train_pairs, val_pairs: mappings with ``noise`` (standard normal, batch first) and ``target``
            (the teacher's sample from that noise); any other entries are per-sample model
            conditioning (``cond``). The code uses 50 + 50 pairs.
        loss: ``'l2'`` (default), ``'l1'``, or a callable ``loss(x, target)`` returning per-sample losses.
        lam_mode: log-SNR parameterisation (pixel configs, default) or time (latent configs).
        t_max, t_min: the sampling interval (default the path's); must be the teacher's.
        rounds_xi1, rounds_both: rounds of the two phases (2 and 5; the latent configs use 3 for the
            second).
        batch_size: training batch size (2; 1 for the latent configs).
        lr_xi1, momentum_xi1, lr_xi2, min_lr_xi1, min_lr_xi2, lr_decay, patience, lr2_patience,
            clip_norm: the optimiser settings above (``lr_xi2`` default ``0.1 / N``; the latent configs
            use ``0.001 / N``).
        ball_radius, ball_lr, ball_lr_decay: the ball above (``ball_radius=0`` turns it off, as the
            code's ``prior_bound = 0`` does).
        win_rate: the clip window of ``xi2`` (:func:`ld3_grid`).
        prediction: what :func:`grid_model` evaluates at the model time (``'x0'``; ``'eps'`` for
            noise-prediction solvers).
        val_batch_size: validate in chunks of this many samples (default: all at once, as the code
            with 50 validation pairs).
        seed: the shuffling of the training pairs.
        progress: show a tqdm bar over the training iterations.
        return_log: also return a dict with the initial and best validation losses, the history, the
            final learning rates, the ball and the wall time.

    Returns:
        The best :class:`LearnedGrid` on validation; with ``return_log``, ``(grid, log)``.

    Raises:
        ValueError: naming the bad argument.

    References:
        Tong, Trung-Dung, Khai Nguyen, Anh Tran, Bao Duong, Ngoc-Hieu Nguyen, Trung Le, Dinh Phung,
        "Learning to Discretize Denoising Diffusion ODEs", ICLR 2025 (arXiv 2405.15506); code
        github.com/vinhsuhi/LD3.
    """
    import optax

    from jaxsample.sampling import sample

    # ---- arguments
    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxsample.Model, got {type(model).__name__}")
    if not isinstance(solver, AbstractSolver):
        raise ValueError(f"solver must be a jaxsample AbstractSolver, got {type(solver).__name__}")
    if solver.is_stochastic:
        raise ValueError(f"solver must be deterministic (LD3 learns the grid of an ODE solver), "
                         f"got the stochastic {type(solver).__name__}")
    n = _check_int("num_steps", num_steps, 1)
    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a callable, got {loss!r}")
        loss_fn = _LOSSES[loss]
    elif callable(loss):
        loss_fn = loss
    else:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)} or a callable, got {type(loss).__name__}")
    if not isinstance(lam_mode, (bool, np.bool_)):
        raise ValueError(f"lam_mode must be True or False, got {lam_mode!r}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    t_max, t_min = _ends(model.path, t_max, t_min)
    rounds_xi1 = _check_int("rounds_xi1", rounds_xi1, 0)
    rounds_both = _check_int("rounds_both", rounds_both, 0)
    if rounds_xi1 + rounds_both < 1:
        raise ValueError("rounds_xi1 + rounds_both must be at least 1")
    batch_size = _check_int("batch_size", batch_size, 1)
    patience = _check_int("patience", patience, 1)
    lr2_patience = _check_int("lr2_patience", lr2_patience, 1)
    nfe = int(solver.nfe(n))
    lr_xi1 = _check_float("lr_xi1", lr_xi1)
    momentum_xi1 = _check_float("momentum_xi1", momentum_xi1, strict=False)
    lr_xi2 = 0.1 / nfe if lr_xi2 is None else _check_float("lr_xi2", lr_xi2)
    min_lr_xi1 = _check_float("min_lr_xi1", min_lr_xi1, strict=False)
    min_lr_xi2 = _check_float("min_lr_xi2", min_lr_xi2, strict=False)
    lr_decay = _check_float("lr_decay", lr_decay)
    if lr_decay > 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
    clip_norm = _check_float("clip_norm", clip_norm)
    ball_lr_decay = _check_float("ball_lr_decay", ball_lr_decay)
    if not isinstance(win_rate, (int, float)) or isinstance(win_rate, bool) or not 0 <= win_rate <= 0.5:
        raise ValueError(f"win_rate must be a number in [0, 0.5], got {win_rate!r}")
    if val_batch_size is not None:
        val_batch_size = _check_int("val_batch_size", val_batch_size, 1)
    seed = _check_int("seed", seed, 0)
    train_noise, train_target, train_cond = _check_pairs("train_pairs", train_pairs)
    val_noise, val_target, val_cond = _check_pairs("val_pairs", val_pairs)
    if train_noise.shape[1:] != val_noise.shape[1:]:
        raise ValueError(f"train_pairs and val_pairs must hold samples of the same shape, got "
                         f"{train_noise.shape[1:]} and {val_noise.shape[1:]}")
    if set(train_cond) != set(val_cond):
        raise ValueError(f"train_pairs and val_pairs must hold the same conditioning keys, got "
                         f"{sorted(train_cond)} and {sorted(val_cond)}")
    dim = int(np.prod(train_noise.shape[1:]))
    ball_radius = (0.001 * dim / nfe**2 if ball_radius is None
                   else _check_float("ball_radius", ball_radius, strict=False))
    ball_lr = 12.0 / nfe if ball_lr is None else _check_float("ball_lr", ball_lr)
    dtype = jnp.promote_types(train_noise.dtype, jnp.float32)

    # ---- the loss of parameters (xi1, xi2) on a batch
    path = model.path

    def per_sample_loss(xi1, xi2, noise, target, cond):
        ts, ts_model = ld3_grid(path, xi1, xi2, lam_mode=bool(lam_mode), t_max=t_max, t_min=t_min,
                                win_rate=win_rate)
        x = sample(grid_model(model, ts, ts_model, prediction=prediction), solver, ts, noise, cond=cond,
                   checkpoint=True, check_finite=False)
        return loss_fn(x, target)

    def make_tx(learning_rate, kind):
        if kind == "rmsprop":
            # torch.optim.RMSprop(lr, momentum): alpha 0.99, eps 1e-8 outside the sqrt, and the momentum
            # buffer holds g / (sqrt(v) + eps) *before* the learning rate (optax.rmsprop scales first,
            # which differs from torch once the rate is decayed)
            return optax.chain(optax.clip_by_global_norm(clip_norm),
                               optax.scale_by_rms(decay=0.99, eps=1e-8, eps_in_sqrt=False),
                               optax.trace(decay=momentum_xi1) if momentum_xi1 > 0 else optax.identity(),
                               optax.scale_by_learning_rate(learning_rate))
        return optax.chain(optax.clip_by_global_norm(clip_norm), optax.sgd(learning_rate))

    tx1 = optax.inject_hyperparams(lambda learning_rate: make_tx(learning_rate, "rmsprop"))(learning_rate=lr_xi1)
    tx2 = optax.inject_hyperparams(lambda learning_rate: make_tx(learning_rate, "sgd"))(learning_rate=lr_xi2)

    def where_tree(flag, new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.where(flag, a, b), new, old)

    @jax.jit
    def descend(xi1, xi2, opt1, opt2, latent, target, cond, shift_lr, train1, train2):
        """The gradient part of one batch of ``_train_one_round``: per-sample losses (the reference for
        the acceptance test), one SGD step on the start noise, and the xi steps (where trained)."""
        def mean_loss(xi1, xi2, latent):
            v = per_sample_loss(xi1, xi2, latent, target, cond)
            return jnp.mean(v), v

        (value, ref), (g1, g2, gl) = jax.value_and_grad(mean_loss, argnums=(0, 1, 2), has_aux=True)(xi1, xi2, latent)
        u1, new1 = tx1.update(g1, opt1, xi1)
        u2, new2 = tx2.update(g2, opt2, xi2)
        xi1 = jnp.where(train1, optax.apply_updates(xi1, u1), xi1)
        xi2 = jnp.where(train2, optax.apply_updates(xi2, u2), xi2)
        return xi1, xi2, where_tree(train1, new1, opt1), where_tree(train2, new2, opt2), latent - shift_lr * gl, \
            ref, value

    @jax.jit
    def accept_moves(xi1, xi2, latent, moved, ori, ref, target, cond):
        """``_update_latents``: project the moved noise onto the ball around the original, re-solve with
        the current parameters, keep each sample's move only if its loss fell below ``ref``."""
        diff = (moved - ori).reshape(moved.shape[0], -1)
        norm = jnp.linalg.norm(diff, axis=1)
        scale = jnp.where(norm > ball_radius, ball_radius / jnp.where(norm > 0, norm, 1.0), 1.0)
        projected = ori + (scale[:, None] * diff).reshape(moved.shape)
        accept = per_sample_loss(xi1, xi2, projected, target, cond) < ref
        return jnp.where(accept.reshape((-1,) + (1,) * (latent.ndim - 1)), projected, latent), accept

    @jax.jit
    def val_loss_sum(xi1, xi2, noise, target, cond):
        return jnp.sum(per_sample_loss(xi1, xi2, noise, target, cond))

    num_val, num_train = int(val_noise.shape[0]), int(train_noise.shape[0])

    def validate(xi1, xi2, latents):
        """``_run_validation``: the mean loss over all validation pairs from their current noise."""
        size = num_val if val_batch_size is None else min(val_batch_size, num_val)
        total = 0.0
        for lo in range(0, num_val, size):
            sl = slice(lo, lo + size)
            total += float(val_loss_sum(xi1, xi2, latents[sl], val_target[sl], _take(val_cond, sl)))
        return total / num_val

    # ---- state: st holds what the code's trainer holds (parameters, optimisers, current data)
    xi1 = jnp.ones(n + 1, dtype)
    xi2 = jnp.zeros(n + 1, dtype)
    train_ori, val_ori = jnp.asarray(train_noise, dtype), jnp.asarray(val_noise, dtype)
    st = {"xi1": xi1, "xi2": xi2, "opt1": tx1.init(xi1), "opt2": tx2.init(xi2), "train": train_ori, "val": val_ori}
    lrs = {"xi1": lr_xi1, "xi2": lr_xi2}
    best = {"loss": math.inf, "xi1": xi1, "xi2": xi2, "train": train_ori, "val": val_ori, "iter": 0}
    counters = {"worse": 0, "min_lr1_hits": 0, "min_lr2_hits": 0, "first_patience": True, "iter": 0, "round": 0}
    history = []
    shift_lr = ball_lr
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    def set_lr(opt, value):
        opt.hyperparams["learning_rate"] = jnp.asarray(value, opt.hyperparams["learning_rate"].dtype)
        return opt

    def examine(phase1):
        """``_examine_checkpoint``: validate, keep the best (parameters and data), and after ``patience``
        misses reload them and decay the learning rates."""
        value = validate(st["xi1"], st["xi2"], st["val"])
        history.append({"iter": counters["iter"], "round": counters["round"], "val_loss": value,
                        "lr_xi1": lrs["xi1"], "lr_xi2": lrs["xi2"]})
        if value < best["loss"]:
            best.update(loss=value, xi1=st["xi1"], xi2=st["xi2"], train=st["train"], val=st["val"],
                        iter=counters["iter"])
            counters["worse"] = 0
        else:
            counters["worse"] += 1
        if counters["worse"] < patience:
            return
        st.update(xi1=best["xi1"], xi2=best["xi2"], train=best["train"], val=best["val"])  # reload_data=True
        counters["worse"] = 0
        if counters["first_patience"]:  # the code's eval_on_one switch: reload, re-validate, no decay
            counters["first_patience"] = False
            best["loss"] = validate(st["xi1"], st["xi2"], st["val"])
            return
        lrs["xi1"] = max(lr_decay * lrs["xi1"], min_lr_xi1)
        st["opt1"] = set_lr(st["opt1"], lrs["xi1"])
        if phase1:
            counters["min_lr1_hits"] += lrs["xi1"] <= min_lr_xi1
        else:
            lrs["xi2"] = max(lr_decay * lrs["xi2"], min_lr_xi2)
            st["opt2"] = set_lr(st["opt2"], lrs["xi2"])
            counters["min_lr2_hits"] += lrs["xi2"] <= min_lr_xi2

    def one_batch(data, ori, target, cond, flags):
        """One batch: the gradient step, then (for a training batch) validation, then the acceptance."""
        (st["xi1"], st["xi2"], st["opt1"], st["opt2"], moved, ref, value) = descend(
            st["xi1"], st["xi2"], st["opt1"], st["opt2"], data, target, cond, jnp.asarray(shift_lr, dtype), *flags)
        if bool(flags[0]):
            counters["iter"] += 1
            examine(phase1)
            if counters["min_lr2_hits"] >= lr2_patience:
                return None, None, value
        lat, accept = accept_moves(st["xi1"], st["xi2"], data, moved, ori, ref, target, cond)
        return lat, accept, value

    total_rounds = rounds_xi1 + rounds_both
    from tqdm.auto import tqdm

    bar = tqdm(total=total_rounds * -(-num_train // batch_size), desc=f"LD3 N={n}", disable=not progress, leave=False)
    init_val = None
    stopped_early = False
    try:
        while counters["round"] < total_rounds and not stopped_early:
            phase1 = counters["round"] < rounds_xi1
            if counters["round"] > 0:  # _load_checkpoint(reload_data=False)
                st.update(xi1=best["xi1"], xi2=best["xi2"])
                counters["worse"] = 0
            examine(phase1)
            if init_val is None:
                init_val = history[0]["val_loss"]
            # the passes run over the data as it stands now; reloads during a pass do not change them
            train_round, val_round = st["train"], st["val"]
            new_train = train_round
            order = rng.permutation(num_train)
            for lo in range(0, num_train, batch_size):   # the training pass (shuffled)
                idx = order[lo:lo + batch_size]
                lat, _, value = one_batch(train_round[idx], train_ori[idx], train_target[idx],
                                          _take(train_cond, idx), (jnp.asarray(True), jnp.asarray(not phase1)))
                bar.update(1)
                bar.set_postfix(round=counters["round"], train=f"{float(value):.3g}", best_val=f"{best['loss']:.3g}")
                if lat is None:
                    stopped_early = True
                    break
                new_train = new_train.at[idx].set(lat)
            if stopped_early:
                break
            if ball_radius > 0:
                st["train"] = new_train
                new_val, no_val_move = val_round, True
                for lo in range(0, num_val, batch_size):     # the validation pass (in order, noise only)
                    sl = np.arange(lo, min(lo + batch_size, num_val))
                    lat, accept, _ = one_batch(val_round[sl], val_ori[sl], val_target[sl], _take(val_cond, sl),
                                               (jnp.asarray(False), jnp.asarray(False)))
                    new_val = new_val.at[sl].set(lat)
                    no_val_move = no_val_move and not bool(jnp.any(accept))
                st["val"] = new_val
                if no_val_move:
                    shift_lr *= ball_lr_decay
            counters["round"] += 1
    finally:
        bar.close()
    grid = LearnedGrid.from_params(path, best["xi1"], best["xi2"], lam_mode=bool(lam_mode), t_max=t_max,
                                   t_min=t_min, win_rate=win_rate, prediction=prediction)
    if not return_log:
        return grid
    log = {"init_val_loss": init_val, "best_val_loss": best["loss"], "best_iter": best["iter"],
           "iterations": counters["iter"], "rounds": counters["round"], "stopped_early": stopped_early,
           "lr_xi1": lrs["xi1"], "lr_xi2": lrs["xi2"], "ball_radius": ball_radius, "ball_lr": shift_lr,
           "nfe": nfe, "validation": history, "seconds": time.perf_counter() - t0}
    return grid, log
