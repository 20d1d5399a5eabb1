"""The shared entry point of the experiment scripts (``experiments/<name>/main.py``).

Each script is two lines on top of a library function ``train_and_evaluate(config, workdir)``::

    from jaxsample import experiment
    from jaxsample.distill import bns_experiment

    if __name__ == "__main__":
        experiment.main(bns_experiment.train_and_evaluate)

and takes the same flags: ``--config FILE`` (an ml_collections config file; override any field
with ``--config.FIELD=VALUE``), ``--workdir DIR`` (checkpoints and results; re-running resumes),
and the multi-host flags of :func:`jaxsample.parallel.define_flags` (``--coordinator_address``,
``--num_processes``, ``--process_id``, ``--distributed_auto``), with which it calls
``jax.distributed.initialize`` before any JAX computation.
"""

from __future__ import annotations

from typing import Callable


def main(train_and_evaluate: Callable, *, workdir_help: str = "Directory for checkpoints and results.") -> None:
    """Define the flags, initialise multi-host JAX if asked, and run ``train_and_evaluate``."""
    from absl import app, flags, logging
    from ml_collections import config_flags

    from jaxsample import parallel

    config_flags.DEFINE_config_file("config", None, "Path to the config file.", lock_config=True)
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])
    parallel.define_flags()

    def run(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
        parallel.initialize_from_flags()  # multi-host: before any JAX computation
        train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)

    app.run(run)
