"""``jaxsample bench peers`` (bench/peers.py) in its quick mode, cut down: it writes its JSON, table and
chart, the JAX and torch networks agree, and every compared sampler gives jaxsample's samples (no
timing is asserted: timing belongs in bench/)."""

import json

import pytest

from jaxsample import cli

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("scipy")

pytestmark = pytest.mark.peer


def test_bench_peers_quick_outputs_agree(tmp_path):
    out = tmp_path / "peers.json"
    solvers = "heun,deis_rhoab_4,ddpm_ancestral,ddim,unipc_bh2_3"
    assert cli.main(["bench", "peers", "--out", str(out), "--quick", "--no-compile", "--batches", "8",
                     "--repeats", "1", "--solvers", solvers]) == 0
    result = json.load(open(out))
    assert (tmp_path / "peers.png").stat().st_size > 0 and "| mlp | 8 | 8 |" in (tmp_path / "peers.md").read_text()
    assert result["networks"]["mlp"]["forward_max_abs_diff"] < 1e-5
    rows = {(r["peer"], r["solver"]): r for r in result["rows"]}
    kd = [("k-diffusion", s) for s in ("heun", "deis_rhoab_4", "ddpm_ancestral")]
    if "not available" in result["environment"]["k_diffusion"]:
        kd = []
    assert set(rows) == set(kd) | {("diffusers", s) for s in ("ddim", "unipc_bh2_3")}
    for key, row in rows.items():
        assert row["eager"]["agrees"] and row["eager"]["max_rel_diff"] < 1e-4, (key, row["eager"])
        assert row["eager"]["ratio_to_jaxsample"] > 0 and "compiled" not in row
    assert rows[("diffusers", "ddim")]["steps"] == 8 and result["disagreeing_rows"] == []
    if kd:
        assert rows[("k-diffusion", "heun")]["steps"] == 4  # NFE 8 at two evaluations a step
