"""One training state and one optax loop for everything jaxsample trains.

- :class:`TrainState`: a pytree ``(step, params, opt_state, ema_params, rng)`` plus static
  configuration (the optax transformation, the EMA decay, a frozen config mapping).
- :func:`train_step`: pure and jitted, ``train_step(state, batch, loss_fn) -> (state, metrics)``.
  ``loss_fn(params, batch, key)`` returns a scalar loss or ``(loss, metrics_dict)``; ``key`` is
  ``fold_in(state.rng, state.step)``.
- Data parallelism: :func:`make_mesh` builds a 1-D ``('data',)`` mesh, :func:`shard_batch` splits
  the batch's leading axis over it and :func:`replicate` copies the state to every device; jit's
  SPMD partitioning then computes the global-batch loss, so gradients are averaged across devices
  and the loss curve does not depend on the device count (up to float rounding), provided the
  loss derives per-example randomness from the global example index (as
  :mod:`jaxsample.objectives` does).
- :func:`fit`: the driver: resumable batches ``batch_fn(step)``, orbax checkpoints every
  ``checkpoint_every`` steps with exact resume, EMA, a tqdm bar, metrics appended as JSON lines to
  ``workdir/metrics.jsonl``.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from jaxsample import train
    >>> params = {"w": jnp.zeros(3)}
    >>> state = train.TrainState.create(params, optax.sgd(0.1), seed=0)
    >>> loss_fn = lambda p, batch, key: jnp.mean((batch["x"] - p["w"]) ** 2)
    >>> state, metrics = train.train_step(state, {"x": jnp.ones((4, 3))}, loss_fn)
    >>> int(state.step), round(float(metrics["loss"]), 4)
    (1, 1.0)
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Callable, Mapping, Optional

import flax
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsample import parallel
from jaxsample._files import read_jsonl, write_jsonl

__all__ = [
    "TrainState",
    "train_step",
    "make_mesh",
    "shard_batch",
    "replicate",
    "make_optimizer",
    "fit",
    "fit_with_validation",
    "save_checkpoint",
    "restore_checkpoint",
    "read_metrics",
]


class TrainState(flax.struct.PyTreeNode):
    """The state of any jaxsample training run.

    Attributes:
        step: int32 scalar, number of updates applied.
        params: the trained pytree (network parameters, solver coefficients, ...).
        opt_state: the optax state.
        ema_params: exponential moving average of ``params`` (decay ``ema_decay``).
        rng: a raw uint32 PRNG key (``jax.random.PRNGKey``); step ``s`` uses ``fold_in(rng, s)``.
        tx: the optax transformation (static).
        ema_decay: EMA decay in [0, 1) (static); 0 makes ``ema_params`` follow ``params``.
        config: a frozen mapping of hashable hyperparameters kept for the record (static).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    ema_decay: float = flax.struct.field(pytree_node=False, default=0.999)
    config: Any = flax.struct.field(pytree_node=False, default=None)

    @classmethod
    def create(cls, params, tx: optax.GradientTransformation, *, seed: int = 0, rng=None,
               ema_decay: float = 0.999, config: Optional[Mapping] = None) -> "TrainState":
        """A fresh state at step 0; ``rng`` (a raw or typed key) overrides ``seed``."""
        if not isinstance(tx, optax.GradientTransformation):
            raise ValueError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
        ema_decay = float(ema_decay)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        if rng is None:
            rng = jax.random.PRNGKey(seed)
        elif jnp.issubdtype(jnp.asarray(rng).dtype, jax.dtypes.prng_key):
            rng = jax.random.key_data(rng)
        frozen = None if config is None else flax.core.FrozenDict(dict(config))
        if frozen is not None:
            try:
                hash(frozen)
            except TypeError as e:
                raise ValueError(f"config values must be hashable: {e}") from None
        params = jax.tree_util.tree_map(jnp.asarray, params)
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            ema_params=jax.tree_util.tree_map(jnp.array, params),
            rng=jnp.asarray(rng, jnp.uint32),
            tx=tx,
            ema_decay=ema_decay,
            config=frozen,
        )

    def arrays(self) -> dict:
        """The array part of the state (what a checkpoint holds)."""
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state,
                "ema_params": self.ema_params, "rng": self.rng}

    def replace_arrays(self, arrays: Mapping) -> "TrainState":
        return self.replace(**arrays)


