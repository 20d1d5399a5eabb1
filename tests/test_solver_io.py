"""The one learned-solver file format: round trips, the header, and the checks on load."""

import json

import chex
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js
from jaxsample._assets import asset_path
from jaxsample.distill import adasde


@pytest.fixture()
def bns4():
    path = js.RectifiedFlow()
    return js.BespokeNonStationary.from_solver(js.heun(), path, js.uniform(path, 2)), path


def test_round_trip_is_exact_and_the_header_names_class_path_and_teacher(bns4, tmp_path):
    solver, path = bns4
    f = str(tmp_path / "s.npz")
    js.save_solver(f, solver, path=path, teacher="gmm_rectified_flow", nfe=4, init="heun")
    header = js.solvers.read_header(f)
    assert header["class"] == "BespokeNonStationary" and header["path"] == "RectifiedFlow()"
    assert header["teacher"] == "gmm_rectified_flow" and header["metadata"] == {"nfe": 4, "init": "heun"}
    assert header["fields"]["b"] == {"array": [4, 4], "dtype": "float32"}
    chex.assert_trees_all_equal(js.load_solver(f), solver)


def test_a_solver_learned_on_one_path_is_refused_on_another(bns4, tmp_path):
    solver, path = bns4
    f = str(tmp_path / "s.npz")
    js.save_solver(f, solver, path=path, teacher="gmm_rectified_flow")
    vp_model = js.compare.benchmark_mixture(dim=4, num_components=2).model(js.VPCosine(), "eps")
    with pytest.raises(ValueError, match=r"learned on the path RectifiedFlow\(\), but the model's path is VPCosine"):
        js.load_solver(f, model=vp_model)
    with pytest.raises(ValueError, match="learned for teacher 'gmm_rectified_flow', not 'digits_vp'"):
        js.load_solver(f, teacher="digits_vp")
    with pytest.raises(ValueError, match="holds a BespokeNonStationary, expected AdaSDE"):
        js.load_solver(f, expect=js.AdaSDE)


