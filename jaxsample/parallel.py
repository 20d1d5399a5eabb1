"""Devices, meshes and hosts: data parallelism on JAX's own SPMD machinery.

Everything jaxsample runs in parallel is split along one mesh axis, ``'data'``, over the
leading (batch) axis of its inputs; parameters and solver coefficients are replicated. jit's
sharding propagation (GSPMD) then partitions the computation; there is no per-device code.

Answers do not depend on the device count, because randomness never depends on the device:
sample ``k`` draws its noise from ``fold_in(key, k)`` (:func:`jaxsample.sampling.sample_keys`)
and a training example ``i`` from ``fold_in(step_key, i)`` (:func:`jaxsample.objectives.example_keys`).

Multi-host (a TPU pod slice, several GPU hosts): call :func:`initialize` once at start-up (the
experiment scripts do, from their ``--coordinator_address`` / ``--num_processes`` /
``--process_id`` flags, the ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID`` environment, or the TPU/SLURM auto-detection of
``jax.distributed.initialize``). Then:

- :func:`shard_batch` builds a global array from either the full global batch present on every
  host (deterministic in-memory pipelines such as :class:`jaxsample.data.ArrayBatcher`) or each
  host's own rows (``process_local=True``; see :func:`process_rows` and
  :func:`jaxsample.data.image_batches`);
- :func:`replicate` places parameters on every device of every host;
- :func:`gather` brings a sharded result back to every host as a NumPy array;
- :func:`is_main_process` gates logging, progress bars and file writes (orbax checkpoints are
  written collectively by every process).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxsample import parallel
    >>> mesh = parallel.make_mesh(1)
    >>> x = parallel.shard_batch({"x": jnp.ones((4, 2))}, mesh)["x"]
    >>> x.shape, parallel.is_main_process()
    ((4, 2), True)
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "make_mesh",
    "auto_mesh",
    "data_sharding",
    "num_shards",
    "shard_batch",
    "replicate",
    "pad_batch",
    "gather",
    "process_rows",
    "local_rows",
    "is_main_process",
    "initialize",
    "define_flags",
    "initialize_from_flags",
]

DATA = "data"


def make_mesh(num_devices: Optional[int] = None, devices=None):
    """A 1-D mesh with axis ``'data'`` over ``devices`` (default: the first ``num_devices`` of
    ``jax.devices()``, all hosts' devices included, or all of them)."""
    if devices is None:
        all_devices = jax.devices()
        if num_devices is None:
            num_devices = len(all_devices)
        if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) \
                or not 1 <= num_devices <= len(all_devices):
            raise ValueError(f"num_devices must be an integer in [1, {len(all_devices)}], got {num_devices!r}")
        devices = all_devices[:num_devices]
    devices = list(devices)
    # Auto axes: jit's sharding propagation (GSPMD) partitions the computation.
    return jax.make_mesh((len(devices),), (DATA,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def auto_mesh(num_devices: int = 0):
    """The mesh an experiment runs on: ``num_devices`` devices, or with 0 every device of every
    host on an accelerator backend and a single device on the CPU backend (host "devices" made
    with ``--xla_force_host_platform_device_count`` share the same cores: no speed-up, and on an
    oversubscribed machine their collectives can time out). Returns None for a single device.
    """
    if isinstance(num_devices, bool) or not isinstance(num_devices, (int, np.integer)) or num_devices < 0:
        raise ValueError(f"num_devices must be a non-negative integer (0: automatic), got {num_devices!r}")
    if num_devices == 0:
        num_devices = 1 if jax.default_backend() == "cpu" and jax.process_count() == 1 else jax.device_count()
    return make_mesh(num_devices) if num_devices > 1 else None


def _check_mesh(mesh):
    if not isinstance(mesh, jax.sharding.Mesh) or DATA not in mesh.axis_names:
        raise ValueError(f"mesh must be a jax.sharding.Mesh with a 'data' axis (see make_mesh), got {mesh!r}")


def data_sharding(mesh, ndim: int = 1, axis: int = 0) -> NamedSharding:
    """Sharding that splits dimension ``axis`` of an ``ndim``-d array over ``'data'``."""
    _check_mesh(mesh)
    spec = [None] * ndim
    spec[axis] = DATA
    return NamedSharding(mesh, P(*spec))


def num_shards(mesh) -> int:
    """The number of devices on the ``'data'`` axis of ``mesh`` (checking that it is a mesh)."""
    _check_mesh(mesh)
    return int(mesh.shape[DATA])


def _is_key(a) -> bool:
    return isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def _put(a, sharding: NamedSharding):
    """``device_put`` that also works across hosts: every host holds the same full ``a``."""
    if _is_key(a) and jax.process_count() > 1:  # typed PRNG keys travel as their raw data
        data = jax.random.key_data(a)
        spec = tuple(sharding.spec) + (None,) * (data.ndim - len(sharding.spec))
        data = _put(data, NamedSharding(sharding.mesh, P(*spec)))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
    if jax.process_count() == 1:
        return jax.device_put(a, sharding)
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        return jax.device_put(a, sharding)  # already global: a resharding
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])


