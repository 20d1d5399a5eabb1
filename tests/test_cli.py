"""The command line: every sub-command runs, writes what it says, and bad input is a clear error."""

import json
import os

import jax
import numpy as np
import pytest

import jaxsample as js
from jaxsample import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_list_names_every_teacher_solver_and_method(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("digits_vp", "checkerboard_flow", "dpm_solver_pp_2m", "unipc", "euler_maruyama", "bns", "catch-up"):
        assert name in out
    assert "digits_classifier" not in out and "fashion_classifier" not in out  # not generative teachers


def test_sample_writes_the_samples_of_the_library_call(tmp_path):
    out = tmp_path / "s"
    assert cli.main(["sample", "--teacher", "checkerboard_flow", "--solver", "heun", "--nfe", "6", "--num", "10",
                     "--batch", "4", "--seed", "3", "--out", str(out)]) == 0
    saved = np.load(out / "samples.npz")
    model = js.load_teacher("checkerboard_flow")
    noise = js.initial_noise(jax.random.key(3), (10, 2))
    want = js.sample(model, js.heun(), js.power(model.path, 3), noise)
    assert saved["samples"].shape == (10, 2) and int(saved["nfe"]) == 6
    np.testing.assert_allclose(saved["samples"], np.asarray(want), rtol=1e-5, atol=1e-5)
    assert (out / "samples.png").stat().st_size > 1000


def test_sample_with_a_learned_solver_file(tmp_path):
    from jaxsample.distill import bns

    model = js.load_teacher("checkerboard_flow")
    solver = bns.BespokeNonStationary.from_solver(js.midpoint(), model.path, js.uniform(model.path, 2))
    f = str(tmp_path / "bns.npz")
    js.save_solver(f, solver, path=model.path, teacher="checkerboard_flow", nfe=4)
    assert cli.main(["sample", "--teacher", "checkerboard_flow", "--solver-file", f, "--num", "5",
                     "--out", str(tmp_path / "o")]) == 0
    saved = np.load(tmp_path / "o" / "samples.npz")
    want = js.sample(model, js.midpoint(), js.uniform(model.path, 2), js.initial_noise(jax.random.key(0), (5, 2)))
    np.testing.assert_allclose(saved["samples"], np.asarray(want), rtol=1e-4, atol=1e-4)  # the exact embedding


def test_bad_input_is_a_clear_error(capsys, tmp_path):
    assert "--nfe must be a positive multiple of 2" in _error(capsys, ["sample", "--solver", "heun", "--nfe", "5"])
    assert "--solver must be one of" in _error(capsys, ["sample", "--solver", "rk5"])
    assert "exactly one of --solver" in _error(capsys, ["sample"])
    assert "--teacher: unknown teacher 'cifar'" in _error(capsys, ["sample", "--teacher", "cifar", "--solver", "ddim"])
    assert "--solver-file" in _error(capsys, ["sample", "--solver-file", str(tmp_path / "none.npz")])
    assert "--num must be a positive" in _error(capsys, ["sample", "--solver", "ddim", "--num", "0"])
    assert "--guidance needs a class-conditional teacher" in _error(capsys, ["sample", "--solver", "ddim",
                                                                             "--guidance", "2"])
    assert "--label needs a class-conditional teacher" in _error(capsys, ["sample", "--solver", "ddim",
                                                                          "--label", "3"])
    assert "--label must be in [0, 10]" in _error(capsys, ["sample", "--teacher", "digits_flow", "--solver", "ddim",
                                                           "--label", "11"])
    cfg = os.path.join(ROOT, "experiments", "bns", "configs", "gmm.py")
    assert "no field 'num_stepz'" in _error(capsys, ["distill", "bns", "--config", cfg, "--workdir", str(tmp_path),
                                                     "--set", "num_stepz=3"])
    assert "KEY=VALUE" in _error(capsys, ["distill", "bns", "--config", cfg, "--workdir", str(tmp_path),
                                          "--set", "num_steps"])
    assert "does not exist" in _error(capsys, ["distill", "bns", "--config", "nope.py", "--workdir", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli.main(["distill", "dmd", "--workdir", str(tmp_path)])  # argparse: invalid choice


@pytest.fixture
def study_calls(monkeypatch):
    """Replace the studies' ``train_and_evaluate`` and multi-host start-up by recorders (the studies
    themselves run end to end in ``experiments/*/train_test.py``)."""
    import importlib

    from jaxsample import parallel

    calls = []
    for module_name, _ in cli.DISTILL.values():
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, "train_and_evaluate",
                            lambda config, workdir, m=module_name: calls.append((m, config, workdir)))
    monkeypatch.setattr(parallel, "initialize", lambda *a, **k: calls.append(("initialize", a, k)) or False)
    return calls


def write_bad_inputs(directory) -> None:
    """Write into ``directory`` the files of :func:`test_bad_input_fails_before_any_work` (and of
    ``docs/errors_table.py``): teacher cards with a part missing, a file where a folder is expected,
    a config that is not Python, a learned solver of NFE 4."""
    from pathlib import Path

    from jaxsample import teachers
    from jaxsample.distill import bns

    directory = Path(directory)
    card = teachers.teacher_card("checkerboard_flow")
    (directory / card["weights_file"]).write_bytes((teachers.ASSETS_DIR / card["weights_file"]).read_bytes())
    json.dump({k: v for k, v in card.items() if k != "config"}, open(directory / "no_config.json", "w"))
    json.dump({**card, "weights_file": "gone.msgpack"}, open(directory / "no_weights.json", "w"))
    (directory / "file").write_text("not a folder")
    (directory / "bad.py").write_text("def get_config(:\n")
    model = js.load_teacher("checkerboard_flow")
    solver = bns.BespokeNonStationary.from_solver(js.midpoint(), model.path, js.uniform(model.path, 2))
    js.save_solver(str(directory / "bns4.npz"), solver, path=model.path, teacher="checkerboard_flow", nfe=4)


@pytest.fixture
def bad_inputs(tmp_path):
    write_bad_inputs(tmp_path)
    return tmp_path


BNS_GMM = os.path.join(ROOT, "experiments", "bns", "configs", "gmm.py")
SAMPLE = ["sample", "--teacher", "checkerboard_flow", "--solver", "heun", "--nfe", "4", "--num", "4"]


@pytest.mark.parametrize("argv, words", [
    (["sample", "--teacher", "{tmp}/no_config.json", "--solver", "heun", "--out", "{tmp}/o"],
     ["--teacher", "no_config.json", "lacks ['config']"]),
    (["sample", "--teacher", "{tmp}/no_weights.json", "--solver", "heun", "--out", "{tmp}/o"],
     ["--teacher", "gone.msgpack", "does not exist"]),
    (SAMPLE + ["--out", "{tmp}/file"], ["--out", "is an existing file"]),
    (SAMPLE + ["--out", "{tmp}/file/sub"], ["--out", "cannot be created", "is a file, not a folder"]),
    (["demo", "--out", "{tmp}/file"], ["--out", "is an existing file"]),
    (SAMPLE + ["--label", "3", "--out", "{tmp}/o"], ["--label needs a class-conditional teacher", "checkerboard_flow"]),
    (SAMPLE + ["--guidance", "2", "--out", "{tmp}/o"], ["--guidance needs a class-conditional teacher"]),
    (["distill", "bns", "--config", "{tmp}/bad.py", "--workdir", "{tmp}/w"],
     ["--config", "not valid Python", "line 1"]),
    (["distill", "bns", "--config", "{tmp}/none.py", "--workdir", "{tmp}/w"], ["--config", "does not exist"]),
    (["distill", "bns", "--config", BNS_GMM, "--workdir", "{tmp}/w", "--set", "setting='unknown'"],
     ["--config/--set", "config.setting must be one of ['rectified_flow', 'vp_cosine'], got 'unknown'"]),
    (["distill", "bns", "--config", BNS_GMM, "--workdir", "{tmp}/w", "--set", "nfes=(0,)"],
     ["config.nfes must be a non-empty tuple of positive integers, got (0,)"]),
    (["distill", "bns", "--config", BNS_GMM, "--workdir", "{tmp}/w", "--set", "num_train=0"],
     ["config.num_train must be a positive integer, got 0"]),
    (["sample", "--teacher", "checkerboard_flow", "--solver-file", "{tmp}/bns4.npz", "--nfe", "8", "--out", "{tmp}/o"],
     ["--nfe 8 disagrees with --solver-file", "NFE 4"]),
], ids=["card-no-config", "card-no-weights", "out-is-file", "out-under-file", "demo-out-is-file", "label-unconditional",
        "guidance-unconditional", "config-syntax", "config-missing", "set-setting", "set-nfes", "set-num-train",
        "nfe-vs-solver-file"])
def test_bad_input_fails_before_any_work(argv, words, bad_inputs, capsys, monkeypatch, study_calls):
    """Exit status 2 and ``jaxsample: error:`` naming the argument, before any sampling or training
    (both are replaced by failures here; ``study_calls`` records any study that would start)."""
    from jaxsample import demo, sampling

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    for module, name in ((sampling, "sample"), (demo, "run"), (demo, "run_mixture")):
        monkeypatch.setattr(module, name, no_work)
    err = _error(capsys, [a.replace("{tmp}", str(bad_inputs)) for a in argv])
    assert err.startswith("jaxsample: error:"), err
    for word in words:
        assert word in err, err
    assert [c for c in study_calls if c[0] != "initialize"] == []
    assert not (bad_inputs / "o").exists()  # --out is not created for a failed run


def test_out_not_writable_is_an_error_before_any_work(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)  # as root, chmod cannot make a folder read-only
    err = _error(capsys, SAMPLE + ["--out", str(tmp_path / "o")])
    assert "--out" in err and "is not writable" in err


def test_every_shipped_config_passes_validation_and_run_validates_before_the_study(tmp_path):
    import glob
    import importlib.util

    from jaxsample import experiment

    for path in glob.glob(os.path.join(ROOT, "experiments", "*", "configs", "[!_]*.py")):
        spec = importlib.util.spec_from_file_location("config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        experiment.validate_config(module.get_config())  # the checks fit every shipped config
    config = cli._load_config(BNS_GMM, ["num_val=-1"])
    with pytest.raises(experiment.ConfigError, match=r"config.num_val must be a positive integer, got -1"):
        experiment.run(lambda config, workdir: pytest.fail("the study ran"), config, str(tmp_path))


def test_distill_runs_the_study_entry_point_with_overrides_and_multihost_flags(tmp_path, study_calls):
    cfg = os.path.join(ROOT, "experiments", "bns", "configs", "gmm_flow.py")
    assert cli.main(["distill", "bns", "--config", cfg, "--workdir", str(tmp_path), "--set", "num_steps=20",
                     "--set", "nfes=(4,)", "--set", "init='euler'", "--num_processes", "1", "--process_id", "0"]) == 0
    (init, run) = study_calls
    assert init == ("initialize", (None, 1, 0), {"auto": False})  # before the study, as main.py does
    module, config, workdir = run
    assert module == "experiments.bns.train" and workdir == str(tmp_path)
    assert config.num_steps == 20 and tuple(config.nfes) == (4,) and config.init == "euler"
    assert config.setting == "rectified_flow"  # gmm_flow.py's own field, over the gmm.py it inherits from


def test_distill_default_configs(tmp_path, study_calls):
    assert cli.main(["distill", "deis-sn", "--workdir", str(tmp_path)]) == 0
    assert cli.main(["distill", "catch-up", "--workdir", str(tmp_path), "--distributed_auto"]) == 0
    runs = [c for c in study_calls if c[0] != "initialize"]
    assert [r[0] for r in runs] == ["experiments.deis_sn.train", "experiments.catch_up.train"]
    assert runs[0][1].setting == "vp_cosine"  # experiments/deis_sn/configs/gmm.py
    assert runs[1][1].dataset == "checkerboard"  # the first of experiments/catch_up/configs/ (not __init__.py)
    assert study_calls[2] == ("initialize", (None, None, None), {"auto": True})


def test_bench_scaling_writes_json(tmp_path):
    out = tmp_path / "scaling.json"
    assert cli.main(["bench", "scaling", "--out", str(out), "--repeats", "3", "--batch", "16", "--distill-batch", "8",
                     "--devices", "1,2"]) == 0
    rows = json.load(open(out))["rows"]
    assert [r["devices"] for r in rows] == [1, 2]
    assert rows[1]["sample_max_abs_diff_vs_1"] < 1e-4 and rows[1]["distill_params_max_abs_diff_vs_1"] < 1e-5


def test_bench_bns_cost_writes_json(tmp_path):
    out = tmp_path / "bns_cost.json"
    assert cli.main(["bench", "bns-cost", "--out", str(out), "--repeats", "1", "--nfes", "4", "--num-train", "8",
                     "--num-val", "4", "--pair-batch", "4", "--steps", "4", "--short-steps", "2", "--eval-every", "2",
                     "--rtol", "1e-2", "--fixed-grid-steps", "8"]) == 0
    # (validation pairs of the timed batch's shape: one reference compile)
    result = json.load(open(out))
    (row,) = result["rows"]
    assert result["teacher_steps"] == 2500 and result["teacher_train_s"] > 0 and result["ground_truth_per_pair_s"] > 0
    assert row["nfe"] == 4
    # total = pairs + steps x step + evaluations x validation pass, as documented
    assert row["study_total_s"] == pytest.approx(row["pairs_s"] + 4 * row["step_s"] + 3 * row["validation_pass_s"])
    assert row["pairs_s"] == pytest.approx(12 * result["ground_truth_per_pair_s"])
    by_method = result["ground_truth_per_pair_s_by_method"]
    assert result["ground_truth_per_pair_s"] == by_method["fixed_grid"] and by_method["adaptive"] > 0


def test_the_persistent_compilation_cache_is_written_and_can_be_turned_off(tmp_path):
    import subprocess
    import sys

    script = ("import sys, jax, jax.numpy as jnp\n"
              "from jaxsample import experiment\n"
              "print(experiment.enable_compilation_cache(min_compile_seconds=0))\n"
              "jax.jit(lambda x: jnp.sin(x) @ x.T + 1)(jnp.ones((4, 4))).block_until_ready()\n")
    cache = tmp_path / "xla"

    def run(value):
        env = {**os.environ, "JAXSAMPLE_COMPILATION_CACHE": value, "JAX_PLATFORMS": "cpu"}
        return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert run(str(cache)) == str(cache)
    entries = sorted(p.name for p in cache.iterdir())
    assert any(name.startswith("jit__lambda") for name in entries), entries
    assert run(str(cache)) == str(cache) and sorted(p.name for p in cache.iterdir()) == entries  # read, not re-written
    assert run("off") == "None"
