"""DEIS against score-normalised DEIS (DEIS-SN) at several NFEs, orders and grids.

    python experiments/deis_sn/main.py --config experiments/deis_sn/configs/gmm.py --workdir /tmp/deis_sn_gmm
    python experiments/deis_sn/main.py --config experiments/deis_sn/configs/digits.py --workdir /tmp/deis_sn_digits

Writes DIR/results.json (one row per grid, NFE, solver and order: base_* and sn_* metrics),
DIR/results.md (the table), DIR/r_stats.npz (the calibrated statistic) and DIR/r_of_t.png.
Override any config field with --config.FIELD=VALUE (e.g. --config.num_samples=256).
"""

from experiments.deis_sn import train
from jaxsample import experiment

if __name__ == "__main__":
    experiment.main(train.train_and_evaluate)
