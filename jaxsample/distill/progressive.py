"""Progressive distillation: halve the number of DDIM steps of a sampler, round after round.

Salimans and Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", ICLR 2022
(arXiv 2202.00512); official code google-research ``diffusion_distillation/dpm.py``.

A student with N steps on the grid ``ts = ts_teacher[::2]`` learns to do in one DDIM step
what the teacher does in two. For an example ``z_t = alpha_t x + sigma_t eps`` at ``t = ts[i]``
the teacher takes two DDIM steps, ``t -> t' = ts_teacher[2i + 1] -> s = ts[i + 1]``, reaching
``z''``; the student's target is the x0 that makes ITS one DDIM step land on ``z''``:

    x~ = (z'' - (sigma_s / sigma_t) z_t) / (alpha_s - (sigma_s / sigma_t) alpha_t),
    eps~ = (z_t - alpha_t x~) / sigma_t,   v~ = alpha_t eps~ - sigma_t x~,

(the denominator is evaluated as ``-alpha_s expm1(lam_t - lam_s)``, the form the library's
DDIM step uses, so an exact student reproduces the teacher's two steps to float rounding).
At the last interval the paper's code uses the teacher's x0 at ``t'`` instead (its sampler
returns the x0 prediction at the end); that is ``final_x0=True`` here, and it equals the
formula whenever ``sigma(ts[-1]) = 0``.

The loss is in x0 space, ``w(t) ||x0_student - x~||^2``, with ``w = max(SNR, 1)``
(``'truncated_snr'``) or ``SNR + 1`` (``'snr_plus_one'``, the v-MSE on VP paths), computed as
``w c(t)^2 ||raw - target||^2`` (see :mod:`jaxsample.objectives`). Students may predict
``'eps'``, ``'x0'``, ``'v'``, ``'velocity'`` or ``'both'`` (an x head and an eps head mixed by
``sigma^2 / (alpha^2 + sigma^2)``, the paper's "both").

Rectified-flow teachers: nothing changes. On ``x_t = (1 - t) x + t eps`` DDIM is exactly the
Euler step of the velocity ODE, the target formula holds for any path ``(alpha, sigma)``,
``sigma(0) = 0`` makes the last-step special case coincide with the formula, and a
``'velocity'`` student keeps the teacher's parameterisation (initialise it from the teacher).

A distilled student is a plain :class:`~jaxsample.models.Model` (:func:`student_model`) and
samples with ``sample(student, ddim(), ts, noise)`` on its grid.

Example:
    >>> import jax, jax.numpy as jnp
    >>> import jaxsample as js
    >>> from jaxsample.distill import progressive
    >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
    >>> teacher = gmm.model(js.VPCosine(), "x0")
    >>> ts_teacher = js.uniform(teacher.path, 4)                  # teacher: 4 DDIM steps
    >>> z = js.initial_noise(jax.random.key(1), (3, 2))
    >>> x_tilde = progressive.distillation_target(teacher, z, ts_teacher[0], ts_teacher[1], ts_teacher[2])
    >>> exact = js.Model(lambda x, t: progressive.distillation_target(teacher, x, t, t - 0.25, t - 0.5),
    ...                  teacher.path, "x0")                       # an exact 2-step student
    >>> bool(jnp.allclose(js.sample(exact, js.ddim(), ts_teacher[::2], z),
    ...                   js.sample(teacher, js.ddim(), ts_teacher, z), atol=1e-5))
    True
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample import objectives
from jaxsample._files import write_json
from jaxsample.grids import check_grid, get_grid
from jaxsample.models import Model, expand_to, from_x0_eps
from jaxsample.paths import AbstractPath
from jaxsample.solvers._exponential import data_coefficients, data_update, sched

__all__ = [
    "PARAMETERIZATIONS",
    "WEIGHTINGS",
    "ddim_step",
    "distillation_target",
    "student_model",
    "split_both",
    "distillation_loss",
    "halving_schedule",
    "distill_round",
    "progressive_distill",
]

#: What a student network may predict ('both': x and eps heads on the last axis, mixed).
PARAMETERIZATIONS = ("eps", "x0", "v", "velocity", "both")
#: Loss weights on the x0 error (Salimans & Ho 2022, section 4).
WEIGHTINGS = ("truncated_snr", "snr_plus_one")


def _check_parameterization(p):
    if p not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {p!r}")


def _check_weighting(w):
    if w not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {w!r}")


def _ddim_terms(path: AbstractPath, t, s):
    """(sigma_t, sigma_s, alpha_s, h = lam_s - lam_t) of the DDIM step ``t -> s`` (lam_s = inf where
    sigma_s = 0), at the times' own dtype."""
    _, sig_t, lam_t = sched(path, t, None, exact_lam=False)
    a_s, sig_s, lam_s = sched(path, s, None)
    return sig_t, sig_s, a_s, lam_s - lam_t


