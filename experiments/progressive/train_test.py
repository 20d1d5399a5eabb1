"""The progressive-distillation study end to end on the shipped checkerboard teacher (4 -> 2 -> 1
DDIM steps, 3 optimizer steps a round)."""

import json
import math

import numpy as np
import pytest

from experiments.progressive import train
from experiments.progressive.configs import checkerboard_flow


def _config(**overrides):
    c = checkerboard_flow.get_config()
    c.start_steps, c.final_steps, c.full_steps = 4, 1, 8
    c.steps_per_round = (3, 3)
    c.batch_size, c.num_eval = 32, 128
    c.checkpoint_every, c.log_every = 3, 1
    c.update(overrides)
    return c


def _scores(rounds):
    """The rounds without wall times and restore bookkeeping."""
    skip = ("train_seconds", "fraction_of_teacher_training", "num_traces", "restored")
    return [{k: v for k, v in r.items() if k not in skip} for r in rounds]


@pytest.mark.serial
def test_progressive_study_scores_each_round_and_resumes(tmp_path):
    config = _config()
    train.train_and_evaluate(config, str(tmp_path))
    results = json.load(open(tmp_path / "results.json"))
    assert results["metric"] == "sliced_w2" and sorted(results["teacher_metric"]) == ["1", "2", "4", "8"]
    assert [r["student_steps"] for r in results["rounds"]] == [2, 1]
    for r in results["rounds"]:
        for key in ("student_metric", "teacher_same_steps_metric", "student_rmse_to_full",
                    "teacher_same_steps_rmse_to_full"):
            assert math.isfinite(r[key]) and r[key] >= 0, (key, r)
        assert r["teacher_start_steps_metric"] == results["teacher_metric"]["4"]
        assert np.load(tmp_path / f"student_{r['student_steps']}steps_samples.npy").shape == (64, 2)
    assert results["rounds"][0]["teacher_same_steps_rmse_to_full"] > 0  # 2 DDIM steps are not 8
    assert "| 1 |" in (tmp_path / "results.md").read_text()

    # Re-running restores the finished rounds and scores the same students.
    train.train_and_evaluate(config, str(tmp_path))
    again = json.load(open(tmp_path / "results.json"))
    assert all(r["restored"] for r in again["rounds"])
    assert _scores(again["rounds"]) == _scores(results["rounds"])
    assert again["teacher_metric"] == results["teacher_metric"]
