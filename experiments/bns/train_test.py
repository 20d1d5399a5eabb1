"""The BNS study end to end on a tiny Gaussian mixture (4-d, 2 components, NFE 4, 20 steps)."""

import json

import numpy as np
import pytest

from experiments.bns import train
from experiments.bns.configs import gmm_flow
from jaxsample import tasks
from jaxsample.distill import bns
from jaxsample.solvers import load_solver


def _config(**overrides):
    c = gmm_flow.get_config()
    c.dim, c.num_components = 4, 2
    c.nfes = (4,)
    c.num_train, c.num_val, c.num_test = 64, 64, 64
    c.num_steps, c.eval_every, c.batch_size = 20, 10, 32
    c.init = "euler"
    c.baselines, c.baseline_grids = ("euler", "heun", "dpm_solver_pp_2m"), ("uniform",)
    c.reference_rtol = 1e-5
    c.progress = False
    c.update(overrides)
    return c


def _without_timings(rows):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def test_bns_study_beats_its_initialisation_and_resumes(tmp_path):
    config = _config()
    train.train_and_evaluate(config, str(tmp_path))
    results = json.load(open(tmp_path / "results.json"))
    (row,) = results["rows"]
    assert row["nfe"] == 4 and row["init"] == "euler[quadratic]"
    for key in ("bns_psnr_db", "best_baseline_psnr_db", "init_val_psnr_db", "bns_val_psnr_db"):
        assert np.isfinite(row[key]), key
    # Best-iterate selection: never below the initialisation on validation; here well above it.
    assert row["bns_val_psnr_db"] >= row["init_val_psnr_db"] + 1.0, row
    assert results["pairs_generated"] == 3 * 64 and results["config"]["num_steps"] == 20

    # The saved solver is the one scored: its test PSNR is the row's.
    task = tasks.task_from_config(config)
    solver = load_solver(str(tmp_path / "bns_nfe4.npz"), model=task.model)
    test = train._cached_pairs(str(tmp_path / "pairs"), {**{k: config.get(k) for k in train._PAIR_KEYS},
                                                          "num": 64, "seed": 2}, lambda: pytest.fail("not cached"))
    assert bns.evaluate_psnr(task.model, solver, test) == pytest.approx(row["bns_psnr_db"], abs=1e-4)

    # A second run in the same workdir reads the pairs back and resumes the finished distillation.
    train.train_and_evaluate(config, str(tmp_path))
    again = json.load(open(tmp_path / "results.json"))
    assert again["pairs_generated"] == 0
    assert _without_timings(again["rows"]) == _without_timings(results["rows"])


def test_noise_scaled_bns_starts_from_the_best_baseline(tmp_path):
    """sigma0 = 5 (BNS's preconditioning for guided models): BNS starts from the exact embedding of
    the best baseline on the noise-scaled path, so its initial validation PSNR is the baseline's."""
    train.train_and_evaluate(_config(num_steps=2, eval_every=1, init="best_baseline", sigma0=5.0), str(tmp_path))
    (row,) = json.load(open(tmp_path / "results.json"))["rows"]
    assert abs(row["init_val_psnr_db"] - row["best_baseline_val_psnr_db"]) < 0.01, row
    assert row["init"] == row["best_baseline"]


def test_one_learning_rate_per_nfe(tmp_path):
    with pytest.raises(ValueError, match="one entry per NFE"):
        train.train_and_evaluate(_config(learning_rates=(1e-3, 2e-3)), str(tmp_path))
