"""The one recipe by which every learned solver is distilled (BNS, AdaSDE, and the next one).

A learned solver's float leaves are its trainable parameters (stored unconstrained). The
recipe: split them off the solver, train them with Adam and cosine decay
(:func:`jaxsample.train.make_optimizer`) on shuffled batches of precomputed pairs
(:class:`jaxsample.data.ArrayBatcher`), score every ``eval_every`` steps on validation pairs and
keep the best iterate (:func:`jaxsample.train.fit_with_validation`: orbax checkpoints, exact resume
from ``workdir``, devices of ``mesh``), and put the best leaves back into the solver.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import equinox as eqx
import jax
import numpy as np

__all__ = ["fit_solver", "trainable_leaves"]


def _check_positive(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def trainable_leaves(solver) -> tuple:
    """``(params, rebuild)``: the solver's float leaves as a flat dict named by field (what the
    optimiser and the checkpoints see), and the function that puts such a dict back."""
    params, static = eqx.partition(solver, eqx.is_inexact_array)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [jax.tree_util.keystr(p).lstrip(".") for p, _ in flat]
    if not names:
        raise ValueError(f"{type(solver).__name__} has no float leaves to train")

    def rebuild(p: Mapping):
        return eqx.combine(jax.tree_util.tree_unflatten(treedef, [p[n] for n in names]), static)

    return {n: leaf for n, (_, leaf) in zip(names, flat)}, rebuild


def fit_solver(init, loss_fn: Callable, score: Callable, train_pairs: Mapping, *, num_steps: int, batch_size: int,
               learning_rate: float, eval_every: int, seed: int = 0, key: str = "val_loss", maximize: bool = False,
               workdir: Optional[str] = None, mesh=None, progress: bool = True, desc: str = "distill",
               config: Optional[dict] = None, patience: Optional[int] = None):
    """Train the float leaves of the solver ``init``; returns ``(best_solver, validation_log)``.

    Args:
        init: the initial solver (its float leaves are trained, everything else is kept).
        loss_fn: ``loss_fn(solver, batch, key) -> (loss, metrics)``.
        score: ``score(solver) -> float``, the validation score.
        train_pairs: a mapping name -> array with a leading example axis, batched by
            :class:`~jaxsample.data.ArrayBatcher` with ``seed``.
        key, maximize: the name of the score in the log and whether larger is better.
        config: recorded in the training state (method name, NFE, ...).

    The remaining arguments are those of :func:`jaxsample.train.fit_with_validation`; the log is
    its second return value (``init``, ``best``, ``best_step``, ``validation``).
    """
    from jaxsample import train as trainlib
    from jaxsample.data import ArrayBatcher

    _check_positive(num_steps=num_steps, batch_size=batch_size, eval_every=eval_every)
    params0, rebuild = trainable_leaves(init)
    tx = trainlib.make_optimizer(learning_rate, decay_steps=num_steps)
    state = trainlib.TrainState.create(params0, tx, seed=seed, ema_decay=0.0, config=config or {})
    batcher = ArrayBatcher({k: np.asarray(v) for k, v in train_pairs.items()}, batch_size, seed=seed)
    best, log = trainlib.fit_with_validation(
        state, lambda p, batch, k: loss_fn(rebuild(p), batch, k), batcher, lambda p: score(rebuild(p)),
        num_steps=num_steps, eval_every=eval_every, key=key, maximize=maximize, workdir=workdir, mesh=mesh,
        progress=progress, desc=desc, patience=patience)
    return rebuild(best), log