def _coefficients(path: AbstractPath, t, s, x):
    """(sigma_s / sigma_t, -alpha_s expm1(lam_t - lam_s)) broadcast against x: the DDIM step
    ``z_s = r z_t + d x0`` in the library's data-prediction form (lam_s = inf where sigma_s = 0)."""
    r, c = data_coefficients(*_ddim_terms(path, t, s))
    return expand_to(r, x), expand_to(-c, x)


def ddim_step(model: Model, x, t, s, cond: Optional[dict] = None):
    """One DDIM step of ``model`` from time ``t`` to ``s < t`` (scalars or per-example, shape
    (batch,)), in the form :func:`jaxsample.solvers.ddim` uses: ``(sigma_s / sigma_t) x -
    alpha_s expm1(lam_t - lam_s) x0(x, t)``. Returns ``(x_s, x0)``."""
    cond = {} if cond is None else cond
    x0 = model.x0(x, t, **cond)
    return data_update(x, x0, *_ddim_terms(model.path, t, s)), x0


def distillation_target(teacher: Model, x_t, t, t_mid, s, *, cond: Optional[dict] = None,
                        final=None, final_x0: bool = False):
    """The student's x0 target x~ from two teacher DDIM steps ``t -> t_mid -> s``.

    Args:
        teacher: the teacher :class:`~jaxsample.models.Model`.
        x_t: noisy inputs, leading batch axis.
        t, t_mid, s: times with ``t > t_mid > s``; scalars or shape (batch,).
        cond: keyword arguments of the teacher (e.g. labels).
        final: boolean (scalar or (batch,)): which examples are on the student's last interval
            (used only with ``final_x0``).
        final_x0: on the last interval, use the teacher's x0 prediction at ``t_mid`` (the
            paper's special case) instead of the formula.

    Returns:
        x~, shaped like ``x_t``: the student's one DDIM step ``t -> s`` with x0 = x~ lands
        exactly on the teacher's two-step result.
    """
    x_mid, _ = ddim_step(teacher, x_t, t, t_mid, cond)
    z_s, x0_mid = ddim_step(teacher, x_mid, t_mid, s, cond)
    r, d = _coefficients(teacher.path, t, s, x_t)
    x_tilde = (z_s - r * x_t) / d
    if final_x0:
        if final is None:
            raise ValueError("final must be given (which examples are on the last interval) when final_x0=True")
        x_tilde = jnp.where(expand_to(jnp.asarray(final), x_t), x0_mid, x_tilde)
    return x_tilde


def split_both(raw, x, t, path: AbstractPath):
    """x0 of a 'both' output: ``raw[..., :C]`` is an x head and ``raw[..., C:]`` an eps head
    (C = x.shape[-1]), mixed as ``w x_head + (1 - w) x_from_eps`` with
    ``w = sigma^2 / (alpha^2 + sigma^2)`` (Salimans & Ho's 'both'; ``w = sigma^2`` on VP paths).
    The eps part is evaluated as ``alpha (x - sigma eps) / (alpha^2 + sigma^2)`` (no 1 / alpha)."""
    c = x.shape[-1]
    if raw.shape[:-1] != x.shape[:-1] or raw.shape[-1] != 2 * c:
        raise ValueError(f"a 'both' network must output shape {x.shape[:-1] + (2 * c,)} (x head then eps head), "
                         f"got {raw.shape}")
    x_head, eps_head = raw[..., :c], raw[..., c:]
    a, s = expand_to(path.alpha(t), x), expand_to(path.sigma(t), x)
    norm = a * a + s * s
    return (s * s / norm) * x_head + (a / norm) * (x - s * eps_head)


class _BothFn(eqx.Module):
    fn: Callable
    path: AbstractPath

    def __call__(self, x, t, **cond):
        return split_both(self.fn(x, t, **cond), x, t, self.path)


def student_model(apply_fn: Callable, params, path: AbstractPath, parameterization: str) -> Model:
    """A student network as a :class:`~jaxsample.models.Model`.

    Args:
        apply_fn: ``apply_fn(variables, x, t, **cond)``, usually ``module.apply``.
        params: the ``'params'`` collection.
        path: the teacher's path.
        parameterization: one of :data:`PARAMETERIZATIONS`; a ``'both'`` student becomes an
            x0-predicting model (see :func:`split_both`).
    """
    _check_parameterization(parameterization)
    fn = jax.tree_util.Partial(apply_fn, {"params": params})
    if parameterization == "both":
        return Model(_BothFn(fn, path), path, "x0")
    return Model(fn, path, parameterization)