def _split_loss_output(out):
    if isinstance(out, tuple):
        if len(out) != 2:
            raise ValueError("loss_fn must return a scalar loss or a (loss, metrics) pair")
        return out[0], dict(out[1])
    return out, {}


def _train_step(state: TrainState, batch, loss_fn: Callable):
    key = jax.random.fold_in(state.rng, state.step)

    def objective(params):
        loss, metrics = _split_loss_output(loss_fn(params, batch, key))
        if jnp.ndim(loss) != 0:
            raise ValueError(f"loss_fn must return a scalar loss, got shape {jnp.shape(loss)}")
        return loss, metrics

    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    d = state.ema_decay
    ema = jax.tree_util.tree_map(lambda e, p: d * e + (1.0 - d) * p, state.ema_params, params)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), **metrics}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema)
    return new_state, metrics


train_step = jax.jit(_train_step, static_argnums=2)
train_step.__doc__ = """Apply one optimizer update: ``train_step(state, batch, loss_fn) -> (state, metrics)``.

Pure and jitted (``loss_fn`` is static: pass the same function object every step to reuse the
compilation). Metrics include ``loss`` and ``grad_norm`` plus whatever ``loss_fn`` returns. With
a sharded batch and replicated state (see :func:`shard_batch`, :func:`replicate`) the step runs
data-parallel over the mesh.
"""


make_mesh = parallel.make_mesh
shard_batch = parallel.shard_batch
replicate = parallel.replicate


