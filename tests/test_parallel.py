"""Data parallelism: the same answers on 1, 2 and 8 devices, and on two processes.

``sampling_cases`` and ``training_case`` are also run by ``tests/multihost_worker.py`` in two
``jax.distributed`` processes, so this module must not touch JAX at import time.
"""

import os
import socket
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import PartitionSpec as P

from jaxsample import data, grids, models, nets, objectives, parallel, paths, solvers, train
from jaxsample.sampling import reference_sample, sample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 13  # not a multiple of 2, 4 or 8: the batch is padded and the padding dropped


def _gmm_model():
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    return gmm.model(paths.VPCosine(), "eps")


def _cond_model():
    """A conditional model: a per-sample ``scale`` (batched, sharded) and a shared ``shift``
    (unbatched, replicated)."""
    base = _gmm_model()
    return models.Model(lambda x, t, scale, shift: base(x, t) * scale[:, None] + shift, base.path, "eps")


def sampling_cases(mesh) -> dict:
    """A deterministic, a stochastic and a conditional run of ``sample`` on ``mesh`` (float64).

    Euler-Maruyama runs on 32 steps: it is explicit in t, and on VP cosine's 8-step EDM grid its
    first steps span log-SNR changes with |lam'(t) dt| of 1.4 to 9 (alpha = 0 at t = 1), where the
    explicit step amplifies instead of contracting (samples of size 10^3); 32 steps keep it below 0.3."""
    model = _gmm_model()
    ts = grids.edm(model.path, 8)
    noise = jnp.asarray(np.random.default_rng(0).standard_normal((BATCH, 4)))
    cond = {"scale": jnp.linspace(0.9, 1.1, BATCH), "shift": jnp.asarray(0.01)}
    return {
        "ode": sample(model, solvers.dpm_solver_pp_2m(), ts, noise, mesh=mesh),
        "sde": sample(model, solvers.euler_maruyama(), grids.edm(model.path, 32), noise, key=jax.random.key(3),
                      mesh=mesh),
        "cond": sample(_cond_model(), solvers.heun(), ts, noise, cond=cond, mesh=mesh),
    }


def training_case(mesh, workdir, *, local: bool) -> dict:
    """Six steps of flow matching checkpointed every three, then resumed from the checkpoint
    to eight steps; ``local=True`` has each process read only its own rows of each batch."""
    net = nets.MLP(features=(16, 16), time_embed_dim=8)
    params = net.init(jax.random.key(0), jnp.zeros((1, 2), jnp.float32), jnp.zeros((1,), jnp.float32))["params"]
    batch_fn = data.toy_batches("eight_gaussians", 16, seed=1)
    if local:
        batch_fn = parallel.local_rows(batch_fn)
    loss_fn = objectives.flow_matching_loss(net.apply)

    def state():
        return train.TrainState.create(params, train.make_optimizer(3e-3, warmup_steps=2), seed=0, ema_decay=0.9)

    mid, hist = train.fit(state(), loss_fn, batch_fn, num_steps=6, workdir=workdir, checkpoint_every=3, mesh=mesh,
                          progress=False)
    end, more = train.fit(state(), loss_fn, batch_fn, num_steps=8, workdir=workdir, mesh=mesh, progress=False)
    flat = lambda p: parallel.gather(ravel_pytree(p)[0])  # noqa: E731
    return {"params_6": flat(mid.params), "params_8": flat(end.params), "ema_8": flat(end.ema_params),
            "loss": np.array([h["loss"] for h in hist + more])}


@pytest.fixture(scope="module")
def sampled_on_one_device():
    with jax.enable_x64(True):
        return {k: np.asarray(v) for k, v in sampling_cases(None).items()}


@pytest.mark.parametrize("num_devices", [1, 2, 8])
def test_sample_same_on_any_number_of_devices(num_devices, sampled_on_one_device):
    with jax.enable_x64(True):
        got = sampling_cases(parallel.make_mesh(num_devices))
    chex.assert_shape(list(got.values()), (BATCH, 4))
    # float64 rounding only (observed: <= 1e-12; the SDE amplifies it more than the ODE)
    chex.assert_trees_all_close(got, sampled_on_one_device, rtol=0, atol=1e-9)
    assert np.abs(sampled_on_one_device["sde"] - sampled_on_one_device["ode"]).max() > 1e-2  # noise matters
    # and the SDE samples are samples: inside the mixture's range, like the ODE's
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    bound = float(jnp.max(jnp.abs(gmm.means) + 5 * gmm.stds))
    for name in ("ode", "sde"):
        assert np.abs(sampled_on_one_device[name]).max() < bound, name


