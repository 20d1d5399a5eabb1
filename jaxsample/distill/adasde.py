"""Distil AdaSDE's per-step parameters (noise gamma, midpoint r, time scale a, direction scale c).

Wang et al., AdaSDE (arXiv 2510.23285; code Westlake-AGI-Lab/AdaSDE ``training/``). On a fixed
coarse grid of n steps, a teacher (DPM-Solver-2 on a grid that splits every coarse interval into
``M + 1`` pieces, M = 3 in the paper) is run from the same initial noise; the student rolls out on
its own outputs, with its own injected noise, and is trained on the per-step trajectory loss
``sum_i ||x^S_{i+1} - x^T_{i+1}||^2`` (mean over dimensions and samples) by backpropagating
through the rollout, with Adam and cosine decay (:func:`jaxsample.train.make_optimizer`) through
the shared :func:`jaxsample.train.fit` loop.

The learned scalars are parameterised as in the official predictor:
``r = sigmoid(.)``, ``a = 1 + min(scale_time, 0.99) tanh(./2)``,
``c = 1 + min(scale_dir, 0.99) tanh(./2)`` and ``gamma = gamma_min + (gamma_max - gamma_min)
sigmoid(.)`` in ``[gamma_min, gamma_max]``, with ``gamma_0 = 0`` (no injection on the first step).
:class:`Parameterisation` also covers the deterministic counterpart (``learn_gamma=False``:
``gamma = 0``, the AMED-like solver) and the plug-in form (``base=`` a deterministic solver:
only the gammas are learned, :class:`~jaxsample.solvers.adasde.NoiseInjected`).

The per-sample noise of the student comes from the GLOBAL example index of the training pair,
so the loss and the trained values do not depend on the number of devices.

The official recipe (WLU-wry02/AdaSDE ``training/``; ALGORITHMS.md section 9) is available part by
part, so that an ablation can measure each part:

- ``make_pairs(teacher='official', grid=...)``: the official teacher, ``dpm_sampler`` with AFS off on
  the student's schedule with ``(M + 1) n`` steps, every fine interval run as 2 DPM-Solver-2
  sub-steps on an EDM rho = 7 grid (:func:`official_teacher_grid`);
- ``distill(train_pairs=callable)``: fresh noise and teacher trajectories every iteration
  (:func:`fresh_pairs`) instead of a fixed training set;
- ``distill(loss='official', features=...)``: the official per-step loss (sum of squares over the
  dimensions in EDM's variables ``x / alpha``, divided by the batch) with the last step's loss
  ``alpha * D * MSE`` of features (:func:`step_loss`);
- ``distill(update='per_step', schedule='official')``: Adam stepped after every coarse step on
  the student that continues from its own (not detached) output, gradients through
  ``nan_to_num``, and ``CosineAnnealingLR`` with the absolute floor 0.01 stepped once per batch;
- ``Parameterisation(official_gamma=True, ...)`` and ``init_params(noise=1.0)``: the official
  gamma map with its temperature and offset, and the official N(0, 1) initialisation.

Example:
    >>> import jax
    >>> import jaxsample as js
    >>> from jaxsample.distill import adasde
    >>> gmm = js.compare.benchmark_mixture(dim=4, num_components=3)
    >>> model = gmm.model(js.VPCosine(), "eps")
    >>> ts = js.edm(model.path, 3, **js.compare.edm_interval(model.path))
    >>> train = adasde.make_pairs(model, ts, 64, (4,), seed=0)
    >>> val = adasde.make_pairs(model, ts, 64, (4,), seed=1)
    >>> spec = adasde.Parameterisation(num_steps=3)
    >>> solver, log = adasde.distill(model, spec, ts, train, val, num_steps=10, eval_every=10,
    ...                              batch_size=64, progress=False)
    >>> log["best_val_loss"] <= log["init_val_loss"]
    True
    >>> x = js.sample(model, solver, solver.times, val["noise"], key=jax.random.key(0))  # like any solver
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Callable, Mapping, Optional, Union

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample._files import write_json
from jaxsample.grids import get_grid
from jaxsample.models import Model
from jaxsample.paths import AbstractPath
from jaxsample.sampling import initial_noise, reference_sample, sample
from jaxsample.distill._fit_solver import fit_solver
from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers.adasde import AdaSDE, LearnedAdaSDE
from jaxsample.solvers.dpm_solver import dpm_solver
from jaxsample.solvers.runge_kutta import heun

__all__ = ["Parameterisation", "teacher_grid", "official_teacher_grid", "make_pairs", "fresh_pairs", "step_loss",
           "trajectory_loss", "evaluate", "distill", "official_lr", "GAMMA_OFFSET"]

#: The official predictor's gamma offset ``b = tau logit(p0)`` with ``tau = 2`` and ``p0 = 0.6``:
#: raw 0 maps to ``gamma_min + 0.6 (gamma_max - gamma_min)`` (``training/networks.py``).
GAMMA_OFFSET = 2.0 * math.log(0.6 / 0.4)


def _logit(p):
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@dataclasses.dataclass(frozen=True)
class Parameterisation:
    """How raw (unconstrained) parameters map to an AdaSDE solver.

    Attributes:
        num_steps: coarse steps n (NFE ``2n``, ``2n - 1`` with ``afs``; plug-in: the base's NFE).
        base: None for the AdaSDE step; a deterministic solver for the plug-in form (gammas only).
        afs: analytic first step (AdaSDE step only).
        learn_gamma: False fixes ``gamma = 0`` (the deterministic, AMED-like counterpart).
        learn_steps: learn ``r``, ``a``, ``c`` (AdaSDE step only; False keeps DPM-Solver-2's).
        gamma_min, gamma_max: the range of the learned gammas (official code: 2e-4 and 0.01-0.02).
        gamma_init: initial gamma of steps 1..n-1 (``gamma_min``: start from no injection).
        scale_time, scale_dir: the largest relative change of ``a`` and ``c`` (0.2 and 0.05).
        official_gamma: the official predictor's gamma map, ``gamma = gamma_min + (gamma_max -
            gamma_min) sigmoid((raw + b) / 2)`` with ``b`` = :data:`GAMMA_OFFSET` (temperature 2,
            raw 0 at 0.6 of the range). False: ``sigmoid(raw)`` (the solver's own raw leaf). The
            raw parameter trained is then ``raw``; the solver stores ``(raw + b) / 2``.
    """

    num_steps: int
    base: Optional[AbstractSolver] = None
    afs: bool = False
    learn_gamma: bool = True
    learn_steps: bool = True
    gamma_min: float = 2e-4
    gamma_max: float = 0.02
    gamma_init: float = 2e-4
    scale_time: float = 0.2
    scale_dir: float = 0.05
    official_gamma: bool = False

    def __post_init__(self):
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {self.num_steps!r}")
        if self.base is not None:
            if not isinstance(self.base, AbstractSolver) or self.base.is_stochastic:
                raise ValueError(f"base must be None or a deterministic jaxsample solver, got {self.base!r}")
            if not self.learn_gamma:
                raise ValueError("the plug-in form (base=...) learns only gammas: learn_gamma must be True")
            if self.afs:
                raise ValueError("afs applies to the AdaSDE step only (base=None)")
        if not 0.0 <= self.gamma_min < self.gamma_max:
            raise ValueError(f"gamma_min and gamma_max must satisfy 0 <= gamma_min < gamma_max, got "
                             f"{self.gamma_min} and {self.gamma_max}")
        if not self.gamma_min <= self.gamma_init < self.gamma_max:
            raise ValueError(f"gamma_init must lie in [gamma_min, gamma_max), got {self.gamma_init}")
        for name in ("scale_time", "scale_dir"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if not (self.learn_gamma or self.learn_steps):
            raise ValueError("nothing to learn: learn_gamma and learn_steps are both False")

    @property
    def nfe(self) -> int:
        if self.base is not None:
            return self.base.nfe(self.num_steps)
        return AdaSDE.dpm_solver_2(self.num_steps, afs=self.afs).nfe(self.num_steps)

    def init_params(self, dtype=jnp.float32, *, noise: float = 0.0, key=None) -> dict:
        """Raw parameters at DPM-Solver-2 (or the base solver) with ``gamma = gamma_init``.

        ``noise > 0`` adds ``noise * N(0, 1)`` draws from ``key`` to every raw parameter: the
        official predictor starts from ``torch.randn`` (``noise = 1``, raw mean 0).
        """
        n = self.num_steps
        params = {}
        if self.learn_gamma:
            p = (self.gamma_init - self.gamma_min) / (self.gamma_max - self.gamma_min)
            raw = 2.0 * _logit(p) - GAMMA_OFFSET if self.official_gamma else _logit(p)
            params["gamma"] = jnp.full((n,), raw, dtype)
        if self.base is None and self.learn_steps:
            params.update(r=jnp.zeros((n,), dtype), a=jnp.zeros((n,), dtype), c=jnp.zeros((n,), dtype))
        if noise:
            if key is None:
                raise ValueError("init_params(noise=...) needs a key")
            params = {k: v + noise * jax.random.normal(jax.random.fold_in(key, j), v.shape, dtype)
                      for j, (k, v) in enumerate(sorted(params.items()))}
        return params

    def solver_gamma_raw(self, raw):
        """The solver's raw gamma leaf (``gamma = gamma_min + (gamma_max - gamma_min) sigmoid(leaf)``)
        for the trained raw gamma ``raw``."""
        if raw is None or not self.official_gamma:
            return raw
        return (raw + GAMMA_OFFSET) / 2.0

    def solver(self, params: Mapping, times=None) -> LearnedAdaSDE:
        """The learned solver with raw parameters ``params`` (as from :meth:`init_params`) on grid ``times``."""
        return LearnedAdaSDE(self.solver_gamma_raw(params.get("gamma")), params.get("r"), params.get("a"),
                             params.get("c"),
                             None if times is None else tuple(float(t) for t in np.asarray(times)), self.base,
                             num_steps=self.num_steps, afs=self.afs, gamma_min=self.gamma_min,
                             gamma_max=self.gamma_max, scale_time=self.scale_time, scale_dir=self.scale_dir)


# ------------------------------------------------------------------------------------------ teacher


def teacher_grid(path: AbstractPath, ts, m: int = 3):
    """Split every interval of ``ts`` into ``m + 1`` pieces uniform in log-SNR (coarse times kept exactly)."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise ValueError(f"m must be a non-negative integer, got {m!r}")
    ts = np.asarray(ts, np.float64)
    lam = np.asarray(path.lam(jnp.asarray(ts)), np.float64)
    frac = np.arange(1, m + 1) / (m + 1)
    inner = lam[:-1, None] + (lam[1:] - lam[:-1])[:, None] * frac[None, :]  # (n, m)
    inner_t = np.asarray(path.t_from_lam(jnp.asarray(inner.reshape(-1))), np.float64).reshape(inner.shape)
    out = np.concatenate([np.concatenate([ts[:-1, None], inner_t], axis=1).reshape(-1), ts[-1:]])
    return jnp.asarray(out, jnp.float32)


def official_teacher_grid(path: AbstractPath, grid: str, num_steps: int, m: int = 3, substeps: int = 2,
                          **grid_kwargs):
    """The times the official teacher steps through, and the stride of the coarse times in them.

    The official ``get_teacher_traj`` runs ``dpm_sampler`` (AFS off) on the student's schedule
    with ``(M + 1)(N - 1) + 1`` points (here ``grid`` with ``(m + 1) * num_steps`` steps), and
    ``dpm_sampler`` cuts every fine interval ``t_c -> t_n`` into ``substeps`` (its ``inner_steps - 1
    = 2``) DPM-Solver-2 steps on EDM's rho = 7 grid in ``s = sigma / alpha``:
    ``s_k = (s_c^(1/7) + k / substeps (s_n^(1/7) - s_c^(1/7)))^7``. Each sub-step is DPM-Solver-2
    with its midpoint at ``sqrt(s_c s_n)`` (:func:`~jaxsample.solvers.dpm_solver` ``(2)``).

    Returns:
        ``(times, stride)``: ``times`` has ``(m + 1) * substeps * num_steps + 1`` entries and
        ``times[i * stride]`` is the coarse time ``i`` of ``grid`` with ``num_steps`` steps.
    """
    for name, v, low in [("num_steps", num_steps, 1), ("m", m, 0), ("substeps", substeps, 1)]:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    fine = np.asarray(get_grid(grid, path, (m + 1) * num_steps, **grid_kwargs), np.float64)
    s = np.exp(-np.asarray(path.lam(jnp.asarray(fine)), np.float64))  # sigma / alpha
    lo, hi = s[1:] ** (1 / 7), s[:-1] ** (1 / 7)
    frac = np.arange(1, substeps) / substeps
    inner_s = (hi[:, None] + frac[None, :] * (lo - hi)[:, None]) ** 7  # (intervals, substeps - 1)
    inner_t = np.asarray(path.t_from_lam(jnp.asarray(-np.log(inner_s.reshape(-1)))), np.float64)
    inner_t = inner_t.reshape(inner_s.shape)
    times = np.concatenate([np.concatenate([fine[:-1, None], inner_t], axis=1).reshape(-1), fine[-1:]])
    return jnp.asarray(times, jnp.result_type(float)), (m + 1) * substeps


def _teacher_traj(model: Model, ts, noise, cond, *, teacher: str, m: int, grid: Optional[str], substeps: int,
                  grid_kwargs: Optional[Mapping], reference_kwargs: Mapping):
    """The teacher's states at ``ts[1:]`` from ``noise``: shape ``(batch, n, *sample_shape)``."""
    n = int(ts.shape[0]) - 1
    if teacher == "reference":
        traj = reference_sample(model, noise, t_start=ts[0], t_end=ts[-1], save_ts=ts[1:], cond=cond,
                                **reference_kwargs)
    else:
        if teacher == "official":
            fine, stride = official_teacher_grid(model.path, grid, n, m, substeps, **dict(grid_kwargs or {}))
            coarse = np.asarray(fine[::stride], np.float64)
            if not np.allclose(coarse, np.asarray(ts, np.float64), rtol=1e-5, atol=1e-7):  # noqa: E501
                raise ValueError(f"ts is not the {grid!r} grid with {n} steps (and grid_kwargs {grid_kwargs}): "
                                 f"the official teacher's grid holds {coarse}, ts is {np.asarray(ts)}")
        elif teacher == "heun" and grid is not None:  # AMED's: Heun on the grid with (m + 1) n steps
            fine, stride = official_teacher_grid(model.path, grid, n, m, 1, **dict(grid_kwargs or {}))
        else:
            fine, stride = teacher_grid(model.path, ts, m), m + 1
        step = heun("edm") if teacher == "heun" else dpm_solver(2)
        _, traj = sample(model, step, fine, noise, cond=cond, return_trajectory=True)
        traj = traj[stride::stride]
    return jnp.moveaxis(traj, 0, 1)


_TEACHERS = ("dpm_solver_2", "official", "heun", "reference")


def _check_teacher(teacher, grid):
    if teacher not in _TEACHERS:
        raise ValueError(f"teacher must be one of {_TEACHERS}, got {teacher!r}")
    if teacher == "official" and not isinstance(grid, str):
        raise ValueError("teacher='official' needs grid=<the name of the student's grid> (see official_teacher_grid)")


def make_pairs(model: Model, ts, num: int, sample_shape, *, seed: int, teacher: str = "dpm_solver_2",
               m: int = 3, cond: Optional[Mapping] = None, batch_size: int = 512, grid: Optional[str] = None,
               substeps: int = 2, grid_kwargs: Optional[Mapping] = None, **reference_kwargs) -> dict:
    """Noise and the teacher's trajectory at the coarse times ``ts[1:]`` from it.

    Returns a dict of arrays with a leading example axis: ``noise``, ``index`` (the global example
    index, which seeds the student's per-sample noise), ``traj`` of shape ``(num, n, *sample_shape)``,
    plus ``cond``. ``teacher``:

    - ``'dpm_solver_2'``: DPM-Solver-2 on :func:`teacher_grid` (``m`` extra points per interval,
      uniform in log-SNR; one DPM-Solver-2 step each);
    - ``'official'``: the official teacher (:func:`official_teacher_grid`): ``ts`` must be the grid
      ``grid`` (a :func:`~jaxsample.grids.get_grid` name, with ``grid_kwargs`` such as
      ``t_start``/``t_end``); the teacher runs that grid with ``(m + 1) n`` steps, each cut into
      ``substeps`` DPM-Solver-2 steps on an EDM rho = 7 grid (``4 (m + 1) n`` model calls);
    - ``'heun'``: AMED's teacher, EDM's Heun on the grid ``grid`` with ``(m + 1) n`` steps (on
      :func:`teacher_grid` when ``grid`` is None);
    - ``'reference'``: the adaptive ODE solution (:func:`~jaxsample.sampling.reference_sample`).
    """
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    _check_teacher(teacher, grid)
    ts = jnp.asarray(ts, jnp.float32)
    noise = initial_noise(jax.random.key(seed), (num, *sample_shape))
    cond = {} if cond is None else {k: jnp.asarray(v) for k, v in cond.items()}
    trajs = []
    for lo in range(0, num, batch_size):
        c = {k: v[lo:lo + batch_size] for k, v in cond.items()}
        trajs.append(_teacher_traj(model, ts, noise[lo:lo + batch_size], c, teacher=teacher, m=m, grid=grid,
                                   substeps=substeps, grid_kwargs=grid_kwargs, reference_kwargs=reference_kwargs))
    return {"noise": noise, "index": jnp.arange(num, dtype=jnp.int32), "traj": jnp.concatenate(trajs), **cond}


def fresh_pairs(model: Model, ts, batch_size: int, sample_shape, step: int, *, seed: int,
                teacher: str = "dpm_solver_2", m: int = 3, cond_fn: Optional[Callable] = None,
                grid: Optional[str] = None, substeps: int = 2, grid_kwargs: Optional[Mapping] = None,
                **reference_kwargs) -> dict:
    """Training batch ``step`` of fresh noise and its teacher trajectory (as :func:`make_pairs`).

    As the official loop draws new latents and teacher trajectories every iteration: batch
    ``step`` holds the noise of key ``fold_in(key(seed), step)`` and the global indices
    ``step * batch_size + [0, batch_size)`` (so the student noise differs in every batch), and it is
    a pure function of ``(seed, step)``. ``cond_fn(num, step)`` gives the batch's conditioning
    (e.g. labels), or None for an unconditional model. Pass
    ``functools.partial(fresh_pairs, model, ts, B, shape, seed=..., teacher=...)`` as
    ``train_pairs`` to :func:`distill`.
    """
    _check_teacher(teacher, grid)
    ts = jnp.asarray(ts, jnp.float32)
    noise = initial_noise(jax.random.fold_in(jax.random.key(seed), step), (batch_size, *sample_shape))
    cond = {} if cond_fn is None else {k: jnp.asarray(v) for k, v in cond_fn(batch_size, step).items()}
    traj = _teacher_traj(model, ts, noise, cond, teacher=teacher, m=m, grid=grid, substeps=substeps,
                         grid_kwargs=grid_kwargs, reference_kwargs=reference_kwargs)
    index = step * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    return {"noise": noise, "index": index, "traj": traj, **cond}


def _split(batch):
    cond = {k: v for k, v in batch.items() if k not in ("noise", "index", "traj")}
    return batch["noise"], batch["index"], batch["traj"], cond


def _student_keys(key, index):
    if not jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)  # the raw key of TrainState
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


_LOSSES = ("mean", "official")


def step_loss(path: AbstractPath, t, x_student, x_teacher, *, last: bool, loss: str = "mean",
              features: Optional[Callable] = None, alpha: float = 20.0, final_weight: float = 1.0):
    """The loss of one coarse step, whose states at time ``t`` are ``x_student`` and ``x_teacher``.

    ``loss='mean'``: the mean squared error over dimensions and samples (``final_weight`` times
    that on the last step). ``loss='official'`` (``training/loss.py``, ``training_loop.py``):

    - not the last step: ``sum((x~_S - x~_T)^2) / B`` with EDM's variables ``x~ = x / alpha(t)``
      (the official student and teacher run in them);
    - the last step: ``alpha * D * MSE(f(x_S), f(x_T))`` with ``D`` the dimensions of a sample and
      ``f = features`` (None: the raw coordinates). The official code replaces the pixel-shaped loss
      tensor by one filled with ``alpha * MSE`` of Inception features and then sums it over pixels and
      divides by the batch, which multiplies the feature term by ``D``; here ``f`` is the feature map
      of the task's Frechet distance applied to the samples as scored (the official code feeds
      Inception ``127.5 x + 128`` clipped to [0, 255]).
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
    if loss == "mean":
        return jnp.mean((x_student - x_teacher) ** 2) * (final_weight if last else 1.0)
    batch, dims = x_student.shape[0], math.prod(x_student.shape[1:])
    if last:
        f = (lambda x: x) if features is None else features
        return alpha * dims * jnp.mean((f(x_student) - f(x_teacher)) ** 2)
    a = path.alpha(t)
    return jnp.sum(((x_student - x_teacher) / a) ** 2) / batch


def trajectory_loss(model: Model, solver: AbstractSolver, ts, batch, key, final_weight: float = 1.0, *,
                    loss: str = "mean", features: Optional[Callable] = None, alpha: float = 20.0):
    """AdaSDE's per-step loss: the sum over steps of :func:`step_loss` (the student rolls out on its
    own outputs, with per-sample noise from ``key`` and the batch's ``index``).

    Returns ``(loss, metrics)``; ``metrics['final_mse']`` is the last step's mean squared error.
    """
    noise, index, traj, cond = _split(batch)
    keys = _student_keys(key, index)
    if isinstance(solver, LearnedAdaSDE):
        solver = solver.as_solver()  # the per-step values once, outside the rollout's scan
    _, student = sample(model, solver, ts, noise, key=keys, cond=cond, return_trajectory=True,
                        checkpoint=True, check_finite=False)
    n = traj.shape[1]
    total = sum(step_loss(model.path, ts[k + 1], student[k + 1], traj[:, k], last=k == n - 1, loss=loss,
                          features=features, alpha=alpha, final_weight=final_weight) for k in range(n))
    return total, {"final_mse": jnp.mean((student[-1] - traj[:, -1]) ** 2)}


def evaluate(model: Model, solver: AbstractSolver, ts, pairs: Mapping, *, key=None, batch_size: int = 512,
             **loss_kwargs) -> dict:
    """Held-out trajectory loss and final MSE against the teacher (student noise from ``key`` and the
    index); ``loss_kwargs`` as :func:`trajectory_loss`'s (``loss``, ``features``, ``alpha``, ...)."""
    key = jax.random.key(12345) if key is None else key
    n = pairs["noise"].shape[0]
    total, final = 0.0, 0.0
    for lo in range(0, n, batch_size):
        batch = {k: v[lo:lo + batch_size] for k, v in pairs.items()}
        loss, metrics = trajectory_loss(model, solver, ts, batch, key, **loss_kwargs)
        size = batch["noise"].shape[0]
        total += float(loss) * size
        final += float(metrics["final_mse"]) * size
    return {"loss": total / n, "final_mse": final / n}


# ------------------------------------------------------------------------------ the official loop


def official_lr(learning_rate: float, batch: int, num_batches: int, eta_min: float = 0.01) -> float:
    """``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=num_batches + 1, eta_min=0.01)`` after
    ``batch`` scheduler steps (one per batch), as the official loop sets it up with
    ``T_max = total_kimg * 1000 // batch_size + 1``. ``eta_min`` is absolute: a base rate below it
    rises towards it."""
    t_max = num_batches + 1
    return eta_min + (learning_rate - eta_min) * (1 + math.cos(math.pi * batch / t_max)) / 2


def _cosine_lr(learning_rate: float, batch: int, num_batches: int) -> float:
    """The shared recipe's schedule (:func:`jaxsample.train.make_optimizer`): cosine decay to 0."""
    return learning_rate * (1 + math.cos(math.pi * min(batch, num_batches) / num_batches)) / 2


def _nan_to_num(tree):
    """``torch.nan_to_num(grad, nan=0, posinf=1e5, neginf=-1e5)``, as the official loop does."""
    return jax.tree_util.tree_map(lambda g: jnp.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5), tree)


