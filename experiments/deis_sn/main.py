"""DEIS against score-normalised DEIS (DEIS-SN) at several NFEs, orders and grids.

    python experiments/deis_sn/main.py --config experiments/deis_sn/configs/gmm.py --workdir /tmp/deis_sn_gmm
    python experiments/deis_sn/main.py --config experiments/deis_sn/configs/digits.py --workdir /tmp/deis_sn_digits

Writes DIR/results.json (one row per grid, NFE, solver and order: base_* and sn_* metrics),
DIR/results.md (the table), DIR/r_stats.npz (the calibrated statistic) and DIR/r_of_t.png.
Override any config field with --config.FIELD=VALUE (e.g. --config.num_samples=256).
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

from jaxsample.distill import deis_sn_experiment

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to the config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    deis_sn_experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    with open(os.path.join(FLAGS.workdir, "results.json")) as f:
        table = deis_sn_experiment.markdown(json.load(f))
    with open(os.path.join(FLAGS.workdir, "results.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