def shard_batch(batch, mesh, *, process_local: bool = False):
    """Put every array of ``batch`` on ``mesh``, split along its leading axis over ``'data'``.

    Args:
        batch: a pytree of arrays sharing a leading batch axis.
        mesh: a mesh with a ``'data'`` axis.
        process_local: False: every host passes the same full global batch (each keeps its rows).
            True: each host passes only its own rows (:func:`process_rows` of the global batch),
            and the global batch is their concatenation in process order.

    Raises:
        ValueError: if the global batch size is not divisible by the number of devices on
            ``'data'`` (use :func:`pad_batch` first).
    """
    _check_mesh(mesh)
    n = num_shards(mesh)

    def put(a):
        a = a if isinstance(a, (np.ndarray, jax.Array)) else np.asarray(a)
        if a.ndim == 0:
            raise ValueError("every array of batch must have a leading batch axis, got a scalar")
        sharding = data_sharding(mesh, a.ndim)
        if process_local and jax.process_count() > 1:
            global_shape = (a.shape[0] * jax.process_count(),) + tuple(a.shape[1:])
            if global_shape[0] % n:
                raise ValueError(f"batch_size (global leading axis {global_shape[0]}) must be divisible by "
                                 f"the number of devices on the mesh's 'data' axis ({n})")
            return jax.make_array_from_process_local_data(sharding, np.asarray(a), global_shape)
        if a.shape[0] % n:
            raise ValueError(f"batch_size (leading axis {a.shape[0]}) must be divisible by the number of "
                             f"devices on the mesh's 'data' axis ({n}); pad_batch pads it")
        return _put(a, sharding)

    return jax.tree_util.tree_map(put, batch)


def replicate(tree, mesh):
    """Copy every array of ``tree`` (parameters, a :class:`~jaxsample.train.TrainState`) to every
    device of ``mesh``."""
    _check_mesh(mesh)
    sharding = NamedSharding(mesh, P())
    return jax.tree_util.tree_map(lambda a: _put(a, sharding), tree)


