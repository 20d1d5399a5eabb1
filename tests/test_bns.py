"""BNS: parameterisation, persistence, distillation beats its initialisation, exact resume."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js
from jaxsample.data import ArrayBatcher
from jaxsample.distill import bns


@pytest.fixture(scope="module")
def setup():
    gmm = js.compare.benchmark_mixture(dim=8, num_components=4)
    model = gmm.model(js.RectifiedFlow(), "velocity")
    train = bns.make_pairs(model, 256, (8,), seed=0)
    val = bns.make_pairs(model, 256, (8,), seed=1)
    return model, train, val


def test_fixed_grid_ground_truth_is_the_ode_solution_and_batch_independent(setup):
    """The batched fixed-grid targets (UniPC-3, 128 quadratic steps) match the adaptive ones of the
    fixture to > 60 dB on the mixture, the rows of the padded last batch (8, 9) included."""
    model, _, val = setup
    fixed = bns.make_pairs(model, 10, (8,), seed=1, method="fixed_grid", batch_size=4)  # 4 + 4 + 2 (padded)
    np.testing.assert_array_equal(fixed["noise"], val["noise"][:10])
    assert float(js.psnr(fixed["target"], val["target"][:10])) > 60.0
    assert float(js.psnr(fixed["target"][8:], val["target"][8:10])) > 60.0
    acc = bns.ground_truth_accuracy(model, 4, (8,), rtol=1e-6)  # the batch-4 program again
    assert acc["psnr_db"] > 60.0 and acc["fixed_grid"]["solver"] == "unipc_bh2_3"
    with pytest.raises(ValueError, match="method must be 'adaptive' or 'fixed_grid'"):
        bns.make_pairs(model, 4, (8,), seed=0, method="rk4")
    with pytest.raises(ValueError, match=r"\['rtol'\] are options of method='adaptive'"):
        bns.make_pairs(model, 4, (8,), seed=0, method="fixed_grid", rtol=1e-3)


def test_from_ns_reproduces_the_embedded_solver(setup):
    model, _, val = setup
    ts = js.uniform(model.path, 4)
    solver = bns.BespokeNonStationary.from_solver(js.midpoint(), model.path, ts)
    np.testing.assert_allclose(solver.times, js.solvers.nonstationary.embed(js.midpoint(), model.path, ts).times,
                               atol=1e-6)
    np.testing.assert_allclose(js.sample(model, solver, solver.times, val["noise"][:16]),
                               js.sample(model, js.midpoint(), ts, val["noise"][:16]), atol=1e-5)


def test_save_and_load_round_trip(setup, tmp_path):
    model, _, _ = setup
    solver = bns.BespokeNonStationary.from_solver(js.euler(), model.path, js.uniform(model.path, 4))
    solver = jax.tree.map(lambda v: v + 0.01, solver)  # every float leaf is a parameter
    f = str(tmp_path / "bns.npz")
    js.save_solver(f, solver, path=model.path, teacher="gmm8", nfe=4)
    back = js.load_solver(f, model=model, teacher="gmm8")
    chex.assert_trees_all_equal(back, solver)
    assert (back.t_start, back.t_end, back.field) == (solver.t_start, solver.t_end, solver.field)
    assert js.solvers.read_header(f)["metadata"]["nfe"] == 4
    with pytest.raises(ValueError, match="does not exist"):
        js.load_solver(str(tmp_path / "missing.npz"))


def test_distillation_beats_its_initialisation_on_held_out_noise(setup):
    """At NFE 4 the distilled solver gains at least 8 dB over Euler on held-out noise."""
    model, train, val = setup
    init = bns.BespokeNonStationary.from_solver(js.euler(), model.path, js.uniform(model.path, 4))
    solver, log = bns.distill(model, train, val, init, num_steps=300, eval_every=100, batch_size=64,
                              learning_rate=5e-3, progress=False)
    held_out = bns.make_pairs(model, 256, (8,), seed=2)
    before = bns.evaluate_psnr(model, init, held_out)
    after = bns.evaluate_psnr(model, solver, held_out)
    assert after - before >= 8.0, (before, after)
    assert log["best_val_psnr_db"] >= max(r["val_psnr_db"] for r in log["validation"]) - 1e-9
    assert log["num_parameters"] == 18


def test_interrupted_distillation_resumes_exactly(setup, tmp_path, monkeypatch):
    model, train, val = setup
    init = bns.BespokeNonStationary.from_solver(js.euler(), model.path, js.uniform(model.path, 3))
    kwargs = dict(num_steps=60, eval_every=20, batch_size=32, learning_rate=5e-3, progress=False)
    straight, log_straight = bns.distill(model, train, val, init, workdir=str(tmp_path / "a"), **kwargs)

    calls = {"n": 0}
    original = ArrayBatcher.__call__

    def flaky(self, step):
        if step == 45 and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt("simulated preemption")
        return original(self, step)

    monkeypatch.setattr(ArrayBatcher, "__call__", flaky)
    with pytest.raises(KeyboardInterrupt):
        bns.distill(model, train, val, init, workdir=str(tmp_path / "b"), **kwargs)
    resumed, log_resumed = bns.distill(model, train, val, init, workdir=str(tmp_path / "b"), **kwargs)
    chex.assert_trees_all_close(resumed, straight, rtol=1e-6, atol=1e-7)
    assert [r["step"] for r in log_resumed["validation"]] == [0, 20, 40, 60]
    assert log_resumed["best_step"] == log_straight["best_step"]


def test_distillation_same_on_1_and_8_devices(setup):
    model, train, val = setup
    mesh = js.parallel.make_mesh(8)
    sharded_val = bns.make_pairs(model, 20, (8,), seed=1, mesh=mesh)  # 20: padded to 24 and cut back
    np.testing.assert_allclose(sharded_val["target"], val["target"][:20], rtol=0, atol=1e-5)
    init = bns.BespokeNonStationary.from_solver(js.euler(), model.path, js.uniform(model.path, 3))
    kwargs = dict(num_steps=20, eval_every=10, batch_size=32, learning_rate=5e-3, progress=False)
    one, log_one = bns.distill(model, train, val, init, **kwargs)
    eight, log_eight = bns.distill(model, train, val, init, mesh=mesh, **kwargs)
    chex.assert_trees_all_close(eight, one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([r["val_psnr_db"] for r in log_eight["validation"]],
                               [r["val_psnr_db"] for r in log_one["validation"]], rtol=0, atol=1e-3)
    assert log_one["best_val_psnr_db"] > log_one["init_val_psnr_db"] + 1.0  # it did train


def test_bad_arguments(setup):
    model, train, val = setup
    init = bns.BespokeNonStationary.from_solver(js.euler(), model.path, js.uniform(model.path, 3))
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        bns.distill(model, train, val, init, num_steps=0)
    with pytest.raises(ValueError, match="train_pairs must hold 'noise' and 'target'"):
        bns.distill(model, {"noise": train["noise"]}, val, init)
    with pytest.raises(ValueError, match="init must be a BespokeNonStationary"):
        bns.distill(model, train, val, js.euler())
