"""Train, evaluate and export the shipped teachers of jaxsample.teachers (see train.py).

``main.py`` runs ``train.train_and_evaluate`` on a config of ``configs/``; ``train_test.py`` runs it on a tiny one.
"""