def make_optimizer(learning_rate: float = 1e-3, *, warmup_steps: int = 0, decay_steps: int = 0,
                   grad_clip: Optional[float] = None, weight_decay: float = 0.0,
                   b1: float = 0.9, b2: float = 0.999) -> optax.GradientTransformation:
    """Adam(W) with optional linear warmup, cosine decay and global-norm clipping."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if decay_steps < 0:
        raise ValueError(f"decay_steps must be >= 0, got {decay_steps}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if decay_steps:
        schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps, max(decay_steps, warmup_steps + 1))
    elif warmup_steps:
        schedule = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    else:
        schedule = learning_rate
    parts = []
    if grad_clip is not None:
        parts.append(optax.clip_by_global_norm(grad_clip))
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay))
    return optax.chain(*parts)


# --------------------------------------------------------------------------------------------
# Checkpointing (orbax)


def _manager(directory, max_to_keep: Optional[int] = None):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(os.path.abspath(os.fspath(directory)), options=options)


def _abstract(tree):
    def to_sds(a):
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None))

    return jax.tree_util.tree_map(to_sds, tree)


def save_checkpoint(directory, state: TrainState, *, max_to_keep: Optional[int] = None) -> None:
    """Save ``state`` (its arrays) under ``directory/<step>`` and wait until written."""
    import orbax.checkpoint as ocp

    with _manager(directory, max_to_keep) as mngr:
        mngr.save(int(state.step), args=ocp.args.StandardSave(state.arrays()), force=True)
        mngr.wait_until_finished()


def restore_checkpoint(directory, state: TrainState, step: Optional[int] = None) -> TrainState:
    """Restore the arrays of ``state`` from ``directory`` (latest step unless ``step``),
    with the shapes, dtypes and shardings of ``state``. Raises FileNotFoundError if none."""
    import orbax.checkpoint as ocp

    with _manager(directory) as mngr:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint found in {directory}")
        arrays = mngr.restore(step, args=ocp.args.StandardRestore(_abstract(state.arrays())))
    return state.replace_arrays(arrays)


def read_metrics(workdir) -> list:
    """The records of ``workdir/metrics.jsonl`` as a list of dicts (a damaged line, e.g. torn by a
    crash during an append, is dropped with a warning)."""
    return read_jsonl(os.path.join(os.fspath(workdir), "metrics.jsonl"))


def _truncate_metrics(workdir, step):
    """Drop records past ``step`` (left by a run that stopped after its last checkpoint) and
    damaged lines; the file is rewritten atomically."""
    path = os.path.join(os.fspath(workdir), "metrics.jsonl")
    if not os.path.exists(path):
        return
    records = read_metrics(workdir)
    kept = [r for r in records if r.get("step", 0) <= step]
    with open(path) as f:
        lines = sum(1 for line in f if line.strip())
    if len(kept) != lines:
        write_jsonl(path, kept)


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def fit(
    state: TrainState,
    loss_fn: Callable,
    batch_fn: Callable[[int], Any],
    *,
    num_steps: int,
    workdir=None,
    checkpoint_every: Optional[int] = None,
    log_every: int = 1,
    mesh=None,
    max_to_keep: Optional[int] = 2,
    progress: bool = True,
    restore: bool = True,
):
    """Train ``state`` until ``state.step == num_steps``.

    Args:
        state: the initial state (used as-is unless a checkpoint is found in ``workdir``).
        loss_fn: ``loss_fn(params, batch, key)``, see :func:`train_step`.
        batch_fn: ``batch_fn(step) -> batch``; must be deterministic in ``step`` so a resumed run
            sees the same batches (see :class:`jaxsample.data.ArrayBatcher`).
        num_steps: total number of steps (not the number left to run).
        workdir: directory for ``checkpoints/`` and ``metrics.jsonl``; None keeps nothing.
        checkpoint_every: save every this many steps (and at the end); None: only at the end.
        log_every: append metrics to ``metrics.jsonl`` every this many steps (and at the end).
        mesh: a ``('data',)`` mesh (see :func:`make_mesh`); the batch is sharded and the state
            replicated over it. None: the default device.
        max_to_keep: checkpoints to keep (None keeps all).
        progress: show a tqdm progress bar.
        restore: resume from the latest checkpoint in ``workdir`` if there is one.

    Returns:
        ``(state, history)``, where ``history`` lists the metrics dicts (as Python floats) of the
        steps this call ran.
    """
    import orbax.checkpoint as ocp
    from tqdm.auto import tqdm

    if not isinstance(state, TrainState):
        raise ValueError(f"state must be a TrainState, got {type(state).__name__}")
    _check_positive_int("num_steps", num_steps)
    _check_positive_int("checkpoint_every", checkpoint_every, allow_none=True)
    _check_positive_int("log_every", log_every)
    _check_positive_int("max_to_keep", max_to_keep, allow_none=True)
    if not callable(batch_fn):
        raise ValueError("batch_fn must be callable as batch_fn(step) -> batch")
    if checkpoint_every is not None and workdir is None:
        raise ValueError("checkpoint_every needs a workdir to write checkpoints to")
    main = parallel.is_main_process()
    process_local = bool(getattr(batch_fn, "process_local", False))
    if mesh is not None:
        if tuple(mesh.axis_names) != ("data",):
            raise ValueError(f"mesh must have the single axis 'data', got {mesh.axis_names}")
        state = replicate(state, mesh)

    mngr = None
    if workdir is not None:
        workdir = os.path.abspath(os.fspath(workdir))
        os.makedirs(workdir, exist_ok=True)
        mngr = _manager(os.path.join(workdir, "checkpoints"), max_to_keep)
        latest = mngr.latest_step()
        if restore and latest is not None:
            arrays = mngr.restore(latest, args=ocp.args.StandardRestore(_abstract(state.arrays())))
            state = state.replace_arrays(arrays)
            if main:
                _truncate_metrics(workdir, latest)

    start = int(state.step)
    history = []
    metrics_file = open(os.path.join(workdir, "metrics.jsonl"), "a") if workdir is not None and main else None
    try:
        bar = tqdm(total=num_steps, initial=start, disable=not (progress and main), desc="train", dynamic_ncols=True)
        last_time = time.perf_counter()
        for step in range(start, num_steps):
            _fault_point("step", step)
            batch = batch_fn(step)
            if mesh is not None:
                batch = shard_batch(batch, mesh, process_local=process_local)
            state, metrics = train_step(state, batch, loss_fn)
            done = step + 1
            record = None
            if done % log_every == 0 or done == num_steps:
                record = {"step": done, **{k: float(v) for k, v in metrics.items()}}
                now = time.perf_counter()
                record["steps_per_sec"] = (log_every if done % log_every == 0 else 1) / max(now - last_time, 1e-9)
                last_time = now
                history.append(record)
                if metrics_file is not None:
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                bar.set_postfix(loss=f"{record['loss']:.4g}")
            bar.update(1)
            if mngr is not None and ((checkpoint_every and done % checkpoint_every == 0) or done == num_steps):
                mngr.save(done, args=ocp.args.StandardSave(state.arrays()), force=True)
                _fault_point("save", done)
        bar.close()
    finally:
        if metrics_file is not None:
            metrics_file.close()
        if mngr is not None:
            mngr.wait_until_finished()
            mngr.close()
    return state, history


def _recover_validation(log, workdir, state, score, checked, key, targets):
    """Score again every checkpoint of an evaluation step that the validation log lacks (a log
    damaged or lost by a crash, reported by :func:`~jaxsample._files.read_jsonl`), so that the
    resumed run picks the same best iterate as an uninterrupted one."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return log
    with _manager(directory) as mngr:
        saved = set(mngr.all_steps())
    missing = [s for s in targets if s in saved and not any(r["step"] == s for r in log)]
    if missing:
        import warnings

        warnings.warn(f"{workdir}/validation.jsonl lacks step(s) {missing} that have checkpoints: "
                      f"scoring them again", RuntimeWarning, stacklevel=3)
    for s in missing:
        log.append({"step": s, key: checked(score(restore_checkpoint(directory, state, step=s).params), s)})
    return sorted(log, key=lambda r: r["step"])


