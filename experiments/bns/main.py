"""Distil BNS solvers and compare them with the best classical solver at each NFE.

    python experiments/bns/main.py --config experiments/bns/configs/gmm.py --workdir /tmp/bns_gmm

Writes DIR/results.json (one row per NFE: nfe, bns_psnr_db, best_baseline, best_baseline_psnr_db,
seconds, ...) and DIR/bns_nfe{N}.npz, the learned solvers. Override any config field with
--config.FIELD=VALUE (e.g. --config.num_steps=200).
"""

from absl import app, flags
from ml_collections import config_flags

from jaxsample import parallel
from jaxsample.distill import bns_experiment

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to the config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
flags.mark_flags_as_required(["config", "workdir"])
parallel.define_flags()  # --coordinator_address, --num_processes, --process_id, --distributed_auto


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    parallel.initialize_from_flags()  # multi-host: before any JAX computation
    bns_experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
