"""Shared test helpers."""

import importlib.util
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script(relative_path: str):
    """Import a script of the repository that is not in a package (e.g. ``bench/league.py``)."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fitted_order(steps, errors):
    """Slope of -log2(error) against log2(steps): the empirical convergence order."""
    return -np.polyfit(np.log2(np.asarray(steps, float)), np.log2(np.asarray(errors, float)), 1)[0]
