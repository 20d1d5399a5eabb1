"""The catch-up study: CUD RK12 / RK23 / RK34 against plain flow matching at equal training
steps and batch, on the 2-D checkerboard (sliced Wasserstein) or the 8x8 digits (Frechet
distance on the shipped digits classifier).

Every method trains the same network (``CatchUpNet`` over the configured trunk, extra heads for
RK23 / RK34) with the same optimizer, batches, steps and seed, either from scratch or fine-tuned
from the shipped flow-matching teacher. Each trained network (EMA parameters) is sampled with
uniform-grid Euler at ``config.euler_steps`` steps and with the reference code's Heun at
``config.heun_nfe`` NFE: ``(nfe + 1) / 2`` uniform steps, Heun on all but the last, Euler on the
last (the last step ends at t = 0). Optionally the one-step stage is run on each catch-up network.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample._files import write_json, write_text
from jaxsample import data, grids, metrics, nets, solvers, tasks, teachers, train
from jaxsample.distill import catch_up
from jaxsample.sampling import sample

__all__ = ["train_and_evaluate", "heun_sample", "markdown_table", "FORWARD_PASSES"]

#: ``config.dataset`` -> the shipped teacher whose network (and, with ``init='teacher'``, weights) is trained.
TEACHERS = {"checkerboard": "checkerboard_flow", "digits": "digits_flow"}

#: Network forward passes per training example (gradient pass counted as one forward).
FORWARD_PASSES = {"flow_matching": 1, "rk12": 2, "rk23": 4, "rk34": 6}


def heun_sample(model, nfe: int, noise, cond=None):
    """The reference code's Heun sampler with ``nfe`` (odd) network calls on a uniform grid from
    t = 1 to 0: Heun steps, then one Euler step into t = 0."""
    if nfe < 1 or nfe % 2 == 0:
        raise ValueError(f"nfe must be a positive odd integer, got {nfe}")
    n = (nfe + 1) // 2
    ts = grids.uniform(model.path, n)
    x = noise
    if n > 1:
        x = sample(model, solvers.heun(), ts[:n], noise, cond=cond)
    # sample() starts at sigma(ts[0]) * noise: rescale so the Euler step starts exactly at x.
    return sample(model, solvers.euler(), ts[n - 1:], x / model.path.sigma(ts[n - 1]), cond=cond)


def _as_tuple(value, cast=str) -> tuple:
    """A config list: a tuple, or a comma-separated string (``--config.methods=rk12,rk23``)."""
    if isinstance(value, str):
        value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    flat = []
    for v in value:
        flat.extend(_as_tuple(v, cast) if isinstance(v, str) and "," in v else [v])
    return tuple(cast(v.strip()) if isinstance(v, str) else cast(v) for v in flat)


def _network(config, task):
    """``(base module, base_params or None)``: the teacher's network (or ``config.net``), from
    the teacher's weights with ``config.init == 'teacher'``, else from scratch."""
    net_cfg = dict(config.net) if config.get("net") else dict(task.card["net"])
    if task.num_classes is not None:
        net_cfg.setdefault("num_classes", task.num_classes)
    base = teachers.build_module(task.card["module"], net_cfg)
    return base, (task.network()[1] if config.init == "teacher" else None)


def _data(config, task):
    """``(batch_fn, example_x, example_cond)`` of the training data."""
    example_x = jnp.zeros((1, *task.sample_shape))
    if task.dataset == "digits":
        imgs, labels = data.load_digits("train")[:2]
        batch_fn = data.ArrayBatcher({"x": imgs, "label": labels}, config.batch_size, seed=config.seed)
        return batch_fn, example_x, {"label": jnp.zeros((1,), jnp.int32)}
    return data.toy_batches(task.dataset, config.batch_size, seed=config.seed), example_x, None


def _evaluator(config, task):
    """``(evaluate(x), floor, metric name)``: sliced Wasserstein to exact samples (2-D) or the
    digits Frechet distance to the held-out digits, and the same metric between real sets."""
    if task.dataset == "digits":
        test_imgs = data.load_digits("test")[0]
        train_imgs = data.load_digits("train")[0]

        def evaluate(x):
            return task.frechet_distance(x, reference=test_imgs)

        floor = {"real_split_frechet_distance": evaluate(train_imgs[:len(test_imgs)])}
        return evaluate, floor, "frechet_distance"
    ref = np.asarray(task.data_samples(jax.random.key(10_000 + config.seed), config.num_eval))
    ref2 = np.asarray(task.data_samples(jax.random.key(20_000 + config.seed), config.num_eval))
    directions = np.asarray(jax.random.normal(jax.random.key(7), (256, 2)))

    def evaluate(x):
        return metrics.sliced_wasserstein(np.asarray(x), ref, directions=directions)

    return evaluate, {"real_sliced_wasserstein": evaluate(ref2)}, "sliced_wasserstein"


def _evaluate(model, evaluate, noise, cond, euler_steps, heun_nfe):
    out = {}
    for n in euler_steps:
        ts = grids.uniform(model.path, n)
        out[f"euler_{n}"] = evaluate(sample(model, solvers.euler(), ts, noise, cond=cond))
    if heun_nfe:
        out[f"heun_nfe{heun_nfe}"] = evaluate(heun_sample(model, heun_nfe, noise, cond))
    return out


def _recorded_seconds(directory, history, seconds):
    """Training seconds of the run in ``directory``: measured now, or, when a finished run was
    only restored (``history`` empty: no step ran), the time recorded by the run that trained it."""
    record = os.path.join(directory, "train_seconds.json")
    if not history and os.path.exists(record):
        with open(record) as f:
            return json.load(f)["train_seconds"]
    os.makedirs(directory, exist_ok=True)
    write_json(record, {"train_seconds": seconds})
    return seconds


