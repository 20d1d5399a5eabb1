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
