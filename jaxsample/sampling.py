"""The sampling driver: one ``lax.scan`` runs any solver over a grid.

Example:
    >>> import jax
    >>> from jaxsample import grids, models, paths, solvers
    >>> from jaxsample.sampling import sample, reference_sample
    >>> gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    >>> model = gmm.model(paths.VPCosine(), "eps")
    >>> noise = jax.random.normal(jax.random.key(1), (8, 4))
    >>> ts = grids.edm(model.path, 32)
    >>> x = sample(model, solvers.rk4("edm"), ts, noise)
    >>> ref = reference_sample(model, noise, t_start=ts[0], t_end=ts[-1])
    >>> bool(abs(x - ref).max() < 0.05)
    True
"""

from __future__ import annotations

from typing import Any, Optional

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample.grids import check_grid
from jaxsample.models import Model
from jaxsample.solvers._base import AbstractSolver
from jaxsample.solvers.diffrax_interop import ProbabilityFlow

__all__ = ["sample", "reference_sample", "sample_keys", "initial_noise", "count_model_calls", "as_key",
           "solve_dtype"]


def sample_keys(key, batch_size: int):
    """Per-sample keys: sample k gets ``fold_in(key, k)``, whatever the batch size.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> keys = js.sample_keys(jax.random.key(0), 3)
        >>> keys.shape, bool(keys[1] == jax.random.fold_in(jax.random.key(0), 1))
        ((3,), True)
    """
    return jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.arange(batch_size))


def initial_noise(key, shape, dtype=None):
    """Standard-normal noise of ``shape`` (batch first), drawn per sample from ``key``.

    Sample k's noise depends only on ``key`` and k, so a larger batch extends a smaller one.
    ``dtype`` defaults to JAX's default float (float32; float64 under ``jax_enable_x64``);
    ``key`` may be a key, a legacy ``PRNGKey`` or an integer seed.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> small = js.initial_noise(jax.random.key(0), (4, 3))
        >>> large = js.initial_noise(jax.random.key(0), (8, 3))
        >>> bool((small == large[:4]).all())
        True
    """
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    keys = sample_keys(as_key(key), shape[0])
    return jax.vmap(lambda k: jax.random.normal(k, tuple(shape[1:]), dtype))(keys)


def as_key(key, batch_size: Optional[int] = None, name: str = "key"):
    """A typed PRNG key from a key, a legacy ``jax.random.PRNGKey`` (uint32 data) or an integer
    seed; with ``batch_size``, also per-sample keys (typed keys of shape ``(batch_size,)`` or
    legacy key data of shape ``(batch_size, 2)``) are accepted as they are.

    Example:
        >>> import jax
        >>> from jaxsample.sampling import as_key
        >>> bool(as_key(0) == jax.random.key(0)), bool(as_key(jax.random.PRNGKey(0)) == jax.random.key(0))
        (True, True)
    """
    expected = (f"{name} must be a jax.random.key, a jax.random.PRNGKey or an integer seed"
                + ("" if batch_size is None else f", or per-sample keys of shape ({batch_size},)"))
    if isinstance(key, (bool, np.bool_)):
        raise ValueError(f"{expected}; got {key!r}")
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if not hasattr(key, "dtype") or not hasattr(key, "shape"):
        raise ValueError(f"{expected}; got {type(key).__name__}")
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.ndim == 0 or (batch_size is not None and key.shape == (batch_size,)):
            return key
        raise ValueError(f"{expected}; got a key array of shape {key.shape}")
    if key.dtype == jnp.uint32 and (key.shape == (2,) or (batch_size is not None and key.shape == (batch_size, 2))):
        return jax.random.wrap_key_data(key)
    if jnp.issubdtype(key.dtype, jnp.integer) and key.ndim == 0:
        return jax.random.key(key)
    raise ValueError(f"{expected}; got an array of dtype {key.dtype} and shape {key.shape}")


def solve_dtype(dtype):
    """The dtype solvers compute in for noise of ``dtype``: at least float32 (half-precision noise
    is solved in float32 and the samples returned in its dtype), float64 under ``jax_enable_x64``."""
    return jnp.promote_types(dtype, jnp.float32)