def _partial_spec(spec: Parameterisation, k: int) -> Parameterisation:
    """The same parameterisation over the first ``k`` steps."""
    return dataclasses.replace(spec, num_steps=k)


@eqx.filter_jit
def _teacher_forced_value_and_grad(model, spec, k, loss_kw, params, ts, batch, key):
    """Loss of coarse step ``k`` run from the TEACHER's state at ``ts[k]`` (the initial noise at
    ``k = 0``), and its gradient (which reaches only step ``k``'s values): AMED's training of a
    single-step student (zju-pi/diff-sampler ``training_loop.py``: the next input is the teacher's)."""
    noise, index, traj, cond = _split(batch)
    keys = _student_keys(key, index)
    n = params[next(iter(params))].shape[0]
    x_start = model.path.prior_scale(ts[0]) * noise if k == 0 else traj[:, k - 1]

    def loss_fn(p):
        solver = _partial_spec(spec, k + 1).solver({name: v[:k + 1] for name, v in p.items()}).as_solver()
        grid = ts[:k + 2]
        state = solver.init(model, grid, x_start, cond)
        step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, k) if solver.is_stochastic else None
        x = solver.step(model, grid, k, state, cond, step_keys).x
        return step_loss(model.path, ts[k + 1], x, traj[:, k], last=k == n - 1, **loss_kw)

    return jax.value_and_grad(loss_fn)(params)


