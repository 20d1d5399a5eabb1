"""The same answers on 1, 2 and 8 devices: every sampling and training loop, max abs difference.

Each loop runs the same small job (the settings of its 8-device test in ``tests/``) with the
batch split over a ``'data'`` mesh of 1, 2 and 8 devices, and reports the max abs difference of
its result from the 1-device result, with the scale (max abs value) of that result:

- ``sample`` deterministic (DPM-Solver++(2M)), stochastic (DDPM ancestral, explicit key) and
  ``reference_sample`` (adaptive Dopri8) on a Gaussian-mixture model, batch 13 (padded);
- teacher training: ``train.fit`` with flow matching on a small MLP (parameters and EMA);
- BNS distillation (``bns.make_pairs`` + ``bns.distill``): the learned coefficients;
- DEIS-SN calibration (``deis_sn.calibrate``): the statistic r(t);
- AdaSDE distillation (``adasde.distill``): the learned per-step parameters;
- progressive distillation (one ``distill_round``): the student's parameters;
- catch-up distillation (``train_catch_up``, RK12): the parameters.

Float32 throughout (the library's default), so differences are float rounding of sums that
are split differently over devices; noise and training randomness are drawn per example, never
per device. On a CPU host the devices are ``--xla_force_host_platform_device_count=8`` slices
of the same cores.

    python bench/device_equality.py --out device_equality.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

import jaxsample as js  # noqa: E402
from _common import environment, write_json  # noqa: E402
from jaxsample import data, nets, objectives, parallel, train  # noqa: E402
from jaxsample.distill._fit_solver import trainable_leaves
from jaxsample.distill import adasde, bns, catch_up, deis_sn, progressive  # noqa: E402


def _flat(tree) -> np.ndarray:
    return parallel.gather(ravel_pytree(tree)[0])


def _mixture(dim=4, components=3):
    return js.compare.benchmark_mixture(dim=dim, num_components=components)


def _sampling_setup():
    model = _mixture().model(js.VPCosine(), "eps")
    return model, js.edm(model.path, 8), js.initial_noise(jax.random.key(0), (13, 4))


def sampling_ode(mesh) -> np.ndarray:
    model, ts, noise = _sampling_setup()
    return parallel.gather(js.sample(model, js.dpm_solver_pp_2m(), ts, noise, mesh=mesh))


def sampling_sde(mesh) -> np.ndarray:
    model, _, noise = _sampling_setup()
    ts = js.power(model.path, 32, t_start=0.99, t_end=0.01)
    return parallel.gather(js.sample(model, js.ddpm_ancestral(), ts, noise, key=jax.random.key(3), mesh=mesh))


def reference(mesh) -> np.ndarray:
    model = _mixture().model(js.VPCosine(), "eps")
    noise = js.initial_noise(jax.random.key(0), (13, 4))
    return parallel.gather(js.reference_sample(model, noise, mesh=mesh))


def teacher_training(mesh) -> np.ndarray:
    net = nets.MLP(features=(16, 16), time_embed_dim=8)
    params = net.init(jax.random.key(0), jnp.zeros((1, 2)), jnp.zeros((1,)))["params"]
    state = train.TrainState.create(params, train.make_optimizer(3e-3, warmup_steps=2), seed=0, ema_decay=0.9)
    end, _ = train.fit(state, objectives.flow_matching_loss(net.apply), data.toy_batches("eight_gaussians", 16, seed=1),
                       num_steps=8, mesh=mesh, progress=False)
    return np.concatenate([_flat(end.params), _flat(end.ema_params)])


def bns_distillation(mesh) -> np.ndarray:
    model = _mixture(8, 4).model(js.RectifiedFlow(), "velocity")
    pairs = bns.make_pairs(model, 128, (8,), seed=0, mesh=mesh)
    val = bns.make_pairs(model, 64, (8,), seed=1, mesh=mesh)
    init = bns.BespokeNonStationary.from_solver(js.euler(), model.path, js.uniform(model.path, 3))
    solver, _ = bns.distill(model, pairs, val, init, num_steps=20, eval_every=10, batch_size=32,
                            learning_rate=5e-3, progress=False, mesh=mesh)
    return _flat(trainable_leaves(solver)[0])


def deis_sn_calibration(mesh) -> np.ndarray:
    model = _mixture().model(js.VPCosine(), "eps")
    ts = js.uniform(model.path, 50, 0.95, 0.05)
    stats = deis_sn.calibrate(model, (4,), num_samples=20, batch_size=12, ts=ts, progress=False, mesh=mesh)
    return np.asarray(stats.values)


def adasde_distillation(mesh) -> np.ndarray:
    model = _mixture().model(js.VPCosine(), "eps")
    ts = js.edm(model.path, 3, **js.compare.edm_interval(model.path))
    pairs = adasde.make_pairs(model, ts, 64, (4,), seed=0)
    val = adasde.make_pairs(model, ts, 16, (4,), seed=1)
    _, log = adasde.distill(model, adasde.Parameterisation(num_steps=3), ts, pairs, val, num_steps=3, eval_every=3,
                            batch_size=16, learning_rate=0.01, progress=False, mesh=mesh)
    return _flat(log["params"])


class _Residual(nn.Module):
    """A small correction network on top of the analytic teacher (the student starts equal to it)."""

    @nn.compact
    def __call__(self, x, t):
        emb = nets.sinusoidal_embedding(jnp.broadcast_to(t, x.shape[:1]) * 1000.0, 16)
        h = nn.silu(nn.Dense(64)(x) + nn.Dense(64)(emb))
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(nn.silu(nn.Dense(64)(h)))


def progressive_distillation(mesh) -> np.ndarray:
    gmm = js.GaussianMixture.random(jax.random.key(3), dim=2, num_components=3)
    teacher = gmm.model(js.VPCosine(), "x0")
    net = _Residual()
    params = net.init(jax.random.key(0), jnp.zeros((1, 2)), 0.5)["params"]

    def apply_fn(variables, x, t):
        return teacher.fn(x, t) + net.apply(variables, x, t)

    def batch_fn(step):
        return {"x": gmm.sample(jax.random.fold_in(jax.random.key(7), step), 16)}

    _, state, _ = progressive.distill_round(teacher, apply_fn, params, js.uniform(teacher.path, 8), batch_fn,
                                            parameterization="v", num_steps=3, learning_rate=1e-3, mesh=mesh,
                                            progress=False)
    return _flat(state.params)


def catch_up_distillation(mesh) -> np.ndarray:
    state, _ = catch_up.train_catch_up(nets.MLP(features=(16, 16), time_embed_dim=8),
                                       data.toy_batches("checkerboard", 16, seed=1), num_steps=3,
                                       example_x=jnp.zeros((1, 2)), method="rk12", learning_rate=1e-2, mesh=mesh,
                                       progress=False)
    return _flat(state.params)


LOOPS = {
    "sample, deterministic (DPM-Solver++ 2M)": sampling_ode,
    "sample, stochastic (DDPM ancestral, explicit key)": sampling_sde,
    "reference_sample (Dopri8)": reference,
    "teacher training (train.fit, flow matching)": teacher_training,
    "BNS distillation": bns_distillation,
    "DEIS-SN calibration": deis_sn_calibration,
    "AdaSDE distillation": adasde_distillation,
    "progressive distillation (one round)": progressive_distillation,
    "catch-up distillation (RK12)": catch_up_distillation,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--devices", default="1,2,8", help="device counts; the first is the baseline")
    args = parser.parse_args()
    counts = [int(n) for n in args.devices.split(",")]
    if max(counts) > jax.device_count():
        raise SystemExit(f"--devices asks for {max(counts)} devices; {jax.device_count()} are visible")
    rows = []
    print(f"| loop | {' | '.join(f'{n} devices' for n in counts[1:])} | scale |\n|---|" + "---:|" * len(counts))
    for name, run in LOOPS.items():
        t0 = time.perf_counter()
        base = run(parallel.make_mesh(counts[0]))
        diffs = {n: float(np.max(np.abs(run(parallel.make_mesh(n)) - base))) for n in counts[1:]}
        scale = float(np.max(np.abs(base)))
        rows += [{"loop": name, "devices": n, "max_abs_diff_vs_1": d, "scale": scale, "relative": d / scale,
                  "size": int(base.size)} for n, d in diffs.items()]
        print(f"| {name} | {' | '.join(f'{diffs[n]:.1e}' for n in counts[1:])} | {scale:.3g} |  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    write_json(args.out, {"benchmark": "device_equality", "baseline_devices": counts[0], "dtype": "float32",
                          "rows": rows, "environment": environment(),
                          "note": "host CPU devices share the same cores; differences are float rounding"})


if __name__ == "__main__":
    main()