#: Signatures (model structure, leaf shapes and dtypes, noise shape and dtype, cond shapes) that
#: passed :func:`_check_model_and_noise`: the check traces the model (``jax.eval_shape``), which
#: cost most of a small-batch call, so it runs once per signature (like a jit cache).
_CHECKED: dict = {}
_CHECKED_MAX = 512


def _signature(model, noise, cond):
    leaves, treedef = jax.tree_util.tree_flatten((model, cond))
    key = (treedef, tuple((a.shape, a.dtype) if hasattr(a, "shape") and hasattr(a, "dtype") else a
                          for a in leaves), tuple(noise.shape), noise.dtype)
    try:
        hash(key)
    except TypeError:  # an unhashable static leaf: check every time
        return None
    return key


def _check_model_and_noise(model, noise, ts, cond, name="noise"):
    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxsample.Model, got {type(model).__name__}")
    if not hasattr(noise, "shape") or not hasattr(noise, "dtype"):
        raise ValueError(f"{name} must be an array, got {type(noise).__name__}")
    key = _signature(model, noise, cond)
    if key is not None and key in _CHECKED:
        return
    _check_model_and_noise_once(model, noise, cond, name)
    if key is not None:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.pop(next(iter(_CHECKED)))
        _CHECKED[key] = True