@eqx.filter_jit
def _step_value_and_grad(model, spec, k, loss_kw, params, used, ts, batch, key):
    """Loss of coarse step ``k`` and its gradient, as the official loop computes it.

    The student reaches step ``k`` through steps ``0..k-1`` run with the values they had when they
    ran in this batch (``used``: the graph PyTorch retains) and runs step ``k`` with the current
    values; the gradient reaches every step's parameters (``retain_graph=True``, not detached).
    """
    noise, index, traj, cond = _split(batch)
    keys = _student_keys(key, index)
    n = params[next(iter(params))].shape[0]
    earlier = jnp.arange(n) < k

    def loss_fn(p):
        mixed = {name: jnp.where(earlier, used[name], v)[:k + 1] for name, v in p.items()}
        solver = _partial_spec(spec, k + 1).solver(mixed).as_solver()
        x = sample(model, solver, ts[:k + 2], noise, key=keys, cond=cond, checkpoint=True, check_finite=False)
        return step_loss(model.path, ts[k + 1], x, traj[:, k], last=k == n - 1, **loss_kw)

    return jax.value_and_grad(loss_fn)(params)


@eqx.filter_jit
def _batch_value_and_grad(model, spec, loss_kw, params, ts, batch, key):
    """The whole rollout's loss (the sum of the step losses) and its gradient."""
    return jax.value_and_grad(lambda p: trajectory_loss(model, spec.solver(p), ts, batch, key, **loss_kw)[0])(params)


