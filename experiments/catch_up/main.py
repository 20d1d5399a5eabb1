"""Catch-up distillation (RK12 / RK23 / RK34) against plain flow matching at equal training steps.

    python experiments/catch_up/main.py --config experiments/catch_up/configs/checkerboard.py --workdir /tmp/cu_cb
    python experiments/catch_up/main.py --config experiments/catch_up/configs/digits.py --workdir /tmp/cu_digits

Writes DIR/results.json and DIR/results.md (one row per method: sliced Wasserstein or Frechet
distance at Euler 1, 2, 4, 8, 16 steps and Heun 15 NFE, training seconds, forward passes per
example) and DIR/<method>/ (orbax checkpoints, metrics.jsonl). Override any field with
--config.FIELD=VALUE (e.g. --config.num_steps=200). The configs' defaults are the scaled-down
runs of experiments/catch_up/results/; ``--config=...configs/digits.py:full`` gives the full-size run.
"""

from experiments.catch_up import train
from jaxsample import experiment

if __name__ == "__main__":
    experiment.main(train.train_and_evaluate)
