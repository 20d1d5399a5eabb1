"""Seconds per training step of flow matching and CUD RK12 / RK23 / RK34 (same network and batch).

    python experiments/catch_up/step_cost.py --out /tmp/cu_step_cost.json

Each method's train step is compiled first; then the methods are timed in turn, ``--repeats``
times ``--steps`` steps each, and the fastest repeat is kept (the machine may be shared).
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp

from jaxsample._files import write_json
from jaxsample import data, objectives, teachers, train
from jaxsample.distill import catch_up


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    imgs, labels = data.load_digits("train")[:2]
    settings = {
        "checkerboard (MLP 4x256, batch 256)": (
            teachers.build_module("MLP", teachers.teacher_card("checkerboard_flow")["net"]),
            data.toy_batches("checkerboard", 256)(0), jnp.zeros((1, 2)), None, args.steps),
        "digits (U-Net 32, batch 64)": (
            teachers.build_module("UNet", teachers.teacher_card("digits_flow")["net"]),
            {"x": jnp.asarray(imgs[:64]), "label": jnp.asarray(labels[:64])}, jnp.zeros((1, 8, 8, 1)),
            {"label": jnp.zeros((1,), jnp.int32)}, max(2, args.steps // 4)),
    }
    out = {}
    for name, (base, batch, example_x, cond, steps) in settings.items():
        runs = {}
        for method in catch_up.METHODS:
            order = catch_up.method_order(method)
            net = catch_up.CatchUpNet(base, order)
            if method == "flow_matching":
                loss_fn = objectives.flow_matching_loss(net.apply)
            else:
                loss_fn = catch_up.catch_up_loss(net.apply, method=method)
            params = catch_up.init_catch_up_params(base, order, example_x, example_cond=cond)
            state = train.TrainState.create(params, train.make_optimizer(1e-4), seed=0)
            state, _ = train.train_step(state, batch, loss_fn)  # compile
            jax.block_until_ready(state.params)
            runs[method] = (state, loss_fn)
        best = {m: float("inf") for m in runs}
        for _ in range(args.repeats):
            for method, (state, loss_fn) in runs.items():
                t0 = time.perf_counter()
                for _ in range(steps):
                    state, _ = train.train_step(state, batch, loss_fn)
                jax.block_until_ready(state.params)
                best[method] = min(best[method], (time.perf_counter() - t0) / steps)
        out[name] = {m: {"seconds_per_step": s, "relative_to_flow_matching": s / best["flow_matching"]}
                     for m, s in best.items()}
        print(name, json.dumps(out[name]), flush=True)
    write_json(args.out, {"results": out, "device": jax.devices()[0].device_kind, "jax_version": jax.__version__})


if __name__ == "__main__":
    main()
