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
import math
import time
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.models import Model
from jaxsample.paths import AbstractPath
from jaxsample.sampling import initial_noise, reference_sample, sample
from jaxsample.distill._fit_solver import fit_solver
from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers.adasde import AdaSDE, LearnedAdaSDE
from jaxsample.solvers.dpm_solver import dpm_solver

__all__ = ["Parameterisation", "teacher_grid", "make_pairs", "trajectory_loss", "evaluate", "distill"]


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

    def init_params(self, dtype=jnp.float32) -> dict:
        """Raw parameters at DPM-Solver-2 (or the base solver) with ``gamma = gamma_init``."""
        n = self.num_steps
        params = {}
        if self.learn_gamma:
            p = (self.gamma_init - self.gamma_min) / (self.gamma_max - self.gamma_min)
            params["gamma"] = jnp.full((n,), _logit(p), dtype)
        if self.base is None and self.learn_steps:
            params.update(r=jnp.zeros((n,), dtype), a=jnp.zeros((n,), dtype), c=jnp.zeros((n,), dtype))
        return params

    def solver(self, params: Mapping, times=None) -> LearnedAdaSDE:
        """The learned solver with raw parameters ``params`` (as from :meth:`init_params`) on grid ``times``."""
        return LearnedAdaSDE(params.get("gamma"), params.get("r"), params.get("a"), params.get("c"),
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


def make_pairs(model: Model, ts, num: int, sample_shape, *, seed: int, teacher: str = "dpm_solver_2",
               m: int = 3, cond: Optional[Mapping] = None, batch_size: int = 512, **reference_kwargs) -> dict:
    """Noise and the teacher's trajectory at the coarse times ``ts[1:]`` from it.

    Returns a dict of arrays with a leading example axis: ``noise``, ``index`` (the global example
    index, which seeds the student's per-sample noise), ``traj`` of shape ``(num, n, *sample_shape)``,
    plus ``cond``. ``teacher``: ``'dpm_solver_2'`` on :func:`teacher_grid` (``m`` extra points per
    interval; the paper's teacher) or ``'reference'`` (the adaptive ODE solution,
    :func:`~jaxsample.sampling.reference_sample`).
    """
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if teacher not in ("dpm_solver_2", "reference"):
        raise ValueError(f"teacher must be 'dpm_solver_2' or 'reference', got {teacher!r}")
    ts = jnp.asarray(ts, jnp.float32)
    noise = initial_noise(jax.random.key(seed), (num, *sample_shape))
    cond = {} if cond is None else {k: jnp.asarray(v) for k, v in cond.items()}
    fine = teacher_grid(model.path, ts, m) if teacher == "dpm_solver_2" else None
    trajs = []
    for lo in range(0, num, batch_size):
        c = {k: v[lo:lo + batch_size] for k, v in cond.items()}
        n_lo = noise[lo:lo + batch_size]
        if fine is not None:
            _, traj = sample(model, dpm_solver(2), fine, n_lo, cond=c, return_trajectory=True)
            traj = traj[m + 1::m + 1]
        else:
            traj = reference_sample(model, n_lo, t_start=ts[0], t_end=ts[-1], save_ts=ts[1:], cond=c,
                                    **reference_kwargs)
        trajs.append(jnp.moveaxis(traj, 0, 1))
    return {"noise": noise, "index": jnp.arange(num, dtype=jnp.int32), "traj": jnp.concatenate(trajs), **cond}


def _split(batch):
    cond = {k: v for k, v in batch.items() if k not in ("noise", "index", "traj")}
    return batch["noise"], batch["index"], batch["traj"], cond


def _student_keys(key, index):
    if not jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)  # the raw key of TrainState
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(index)


def trajectory_loss(model: Model, solver: AbstractSolver, ts, batch, key, final_weight: float = 1.0):
    """AdaSDE's per-step loss: sum over steps of the mean squared distance to the teacher.

    Returns ``(loss, metrics)``; ``metrics['final_mse']`` is the last step's mean squared error.
    """
    noise, index, traj, cond = _split(batch)
    keys = _student_keys(key, index)
    if isinstance(solver, LearnedAdaSDE):
        solver = solver.as_solver()  # the per-step values once, outside the rollout's scan
    _, student = sample(model, solver, ts, noise, key=keys, cond=cond, return_trajectory=True,
                        checkpoint=True, check_finite=False)
    err = (student[1:] - jnp.moveaxis(traj, 1, 0)) ** 2
    per_step = jnp.mean(err.reshape(err.shape[0], -1), axis=1)  # (n,)
    weights = jnp.ones_like(per_step).at[-1].set(final_weight)
    return jnp.sum(weights * per_step), {"final_mse": per_step[-1]}