def _check_model_and_noise_once(model, noise, cond, name):
    if not isinstance(model, Model):
        raise ValueError(f"model must be a jaxsample.Model, got {type(model).__name__}")
    if not hasattr(noise, "shape") or not hasattr(noise, "dtype"):
        raise ValueError(f"{name} must be an array, got {type(noise).__name__}")
    if jnp.ndim(noise) < 1 or noise.shape[0] < 1:
        raise ValueError(f"{name} must have a leading batch axis of size >= 1, got shape {noise.shape}")
    if not jnp.issubdtype(noise.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {noise.dtype}")
    dtype = solve_dtype(noise.dtype)
    t = jax.ShapeDtypeStruct((), dtype)
    x = jax.ShapeDtypeStruct(noise.shape, dtype)
    try:
        out = jax.eval_shape(lambda x, t: model(x, t, **cond), x, t)
    except Exception as err:  # the model's own shape error, re-raised naming the argument
        raise ValueError(f"{name} of shape {noise.shape} is rejected by the model: {err}") from err
    if getattr(out, "shape", None) != noise.shape:
        raise ValueError(f"{name} of shape {noise.shape}: the model returns shape "
                         f"{getattr(out, 'shape', None)}, expected the same shape as its input")


def sample(model: Model, solver: AbstractSolver, ts, noise, *, key=None, cond: Optional[dict] = None,
           return_trajectory: bool = False, checkpoint: bool = False, check_finite: bool = True,
           mesh=None, final_x0: bool = False):
    """Run ``solver`` over the grid ``ts``, starting from ``x = sigma(ts[0]) * noise``.

    Jit-compiled (``eqx.filter_jit``); vmap-able; differentiable with respect to the
    noise, the model's and the solver's array leaves.

    Args:
        model: a :class:`~jaxsample.models.Model`.
        solver: an :class:`~jaxsample.solvers.AbstractSolver`.
        ts: strictly decreasing times, ``ts[0]`` high noise; ``len(ts) - 1`` steps.
        noise: standard-normal noise with a leading batch axis. Its dtype sets the arithmetic:
            the solver runs in ``promote_types(noise.dtype, float32)`` (bfloat16 or float16
            noise is solved in float32; float64 needs ``jax_enable_x64``), the model's output is
            cast to that dtype (so a bfloat16 network works with float32 solver arithmetic),
            and the samples come back in the noise's dtype.
        key: required by stochastic solvers (a key, a legacy ``PRNGKey`` or an integer seed);
            per-sample keys are ``fold_in(key, k)`` so results do not depend on the batch size.
            A key array of shape ``(batch,)`` is used as the per-sample keys directly.
        cond: keyword arguments passed to the model (e.g. class labels).
        return_trajectory: also return all states, shape ``(len(ts), *noise.shape)``.
        checkpoint: rematerialise each step in the backward pass (``jax.checkpoint``),
            so memory grows with the number of steps, not with the model's activations.
        check_finite: raise (``equinox.EquinoxRuntimeError``) if any sample is NaN or
            infinite instead of returning it silently. Called directly, ``sample`` returns once
            the samples are computed (as ``eqx.filter_jit`` does) and the check is a boolean the
            program returns (so JAX's persistent compilation cache can store the program); under
            the caller's own ``jit`` or ``vmap`` it is part of the traced program (``eqx.error_if``).
        final_x0: end with a step to sigma = 0 through the model's x0 prediction, as k-diffusion's
            samplers and diffusers' ``final_sigmas_type="zero"`` do: after the last step the sample
            is ``model.x0(x, ts[-1])`` (one more model call). If the grid already ends at sigma = 0
            (e.g. ``uniform`` on :class:`~jaxsample.paths.RectifiedFlow`), the step INTO sigma = 0
            is that prediction at ``ts[-2]`` instead (no extra call): this is k-diffusion's rule for
            every sampler, and it keeps the solvers that divide by sigma or log-SNR (DPM-Solver,
            DEIS, iPNDM, ...) finite there. A peer's sigma list ``[s_0, ..., s_{n-1}, 0]`` is
            ``grids.from_sigmas(path, [s_0, ..., s_{n-1}])`` with ``final_x0=True``. The trajectory
            then ends with the x0 prediction.
        mesh: a mesh with a ``'data'`` axis (:func:`jaxsample.parallel.make_mesh`): the batch
            (noise, keys and batched ``cond``) is split over its devices, padded to a multiple of
            their number; the model and solver are replicated. Same keys, same samples, on any
            number of devices. On several hosts every host passes the same full ``noise``;
            :func:`jaxsample.parallel.gather` fetches the sharded result.

    Returns:
        The samples at ``ts[-1]``, or ``(samples, trajectory)``.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=3)
        >>> model = gmm.model(js.VPCosine(), "eps")
        >>> ts = js.logsnr_uniform(model.path, 10)
        >>> noise = js.initial_noise(jax.random.key(1), (16, 2))
        >>> js.sample(model, js.dpm_solver_pp_2m(), ts, noise).shape
        (16, 2)
        >>> x, trajectory = js.sample(model, js.ddpm_ancestral(), ts, noise, key=jax.random.key(2),
        ...                           return_trajectory=True)   # stochastic solvers take a key
        >>> trajectory.shape                                     # (len(ts), *noise.shape)
        (11, 16, 2)
    """
    cond = {} if cond is None else dict(cond)
    if not isinstance(solver, AbstractSolver):
        raise ValueError(f"solver must be a jaxsample AbstractSolver, got {type(solver).__name__}")
    check_grid(getattr(model, "path", None) or _raise_model(model), ts, strict=solver.strict_grid)
    _check_model_and_noise(model, noise, ts, cond)
    if solver.is_stochastic:
        if key is None:
            raise ValueError(f"key is required: {type(solver).__name__} is stochastic")
        key = as_key(key, noise.shape[0])
        if key.ndim == 0:
            key = sample_keys(key, noise.shape[0])
    else:
        key = None
    if not isinstance(final_x0, (bool, np.bool_)):
        raise ValueError(f"final_x0 must be True or False, got {final_x0!r}")
    out_dtype, dtype = noise.dtype, solve_dtype(noise.dtype)
    ts, noise = _as_array(ts, dtype), _as_array(noise, dtype)
    if final_x0 and _ends_at_zero(model.path, ts):
        if ts.shape[0] < 3:
            raise ValueError(f"final_x0=True on a grid that ends at sigma = 0 replaces its last step by the x0 "
                             f"prediction, so ts needs at least 3 times (2 steps), got {ts.shape[0]}")
        ts = ts[:-1]
    args = (bool(return_trajectory), bool(checkpoint), bool(check_finite), bool(final_x0))
    if mesh is None:
        out = _run(model, solver, ts, noise, key, cond, args)
    else:
        (noise, key, cond), size = _shard(mesh, (noise, key, cond))
        out = _run(model, solver, ts, noise, key, cond, args)
        if noise.shape[0] != size:  # padded: cut the padding (else keep the result sharded as it is)
            out = (out[0][:size], out[1][:, :size]) if return_trajectory else out[:size]
    return jax.tree_util.tree_map(lambda a: a.astype(out_dtype), out) if out_dtype != dtype else out


def _as_array(a, dtype):
    return a if isinstance(a, jax.Array) and a.dtype == dtype else jnp.asarray(a, dtype)


def _shard(mesh, batch):
    """Split the arrays of ``batch`` whose leading axis is the batch (the first leaf's) over the
    mesh's ``'data'`` axis, padded to a multiple of its size; replicate the rest."""
    from jaxsample import parallel

    leaves, treedef = jax.tree_util.tree_flatten(batch)
    size = leaves[0].shape[0]
    batched = [jnp.ndim(a) >= 1 and a.shape[0] == size for a in leaves]
    padded, _ = parallel.pad_batch([a for a, b in zip(leaves, batched) if b], parallel.num_shards(mesh))
    sharded = iter(parallel.shard_batch(padded, mesh))
    replicated = iter(parallel.replicate([a for a, b in zip(leaves, batched) if not b], mesh))
    leaves = [next(sharded) if b else next(replicated) for b in batched]
    return jax.tree_util.tree_unflatten(treedef, leaves), size


def _raise_model(model):
    raise ValueError(f"model must be a jaxsample.Model, got {type(model).__name__}")


def _ends_at_zero(path, ts) -> bool:
    """Whether concrete ``ts`` ends where the path's sigma is exactly 0 (False for a traced grid)."""
    try:
        return float(np.asarray(path.sigma(ts[-1]))) == 0.0
    except Exception:  # traced
        return False


#: ``jax.jit``-compiled samplers, one per static structure of (model, solver, cond) and flags.
_JITTED: dict = {}
_JITTED_MAX = 256


def _run(model, solver, ts, noise, keys, cond, flags):
    """``_sample`` compiled by a ``jax.jit`` cached per static structure: the array leaves of
    ``(model, solver, cond)`` are its arguments; the tree structure and the other leaves (Python
    scalars, functions) are its cache key. The semantics of ``eqx.filter_jit`` (non-array leaves
    static) at a fraction of its per-call cost, which dominates small-batch calls.

    Called outside any trace, the NaN check runs on the host: the program returns whether every
    sample is finite and this raises. (A host callback in the program, ``eqx.error_if``, would keep
    JAX's persistent compilation cache from storing it; traced by the caller's own ``jit``, the
    check stays in the graph.)"""
    leaves, treedef = jax.tree_util.tree_flatten((model, solver, cond))
    traced = any(isinstance(a, jax.core.Tracer) for a in (*leaves, ts, noise, *jax.tree_util.tree_leaves(keys)))
    if traced:
        return _compiled(leaves, treedef, flags)(ts, noise, keys)
    host = (*flags[:2], "host", *flags[3:]) if flags[2] else flags
    try:  # as eqx.filter_jit: wait for the result, so that a solver's eqx.error_if raises here
        out = _compiled(leaves, treedef, host)(ts, noise, keys)
        if any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(out)):
            # under the caller's trace with only closed-over inputs: the check goes in the graph
            return _compiled(leaves, treedef, flags)(ts, noise, keys)
        out = jax.block_until_ready(out)
    except jax.errors.JaxRuntimeError as err:
        message = str(err)
        if "_EquinoxRuntimeError: " not in message:
            raise
        message = message.split("_EquinoxRuntimeError: ", 1)[1].split("\n\n", 1)[0].strip()
        raise eqx.EquinoxRuntimeError(message) from None
    if host[2] == "host":
        out, finite = out
        if not bool(finite):
            raise eqx.EquinoxRuntimeError(_non_finite_message(solver))
    return out


