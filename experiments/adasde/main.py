"""Distil AdaSDE at NFE 3, 5, 7, 9 and compare it with gamma = 0, BNS and the best classical solver.

    python experiments/adasde/main.py --config experiments/adasde/configs/gmm.py --workdir /tmp/adasde_gmm
    python experiments/adasde/main.py --config experiments/adasde/configs/digits.py --workdir /tmp/adasde_digits

Writes DIR/results.json (one row per NFE), DIR/summary.md (tables of Frechet distance, and for the
mixture exact log-likelihood and PSNR against the ODE solution) and the learned solvers
DIR/<method>_nfe{N}.npz. Override any config field with --config.FIELD=VALUE.
"""

from experiments.adasde import train
from jaxsample import experiment

if __name__ == "__main__":
    experiment.main(train.train_and_evaluate)