def _fit_loop(model, spec: Parameterisation, ts, batches: Callable, params, *, num_steps: int,
              learning_rate: float, update: str, schedule: str, loss_kw: dict, seed: int, progress: bool):
    """The official optimisation: Adam(0.9, 0.999, 1e-8) on the raw parameters, one learning rate
    per batch (``schedule``), updated after every coarse step (``update='per_step'``, or
    ``'per_step_teacher'`` from the teacher's states) or once per
    batch on the sum of the step losses (``'per_batch'``), gradients through ``nan_to_num``.
    Returns the final parameters (the official loop keeps the last iterate) and the loss history."""
    import optax

    tx = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=0.9, b2=0.999, eps=1e-8)
    opt_state = tx.init(params)
    key = jax.random.key(seed)
    n = spec.num_steps
    history = []
    for b in range(num_steps):
        lr = {"official": official_lr, "cosine": _cosine_lr,
              "constant": lambda lr, b, n: lr}[schedule](learning_rate, b, num_steps)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        batch = batches(b)
        bkey = jax.random.key_data(jax.random.fold_in(key, b))
        if update == "per_batch":
            loss, grads = _batch_value_and_grad(model, spec, loss_kw, params, ts, batch, bkey)
            updates, opt_state = tx.update(_nan_to_num(grads), opt_state, params)
            params = optax.apply_updates(params, updates)
        else:
            used, loss = params, 0.0
            for k in range(n):
                if update == "per_step_teacher":
                    step_loss_k, grads = _teacher_forced_value_and_grad(model, spec, k, loss_kw, params, ts, batch,
                                                                        bkey)
                    updates, opt_state = tx.update(_nan_to_num(grads), opt_state, params)
                    params = optax.apply_updates(params, updates)
                    loss = loss + step_loss_k
                    continue
                used = {name: v.at[k].set(params[name][k]) for name, v in used.items()}
                step_loss_k, grads = _step_value_and_grad(model, spec, k, loss_kw, params, used, ts, batch, bkey)
                updates, opt_state = tx.update(_nan_to_num(grads), opt_state, params)
                params = optax.apply_updates(params, updates)
                loss = loss + step_loss_k
        history.append(float(loss))
        if progress and (b + 1) % max(1, num_steps // 10) == 0:
            print(f"AdaSDE n={n} batch {b + 1}/{num_steps}: loss {history[-1]:.4g} lr {lr:.4g}", flush=True)
    return params, history


def distill(model: Model, spec: Parameterisation, ts, train_pairs: Union[Mapping, Callable], val_pairs: Mapping, *,
            num_steps: int = 500, batch_size: int = 64, learning_rate: float = 0.2, eval_every: int = 100,
            final_weight: float = 1.0, seed: int = 0, workdir: Optional[str] = None, progress: bool = True,
            mesh=None, init_params: Optional[Mapping] = None, update: str = "per_batch", schedule: str = "cosine",
            loss: str = "mean", features: Optional[Callable] = None, alpha: float = 20.0, init_noise: float = 0.0):
    """Distil the per-step parameters.

    Two loops, one per recipe:

    - the shared recipe (:mod:`jaxsample.distill._fit_solver`: Adam and cosine decay to 0 through
      :func:`jaxsample.train.fit_with_validation`), used when ``train_pairs`` is a fixed set,
      ``update='per_batch'``, ``schedule='cosine'`` and ``spec.official_gamma`` is False. Every
      ``eval_every`` steps the solver is scored on ``val_pairs`` (trajectory loss, fixed student
      noise) and the BEST iterate is returned; with a ``workdir`` the run checkpoints with orbax
      and resumes exactly where it stopped (``workdir/validation.jsonl`` logs the scores);
    - otherwise the official loop (``training/training_loop.py``): Adam(0.9, 0.999, 1e-8) on the
      raw parameters, stepped after every coarse step (``update='per_step'``; the student continues
      from its own output and the gradient reaches the earlier steps; ``'per_step_teacher'``: every
      step starts from the teacher's state, AMED's recipe for single-step students) or once per batch
      (``'per_batch'``), gradients through ``nan_to_num``, learning rate ``schedule='official'``
      (:func:`official_lr`, once per batch), ``'cosine'`` (to 0) or ``'constant'`` (AMED's). It returns the FINAL iterate,
      as the official code does, and is scored on ``val_pairs`` at the start and the end only.
      With a ``workdir`` a finished run is loaded back instead of trained again.

    Args:
        train_pairs: a fixed training set (:func:`make_pairs`; shuffled batches), or a callable
            ``step -> batch`` such as a partial of :func:`fresh_pairs` (new noise and teacher
            trajectories every batch, ``num_steps * batch_size`` trajectories in all).
        loss, features, alpha, final_weight: the step loss (:func:`step_loss`).
        init_noise: the raw parameters start at :meth:`Parameterisation.init_params` plus
            ``init_noise * N(0, 1)`` (official: 1; here drawn from ``seed``).

    Returns:
        ``(solver, log)``: the :class:`~jaxsample.solvers.adasde.LearnedAdaSDE` (owning ``times = ts``;
        save it with :func:`~jaxsample.solvers.save_solver`) and a dict with the initial validation
        loss, ``val_loss`` (of the returned solver), the wall time and the raw parameters (plus the
        shared recipe's best step and validation history, or the official loop's loss history).
    """
    if not isinstance(spec, Parameterisation):
        raise ValueError(f"spec must be an adasde.Parameterisation, got {type(spec).__name__}")
    for name, value in [("num_steps", num_steps), ("batch_size", batch_size), ("eval_every", eval_every)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if update not in ("per_batch", "per_step", "per_step_teacher"):
        raise ValueError(f"update must be 'per_batch', 'per_step' or 'per_step_teacher', got {update!r}")
    if schedule not in ("cosine", "official", "constant"):
        raise ValueError(f"schedule must be 'cosine', 'official' or 'constant', got {schedule!r}")
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
    ts = jnp.asarray(ts, jnp.float32)
    if ts.ndim != 1 or ts.shape[0] - 1 != spec.num_steps:
        raise ValueError(f"ts must hold spec.num_steps + 1 = {spec.num_steps + 1} times, got shape {ts.shape}")
    fresh = callable(train_pairs) and not isinstance(train_pairs, Mapping)
    for name, pairs in [("train_pairs", train_pairs), ("val_pairs", val_pairs)]:
        if name == "train_pairs" and fresh:
            continue
        if not all(k in pairs for k in ("noise", "index", "traj")):
            raise ValueError(f"{name} must hold 'noise', 'index' and 'traj' arrays (see make_pairs)")
        if pairs["traj"].shape[1] != spec.num_steps:
            raise ValueError(f"{name}['traj'] holds {pairs['traj'].shape[1]} steps, expected {spec.num_steps}")
    t0 = time.perf_counter()
    if init_params is None:
        params0 = spec.init_params(noise=init_noise, key=jax.random.key(seed + 7919))
    else:
        params0 = {k: jnp.asarray(v) for k, v in init_params.items()}
    val_key = jax.random.key(seed + 1000003)
    loss_kw = dict(loss=loss, features=features, alpha=alpha, final_weight=final_weight)

    def score(solver):
        return evaluate(model, solver, ts, val_pairs, key=val_key, **loss_kw)["loss"]

    if not fresh and update == "per_batch" and schedule == "cosine" and not spec.official_gamma:
        solver, val = fit_solver(
            spec.solver(params0, times=ts), lambda solver, batch, key: trajectory_loss(model, solver, ts, batch, key,
                                                                                      **loss_kw),
            score, train_pairs, num_steps=num_steps, batch_size=batch_size, learning_rate=learning_rate,
            eval_every=eval_every, seed=seed, key="val_loss", workdir=workdir, mesh=mesh, progress=progress,
            desc=f"AdaSDE n={spec.num_steps}", config={"method": "adasde", "num_steps": spec.num_steps})
        params = {k: getattr(solver, f"{k}_raw") for k in ("gamma", "r", "a", "c")
                  if getattr(solver, f"{k}_raw") is not None}
        log = {"init_val_loss": val["init"], "best_val_loss": val["best"], "val_loss": val["best"],
               "best_step": val["best_step"], "validation": val["validation"],
               "seconds": time.perf_counter() - t0, "params": params}
        return solver, log

    done = None if workdir is None else os.path.join(workdir, "final.json")
    if done is not None and os.path.exists(done):  # a finished run: load it back
        with open(done) as f:
            log = json.load(f)
        log["params"] = {k: jnp.asarray(v, jnp.float32) for k, v in log["params"].items()}
        return spec.solver(log["params"], times=ts), log
    if fresh:
        batches = train_pairs
    else:
        from jaxsample.data import ArrayBatcher

        batches = ArrayBatcher({k: np.asarray(v) for k, v in train_pairs.items()}, batch_size, seed=seed)
    init_val = score(spec.solver(params0, times=ts))
    params, history = _fit_loop(model, spec, ts, batches, params0, num_steps=num_steps,
                                learning_rate=learning_rate, update=update, schedule=schedule,
                                loss_kw=loss_kw, seed=seed, progress=progress)
    solver = spec.solver(params, times=ts)
    log = {"init_val_loss": init_val, "val_loss": score(solver), "loss_history": history,
           "seconds": time.perf_counter() - t0, "params": params}
    if done is not None:
        os.makedirs(workdir, exist_ok=True)
        write_json(done, {**log, "params": {k: np.asarray(v).tolist() for k, v in params.items()}})
    return solver, log