def _compiled(leaves, treedef, flags):
    """``f(ts, noise, keys)``: ``_sample_impl`` on the (model, solver, cond) of ``leaves``, from the
    cache of compiled samplers (or ``eqx.filter_jit`` where a static leaf cannot be hashed)."""
    dynamic = tuple(eqx.is_array(leaf) for leaf in leaves)
    static = tuple(None if d else leaf for leaf, d in zip(leaves, dynamic))
    arrays = [leaf for leaf, d in zip(leaves, dynamic) if d]
    cache_key = (treedef, dynamic, static, flags)
    try:
        fn = _JITTED.get(cache_key)
    except Exception:  # an unhashable (or array-valued ==) static leaf: eqx.filter_jit handles it
        model, solver, cond = jax.tree_util.tree_unflatten(treedef, leaves)
        return lambda ts, noise, keys: _sample(model, solver, ts, noise, keys, cond, *flags)
    if fn is None:
        def run(arrays, ts, noise, keys):
            arrays = iter(arrays)
            full = [next(arrays) if d else leaf for leaf, d in zip(static, dynamic)]
            model, solver, cond = jax.tree_util.tree_unflatten(treedef, full)
            return _sample_impl(model, solver, ts, noise, keys, cond, *flags)

        fn = jax.jit(run)
        if len(_JITTED) >= _JITTED_MAX:
            _JITTED.pop(next(iter(_JITTED)))
        _JITTED[cache_key] = fn
    return lambda ts, noise, keys: fn(arrays, ts, noise, keys)


