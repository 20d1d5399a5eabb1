"""Train, evaluate and export the shipped teachers of jaxsample.teachers (see train.py).

    python experiments/teachers/main.py --config experiments/teachers/configs/digits_flow.py \
        --workdir /tmp/teachers/digits_flow --config.export_dir=jaxsample/assets

Configs: digits_classifier.py (train this one first: the digits teachers are evaluated in its
features), digits_flow.py, digits_vp.py, checkerboard_flow.py. Each shipped teacher's card records
the command that trained it.
"""

from experiments.teachers import train
from jaxsample import experiment

if __name__ == "__main__":
    experiment.main(train.train_and_evaluate, workdir_help="Directory for checkpoints, weights, card and figures.")
