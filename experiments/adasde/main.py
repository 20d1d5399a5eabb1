"""Distil AdaSDE at NFE 3, 5, 7, 9 and compare it with gamma = 0, BNS and the best classical solver.

    python experiments/adasde/main.py --config experiments/adasde/configs/gmm.py --workdir /tmp/adasde_gmm
    python experiments/adasde/main.py --config experiments/adasde/configs/digits.py --workdir /tmp/adasde_digits

Writes DIR/results.json (one row per NFE), DIR/summary.md (tables of Frechet distance, and for the
mixture exact log-likelihood and PSNR against the ODE solution) and the learned solvers
DIR/<method>_nfe{N}.npz. Override any config field with --config.FIELD=VALUE.
"""

from absl import app, flags
from ml_collections import config_flags

from jaxsample.distill import adasde_experiment

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to the config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    adasde_experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
