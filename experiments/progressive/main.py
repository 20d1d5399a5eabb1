"""Progressive distillation of a shipped teacher, round by round, down to few DDIM steps.

    python experiments/progressive/main.py --config experiments/progressive/configs/digits_vp.py --workdir /tmp/pd

Writes DIR/results.json and DIR/results.md (one row per round: student steps, the student's
metric (digits: Frechet distance) against the teacher's DDIM at the same and at its full step
count, RMSE to the teacher's full-step samples, round wall time against the teacher's training
time) and DIR/rounds/round{k}_{N}steps/ (orbax checkpoints; re-running resumes). Override any
config field with --config.FIELD=VALUE.
"""

from experiments.progressive import train
from jaxsample import experiment

if __name__ == "__main__":
    experiment.main(train.train_and_evaluate)
