"""The AdaSDE study end to end on a tiny Gaussian mixture (4-d, 2 components, NFE 3, 10 steps)."""

import json
import math

from experiments.adasde import train
from experiments.adasde.configs import gmm
from jaxsample.solvers import load_solver


def _config(**overrides):
    c = gmm.get_config()
    c.dim, c.num_components = 4, 2
    c.nfes = (3,)
    c.grids = ("logsnr",)
    c.teacher_kind = "dpm_solver_2"  # the paper's teacher: no adaptive solves per pair
    c.num_train, c.num_val, c.num_test, c.num_truth = 32, 32, 32, 256  # one shape: fewer compilations
    c.plugin_bases = ()
    c.num_steps, c.batch_size, c.eval_every = 10, 32, 5
    c.bns = False
    c.baselines, c.baseline_grids = ("euler", "ddim"), ("logsnr",)
    c.progress = False
    c.update(overrides)
    return c


def _without_timings(x):
    if isinstance(x, dict):
        return {k: _without_timings(v) for k, v in x.items() if "seconds" not in k}
    if isinstance(x, list):
        return [_without_timings(v) for v in x]
    return x


def test_adasde_study_scores_every_method_and_resumes(tmp_path):
    config = _config()
    train.train_and_evaluate(config, str(tmp_path))
    results = json.load(open(tmp_path / "results.json"))
    (row,) = results["rows"]
    assert row["nfe"] == 3 and row["adasde_steps"] == 2 and row["grid"] == "logsnr"
    for method in ("adasde", "adasde_gamma0", "dpm_solver_2_afs_init", "best_baseline", "teacher_fine_grid_scores"):
        assert all(math.isfinite(row[method][k]) for k in ("fd", "loglik", "psnr_db")), (method, row[method])
    for method in ("adasde", "adasde_gamma0"):  # best-iterate selection never loses on validation
        assert row[method]["best_val_loss"] <= row[method]["init_val_loss"], row[method]
        assert load_solver(str(tmp_path / f"{method}_nfe3.npz")).gamma.shape == (2,)
    assert row["adasde_gamma0"]["gamma"] == [0.0, 0.0] and row["adasde"]["gamma"][1] > 0
    assert row["best_baseline"]["solver"] in ("euler[logsnr]", "ddim[logsnr]")
    assert "| adasde |" in (tmp_path / "summary.md").read_text()

    # Re-running resumes the finished distillations: the same results.
    train.train_and_evaluate(config, str(tmp_path))
    again = json.load(open(tmp_path / "results.json"))
    assert _without_timings(again["rows"]) == _without_timings(results["rows"])


def test_official_recipe_study_selects_on_the_trained_solvers(tmp_path):
    """configs/official.py on the tiny mixture: every switch on, one solver trained per candidate
    (grid x gamma_max; grids for gamma = 0), the kept one the best on validation FD."""
    from experiments.adasde.configs import official

    config = official.official(_config())
    config.grids, config.gamma_maxes = ("time_uniform", "logsnr"), (0.01, 0.02)
    config.num_steps, config.batch_size = 3, 16
    train.train_and_evaluate(config, str(tmp_path))
    (row,) = json.load(open(tmp_path / "results.json"))["rows"]
    ada, zero = row["adasde"], row["adasde_gamma0"]
    assert sorted(ada["candidates_val_fd"]) == ["logsnr/gmax=0.01", "logsnr/gmax=0.02", "time_uniform/gmax=0.01",
                                                "time_uniform/gmax=0.02"]
    assert ada["val_fd"] == min(ada["candidates_val_fd"].values()) and row["grid"] == ada["grid"]
    assert sorted(zero["candidates_val_fd"]) == ["logsnr", "time_uniform"]
    assert zero["val_fd"] == min(zero["candidates_val_fd"].values())
    assert zero["gamma"] == [0.0, 0.0] and 2e-4 <= ada["gamma"][1] <= ada["gamma_max"]
    assert all(math.isfinite(row[m]["fd"]) for m in ("adasde", "adasde_gamma0", "best_baseline"))
