"""The shared entry point of the studies (``experiments/<method>/main.py`` and ``jaxsample distill``).

Each study keeps ``train_and_evaluate(config, workdir)`` in ``experiments/<method>/train.py``;
its ``main.py`` is a few lines::

    from experiments.bns import train
    from jaxsample import experiment

    if __name__ == "__main__":
        experiment.main(train.train_and_evaluate)

and takes the same flags: ``--config FILE`` (an ml_collections config file; override any field
with ``--config.FIELD=VALUE``), ``--workdir DIR`` (checkpoints and results; re-running resumes),
and the multi-host flags of :func:`jaxsample.parallel.define_flags` (``--coordinator_address``,
``--num_processes``, ``--process_id``, ``--distributed_auto``), with which it calls
``jax.distributed.initialize`` before any JAX computation. ``jaxsample distill METHOD`` parses
the same options with argparse (:func:`add_multihost_arguments`) and calls the same :func:`run`,
which checks the fields the studies share (:func:`validate_config`) before any work.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

__all__ = ["main", "run", "validate_config", "ConfigError", "add_multihost_arguments", "enable_compilation_cache",
           "COMPILATION_CACHE_ENV"]

#: The environment variable that sets (or, with ``off``, disables) the persistent compilation cache.
COMPILATION_CACHE_ENV = "JAXSAMPLE_COMPILATION_CACHE"

#: Fields that name a time grid (:data:`jaxsample.grids.GRIDS`), alone or as a tuple.
_GRID_FIELDS = ("grid", "init_grid", "bns_init_grid", "plugin_grid", "calibration_grid")
_GRID_TUPLE_FIELDS = ("grids", "baseline_grids")
#: Fields that must be positive integers, alone or as a non-empty tuple.
_POSITIVE_FIELDS = ("num_train", "num_val", "num_test", "num_eval", "num_samples", "batch_size",
                    "calibration_samples", "calibration_batch_size", "calibration_steps")
_POSITIVE_TUPLE_FIELDS = ("nfes",)


class ConfigError(ValueError):
    """A study config with a field out of range (raised by :func:`validate_config`)."""


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_tuple_of(ok):
    return lambda value: isinstance(value, (tuple, list)) and all(map(ok, value))


def validate_config(config) -> None:
    """Check the fields the studies share, whichever of them ``config`` has, so that a bad value
    fails before any work rather than deep inside a study: ``setting`` (a key of
    :data:`jaxsample.compare.BENCHMARK_SETTINGS`), the grid fields (names of
    :data:`jaxsample.grids.GRIDS`), ``nfes`` (a non-empty tuple of positive integers) and the
    sizes ``num_train``, ``num_val``, ``num_test``, ``batch_size``, ... (positive integers).

    Builds ``BENCHMARK_SETTINGS``, a JAX computation: call it after multi-host start-up (as
    :func:`run` does).

    Raises:
        ConfigError: naming the field (``config.FIELD``), what it must be, and its value.
    """
    from jaxsample import compare, grids

    def check(field, ok, expected):
        if field in config and not ok(config[field]):
            raise ConfigError(f"config.{field} must be {expected}, got {config[field]!r}")

    settings = sorted(compare.BENCHMARK_SETTINGS)
    check("setting", lambda v: v in settings, f"one of {settings}")
    names = sorted(grids.GRIDS)
    for field in _GRID_FIELDS:
        check(field, lambda v: v in names, f"one of {names}")
    for field in _GRID_TUPLE_FIELDS:
        check(field, _is_tuple_of(lambda g: g in names), f"a tuple of grid names from {names}")
    for field in _POSITIVE_FIELDS:
        check(field, _is_positive_int, "a positive integer")
    for field in _POSITIVE_TUPLE_FIELDS:
        check(field, lambda v: _is_tuple_of(_is_positive_int)(v) and len(v) > 0,
              "a non-empty tuple of positive integers")


def enable_compilation_cache(directory: Optional[str] = None, min_compile_seconds: float = 0.5) -> Optional[str]:
    """Turn on JAX's persistent compilation cache, so that a study or CLI run that is restarted (or
    re-tuned) loads its compiled programs from disk instead of compiling them again: on 2 CPU cores
    the baseline search of a study compiles for minutes.

    ``directory`` defaults to ``$JAXSAMPLE_COMPILATION_CACHE``, else ``~/.cache/jaxsample/xla``;
    ``off`` (or an empty string) leaves the cache off. Programs that compiled in under
    ``min_compile_seconds`` are not cached. Returns the directory in use, or None when off. The studies
    (:func:`run`) and the ``jaxsample`` command call it; call it yourself in your own scripts.

    Example:
        >>> import tempfile
        >>> from jaxsample import experiment
        >>> experiment.enable_compilation_cache("off") is None
        True
    """
    import jax

    if directory is None:
        directory = os.environ.get(COMPILATION_CACHE_ENV, os.path.join("~", ".cache", "jaxsample", "xla"))
    if directory in ("", "off"):
        return None
    directory = os.path.abspath(os.path.expanduser(directory))
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    return directory


def run(train_and_evaluate: Callable, config, workdir: str, *, coordinator_address: Optional[str] = None,
        num_processes: Optional[int] = None, process_id: Optional[int] = None, distributed_auto: bool = False):
    """Initialise multi-host JAX if asked (:func:`jaxsample.parallel.initialize`, before any JAX
    computation), turn on the persistent compilation cache (:func:`enable_compilation_cache`),
    check ``config`` (:func:`validate_config`), then return
    ``train_and_evaluate(config, workdir)``.

    Raises:
        ConfigError: from :func:`validate_config`, before the study starts.
    """
    from absl import logging

    from jaxsample import parallel

    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    parallel.initialize(coordinator_address, num_processes, process_id, auto=distributed_auto)
    enable_compilation_cache()
    validate_config(config)
    return train_and_evaluate(config, workdir)


def add_multihost_arguments(parser) -> None:
    """Add the multi-host options of :func:`jaxsample.parallel.define_flags` to an argparse parser
    (``--coordinator_address``, ``--num_processes``, ``--process_id``, ``--distributed_auto``)."""
    group = parser.add_argument_group("multi-host start-up (jax.distributed.initialize)")
    group.add_argument("--coordinator_address", "--coordinator-address", dest="coordinator_address",
                       help="host:port of process 0 (multi-host runs); default: $JAX_COORDINATOR_ADDRESS")
    group.add_argument("--num_processes", "--num-processes", dest="num_processes", type=int,
                       help="number of hosts; default: $JAX_NUM_PROCESSES")
    group.add_argument("--process_id", "--process-id", dest="process_id", type=int,
                       help="this host's index; default: $JAX_PROCESS_ID")
    group.add_argument("--distributed_auto", "--distributed-auto", dest="distributed_auto", action="store_true",
                       help="let jax.distributed.initialize() detect the cluster (Cloud TPU pod slices, SLURM, "
                            "Open MPI)")


def main(train_and_evaluate: Callable, *, workdir_help: str = "Directory for checkpoints and results.") -> None:
    """Define the flags, initialise multi-host JAX if asked, and run ``train_and_evaluate``."""
    from absl import app, flags
    from ml_collections import config_flags

    from jaxsample import parallel

    config_flags.DEFINE_config_file("config", None, "Path to the config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])
    parallel.define_flags()

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        f = flags.FLAGS
        try:
            run(train_and_evaluate, f.config, f.workdir, coordinator_address=f.coordinator_address,
                num_processes=f.num_processes, process_id=f.process_id, distributed_auto=f.distributed_auto)
        except ConfigError as e:
            raise app.UsageError(str(e)) from None

    app.run(_main)
