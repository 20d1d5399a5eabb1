"""A distillation killed (SIGKILL, as a preemption) at each dangerous moment and re-run with the same
command finishes with exactly the files of an uninterrupted run.

``jaxsample distill bns`` on a tiny Gaussian mixture (NFE 4, 20 steps, validation every 10) runs in
a subprocess; ``JAXSAMPLE_FAULT`` (``jaxsample.train._fault_point``) kills it in the middle of a
training segment (before step 5), while the step-10 checkpoint is being written, and after that
checkpoint but before its validation. The same command is then run again without the fault. The
learned solver file's arrays must be bit-identical to the uninterrupted run's, and the validation
log and the results rows (timings aside) equal.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.serial

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "bns", "configs", "gmm_flow.py")
SETTINGS = ["dim=4", "num_components=2", "nfes=(4,)", "num_train=64", "num_val=64", "num_test=64", "num_steps=20",
            "eval_every=10", "batch_size=32", "init='euler'", "baselines=('euler','heun')",
            "baseline_grids=('uniform',)", "reference_rtol=1e-5", "progress=False"]


def _run(workdir, fault=None):
    cmd = [sys.executable, "-m", "jaxsample", "distill", "bns", "--config", CONFIG, "--workdir", str(workdir)]
    for s in SETTINGS:
        cmd += ["--set", s]
    env = {k: v for k, v in os.environ.items() if k != "JAXSAMPLE_FAULT"}
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("XLA_FLAGS", None)  # one device, as a user's laptop
    if fault:
        env["JAXSAMPLE_FAULT"] = fault
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _outputs(workdir):
    with np.load(os.path.join(workdir, "bns_nfe4.npz")) as f:
        arrays = {k: f[k] for k in f.files}
    rows = json.load(open(os.path.join(workdir, "results.json")))["rows"]
    rows = [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]
    (run_dir,) = [d for d in os.listdir(workdir) if d.startswith("nfe4_init")]
    validation = [json.loads(line) for line in open(os.path.join(workdir, run_dir, "validation.jsonl"))]
    return arrays, rows, validation


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    done = _run(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return _outputs(workdir)


@pytest.mark.parametrize("fault", ["step:5", "save:10", "validate:10"])
def test_killed_and_rerun_gives_the_uninterrupted_files(tmp_path, reference, fault):
    killed = _run(tmp_path, fault)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    assert not os.path.exists(tmp_path / "bns_nfe4.npz")  # it really stopped before the end
    resumed = _run(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    arrays, rows, validation = _outputs(tmp_path)
    want_arrays, want_rows, want_validation = reference
    assert sorted(arrays) == sorted(want_arrays)
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], want_arrays[k], err_msg=k)
    assert rows == want_rows
    assert validation == want_validation
