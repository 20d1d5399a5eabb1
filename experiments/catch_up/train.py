"""The catch-up study: CUD RK12 / RK23 / RK34 against plain flow matching at equal training
steps and batch, on the 2-D checkerboard (sliced Wasserstein), the 8x8 digits or Fashion-MNIST
(Frechet distance in the shipped digits / Fashion classifier's features).

Every method trains the same network (``CatchUpNet`` over the configured trunk, extra heads for
RK23 / RK34) with the same optimizer, batches, steps and seed, either from scratch or fine-tuned
from the shipped flow-matching teacher. Each trained network (EMA parameters) is sampled with
uniform-grid Euler at ``config.euler_steps`` steps and with the reference code's Heun at
``config.heun_nfe`` NFE: ``(nfe + 1) / 2`` uniform steps, Heun on all but the last, Euler on the
last (the last step ends at t = 0). Optionally the one-step stage is run on each catch-up network.

With ``config.reference_nfes`` (a teacher with a shipped ground truth, ``jaxsample/assets/demo``),
every network is also sampled with Euler at those NFEs on the ground truth's own noises, labels and
interval (uniform in t from its ``t_start`` to ``t_end``) and scored by PSNR against the teacher's
exact ODE solution and by Frechet distance: the rows ``bench/league.py --catch-up-results`` reads.
Training cost is counted in forward-pass equivalents of one sample (a backward pass counts 2):
``num_steps x batch x (FORWARD_PASSES + 2)``.
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

__all__ = ["train_and_evaluate", "heun_sample", "markdown_table", "model_evaluations", "FORWARD_PASSES"]

#: ``config.dataset`` -> the shipped teacher whose network (and, with ``init='teacher'``, weights) is trained.
TEACHERS = {"checkerboard": "checkerboard_flow", "digits": "digits_flow", "fashion_mnist": "fashion_flow"}

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
    if task.dataset in ("digits", "fashion_mnist"):
        imgs, labels = (data.load_digits("train") if task.dataset == "digits" else data.load_fashion_mnist("train"))[:2]
        batch_fn = data.ArrayBatcher({"x": imgs, "label": labels}, config.batch_size, seed=config.seed)
        return batch_fn, example_x, {"label": jnp.zeros((1,), jnp.int32)}
    return data.toy_batches(task.dataset, config.batch_size, seed=config.seed), example_x, None


def _evaluator(config, task):
    """``(evaluate(x), floor, metric name)``: sliced Wasserstein to exact samples (2-D) or the
    digits Frechet distance to the held-out digits (Fashion-MNIST: to the shipped statistics of
    the 10,000 held-out images), and the same metric between real sets."""
    if task.dataset == "fashion_mnist":
        train_imgs = data.load_fashion_mnist("train")[0]

        def evaluate(x):
            return task.frechet_distance(x)

        floor = {"real_split_frechet_distance": evaluate(train_imgs[:10_000])}
        return evaluate, floor, "frechet_distance"
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


def _evaluate_on_reference(model, task, ref, nfes):
    """``{nfe: {'psnr_db', 'fd'}}``: Euler at each NFE (uniform in t over the shipped ground truth
    ``ref``'s interval, :func:`jaxsample.demo.reference`) from its noises and labels, against its exact
    ODE solutions."""
    cond = {"label": jnp.asarray(ref["label"])} if "label" in ref else None
    out = {}
    for n in nfes:
        ts = grids.uniform(model.path, n, t_start=float(ref["t_start"]), t_end=float(ref["t_end"]))
        x = np.asarray(sample(model, solvers.euler(), ts, jnp.asarray(ref["noise"]), cond=cond))
        out[str(n)] = {"psnr_db": task.psnr(x, ref["target"]),
                       "fd": task.frechet_distance(x) if task.has_image_features else None}
    return out


def model_evaluations(method: str, num_steps: int, batch_size: int) -> int:
    """Training cost in forward-pass equivalents of one sample: the trained forward pass and its
    backward (3), plus the look-ahead evaluations under stop-gradient (``FORWARD_PASSES - 1``)."""
    return int(num_steps) * int(batch_size) * (FORWARD_PASSES[method] + 2)


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
        raise ValueError(f"dataset must be one of {sorted(TEACHERS)}, got {config.dataset!r}")
    task = tasks.load_task(TEACHERS[config.dataset])
    base, base_params = _network(config, task)
    batch_fn, example_x, example_cond = _data(config, task)
    evaluate, floor, metric = _evaluator(config, task)
    null_label = task.num_classes
    eval_cond = task.conditioning(config.num_eval, config.seed + 7919) or None
    noise = jax.random.normal(jax.random.key(30_000 + config.seed), (config.num_eval, *task.sample_shape))
    euler_steps = _as_tuple(config.euler_steps, int)
    reference_nfes = _as_tuple(config.get("reference_nfes") or (), int)
    if reference_nfes:
        from jaxsample import demo

        reference = demo.reference(task.name)
    methods = _as_tuple(config.methods)
    one_step_methods = _as_tuple(config.one_step_methods) if config.one_step_methods else ()
    rows = []
    if base_params is not None:  # the starting point every fine-tuned method shares
        init_model = nets.network_model(base, base_params, catch_up.RectifiedFlow(), "velocity")
        t0 = time.perf_counter()
        row = {"name": "teacher (start)", "method": "teacher", "train_seconds": 0.0, "forward_passes": 0,
               **_evaluate(init_model, evaluate, noise, eval_cond, euler_steps, config.heun_nfe)}
        if reference_nfes:
            row["reference"] = _evaluate_on_reference(init_model, task, reference, reference_nfes)
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
               "batch_size": config.batch_size,
               "model_evals": model_evaluations(method, config.num_steps, config.batch_size),
               "final_loss": (history or train.read_metrics(os.path.join(workdir, method)) or [{}])[-1].get("loss"),
               **_evaluate(model, evaluate, noise, eval_cond, euler_steps, config.heun_nfe)}
        if reference_nfes:
            row["reference"] = _evaluate_on_reference(model, task, reference, reference_nfes)
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
            if reference_nfes:
                r1["reference"] = _evaluate_on_reference(m1, task, reference, reference_nfes)
            rows.append(r1)
            print(json.dumps(r1), flush=True)
        _write_results(workdir, rows, metric, floor, config, task, euler_steps, reference_nfes)  # after every method
    if not methods:
        _write_results(workdir, rows, metric, floor, config, task, euler_steps, reference_nfes)
    print(markdown_table(rows, metric, euler_steps, config.heun_nfe), flush=True)
    return rows


def reference_table(rows, nfes) -> str:
    """PSNR against the exact ODE solution (and Frechet distance) of Euler at each NFE on the shipped
    ground truth's noises: the rows that carry ``'reference'``."""
    head = ["method", *[f"Euler {n}" for n in nfes], "model evals"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "reference" not in r:
            continue
        cells = []
        for n in nfes:
            v = r["reference"][str(n)]
            cells.append(f"{v['psnr_db']:.2f} dB" + (f" / {v['fd']:.1f}" if v.get("fd") is not None else ""))
        lines.append("| " + " | ".join([r["name"], *cells, str(r.get("model_evals", 0))]) + " |")
    return "\n".join(lines)


def _write_results(workdir, rows, metric, floor, config, task, euler_steps, reference_nfes):
    table = markdown_table(rows, metric, euler_steps, config.heun_nfe)
    write_json(os.path.join(workdir, "results.json"),
               {"metric": metric, "teacher": task.name, "rows": rows, "floor": floor, "config": config.to_dict(),
                "num_eval": config.num_eval, "reference_nfes": list(reference_nfes), "jax_version": jax.__version__})
    text = (f"{metric} ({config.dataset}, init={config.init}, {config.num_steps} steps, batch {config.batch_size}; "
            f"lower is better; floor {floor})\n\n{table}\n")
    if reference_nfes:
        text += (f"\nEuler on {task.name}'s shipped ground truth (its noises, labels and interval): PSNR against "
                 f"the exact ODE solution / Frechet distance\n\n{reference_table(rows, reference_nfes)}\n")
    write_text(os.path.join(workdir, "results.md"), text)