def test_damaged_files_are_clear_errors(bns4, tmp_path):
    solver, path = bns4
    f = str(tmp_path / "s.npz")
    js.save_solver(f, solver, path=path)
    with np.load(f) as z:
        arrays = {k: z[k] for k in z.files}
    bad = dict(arrays, a=np.full_like(arrays["a"], np.nan))
    np.savez(tmp_path / "nan.npz", **bad)
    with pytest.raises(ValueError, match="array 'a' holds non-finite values"):
        js.load_solver(str(tmp_path / "nan.npz"))
    np.savez(tmp_path / "shape.npz", **dict(arrays, b=arrays["b"][:2]))
    with pytest.raises(ValueError, match=r"array 'b' has shape \(2, 4\)"):
        js.load_solver(str(tmp_path / "shape.npz"))
    header = json.loads(arrays["header"].tobytes().decode())
    header["class"] = "os"
    np.savez(tmp_path / "cls.npz", **dict(arrays, header=np.frombuffer(json.dumps(header).encode(), np.uint8)))
    with pytest.raises(ValueError, match="names class 'os', which is no jaxsample.solvers module"):
        js.load_solver(str(tmp_path / "cls.npz"))
    np.savez(tmp_path / "old.npz", time_logits=arrays["time_logits"])
    with pytest.raises(ValueError, match="not a jaxsample solver file"):
        js.load_solver(str(tmp_path / "old.npz"))
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="not a jaxsample solver file"):
        js.load_solver(str(tmp_path / "text.npz"))
    # every other damage is the same exception, naming the file
    def with_header(name, **change):
        h = dict(json.loads(arrays["header"].tobytes().decode()), **change)
        np.savez(tmp_path / name, **dict(arrays, header=np.frombuffer(json.dumps(h).encode(), np.uint8)))
        return str(tmp_path / name)
    fields = json.loads(arrays["header"].tobytes().decode())["fields"]
    cases = {
        with_header("nofields.npz", fields=None): "cannot rebuild its BespokeNonStationary",
        with_header("extra.npz", fields=dict(fields, bogus=1)): "cannot rebuild its BespokeNonStationary",
        with_header("badfield.npz", fields=dict(fields, field="noise")): "cannot rebuild its BespokeNonStationary",
        str(tmp_path / "missing.npz"): "does not exist",
    }
    np.savez(tmp_path / "noarray.npz", **{k: v for k, v in arrays.items() if k != "b"})
    cases[str(tmp_path / "noarray.npz")] = "lacks the array 'b'"
    blob = open(f, "rb").read()
    (tmp_path / "torn.npz").write_bytes(blob[: len(blob) // 2])
    cases[str(tmp_path / "torn.npz")] = "not a jaxsample solver file"
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message) as err:
            js.load_solver(name)
        assert repr(name) in str(err.value)


def test_times_outside_the_models_path_are_refused(tmp_path):
    flow = js.RectifiedFlow()
    solver = js.BespokeNonStationary.from_solver(js.euler(), js.VPCosine(), js.edm(js.VPCosine(), 3))
    f = str(tmp_path / "s.npz")
    js.save_solver(f, solver)  # no path recorded: only the times can tell
    model = js.compare.benchmark_mixture(dim=4, num_components=2).model(flow, "velocity")
    assert float(solver.times[0]) <= flow.t_max  # inside [0, 1]: accepted
    js.load_solver(f, model=model)
    far = js.BespokeNonStationary.from_solver(js.euler(), js.VPCosine(), jnp.array([1.5, 0.5, 0.1]))
    js.save_solver(f, far)
    with pytest.raises(ValueError, match="times do not fit the model's path"):
        js.load_solver(f, model=model)


def test_a_failed_save_leaves_the_old_file(bns4, tmp_path):
    solver, path = bns4
    f = str(tmp_path / "s.npz")
    js.save_solver(f, solver, path=path, nfe=4)
    before = (tmp_path / "s.npz").read_bytes()
    with pytest.raises(TypeError):
        js.save_solver(f, solver, path=path, nfe=object())  # not JSON: fails before the file is touched
    assert (tmp_path / "s.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]  # no temporary file left


def test_every_learned_class_of_the_registry_round_trips(tmp_path):
    path = js.VPCosine()
    ts = js.uniform(path, 3, t_start=0.9, t_end=0.1)
    stats = js.ScoreNormStats.from_measurements([0.9, 0.5, 0.1], [0.8, 0.6, 0.3])
    examples = {
        "BespokeNonStationary": js.BespokeNonStationary.from_solver(js.euler(), path, ts, field="x0"),
        "LearnedAdaSDE": adasde.Parameterisation(3, afs=True).solver(
            {"gamma": jnp.asarray([0.1, 0.2, 0.3]), "r": jnp.zeros(3), "a": jnp.ones(3), "c": -jnp.ones(3)},
            times=ts),
        "DEISSN": js.deis_sn(stats, 2),
        "DPMSolverSN": js.dpm_solver_sn(stats, 2),
        "DPMSolverV3": js.solvers.dpm_solver_v3(js.solvers.EMS.degenerate(jnp.linspace(-5.0, 5.0, 11), (2,))),
    }
    assert set(examples) == set(js.solvers.registry.learned_classes())
    for name, solver in examples.items():
        f = str(tmp_path / f"{name}.npz")
        js.save_solver(f, solver, path=path)
        back = js.load_solver(f, model=js.compare.benchmark_mixture(dim=2, num_components=1).model(path, "eps"))
        assert type(back) is type(solver)
        chex.assert_trees_all_equal(back, solver)


def test_shipped_bns_solvers_record_their_teacher_and_path():
    for name, path in [("digits_vp", "VPCosine()"), ("gmm_vp_cosine", "VPCosine()"),
                       ("gmm_rectified_flow", "RectifiedFlow()"), ("fashion_vp", "VPCosine()"),
                       ("fashion_flow", "RectifiedFlow()")]:
        shipped = js.distill.bns.shipped(name)
        assert shipped, name
        for nfe in shipped:
            header = js.solvers.read_header(str(asset_path("bns", f"{name}_nfe{nfe}.npz")))
            assert (header["teacher"], header["path"], header["metadata"]["nfe"]) == (name, path, nfe)
