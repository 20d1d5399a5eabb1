"""DEIS against score-normalised DEIS (DEIS-SN) at several NFEs, orders and grids.

``main.py`` runs ``train.train_and_evaluate`` on a config of ``configs/``; ``train_test.py`` runs it on a tiny one.
"""