def _non_finite_message(solver) -> str:
    return (f"sample: {type(solver).__name__} produced NaN or inf samples (is the model finite on the whole "
            f"grid? e.g. an eps or x0 model divides by alpha or sigma; on a grid that ends at sigma = 0, pass "
            f"final_x0=True)")


def _sample_impl(model, solver, ts, noise, keys, cond, return_trajectory, checkpoint, check_finite, final_x0=False):
    x = model.path.prior_scale(ts[0]) * noise
    state = solver.init(model, ts, x, cond)

    def body(state, i):
        step_keys = None if keys is None else jax.vmap(jax.random.fold_in, (0, None))(keys, i)
        state = solver.step(model, ts, i, state, cond, step_keys)
        return state, state.x if return_trajectory else None

    if checkpoint:
        body = jax.checkpoint(body)
    state, traj = jax.lax.scan(body, state, jnp.arange(ts.shape[0] - 1))
    out = state.x
    if final_x0:  # the step to sigma = 0: the model's x0 prediction at the last time
        out = model.x0(out, ts[-1], **cond).astype(out.dtype)
        if return_trajectory:
            traj = jnp.concatenate([traj, out[None]], axis=0)
    finite = None
    if check_finite == "host":  # returned, for the caller to raise (see _run)
        finite = jnp.all(jnp.isfinite(out))
    elif check_finite:
        # The check is tied to a scalar, not to ``out``: error_if on a sharded array would
        # gather it onto every device.
        zero = eqx.error_if(jnp.zeros((), out.dtype), ~jnp.all(jnp.isfinite(out)), _non_finite_message(solver))
        out = out + zero
    result = (out, jnp.concatenate([x[None], traj], axis=0)) if return_trajectory else out
    return result if finite is None else (result, finite)


_sample = eqx.filter_jit(_sample_impl)

_DIFFRAX_SOLVERS = {"dopri8": diffrax.Dopri8, "dopri5": diffrax.Dopri5, "tsit5": diffrax.Tsit5}


