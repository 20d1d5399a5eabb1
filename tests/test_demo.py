"""The README demo: its shipped ground truth is the shipped teacher's exact ODE solution, and a
small run writes its table, figures and results with the learned solvers in them."""

import json

import jax
import numpy as np
import pytest

import jaxsample as js
from jaxsample import demo


def test_shipped_ground_truth_is_the_teachers_ode_solution():
    ref = demo.digits_reference()
    assert ref["noise"].shape == ref["target"].shape == (256, 8, 8, 1)
    # the held-out noise BNS never trained on: make_pairs' test seed 2
    np.testing.assert_array_equal(ref["noise"], np.asarray(js.initial_noise(jax.random.key(2), (256, 8, 8, 1))))
    model = js.load_teacher("digits_vp")
    ts = js.power(model.path, 64, t_start=float(ref["t_start"]), t_end=float(ref["t_end"]))
    x = js.sample(model, js.dpm_solver_pp_3m(), ts, ref["noise"][:8])
    # a 64-step third-order solve agrees with the shipped adaptive solve (rtol 1e-4) far beyond
    # anything the demo's few-step samplers reach (< 40 dB); observed ~57 dB
    assert float(js.psnr(x, ref["target"][:8])) > 45.0


@pytest.mark.slow
def test_small_digits_demo_run(tmp_path):
    out = demo.run(str(tmp_path), num_samples=24, nfes=(4,), quiet=True, setting="digits")
    names = {r["solver"] for r in out["rows"]}
    assert set(demo.DIGITS_BASELINES) - {"heun"} <= names  # heun needs an even NFE: NFE 4 is 2 steps, included too
    assert {"BNS (learned)", "DEIS-SN (calibrated)"} <= names
    for r in out["rows"]:
        assert np.isfinite(r["psnr_db"]) and np.isfinite(r["fd"]), r
    rows = {r["solver"]: r for r in out["rows"]}
    # the shipped NFE-4 BNS solver beats every classical solver at NFE 4 on held-out noise
    assert rows["BNS (learned)"]["psnr_db"] > out["best_classical"][4][1], out["best_classical"]
    assert (tmp_path / "psnr_vs_nfe.png").stat().st_size > 10_000
    assert (tmp_path / "samples.png").stat().st_size > 5_000
    assert json.load(open(tmp_path / "results.json"))["num_samples"] == 24


def test_shipped_fashion_ground_truth_is_the_teachers_ode_solution():
    ref = demo.reference("fashion_vp")
    assert ref["noise"].shape == ref["target"].shape == (256, 28, 28, 1)
    np.testing.assert_array_equal(ref["noise"], np.asarray(js.initial_noise(jax.random.key(2), (256, 28, 28, 1))))
    assert float(ref["rtol"]) == 1e-5 and str(ref["method"]).startswith("adaptive Dopri8")
    model = js.load_teacher("fashion_vp")
    ts = js.time_uniform(model.path, 128, t_start=float(ref["t_start"]), t_end=float(ref["t_end"]))
    x = js.sample(model, js.unipc(3), ts, ref["noise"][:4])
    # a 128-step third-order solve agrees with the shipped Dopri8 solve (rtol 1e-5) far beyond the demo's
    # few-step samplers (< 35 dB); observed 54.5 dB (the BNS study's 128-step quadratic grid: 58.8 dB on all 256)
    assert float(js.psnr(x, ref["target"][:4])) > 45.0


def test_shipped_fashion_flow_ground_truth_is_the_teachers_ode_solution():
    """fashion_flow's shipped ground truth (labels uniform, guidance 1): a 128-step UniPC-3 solve of 4 of
    its noises agrees with the shipped Dopri8 solve (rtol 1e-5): observed 58.2 dB (the BNS study's fixed
    grid: 57.9 dB on all 256 when it was made)."""
    ref = demo.reference("fashion_flow")
    assert ref["noise"].shape == ref["target"].shape == (256, 28, 28, 1) and ref["label"].shape == (256,)
    np.testing.assert_array_equal(ref["noise"], np.asarray(js.initial_noise(jax.random.key(2), (256, 28, 28, 1))))
    assert float(ref["rtol"]) == 1e-5 and str(ref["method"]).startswith("adaptive Dopri8")
    model = js.load_teacher("fashion_flow")
    ts = js.power(model.path, 128, t_start=float(ref["t_start"]), t_end=float(ref["t_end"]))  # quadratic
    x = js.sample(model, js.unipc(3), ts, ref["noise"][:4], cond={"label": ref["label"][:4]})
    assert float(js.psnr(x, ref["target"][:4])) > 45.0