def evaluate(model: Model, solver: AbstractSolver, ts, pairs: Mapping, *, key=None, batch_size: int = 512) -> dict:
    """Held-out trajectory loss and final MSE against the teacher (student noise from ``key`` and the index)."""
    key = jax.random.key(12345) if key is None else key
    n = pairs["noise"].shape[0]
    total, final = 0.0, 0.0
    for lo in range(0, n, batch_size):
        batch = {k: v[lo:lo + batch_size] for k, v in pairs.items()}
        loss, metrics = trajectory_loss(model, solver, ts, batch, key)
        size = batch["noise"].shape[0]
        total += float(loss) * size
        final += float(metrics["final_mse"]) * size
    return {"loss": total / n, "final_mse": final / n}


def distill(model: Model, spec: Parameterisation, ts, train_pairs: Mapping, val_pairs: Mapping, *,
            num_steps: int = 500, batch_size: int = 64, learning_rate: float = 0.2, eval_every: int = 100,
            final_weight: float = 1.0, seed: int = 0, workdir: Optional[str] = None, progress: bool = True,
            mesh=None, init_params: Optional[Mapping] = None):
    """Distil the per-step parameters with the shared recipe (:mod:`jaxsample.distill._fit_solver`:
    Adam and cosine decay through :func:`jaxsample.train.fit_with_validation`).

    Every ``eval_every`` steps the solver is scored on ``val_pairs`` (trajectory loss, fixed student
    noise) and the best iterate is returned. With a ``workdir`` the run checkpoints with orbax at
    each evaluation and resumes exactly where it stopped (``workdir/validation.jsonl`` logs the scores).

    Returns:
        ``(solver, log)``: the best :class:`~jaxsample.solvers.adasde.LearnedAdaSDE` (owning ``times = ts``;
        save it with :func:`~jaxsample.solvers.save_solver`) and a dict with the initial and best
        validation loss, the validation history, the best step, the wall time and the raw parameters.
    """
    if not isinstance(spec, Parameterisation):
        raise ValueError(f"spec must be an adasde.Parameterisation, got {type(spec).__name__}")
    for name, value in [("num_steps", num_steps), ("batch_size", batch_size), ("eval_every", eval_every)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    ts = jnp.asarray(ts, jnp.float32)
    if ts.ndim != 1 or ts.shape[0] - 1 != spec.num_steps:
        raise ValueError(f"ts must hold spec.num_steps + 1 = {spec.num_steps + 1} times, got shape {ts.shape}")
    for name, pairs in [("train_pairs", train_pairs), ("val_pairs", val_pairs)]:
        if not all(k in pairs for k in ("noise", "index", "traj")):
            raise ValueError(f"{name} must hold 'noise', 'index' and 'traj' arrays (see make_pairs)")
        if pairs["traj"].shape[1] != spec.num_steps:
            raise ValueError(f"{name}['traj'] holds {pairs['traj'].shape[1]} steps, expected {spec.num_steps}")
    t0 = time.perf_counter()
    params0 = spec.init_params() if init_params is None else {k: jnp.asarray(v) for k, v in init_params.items()}
    val_key = jax.random.key(seed + 1000003)
    solver, val = fit_solver(
        spec.solver(params0, times=ts), lambda solver, batch, key: trajectory_loss(model, solver, ts, batch, key,
                                                                                  final_weight),
        lambda solver: evaluate(model, solver, ts, val_pairs, key=val_key)["loss"], train_pairs,
        num_steps=num_steps, batch_size=batch_size, learning_rate=learning_rate, eval_every=eval_every, seed=seed,
        key="val_loss", workdir=workdir, mesh=mesh, progress=progress, desc=f"AdaSDE n={spec.num_steps}",
        config={"method": "adasde", "num_steps": spec.num_steps})
    params = {k: getattr(solver, f"{k}_raw") for k in ("gamma", "r", "a", "c") if getattr(solver, f"{k}_raw") is not None}
    log = {"init_val_loss": val["init"], "best_val_loss": val["best"], "best_step": val["best_step"],
           "validation": val["validation"], "seconds": time.perf_counter() - t0, "params": params}
    return solver, log