def _fault_point(name: str, step: int) -> None:
    """Fault injection for the resume tests (``tests/test_resume_cli.py``): with the environment
    variable ``JAXSAMPLE_FAULT=<name>:<step>`` the process kills itself (SIGKILL, as a preemption
    would) when it reaches that point: ``step`` before a training step, ``save`` while a
    checkpoint is being written, ``validate`` after a checkpoint and before its validation."""
    if os.environ.get("JAXSAMPLE_FAULT") == f"{name}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def fit_with_validation(
    state: TrainState,
    loss_fn: Callable,
    batch_fn: Callable[[int], Any],
    score: Callable[[Any], float],
    *,
    num_steps: int,
    eval_every: int,
    key: str = "val_loss",
    maximize: bool = False,
    workdir=None,
    mesh=None,
    progress: bool = True,
    desc: str = "train",
    patience: Optional[int] = None,
):
    """:func:`fit` with a validation score every ``eval_every`` steps; returns the best iterate.

    ``score(params)`` is computed on the initial parameters and after every ``eval_every``
    steps (and at the end); the log is a list of ``{"step": s, key: value}``. With a
    ``workdir`` the run checkpoints with orbax at each evaluation, keeps the log in
    ``workdir/validation.jsonl`` and resumes exactly where it stopped, the best iterate
    included (read back from its checkpoint if it came before the interruption).
    A non-finite score raises ``FloatingPointError``. With ``patience``, training stops once
    ``patience`` evaluations in a row have not beaten the best score (a resumed run that had
    stopped stays stopped); the learning-rate schedule is still the one of ``num_steps``.

    Returns:
        ``(best_params, log)``: ``log`` holds ``init`` (the initial score), ``best`` (the best
        score), ``best_step``, ``validation`` (the whole log) and ``stopped_at`` (the last step
        trained: ``num_steps``, or earlier when ``patience`` stopped the run).

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from jaxsample import train
        >>> state = train.TrainState.create({"w": jnp.zeros(())}, optax.sgd(0.1))
        >>> loss = lambda p, batch, key: (p["w"] - 3.0) ** 2
        >>> params, log = train.fit_with_validation(state, loss, lambda step: None,
        ...     lambda p: float((p["w"] - 3.0) ** 2), num_steps=20, eval_every=10, progress=False)
        >>> [r["step"] for r in log["validation"]], log["best_step"], round(float(params["w"]), 2)
        ([0, 10, 20], 20, 2.97)
    """
    from tqdm.auto import tqdm

    _check_positive_int("num_steps", num_steps)
    _check_positive_int("eval_every", eval_every)
    if patience is not None:
        _check_positive_int("patience", patience)
    main = parallel.is_main_process()
    better = (lambda a, b: a > b) if maximize else (lambda a, b: a < b)
    pick = max if maximize else min

    def checked(value, step):
        value = float(value)
        if not np.isfinite(value):
            raise FloatingPointError(f"{desc}: validation {key} is {value} at step {step}")
        return value

    val_file = None if workdir is None else os.path.join(workdir, "validation.jsonl")
    read = [] if val_file is None else [r for r in read_jsonl(val_file) if "step" in r and key in r]
    init = checked(score(state.params), 0)
    log = ([] if any(r["step"] == 0 for r in read) else [{"step": 0, key: init}]) + read
    best_step, best_params = 0, state.params  # the best iterate held in memory
    targets = list(range(eval_every, num_steps, eval_every)) + [num_steps]
    if val_file is not None:
        log = _recover_validation(log, workdir, state, score, checked, key, targets)
        if log != read and len(log) > 1 and main:  # repaired: write it back whole
            write_jsonl(val_file, log)

    def stalled():  # patience evaluations in a row after the best one
        if patience is None:
            return False
        best_at = min(i for i, r in enumerate(log) if r[key] == pick(q[key] for q in log))
        return len(log) - 1 - best_at >= patience

    bar = tqdm(total=num_steps, disable=not (progress and main), desc=desc, dynamic_ncols=True)
    for k, target in enumerate(targets):
        if stalled():
            break
        state, _ = fit(state, loss_fn, batch_fn, num_steps=target, workdir=workdir,
                       checkpoint_every=eval_every if workdir else None, max_to_keep=None,
                       progress=False, restore=k == 0, mesh=mesh, log_every=eval_every)
        step = int(state.step)
        bar.update(step - bar.n)
        if any(r["step"] == step for r in log):
            continue  # evaluated before an interruption
        _fault_point("validate", step)
        value = checked(score(state.params), step)
        if better(value, pick(r[key] for r in log)):
            best_step, best_params = step, state.params
        log.append({"step": step, key: value})
        if val_file is not None and main:
            write_jsonl(val_file, log)
        bar.set_postfix(val=f"{value:.4g}", best=f"{pick(r[key] for r in log):.4g}")
    bar.close()
    best = pick(log, key=lambda r: r[key])
    stopped_at = max(r["step"] for r in log)
    if best["step"] != best_step:  # the best iterate came before an interruption: read it back
        best_params = restore_checkpoint(os.path.join(workdir, "checkpoints"), state, step=best["step"]).params
    best_params = jax.tree_util.tree_map(lambda a: jnp.asarray(jax.device_get(a)), best_params)
    return best_params, {"init": init, "best": best[key], "best_step": best["step"], "validation": log,
                         "stopped_at": stopped_at}
