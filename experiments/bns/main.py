"""Distil BNS solvers and compare them with the best classical solver at each NFE.

    python experiments/bns/main.py --config experiments/bns/configs/gmm.py --workdir /tmp/bns_gmm

Writes DIR/results.json (one row per NFE: nfe, bns_psnr_db, best_baseline, best_baseline_psnr_db,
seconds, ...) and DIR/bns_nfe{N}.npz, the learned solvers. Override any config field with
--config.FIELD=VALUE (e.g. --config.num_steps=200).
"""

from experiments.bns import train
from jaxsample import experiment

if __name__ == "__main__":
    experiment.main(train.train_and_evaluate)