def pad_batch(tree, multiple: int):
    """Pad the leading axis of every array in ``tree`` to a multiple of ``multiple`` by repeating
    the first row; returns ``(padded_tree, original_size)``. Rows are independent in everything
    jaxsample shards, so the padding rows are simply dropped afterwards."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return tree, 0
    size = leaves[0].shape[0]
    pad = (-size) % multiple

    def pad_one(a):
        if a.shape[0] != size:
            raise ValueError(f"all arrays must share their leading (batch) size {size}, got shape {a.shape}")
        if not pad:
            return a
        return jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)], axis=0)

    return jax.tree_util.tree_map(pad_one, tree), size


def gather(x) -> np.ndarray:
    """A (possibly sharded, possibly multi-host) array as a NumPy array on every host."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def process_rows(batch_size: int, process_index: Optional[int] = None,
                 process_count: Optional[int] = None) -> slice:
    """The rows of a global batch of ``batch_size`` that host ``process_index`` reads.

    Hosts read contiguous, equal slices in process order, matching how :func:`shard_batch`
    (``process_local=True``) assembles the global batch, so a multi-host run sees exactly the
    batches of a single-host run.
    """
    index = jax.process_index() if process_index is None else int(process_index)
    count = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= index < count:
        raise ValueError(f"process_index must be in [0, {count}), got {index}")
    if batch_size % count:
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({count})")
    per = batch_size // count
    return slice(index * per, (index + 1) * per)


class _LocalRows:
    def __init__(self, batch_fn):
        self.batch_fn = batch_fn
        self.process_local = True

    def __call__(self, step):
        batch = self.batch_fn(step)
        size = jax.tree_util.tree_leaves(batch)[0].shape[0]
        rows = process_rows(size)
        return jax.tree_util.tree_map(lambda a: a[rows], batch)


def local_rows(batch_fn):
    """Wrap ``batch_fn(step) -> global batch`` so that each host keeps only its own rows
    (:func:`process_rows`), marked ``process_local`` for :func:`jaxsample.train.fit`.

    For pipelines that can read just their rows (:func:`jaxsample.data.image_batches` does)
    this saves the host memory and bandwidth of the other hosts' examples; the batches the
    devices see are the same either way.
    """
    if not callable(batch_fn):
        raise ValueError("batch_fn must be callable as batch_fn(step) -> batch")
    return _LocalRows(batch_fn)


def is_main_process() -> bool:
    """True on process 0: the one that logs, shows progress bars and writes result files."""
    return jax.process_index() == 0


_ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
        "process_id": "JAX_PROCESS_ID"}


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, auto: bool = False) -> bool:
    """Start multi-host JAX (``jax.distributed.initialize``) when there is more than one host.

    Arguments left as None are read from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``. With none of them set, nothing happens unless ``auto=True``, which lets
    ``jax.distributed.initialize()`` detect the cluster itself (Cloud TPU pod slices, SLURM,
    Open MPI). Call it before any other JAX call. Returns whether it initialised.
    """
    coordinator_address = coordinator_address or os.environ.get(_ENV["coordinator_address"]) or None
    if num_processes is None and os.environ.get(_ENV["num_processes"]):
        num_processes = int(os.environ[_ENV["num_processes"]])
    if process_id is None and os.environ.get(_ENV["process_id"]):
        process_id = int(os.environ[_ENV["process_id"]])
    if coordinator_address is None and num_processes is None and process_id is None and not auto:
        return False
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
    if num_processes == 1 and not auto:
        return False
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    return True


def define_flags() -> None:
    """Define the multi-host flags of the experiment scripts (absl): ``--coordinator_address``,
    ``--num_processes``, ``--process_id`` and ``--distributed_auto``."""
    from absl import flags

    if "coordinator_address" in flags.FLAGS:
        return
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host runs); "
                        "default: $JAX_COORDINATOR_ADDRESS.")
    flags.DEFINE_integer("num_processes", None, "Number of hosts; default: $JAX_NUM_PROCESSES.")
    flags.DEFINE_integer("process_id", None, "This host's index; default: $JAX_PROCESS_ID.")
    flags.DEFINE_bool("distributed_auto", False, "Let jax.distributed.initialize() detect the cluster "
                      "(Cloud TPU pod slices, SLURM, Open MPI).")


def initialize_from_flags() -> bool:
    """:func:`initialize` from the flags of :func:`define_flags` (call it first thing in ``main``)."""
    from absl import flags

    f = flags.FLAGS
    return initialize(f.coordinator_address, f.num_processes, f.process_id, auto=f.distributed_auto)
