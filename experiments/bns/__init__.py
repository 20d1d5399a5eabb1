"""Distil BNS solvers and compare them with the best classical solver at each NFE.

``main.py`` runs ``train.train_and_evaluate`` on a config of ``configs/``; ``train_test.py`` runs it on a tiny one.
"""