def test_sample_keeps_a_divisible_batch_sharded_one_slice_per_device():
    model = _gmm_model()
    ts = grids.edm(model.path, 6)
    noise = jax.random.normal(jax.random.key(1), (16, 4))
    mesh = parallel.make_mesh(8)
    x, traj = sample(model, solvers.heun(), ts, noise, return_trajectory=True, mesh=mesh)
    assert x.sharding.spec == P("data") and len(x.sharding.device_set) == 8
    assert {s.data.shape for s in x.addressable_shards} == {(2, 4)}
    chex.assert_shape(traj, (7, 16, 4))
    odd, odd_traj = sample(model, solvers.heun(), ts, noise[:BATCH], return_trajectory=True, mesh=mesh)
    chex.assert_shape(odd_traj, (7, BATCH, 4))
    np.testing.assert_allclose(np.asarray(odd), np.asarray(x)[:BATCH], rtol=0, atol=1e-5)


def test_reference_sample_same_on_8_devices(x64):
    model = _gmm_model()
    noise = jnp.asarray(np.random.default_rng(2).standard_normal((5, 4)))
    save_ts = jnp.asarray([0.5, 0.2])
    one = reference_sample(model, noise, save_ts=save_ts)
    eight = reference_sample(model, noise, save_ts=save_ts, mesh=parallel.make_mesh(8))
    chex.assert_shape(eight, (2, 5, 4))
    # adaptive steps: rounding differences can move the accepted steps, within the solver's
    # tolerances (rtol = atol = 1e-7); observed 5e-9
    np.testing.assert_allclose(np.asarray(eight), np.asarray(one), rtol=0, atol=1e-7)


def test_training_with_local_rows_same_on_1_and_8_devices(tmp_path):
    # (global batches on 1 and 8 devices: tests/test_train.py)
    ref = training_case(None, str(tmp_path / "one"), local=False)
    chex.assert_tree_all_finite(ref)
    chex.assert_shape(ref["loss"], (8,))
    assert np.abs(ref["params_8"] - ref["params_6"]).max() > 1e-4  # the resumed steps did train
    got = training_case(parallel.make_mesh(8), str(tmp_path / "eight"), local=True)
    chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    """Two ``jax.distributed`` CPU processes with two devices each (one 4-device mesh, gloo
    collectives) sample and train exactly like one process with four devices, and each ends
    with the whole result. Also checks that importing jaxsample starts no XLA backend."""
    port, env = _free_port(), {**os.environ, "PYTHONPATH": ROOT}
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "multihost_worker.py"), str(i), str(port),
                               str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two-process run timed out")
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    got = [dict(np.load(tmp_path / f"process{i}.npz")) for i in range(2)]
    mesh = parallel.make_mesh(4)
    with jax.enable_x64(True):
        ref = {k: np.asarray(v) for k, v in sampling_cases(mesh).items()}
    fit = training_case(mesh, str(tmp_path / "ref"), local=False)
    ref.update(fit)
    ref.update({f"local_{k}": v for k, v in fit.items()})
    chex.assert_trees_all_equal(got[0], got[1])  # both hold the whole result
    for name, want in ref.items():
        tol = 1e-9 if name in ("ode", "sde", "cond") else 1e-5
        np.testing.assert_allclose(got[0][name], want, rtol=tol, atol=tol, err_msg=name)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_devices"):
        parallel.make_mesh(0)
    with pytest.raises(ValueError, match="num_devices"):
        parallel.make_mesh(True)
    mesh = parallel.make_mesh(8)
    with pytest.raises(ValueError, match="batch_size.*divisible.*pad_batch"):
        parallel.shard_batch({"x": np.zeros((6, 2))}, mesh)
    with pytest.raises(ValueError, match="leading batch axis"):
        parallel.shard_batch({"x": np.float32(1.0)}, mesh)
    with pytest.raises(ValueError, match="mesh must be"):
        parallel.replicate({"x": np.zeros(2)}, "mesh")
    with pytest.raises(ValueError, match="mesh must be"):
        sample(_gmm_model(), solvers.euler(), grids.edm(paths.VPCosine(), 2), jnp.zeros((2, 4)), mesh=4)
    with pytest.raises(ValueError, match="leading"):
        parallel.pad_batch({"a": np.zeros((3, 1)), "b": np.zeros((4, 1))}, 2)
    with pytest.raises(ValueError, match="process_index"):
        parallel.process_rows(8, 2, 2)
    with pytest.raises(ValueError, match="batch_size.*processes"):
        parallel.process_rows(9, 0, 2)
    with pytest.raises(ValueError, match="batch_fn"):
        parallel.local_rows(3)
    with pytest.raises(ValueError, match="num_processes"):
        parallel.initialize("localhost:1", 0, 0)
    with pytest.raises(ValueError, match="process_id"):
        parallel.initialize("localhost:1", 2, 5)


def test_pad_batch_and_process_rows_exact():
    padded, size = parallel.pad_batch({"x": np.arange(5.0)[:, None]}, 4)
    assert size == 5
    np.testing.assert_array_equal(np.asarray(padded["x"])[:, 0], [0, 1, 2, 3, 4, 0, 0, 0])
    assert [parallel.process_rows(12, i, 3) for i in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]


def test_initialize_reads_the_environment(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize() is False  # a single host: nothing to do
    monkeypatch.setenv("JAX_NUM_PROCESSES", "1")
    assert parallel.initialize() is False
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAX_PROCESS_ID", "2")
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
        parallel.initialize()