def _student_raw_and_target(apply_fn, params, path, parameterization, x_t, t, x_tilde, cond):
    """(raw, target, c) with ``x0_student - x~ = c (raw - target)``, c shape (batch,)."""
    if parameterization == "both":
        x0_hat = split_both(apply_fn({"params": params}, x_t, t, **cond), x_t, t, path)
        return x0_hat, x_tilde, jnp.ones_like(t)
    raw = apply_fn({"params": params}, x_t, t, **cond)
    if raw.shape != x_t.shape:
        raise ValueError(f"the student must output the shape of its input {x_t.shape}, got {raw.shape}")
    eps_tilde = (x_t - expand_to(path.alpha(t), x_t) * x_tilde) / expand_to(path.sigma(t), x_t)
    target = from_x0_eps(path, parameterization, x_tilde, eps_tilde, x_t, t)
    return raw, target, objectives.x0_error_scale(path, parameterization, t)


def distillation_loss(apply_fn: Callable, teacher: Model, ts_teacher, parameterization: str,
                      weighting: str = "truncated_snr", *, final_x0: bool = False):
    """The loss of one round: a student with ``N = (len(ts_teacher) - 1) / 2`` steps on
    ``ts_teacher[::2]`` learns the teacher's two DDIM steps.

    Each example ``k`` of the global batch draws its interval ``i`` uniformly in ``[0, N)`` and
    its noise from ``fold_in(key, k)`` (independent of sharding), forms
    ``z_t = alpha_t x + sigma_t eps`` at ``t = ts_teacher[2 i]``, and is scored by
    ``w(t) ||x0_student(z_t, t) - x~||^2`` (:func:`distillation_target`). The teacher is held
    fixed (closed over, no gradient), so the returned function is one jit compilation per round.

    Args:
        apply_fn: the student's ``apply_fn(variables, x, t, **cond)``.
        teacher: the teacher model (the previous round's student, or the original teacher).
        ts_teacher: the teacher's grid, an even number ``2N`` of steps, strictly decreasing.
        parameterization: the student's, one of :data:`PARAMETERIZATIONS`.
        weighting: ``'truncated_snr'`` or ``'snr_plus_one'``.
        final_x0: the paper's last-interval target (see :func:`distillation_target`).

    Returns:
        ``loss_fn(params, batch, key) -> (loss, metrics)`` for :func:`jaxsample.train.fit`;
        ``batch['x']`` is data, an optional ``batch['label']`` is passed to teacher and student.
        ``loss_fn.num_traces`` counts how often JAX traced it (compilations).
    """
    _check_parameterization(parameterization)
    _check_weighting(weighting)
    if not isinstance(teacher, Model):
        raise ValueError(f"teacher must be a jaxsample Model, got {type(teacher).__name__}")
    ts_teacher = np.asarray(ts_teacher, np.float64)
    if ts_teacher.ndim != 1 or ts_teacher.shape[0] < 3 or (ts_teacher.shape[0] - 1) % 2:
        raise ValueError(f"ts_teacher must be a 1-D grid with an even number (>= 2) of steps, got shape "
                         f"{ts_teacher.shape}")
    check_grid(teacher.path, ts_teacher, "ts_teacher")
    path = teacher.path
    n = (ts_teacher.shape[0] - 1) // 2
    grid_t = jnp.asarray(ts_teacher[0:-1:2], jnp.float32)
    grid_mid = jnp.asarray(ts_teacher[1::2], jnp.float32)
    grid_s = jnp.asarray(ts_teacher[2::2], jnp.float32)
    traces = [0]

    def loss_fn(params, batch, key):
        traces[0] += 1
        if "x" not in batch:
            raise ValueError(f"batch must contain 'x', got keys {sorted(batch)}")
        x0 = batch["x"]
        size = x0.shape[0]
        cond = {"label": batch["label"]} if "label" in batch else {}

        def draw(k):
            k_i, k_eps = jax.random.split(k)
            return jax.random.randint(k_i, (), 0, n), jax.random.normal(k_eps, x0.shape[1:], x0.dtype)

        i, eps = jax.vmap(draw)(objectives.example_keys(key, size))
        t, t_mid, s = (g.astype(x0.dtype)[i] for g in (grid_t, grid_mid, grid_s))
        x_t = expand_to(path.alpha(t), x0) * x0 + expand_to(path.sigma(t), x0) * eps
        x_tilde = jax.lax.stop_gradient(
            distillation_target(teacher, x_t, t, t_mid, s, cond=cond, final=i == n - 1, final_x0=final_x0))
        raw, target, c = _student_raw_and_target(apply_fn, params, path, parameterization, x_t, t, x_tilde, cond)
        mse = jnp.mean(jnp.reshape((raw - target) ** 2, (size, -1)), axis=-1)
        snr = objectives.snr(path, t)
        w = jnp.maximum(snr, 1.0) if weighting == "truncated_snr" else snr + 1.0
        loss = jnp.mean(w * c ** 2 * mse)
        return loss, {"x0_mse": jnp.mean(c ** 2 * mse)}

    loss_fn.num_traces = lambda: traces[0]
    return loss_fn


