"""Progressive distillation of a shipped teacher, round by round, down to few DDIM steps.

    python experiments/progressive/main.py --config experiments/progressive/configs/digits_vp.py --workdir /tmp/pd

Writes DIR/results.json and DIR/results.md (one row per round: student steps, the student's
metric (digits: Frechet distance) against the teacher's DDIM at the same and at its full step
count, RMSE to the teacher's full-step samples, round wall time against the teacher's training
time) and DIR/rounds/round{k}_{N}steps/ (orbax checkpoints; re-running resumes). Override any
config field with --config.FIELD=VALUE.
"""

from absl import app, flags
from ml_collections import config_flags

from jaxsample.distill import progressive_experiment

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to the config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    progressive_experiment.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
