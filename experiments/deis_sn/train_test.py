"""The DEIS-SN study end to end on a tiny Gaussian mixture (4-d, 2 components, NFE 6)."""

import json
import math

import numpy as np

from experiments.deis_sn import train
from experiments.deis_sn.configs import gmm
from jaxsample.solvers import ScoreNormStats, load_solver


def _config(**overrides):
    c = gmm.get_config()
    c.dim, c.num_components = 4, 2
    c.calibration_samples, c.calibration_batch_size, c.calibration_steps = 64, 64, 50
    c.nfes, c.orders, c.kinds, c.grids = (6,), (2,), ("tab",), ("logsnr",)
    c.dpm_solver = False
    c.num_samples, c.reference_rtol, c.mark_steps = 64, 1e-5, 6
    c.progress = False
    c.update(overrides)
    return c


def test_deis_sn_study_scores_both_solvers_against_the_same_reference(tmp_path):
    config = _config()
    rows = train.train_and_evaluate(config, str(tmp_path))
    results = json.load(open(tmp_path / "results.json"))
    assert results["rows"] == rows
    (row,) = rows
    assert (row["solver"], row["order"], row["grid"], row["nfe"], row["steps"]) == ("deis_tab", 2, "logsnr", 6, 6)
    for key in ("base_psnr_db", "sn_psnr_db", "base_loglik", "sn_loglik", "max_step_dlog_r"):
        assert math.isfinite(row[key]), key
    assert row["gain_psnr_db"] == row["sn_psnr_db"] - row["base_psnr_db"]
    # The exact ODE transports noise to data: its samples are as likely as exact data samples.
    assert abs(results["reference_loglik"] - results["data_loglik"]) < 1.0, results
    assert max(row["base_loglik"], row["sn_loglik"]) < results["reference_loglik"]  # 6 steps are not exact
    stats = load_solver(str(tmp_path / "r_stats.npz"), expect=ScoreNormStats)
    np.testing.assert_allclose(np.asarray(stats.values)[-1], results["statistic"]["values"][-1], rtol=1e-6)
    assert "DEIS -> DEIS-SN" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "r_of_t.png").stat().st_size > 1000

    # Nothing is random beyond the seeds: a second run gives the same table.
    again = train.train_and_evaluate(config, str(tmp_path))
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in again] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
