"""The studies of jaxsample, one folder each in the flax-examples layout.

``experiments/<method>/main.py`` runs ``experiments/<method>/train.py``'s
``train_and_evaluate(config, workdir)`` on a config of ``experiments/<method>/configs/``::

    python experiments/bns/main.py --config experiments/bns/configs/gmm.py --workdir /tmp/bns
    python -m experiments.bns.main --config experiments/bns/configs/gmm.py --workdir /tmp/bns
    jaxsample distill bns --config experiments/bns/configs/gmm.py --workdir /tmp/bns

``train_test.py`` runs each study end to end on a tiny config.
"""