def markdown_table(rows, metric: str, euler_steps, heun_nfe) -> str:
    cols = [f"euler_{n}" for n in euler_steps] + ([f"heun_nfe{heun_nfe}"] if heun_nfe else [])
    head = ["method", *[c.replace("euler_", "Euler ").replace("heun_nfe", "Heun NFE ") for c in cols],
            "train s", "fwd/example"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [f"{r[c]:.3f}" if metric == "sliced_wasserstein" else f"{r[c]:.2f}" for c in cols]
        cells = [r["name"], *vals, f"{r['train_seconds']:.0f}", str(r["forward_passes"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train_and_evaluate(config, workdir: str) -> list[dict]:
    """Run the study of ``config``; write ``workdir/results.json`` and ``workdir/results.md``."""
    os.makedirs(workdir, exist_ok=True)
    if config.dataset not in TEACHERS:
        raise ValueError(f"dataset must be 'checkerboard' or 'digits', got {config.dataset!r}")
    task = tasks.load_task(TEACHERS[config.dataset])
    base, base_params = _network(config, task)
    batch_fn, example_x, example_cond = _data(config, task)
    evaluate, floor, metric = _evaluator(config, task)
    null_label = task.num_classes
    eval_cond = task.conditioning(config.num_eval, config.seed + 7919) or None
    noise = jax.random.normal(jax.random.key(30_000 + config.seed), (config.num_eval, *task.sample_shape))
    euler_steps = _as_tuple(config.euler_steps, int)
    methods = _as_tuple(config.methods)
    one_step_methods = _as_tuple(config.one_step_methods) if config.one_step_methods else ()
    rows = []
    if base_params is not None:  # the starting point every fine-tuned method shares
        init_model = nets.network_model(base, base_params, catch_up.RectifiedFlow(), "velocity")
        t0 = time.perf_counter()
        row = {"name": "teacher (start)", "method": "teacher", "train_seconds": 0.0, "forward_passes": 0,
               **_evaluate(init_model, evaluate, noise, eval_cond, euler_steps, config.heun_nfe)}
        row["eval_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    for method in methods:
        t0 = time.perf_counter()
        state, history = catch_up.train_catch_up(
            base, batch_fn, num_steps=config.num_steps, example_x=example_x, example_cond=example_cond,
            method=method, delta_schedule=config.delta_schedule, num_segments=config.num_segments,
            weighting=config.weighting, weights=_as_tuple(config.weights, float), base_params=base_params,
            label_dropout=config.label_dropout if null_label is not None else 0.0, null_label=null_label,
            learning_rate=config.learning_rate, warmup_steps=config.warmup_steps, grad_clip=config.grad_clip,
            ema_decay=config.ema_decay, seed=config.seed, workdir=os.path.join(workdir, method),
            checkpoint_every=config.checkpoint_every, log_every=config.log_every, progress=config.progress)
        train_seconds = _recorded_seconds(os.path.join(workdir, method), history, time.perf_counter() - t0)
        params = state.ema_params if config.eval_ema else state.params
        model = catch_up.catch_up_model(base, params, method=method)
        t0 = time.perf_counter()
        row = {"name": method, "method": method, "train_seconds": train_seconds,
               "forward_passes": FORWARD_PASSES[method], "num_steps": config.num_steps,
               "final_loss": (history or train.read_metrics(os.path.join(workdir, method)) or [{}])[-1].get("loss"),
               **_evaluate(model, evaluate, noise, eval_cond, euler_steps, config.heun_nfe)}
        row["eval_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
        if config.one_step_steps and method in one_step_methods:
            pair_noise = jax.random.normal(jax.random.key(40_000 + config.seed),
                                           (config.one_step_pairs, *task.sample_shape))
            pair_cond = task.conditioning(config.one_step_pairs, config.seed + 1) or None
            t0 = time.perf_counter()
            pairs = catch_up.trajectory_pairs(model, pair_noise, num_steps=config.one_step_teacher_steps,
                                              cond=pair_cond)
            st1, h1 = catch_up.train_one_step(base, params, pairs, num_steps=config.one_step_steps,
                                             batch_size=config.batch_size, method=method,
                                             anchor_weight=config.one_step_anchor_weight,
                                             learning_rate=config.learning_rate, ema_decay=config.ema_decay,
                                             seed=config.seed, workdir=os.path.join(workdir, method + "_one_step"),
                                             log_every=config.log_every, progress=config.progress)
            secs = _recorded_seconds(os.path.join(workdir, method + "_one_step"), h1, time.perf_counter() - t0)
            m1 = catch_up.catch_up_model(base, st1.ema_params if config.eval_ema else st1.params, method=method)
            r1 = {"name": f"{method} + one-step stage", "method": method + "+one_step",
                  "train_seconds": train_seconds + secs, "forward_passes": FORWARD_PASSES[method],
                  **_evaluate(m1, evaluate, noise, eval_cond, euler_steps, config.heun_nfe)}
            rows.append(r1)
            print(json.dumps(r1), flush=True)
    table = markdown_table(rows, metric, euler_steps, config.heun_nfe)
    write_json(os.path.join(workdir, "results.json"),
               {"metric": metric, "rows": rows, "floor": floor, "config": config.to_dict(),
                "num_eval": config.num_eval, "jax_version": jax.__version__})
    write_text(os.path.join(workdir, "results.md"),
               f"{metric} ({config.dataset}, init={config.init}, {config.num_steps} steps, batch {config.batch_size}; "
               f"lower is better; floor {floor})\n\n{table}\n")
    print(table, flush=True)
    return rows
