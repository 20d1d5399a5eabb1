"""Catch-up distillation (RK12 / RK23 / RK34) against plain flow matching at equal training steps.

    python experiments/catch_up/main.py --config experiments/catch_up/configs/checkerboard.py --workdir /tmp/cu_cb
    python experiments/catch_up/main.py --config experiments/catch_up/configs/digits.py --workdir /tmp/cu_digits

Writes DIR/results.json and DIR/results.md (one row per method: sliced Wasserstein or Frechet
distance at Euler 1, 2, 4, 8, 16 steps and Heun 15 NFE, training seconds, forward passes per
example) and DIR/<method>/ (orbax checkpoints, metrics.jsonl). Override any field with
--config.FIELD=VALUE (e.g. --config.num_steps=200). The configs' defaults are the scaled-down
runs of experiments/catch_up/results/; get_config('full') gives the full-size run.
"""

from absl import app, flags
from ml_collections import config_flags

from jaxsample.distill import catch_up_experiment

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to the config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    catch_up_experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