def halving_schedule(start_steps: int, final_steps: int = 1) -> list:
    """Student step counts of the rounds: ``start/2, start/4, ..., final`` (teacher has ``start``)."""
    for name, v in (("start_steps", start_steps), ("final_steps", final_steps)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if start_steps <= final_steps or start_steps % final_steps or (start_steps // final_steps) & (
            start_steps // final_steps - 1):
        raise ValueError(f"start_steps / final_steps must be a power of 2 greater than 1, got {start_steps} / "
                         f"{final_steps}")
    out, n = [], start_steps
    while n > final_steps:
        n //= 2
        out.append(n)
    return out


def _params_of(model: Model):
    fn = model.fn
    fn = fn.fn if isinstance(fn, _BothFn) else fn
    if isinstance(fn, jax.tree_util.Partial) and fn.args and isinstance(fn.args[0], dict) and "params" in fn.args[0]:
        return fn.args[0]["params"]
    raise ValueError("cannot read network parameters from this teacher: pass init_params")


def distill_round(teacher: Model, apply_fn: Callable, init_params, ts_teacher, batch_fn, *,
                  parameterization: str, weighting: str = "truncated_snr", num_steps: int,
                  learning_rate: float = 1e-4, grad_clip: Optional[float] = 1.0, decay: bool = True,
                  ema_decay: float = 0.0, final_x0: bool = False, seed: int = 0, workdir=None,
                  checkpoint_every: Optional[int] = None, log_every: int = 10, mesh=None,
                  progress: bool = True):
    """One halving round: train a student on ``ts_teacher[::2]`` from ``init_params``.

    Trained with :class:`jaxsample.train.TrainState` and :func:`jaxsample.train.fit` (Adam,
    global-norm clipping, optional cosine decay to 0, orbax checkpoints in ``workdir`` with exact
    resume, ``mesh`` data parallelism). Returns ``(student, state, history)`` where ``student``
    is a :class:`~jaxsample.models.Model` with the EMA parameters (``ema_decay = 0``, the
    paper's setting, makes them the raw parameters).
    """
    from jaxsample import train

    loss_fn = distillation_loss(apply_fn, teacher, ts_teacher, parameterization, weighting, final_x0=final_x0)
    tx = train.make_optimizer(learning_rate, decay_steps=num_steps if decay else 0, grad_clip=grad_clip)
    config = {"parameterization": parameterization, "weighting": weighting, "student_steps": (len(ts_teacher) - 1) // 2,
              "learning_rate": float(learning_rate), "num_steps": int(num_steps), "final_x0": bool(final_x0)}
    state = train.TrainState.create(init_params, tx, seed=seed, ema_decay=ema_decay, config=config)
    state, history = train.fit(state, loss_fn, batch_fn, num_steps=num_steps, workdir=workdir,
                               checkpoint_every=checkpoint_every, log_every=log_every, mesh=mesh, progress=progress)
    student = student_model(apply_fn, state.ema_params, teacher.path, parameterization)
    return student, state, {"history": history, "num_traces": loss_fn.num_traces()}


def progressive_distill(teacher: Model, apply_fn: Callable, batch_fn, *, start_steps: int, final_steps: int = 1,
                        parameterization: str, init_params=None, weighting: str = "truncated_snr",
                        steps_per_round=1000, learning_rate: float = 1e-4, grad_clip: Optional[float] = 1.0,
                        decay: bool = True, ema_decay: float = 0.0, final_x0: bool = False, grid: str = "uniform",
                        t_start=None, t_end=None, seed: int = 0, workdir=None, checkpoint_every: Optional[int] = None,
                        log_every: int = 10, mesh=None, progress: bool = True,
                        on_round_end: Optional[Callable] = None):
    """Progressive distillation: ``start_steps -> start_steps/2 -> ... -> final_steps`` DDIM steps.

    Round k trains a student with ``N_k`` steps on the grid ``base[::start_steps / N_k]`` (``base``
    = ``get_grid(grid, path, start_steps, t_start=..., t_end=...)``, so every round's grid nests
    in the previous one) against the previous round's student (round 0: ``teacher``), starting
    from its parameters; each round is a :func:`distill_round` in ``workdir/round{k}_{N_k}steps``.
    Re-running with the same arguments resumes: finished rounds are restored from their final
    checkpoint (no training), the interrupted round from its latest one.

    Args:
        teacher: the original teacher; round 0's student starts from ``init_params`` (default:
            the teacher's own parameters, when it was built by :func:`student_model` or
            :func:`jaxsample.nets.network_model` with the same parameterisation).
        apply_fn: the student network's ``apply_fn(variables, x, t, **cond)``: a linen module's
            ``module.apply``, or for a Flax NNX module the first of ``jaxsample.nets.nnx_apply(module)``
            (whose second, the NNX state, is the ``init_params``; a teacher built by ``network_model``
            from that NNX module gives it by default).
        batch_fn: ``batch_fn(step) -> {'x': data[, 'label': ...]}``, deterministic in ``step``;
            each round restarts from step 0.
        start_steps, final_steps: the teacher's step count and the last student's; their ratio
            must be a power of 2.
        parameterization, weighting, final_x0: see :func:`distillation_loss`.
        steps_per_round: optimizer steps per round: an int, or one int per round.
        learning_rate, grad_clip, decay, ema_decay: the optimizer (Adam, cosine decay to 0 over
            the round when ``decay``); the paper uses 5e-5 (constant), clipping 1, no EMA.
        seed: round k's state uses seed ``seed + k``.
        on_round_end: optional callback ``on_round_end(round_info, student)`` (e.g. evaluation).

    Returns:
        ``(students, rounds)``: the students (one :class:`~jaxsample.models.Model` per round, in
        order) and per-round dicts (``round``, ``student_steps``, ``ts``, ``train_seconds``
        (the wall time of this call's training, 0 for a restored round), ``final_loss``,
        ``num_traces``).
    """
    schedule = halving_schedule(start_steps, final_steps)
    if isinstance(steps_per_round, (int, np.integer)) and not isinstance(steps_per_round, bool):
        steps_per_round = [int(steps_per_round)] * len(schedule)
    steps_per_round = list(steps_per_round)
    if len(steps_per_round) != len(schedule):
        raise ValueError(f"steps_per_round must be an int or list {len(schedule)} ints (one per round "
                         f"{schedule}), got {steps_per_round}")
    base = np.asarray(get_grid(grid, teacher.path, start_steps, t_start=t_start, t_end=t_end), np.float64)
    params = _params_of(teacher) if init_params is None else init_params
    current, students, rounds = teacher, [], []
    for k, n in enumerate(schedule):
        ts_teacher = base[::start_steps // (2 * n)]
        rdir = None if workdir is None else os.path.join(os.fspath(workdir), f"round{k}_{n}steps")
        t0 = time.perf_counter()
        student, state, log = distill_round(
            current, apply_fn, params, ts_teacher, batch_fn, parameterization=parameterization, weighting=weighting,
            num_steps=steps_per_round[k], learning_rate=learning_rate, grad_clip=grad_clip, decay=decay,
            ema_decay=ema_decay, final_x0=final_x0, seed=seed + k, workdir=rdir,
            checkpoint_every=checkpoint_every, log_every=log_every, mesh=mesh, progress=progress)
        seconds = time.perf_counter() - t0
        hist = log["history"]
        info = {"round": k, "teacher_steps": 2 * n, "student_steps": n, "ts": [float(v) for v in ts_teacher[::2]],
                "num_steps": steps_per_round[k], "train_seconds": seconds if hist else 0.0,
                "final_loss": hist[-1]["loss"] if hist else None, "num_traces": log["num_traces"]}
        if rdir is not None:  # the round's record survives restarts; wall time adds up over the calls that trained
            record = os.path.join(rdir, "round.json")
            old = None
            if os.path.exists(record):
                with open(record) as f:
                    old = json.load(f)
            if old is not None and not hist:
                info = {**old, "num_traces": log["num_traces"], "restored": True}
            else:
                if old is not None:
                    info["train_seconds"] += old.get("train_seconds", 0.0)
                write_json(record, info)
        rounds.append(info)
        students.append(student)
        if on_round_end is not None:
            on_round_end(info, student)
        current, params = student, state.ema_params
    return students, rounds
