"""Train, evaluate and export the shipped teachers of jaxsample.teachers: ``train_and_evaluate``.

    python experiments/teachers/main.py --config experiments/teachers/configs/digits_flow.py \
        --workdir /tmp/teachers/digits_flow --config.export_dir=jaxsample/assets

Configs: digits_classifier.py (train this one first: the digits teachers are evaluated in its
features), digits_flow.py, digits_vp.py, checkerboard_flow.py.

Writes DIR/<name>.msgpack (EMA weights, float16), DIR/<name>.json (the card: config, command,
wall time, steps, final loss, evaluation), DIR/<name>_samples.png, DIR/metrics.jsonl and
checkpoints; with --config.export_dir also copies weights, card and PNG there.

Evaluation: for the digits teachers, the Frechet distance in the digits-classifier features
between ``eval.num_samples`` samples from ``sampling.reference_sample`` (adaptive Dopri8, the
exact ODE solution up to ``eval.rtol``) and the 300 held-out digits, next to the same distance
for ``eval.num_samples`` real training digits (the real-split baseline) and for pure noise.
For the conditional teacher, labels are drawn uniformly and guidance scale 1 is used (the
plain conditional model); the classifier's agreement with the labels is reported too. For the
checkerboard, the sliced Wasserstein distance between the teacher's exact samples and fresh
exact checkerboard samples, next to the SW between two independent exact sample sets.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.teachers import classifier
from jaxsample._files import atomic_write, save_figure, write_json
from jaxsample import data, features, metrics, objectives, parallel, sampling, teachers, train


def _command() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith("main.py"):
        argv[0] = "experiments/teachers/main.py"
    return "python " + " ".join(shlex.quote(a) for a in argv)


def _init_params(module, x, **cond):
    # rbg keys: flax init compiles much faster than with threefry.
    return module.init(jax.random.key(0, impl="rbg"), x, **cond)["params"]


def _logged_train_seconds(records) -> float:
    """Training wall time over every session of a resumed run, from the log's steps/s records."""
    total, last = 0.0, 0
    for r in records:
        total += (r["step"] - last) / r["steps_per_sec"]
        last = r["step"]
    return total


def _num_params(params) -> int:
    return int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params)))


# --------------------------------------------------------------------------------------------
# Figures