def reference_sample(model: Model, noise, *, t_start=None, t_end=None, cond: Optional[dict] = None,
                     solver: str = "dopri8", rtol: float = 1e-7, atol: float = 1e-7,
                     save_ts=None, max_steps: int = 100_000, mesh=None):
    """Ground truth: the probability-flow ODE solved by an adaptive diffrax solver.

    Each sample is solved on its own (vmapped), so the answer does not depend on the
    batch it is in. Runs in float64 when the caller has enabled x64 and passes
    float64 noise; the dtype rule is :func:`sample`'s.

    Args:
        model: the model; integrates ``dx/dt = model.velocity(x, t)``.
        noise: standard-normal noise with a batch axis; ``x(t_start) = sigma(t_start) * noise``.
        t_start, t_end: default to the path's ``t_max`` and ``t_min``.
        solver: 'dopri8' (default), 'dopri5' or 'tsit5'.
        rtol, atol: tolerances of the PID step-size controller.
        save_ts: optional decreasing times at which to return the solution as well;
            then returns an array of shape ``(len(save_ts), *noise.shape)``.
        max_steps: step budget per sample; exceeding it raises.
        mesh: split the batch over the ``'data'`` axis of this mesh, as in :func:`sample`.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(js.RectifiedFlow(), "velocity")
        >>> noise = js.initial_noise(jax.random.key(1), (8, 2))
        >>> reference = js.reference_sample(model, noise)
        >>> x = js.sample(model, js.rk4(), js.uniform(model.path, 8), noise)
        >>> bool(js.psnr(x, reference) > 50.0)                  # dB: RK4's error is small
        True
    """
    cond = {} if cond is None else dict(cond)
    path = model.path if isinstance(model, Model) else _raise_model(model)
    t_start = path.t_max if t_start is None else float(t_start)
    t_end = path.t_min if t_end is None else float(t_end)
    check_grid(path, np.array([t_start, t_end]), "[t_start, t_end]")
    _check_model_and_noise(model, noise, None, cond)
    if solver not in _DIFFRAX_SOLVERS:
        raise ValueError(f"solver must be one of {sorted(_DIFFRAX_SOLVERS)}, got {solver!r}")
    out_dtype, dtype = noise.dtype, solve_dtype(noise.dtype)
    noise = jnp.asarray(noise, dtype)
    if save_ts is not None:
        check_grid(path, save_ts, "save_ts")
        save_ts = jnp.asarray(save_ts, dtype)
    if mesh is None:
        out = _reference(model, noise, t_start, t_end, cond, solver, rtol, atol, save_ts, max_steps)
    else:
        (noise, cond), size = _shard(mesh, (noise, cond))
        out = _reference(model, noise, t_start, t_end, cond, solver, rtol, atol, save_ts, max_steps)
        if noise.shape[0] != size:
            out = out[:size] if save_ts is None else out[:, :size]
    return out.astype(out_dtype)


@eqx.filter_jit
def _reference(model, noise, t_start, t_end, cond, solver, rtol, atol, save_ts, max_steps):
    term = diffrax.ODETerm(ProbabilityFlow(model))
    dtype = noise.dtype
    t0, t1 = jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype)
    saveat = diffrax.SaveAt(t1=True) if save_ts is None else diffrax.SaveAt(ts=save_ts)

    def solve_one(n, c):
        y0 = model.path.prior_scale(t0) * n[None]
        sol = diffrax.diffeqsolve(
            term, _DIFFRAX_SOLVERS[solver](), t0, t1, dt0=(t1 - t0) / 64, y0=y0, args=c,
            saveat=saveat, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps)
        return sol.ys[:, 0]

    cond_axes = jax.tree_util.tree_map(lambda _: 0, cond)
    ys = jax.vmap(solve_one, in_axes=(0, cond_axes))(noise, cond)  # (batch, n_save, ...)
    ys = jnp.moveaxis(ys, 1, 0)
    return ys[-1] if save_ts is None else ys


def count_model_calls(model: Model, solver: AbstractSolver, ts, noise, *, key=None, cond=None) -> int:
    """Run ``sample`` and count the model evaluations actually executed (at run time).

    Each call of the model's function fires a host callback, so branches not taken
    under ``lax.cond`` are not counted. For tests and reports; it is slow.

    Example:
        >>> import jax
        >>> import jaxsample as js
        >>> gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
        >>> model = gmm.model(js.RectifiedFlow(), "velocity")
        >>> noise = js.initial_noise(jax.random.key(1), (4, 2))
        >>> js.count_model_calls(model, js.heun(), js.uniform(model.path, 3), noise)   # 2 calls a step
        6
    """
    counter = {"n": 0}

    def bump():
        counter["n"] += 1

    def counted(x, t, **c):
        jax.debug.callback(bump, ordered=True)
        return model(x, t, **c)

    counting = Model(jax.tree_util.Partial(counted), model.path, model.prediction)
    out = sample(counting, solver, ts, noise, key=key, cond=cond)
    jax.block_until_ready(out)
    jax.effects_barrier()
    return counter["n"]
