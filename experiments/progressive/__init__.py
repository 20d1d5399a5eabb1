"""Progressive distillation of a shipped teacher, round by round, down to few DDIM steps.

``main.py`` runs ``train.train_and_evaluate`` on a config of ``configs/``; ``train_test.py`` runs it on a tiny one.
"""
