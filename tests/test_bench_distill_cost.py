"""bench/distill_cost.py counts model evaluations from the runs' recorded settings: checked on
small hand-made results whose counts are worked out by hand."""

import json

import pytest

from tests.helpers import load_script


def _module():
    return load_script("bench/distill_cost.py")


def _bns_results(ground_truth="fixed_grid"):
    config = {"teacher": "digits_vp", "ground_truth": ground_truth, "fixed_grid": {"steps": 64},
              "num_train": 10, "num_val": 6, "batch_size": 4, "num_steps": 30,
              "baselines": ["euler", "heun"], "baseline_grids": ["quadratic", "edm"]}
    row = {"nfe": 4, "bns_psnr_db": 30.0, "bns_fd": 40.0, "seconds": 12.0, "stopped_at": 20,
           "validation": [{"step": 0, "val_psnr_db": 25.0}, {"step": 10, "val_psnr_db": 29.0},
                          {"step": 20, "val_psnr_db": 28.0}]}
    return {"config": config, "rows": [row], "pairs_seconds": 3.0}


def _progressive_results():
    rounds = [{"round": 0, "student_steps": 8, "num_steps": 5, "train_seconds": 1.0, "student_psnr_db": 31.0,
               "student_metric": 45.0},
              {"round": 1, "student_steps": 4, "num_steps": 7, "train_seconds": 2.0, "student_psnr_db": 28.5,
               "student_metric": 50.0}]
    return {"teacher": "digits_vp", "config": {"batch_size": 3}, "rounds": rounds}


def test_counts_are_the_hand_counts(tmp_path):
    dc = _module()
    (tmp_path / "bns.json").write_text(json.dumps(_bns_results()))
    (tmp_path / "pd.json").write_text(json.dumps(_progressive_results()))
    out = tmp_path / "cost.json"
    dc.main(["--bns", str(tmp_path / "bns.json"), "--progressive", str(tmp_path / "pd.json"), "--out", str(out)])
    (row,) = json.load(open(out))["rows"]
    # pairs: (10 + 6) x 64 UniPC-3 calls; search: Euler (4 steps) and Heun (2 steps) on 2 grids, 6 pairs x 4 calls
    pairs, search = 16 * 64, 4 * 6 * 4
    # 20 steps trained x batch 4 x NFE 4 x 4 (forward, rematerialised forward, backward 2); 3 validation passes
    assert row["bns_pairs_model_evals"] == pairs and row["bns_search_model_evals"] == search
    assert row["bns_model_evals"] == pairs + search + 20 * 4 * 4 * 4 + 3 * 6 * 4
    # progressive to 4 steps: both rounds, (5 + 7) steps x batch 3 x 5
    assert row["progressive_model_evals"] == 12 * 3 * 5 and row["progressive_seconds"] == 3.0
    # the student's 28.5 dB is first reached by the evaluation at step 10
    assert row["bns_reach_step"] == 10
    assert row["bns_model_evals_to_reach"] == pairs + search + 10 * 4 * 4 * 4 + 2 * 6 * 4
    card_evals = 2500 * 128 * 3  # the shipped digits_vp teacher: 2500 steps at batch 128
    assert row["bns_fraction_of_teacher_evals"] == pytest.approx(row["bns_model_evals"] / card_evals)
    assert (tmp_path / "cost.md").read_text().startswith("# Distillation cost on `digits_vp`")


def test_adaptive_ground_truth_is_refused(tmp_path):
    dc = _module()
    (tmp_path / "bns.json").write_text(json.dumps(_bns_results("adaptive")))
    (tmp_path / "pd.json").write_text(json.dumps(_progressive_results()))
    with pytest.raises(ValueError, match="fixed-grid ground truth"):
        dc.main(["--bns", str(tmp_path / "bns.json"), "--progressive", str(tmp_path / "pd.json"),
                 "--out", str(tmp_path / "c.json")])
