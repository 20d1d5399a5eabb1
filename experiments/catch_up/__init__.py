"""Catch-up distillation (RK12 / RK23 / RK34) against plain flow matching at equal training steps.

``main.py`` runs ``train.train_and_evaluate`` on a config of ``configs/``; ``train_test.py`` runs it on a tiny one.
"""
