"""bench/league.py, cut down: it writes its JSON, table and plot, and its rows are the methods'
own numbers (the shipped BNS solver at NFE 4 scores what it scores directly)."""

import json

import jax
import jax.numpy as jnp
import pytest

import jaxsample as js
from tests.helpers import load_script


def _league():
    return load_script("bench/league.py")


def test_league_writes_its_tables_and_scores_bns_as_it_is(tmp_path):
    league = _league()
    out = tmp_path / "league.json"
    league.main(["--teacher", "gmm_vp_cosine", "--out", str(out), "--nfes", "4", "--samples", "32",
                 "--methods", "bns", "unic", "--grids", "logsnr"])
    rows = {r["method"]: r for r in json.load(open(out))["rows"]}
    assert set(rows) == {"bns", "unic"} and all(r["nfe"] == 4 for r in rows.values())
    assert "| bns |" in (tmp_path / "league.md").read_text() and (tmp_path / "league.png").stat().st_size > 0
    # the BNS row is the shipped solver's PSNR against the exact solution of the same noises
    task = js.tasks.load_task("gmm_vp_cosine")
    noise = js.initial_noise(jax.random.key(2024), (32, *task.sample_shape))
    target = js.reference_sample(task.model, noise, rtol=1e-6, atol=1e-6, **task.interval)
    solver = js.distill.bns.shipped("gmm_vp_cosine", nfes=[4])[4]
    x = js.sample(task.model, solver, jnp.asarray(solver.times), noise)
    assert rows["bns"]["psnr_db"] == pytest.approx(task.psnr(x, target), abs=1e-3)


def test_league_reads_the_best_catch_up_student_per_nfe(tmp_path):
    """The catch_up rows are the study's own numbers (best CUD variant by PSNR at each NFE, its cost);
    results of another teacher are refused, not mixed in."""
    league = _league()

    def row(method, psnr, fd, evals):
        return {"name": method, "method": method, "num_steps": 400, "batch_size": 64, "model_evals": evals,
                "train_seconds": 10.0, "reference": {"4": {"psnr_db": psnr, "fd": fd}}}

    res = {"teacher": "fashion_flow", "rows": [row("flow_matching", 40.0, 1.0, 1), row("rk12", 25.0, 30.0, 2),
                                                row("rk23", 26.5, 35.0, 3)]}
    path = tmp_path / "cu.json"
    path.write_text(json.dumps(res))
    out = tmp_path / "league.json"
    league.main(["--teacher", "fashion_flow", "--out", str(out), "--nfes", "4", "8", "--methods", "catch_up",
                 "--catch-up-results", str(path)])
    rows = json.load(open(out))["rows"]
    assert [(r["nfe"], r["psnr_db"], r["score"], r["cost_evals"]) for r in rows] == [(4, 26.5, 35.0, 3)]
    assert "rk23" in rows[0]["detail"]
    # --merge keeps the rows of the NFEs this run does not redo
    league.main(["--teacher", "fashion_flow", "--out", str(out), "--nfes", "8", "--methods", "catch_up",
                 "--catch-up-results", str(path), "--merge"])
    assert [(r["method"], r["nfe"]) for r in json.load(open(out))["rows"]] == [("catch_up", 4)]
    path.write_text(json.dumps({**res, "teacher": "digits_flow"}))
    league.main(["--teacher", "fashion_flow", "--out", str(out), "--nfes", "4", "--methods", "catch_up",
                 "--catch-up-results", str(path)])
    assert json.load(open(out))["rows"][0]["detail"].startswith("failed: ValueError")


def test_fresh_noise_frechet_distance_is_the_chosen_samplers_on_new_noises(tmp_path):
    """--fd-samples scores the row's own sampler (here the shipped BNS solver) on fresh noises (seed 4096),
    not the ground truth's 256."""
    league = _league()
    out = tmp_path / "league.json"
    league.main(["--teacher", "fashion_vp", "--out", str(out), "--nfes", "4", "--methods", "bns",
                 "--fd-samples", "256"])
    row = json.load(open(out))["rows"][0]
    task = js.tasks.load_task("fashion_vp")
    solver = js.distill.bns.shipped("fashion_vp", nfes=[4])[4]
    x = js.sample(task.model, solver, jnp.asarray(solver.times), js.initial_noise(jax.random.key(4096), (256, 28, 28, 1)))
    assert row["fd_fresh"] == pytest.approx(task.frechet_distance(x), rel=1e-4)
    assert row["fd_fresh"] != pytest.approx(row["score"], rel=1e-3)  # other noises, another number
    assert "fresh noises" in (tmp_path / "league.md").read_text()