def _save_digits_grid(images, path, ncols=10, upscale=4):
    if not parallel.is_main_process():
        return
    from PIL import Image

    images = np.asarray(images)[..., 0]
    n = (images.shape[0] // ncols) * ncols
    images = np.clip((images[:n] + 1.0) * 127.5, 0, 255).astype(np.uint8)
    h, w = images.shape[1:]
    grid = np.full((n // ncols * (h + 1) + 1, ncols * (w + 1) + 1), 255, np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, ncols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = img
    Image.fromarray(grid).resize((grid.shape[1] * upscale, grid.shape[0] * upscale), Image.NEAREST).save(path)


def _save_scatter(x, ref, path):
    if not parallel.is_main_process():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6, 3), dpi=80)
    for ax, pts, title in zip(axes, (x, ref), ("teacher (exact ODE)", "data")):
        ax.scatter(pts[:, 0], pts[:, 1], s=0.5, c="k")
        ax.set_xlim(-2.5, 2.5), ax.set_ylim(-2.5, 2.5), ax.set_aspect("equal"), ax.set_title(title, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Training

#: Image datasets: loader, feature classifier (shipped) and the held-out reference of the evaluation.
IMAGE_DATASETS = {
    "digits": {"load": data.load_digits, "classifier": "digits_classifier",
               "reference": "the 300 held-out digits (data.load_digits('test')), shipped digits_classifier features"},
    "fashion_mnist": {"load": data.load_fashion_mnist, "classifier": "fashion_classifier",
                      "reference": "the 10,000 held-out Fashion-MNIST images (data.load_fashion_mnist('test')), "
                                   "shipped fashion_classifier features"},
}


def _train_generative(config):
    module = teachers.build_module(config.module, config.net.to_dict())
    path = teachers.build_path(config.path)
    if config.dataset in IMAGE_DATASETS:
        images, labels = IMAGE_DATASETS[config.dataset]["load"]("train")
        arrays = {"x": images}
        cond = {}
        if config.net.get("num_classes"):
            arrays["label"] = labels
            cond = {"label": jnp.zeros((1,), jnp.int32)}
        batcher = data.ArrayBatcher(arrays, config.batch_size, seed=config.seed)
        params = _init_params(module, jnp.zeros((1, *images.shape[1:])), t=jnp.zeros((1,)), **cond)
    else:
        batcher = data.toy_batches(config.dataset, config.batch_size, seed=config.seed)
        params = _init_params(module, jnp.zeros((1, 2)), t=jnp.zeros((1,)))
    null_label = config.net.get("num_classes") or None
    loss_fn = objectives.diffusion_loss(
        module.apply, path, config.prediction, config.weighting,
        t_range=tuple(config.t_range) if config.get("t_range") else None,
        label_dropout=config.get("label_dropout", 0.0), null_label=null_label)
    tx = train.make_optimizer(config.learning_rate, warmup_steps=config.warmup_steps,
                              decay_steps=config.num_steps, grad_clip=config.grad_clip)
    state = train.TrainState.create(params, tx, seed=config.seed, ema_decay=config.ema_decay)
    return module, state, loss_fn, batcher


# --------------------------------------------------------------------------------------------
# Evaluation


def _evaluate_images(config, model, workdir, name, mesh=None):
    ev = config.eval
    n = ev.num_samples
    spec = IMAGE_DATASETS[config.dataset]
    clf = teachers.load_classifier(spec["classifier"])
    key = jax.random.key(ev.seed)
    k_noise, k_label, k_real = jax.random.split(key, 3)
    test_x, _ = spec["load"]("test")
    train_x, _ = spec["load"]("train")
    noise = sampling.initial_noise(k_noise, (n, *test_x.shape[1:]))
    cond = {}
    labels = None
    if config.net.get("num_classes"):
        labels = jax.random.randint(k_label, (n,), 0, config.net.num_classes)
        cond = {"label": labels}
    t0 = time.perf_counter()
    samples = sampling.reference_sample(model, noise, cond=cond, solver=ev.solver, rtol=ev.rtol, atol=ev.atol,
                                        mesh=mesh)
    samples = parallel.gather(samples)
    sample_s = time.perf_counter() - t0
    idx = np.random.default_rng(ev.seed).choice(train_x.shape[0], n, replace=False)
    f_test = features.digits_features(test_x, clf)
    fd = lambda x: metrics.frechet_distance(features.digits_features(x, clf), f_test)  # noqa: E731
    out = {
        "num_samples": n,
        "sampler": f"reference_sample(solver={ev.solver!r}, rtol={ev.rtol}, atol={ev.atol})",
        "sampling_wall_time_s": round(sample_s, 1),
        "frechet_distance": fd(samples),
        "frechet_distance_clipped": fd(np.clip(samples, -1, 1)),
        "real_split_frechet_distance": fd(train_x[idx]),
        "real_split_frechet_distance_all_train": fd(train_x),
        "noise_frechet_distance": fd(np.asarray(noise)),
        "reference": spec["reference"],
        "sample_range": [float(samples.min()), float(samples.max())],
    }
    out["ratio_to_real_split"] = out["frechet_distance"] / out["real_split_frechet_distance"]
    if labels is not None:
        logits = clf[0].apply({"params": clf[1]}, jnp.asarray(np.clip(samples, -1, 1)))
        out["guidance_scale"] = 1.0
        out["labels"] = "uniform over 0..9"
        out["classifier_agreement_with_labels"] = float(jnp.mean(jnp.argmax(logits, -1) == labels))
    grid = samples[:100]
    if labels is not None:  # one row per class
        order = np.argsort(np.asarray(labels), kind="stable")
        per_class = [order[np.asarray(labels)[order] == c][:10] for c in range(10)]
        if all(len(p) == 10 for p in per_class):
            grid = samples[np.concatenate(per_class)]
    _save_digits_grid(grid, os.path.join(workdir, f"{name}_samples.png"))
    return out


def _evaluate_toy(config, model, workdir, name, mesh=None):
    ev = config.eval
    n = ev.num_samples
    k_noise, k_a, k_b = jax.random.split(jax.random.key(ev.seed), 3)
    noise = sampling.initial_noise(k_noise, (n, 2))
    t0 = time.perf_counter()
    samples = parallel.gather(sampling.reference_sample(model, noise, solver=ev.solver, rtol=ev.rtol, atol=ev.atol,
                                                        mesh=mesh))
    sample_s = time.perf_counter() - t0
    real_a = np.asarray(data.toy_sample(config.dataset, k_a, n))
    real_b = np.asarray(data.toy_sample(config.dataset, k_b, n))
    sw = lambda x, y: metrics.sliced_wasserstein(x, y, num_projections=256, key=jax.random.key(1))  # noqa: E731
    out = {
        "num_samples": n,
        "sampler": f"reference_sample(solver={ev.solver!r}, rtol={ev.rtol}, atol={ev.atol})",
        "sampling_wall_time_s": round(sample_s, 1),
        "sliced_wasserstein": sw(samples, real_a),
        "real_sliced_wasserstein": sw(real_b, real_a),
        "noise_sliced_wasserstein": sw(np.asarray(noise), real_a),
        "reference": f"fresh exact {config.dataset} samples; baseline: two independent exact sets",
    }
    out["ratio_to_real"] = out["sliced_wasserstein"] / out["real_sliced_wasserstein"]
    _save_scatter(samples, real_a, os.path.join(workdir, f"{name}_samples.png"))
    return out


# --------------------------------------------------------------------------------------------


def train_and_evaluate(config, workdir):
    """Train teacher ``config.name``, export its EMA weights and card to ``workdir`` (and to
    ``config.export_dir`` if set), and return the card.

    Data-parallel over ``config.num_devices`` devices, by default every device of every host on
    an accelerator (:func:`jaxsample.parallel.auto_mesh`): the batch is split over them, the same
    steps are taken; only process 0 writes files.
    """
    workdir = os.path.abspath(workdir)
    mesh = parallel.auto_mesh(config.get("num_devices", 0))
    num_devices = 1 if mesh is None else parallel.num_shards(mesh)
    main = parallel.is_main_process()
    os.makedirs(workdir, exist_ok=True)
    name = config.name
    command = _command()
    if name.endswith("_classifier"):
        module, state, loss_fn, batcher = classifier.setup(config)
    else:
        module, state, loss_fn, batcher = _train_generative(config)
    t0 = time.perf_counter()
    state, history = train.fit(state, loss_fn, batcher, num_steps=config.num_steps, workdir=workdir,
                               log_every=config.log_every, progress=config.progress, mesh=mesh,
                               checkpoint_every=config.get("checkpoint_every"))
    train_s = time.perf_counter() - t0
    if main and history != [] and len(history) < len(train.read_metrics(workdir)):  # resumed: add the earlier sessions
        train_s = _logged_train_seconds(train.read_metrics(workdir))
    shipped = state.ema_params if config.ema_decay > 0 else state.params
    blob = teachers.serialize_params(jax.tree_util.tree_map(parallel.gather, shipped), config.store_dtype)
    weights_file = f"{name}.msgpack"
    if main:
        with atomic_write(os.path.join(workdir, weights_file)) as f:
            f.write(blob)
    params = teachers._restore(blob)  # evaluate exactly what is shipped (float16-rounded)
    recent = [r["loss"] for r in history[-10:]] if history else []
    card = {
        "name": name,
        "description": config.description,
        "module": classifier.DATASETS[config.get("dataset", "digits")][0] if name.endswith("_classifier")
        else config.module,
        "net": config.net.to_dict(),
        "weights_file": weights_file,
        "weights_dtype": config.store_dtype,
        "num_params": _num_params(params),
        "command": command,
        "config": config.to_dict(),
        "train_wall_time_s": round(train_s, 1),
        "steps": int(state.step),
        "final_loss": history[-1]["loss"] if history else None,
        "final_loss_mean_last_10_logs": float(np.mean(recent)) if recent else None,
        "machine": f"{jax.default_backend()} ({os.cpu_count()} cores, shared)",
        "jax_version": jax.__version__,
        "date": datetime.date.today().isoformat(),
    }
    if name.endswith("_classifier"):
        evaluation = classifier.evaluate(module, params, config.get("dataset", "digits"))
        card["test_accuracy"] = evaluation["test_accuracy"]
        card["eval"] = evaluation
    else:
        from jaxsample import nets

        card["path"] = config.path
        card["prediction"] = config.prediction
        model = nets.network_model(module, params, teachers.build_path(config.path), config.prediction)
        evaluate = _evaluate_toy if config.dataset in data.TOY_DATASETS else _evaluate_images
        card["eval"] = evaluate(config, model, workdir, name, mesh)
    if not main:
        return card
    card["num_devices"] = num_devices
    card_path = os.path.join(workdir, f"{name}.json")
    write_json(card_path, card, indent=2)
    if config.export_dir:
        os.makedirs(config.export_dir, exist_ok=True)
        for fname in (weights_file, f"{name}.json", f"{name}_samples.png"):
            src = os.path.join(workdir, fname)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(config.export_dir, fname))
    print(json.dumps({k: card[k] for k in ("name", "train_wall_time_s", "steps", "final_loss", "eval")}, indent=2))
    return card

