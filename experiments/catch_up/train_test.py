"""The catch-up study end to end on the 2-D checkerboard: CUD RK12 and its one-step stage on a small
MLP, 5 training steps each (flow matching, the same loop with one target, is left out for time)."""

import json
import math

import pytest
from experiments.catch_up import train
from experiments.catch_up.configs import checkerboard


def _config(**overrides):
    c = checkerboard.get_config()
    c.net = {"features": (32, 32), "time_embed_dim": 16}
    c.methods = ("rk12",)
    c.num_steps, c.batch_size, c.warmup_steps = 5, 64, 0
    c.num_eval, c.euler_steps, c.heun_nfe = 256, (2,), 3
    c.one_step_methods, c.one_step_steps, c.one_step_pairs, c.one_step_teacher_steps = ("rk12",), 3, 64, 4
    c.checkpoint_every, c.log_every = 5, 1
    c.update(overrides)
    return c


def _scores(rows):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


@pytest.mark.serial
def test_catch_up_study_scores_every_method_and_resumes(tmp_path):
    config = _config()
    train.train_and_evaluate(config, str(tmp_path))
    results = json.load(open(tmp_path / "results.json"))
    assert results["metric"] == "sliced_wasserstein" and math.isfinite(results["floor"]["real_sliced_wasserstein"])
    rows = results["rows"]
    assert [r["name"] for r in rows] == ["rk12", "rk12 + one-step stage"]
    assert [r["forward_passes"] for r in rows] == [2, 2] and rows[0]["num_steps"] == 5
    for r in rows:
        for key in ("euler_2", "heun_nfe3"):
            assert math.isfinite(r[key]) and r[key] > results["floor"]["real_sliced_wasserstein"], (key, r)
    assert all(r["train_seconds"] > 0 for r in rows)
    assert "| rk12 + one-step stage |" in (tmp_path / "results.md").read_text()

    # Re-running restores the trained networks (and their recorded training time).
    train.train_and_evaluate(config, str(tmp_path))
    again = json.load(open(tmp_path / "results.json"))
    assert _scores(again["rows"]) == _scores(rows)
    assert [r["train_seconds"] for r in again["rows"]] == [r["train_seconds"] for r in rows]


def test_training_cost_counts_the_backward_pass_twice_and_every_look_ahead():
    # flow matching: forward + backward (3); RK12 adds one look-ahead, RK23 three, RK34 five
    assert [train.model_evaluations(m, 10, 4) for m in ("flow_matching", "rk12", "rk23", "rk34")] == \
        [120, 160, 240, 320]


@pytest.mark.serial
def test_reference_scores_are_euler_on_the_shipped_ground_truth(tmp_path):
    """The study's ``reference`` scores of the untrained start (the teacher's weights in the catch-up
    wrapper) equal Euler with the shipped fashion_flow model on the ground truth's own noises, labels
    and interval, scored against its exact ODE solutions: the numbers the league reads."""
    import jax.numpy as jnp
    import ml_collections
    import numpy as np

    import jaxsample as js
    from jaxsample import demo, grids, tasks

    task = tasks.load_task("fashion_flow")
    start = train.nets.network_model(*train._network(
        ml_collections.ConfigDict({"net": None, "init": "teacher"}), task),
        train.catch_up.RectifiedFlow(), "velocity")
    ref = demo.reference("fashion_flow")
    got = train._evaluate_on_reference(start, task, ref, (2,))["2"]
    ts = grids.uniform(task.model.path, 2, t_start=float(ref["t_start"]), t_end=float(ref["t_end"]))
    x = js.sample(task.model, js.solvers.euler(), ts, jnp.asarray(ref["noise"]),
                  cond={"label": jnp.asarray(ref["label"])})
    assert got["psnr_db"] == pytest.approx(task.psnr(np.asarray(x), ref["target"]), abs=1e-3)
    assert got["fd"] == pytest.approx(task.frechet_distance(np.asarray(x)), rel=1e-4)
    assert 10 < got["psnr_db"] < 30  # two Euler steps: far from the exact solution, not garbage
