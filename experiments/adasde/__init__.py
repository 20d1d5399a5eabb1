"""Distil AdaSDE at NFE 3, 5, 7, 9 and compare it with gamma = 0, BNS and the best classical solver.

``main.py`` runs ``train.train_and_evaluate`` on a config of ``configs/``; ``train_test.py`` runs it on a tiny one.
"""
