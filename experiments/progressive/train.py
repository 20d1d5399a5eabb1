"""The progressive-distillation study: a shipped teacher distilled round by round to few steps.

For each round the student (``N`` DDIM steps) is scored on held-out noise against the teacher
sampled with DDIM at the same ``N`` and at its full step count, from the same noise:

- digits teachers: Frechet distance of the shipped digits-classifier features to the 300
  held-out digits (:func:`jaxsample.features.digits_frechet_distance`);
- 2-D teachers: sliced Wasserstein distance to exact data samples;
- both: RMSE of the samples against the teacher's full-step DDIM samples from the same noise.

Wall time per round is reported against the teacher's training time (from its card).

With ``config.compare_bns`` (digits teachers), the same noise is also sampled by the BNS solvers
shipped for the teacher (:func:`jaxsample.distill.bns.shipped`) at the students' step counts,
and by the exact ODE (adaptive Dopri8 at ``config.reference_rtol``) over each sampler's own
interval, so that students, BNS and the teacher's ODE are scored on identical noise: the metric
for each, and PSNR against the ODE solution it approximates.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsample._files import write_json, write_text
from jaxsample import tasks
from jaxsample.distill import progressive

__all__ = ["train_and_evaluate", "markdown"]

#: The teachers this study distils, with their training data.
TEACHERS = ("digits_vp", "fashion_vp", "checkerboard_flow")


def _batches(config, task):
    """The training batches the student sees (the teacher's own data)."""
    from jaxsample import data

    if task.dataset in ("digits", "fashion_mnist"):
        images, _ = data.load_digits("train") if task.dataset == "digits" else data.load_fashion_mnist("train")
        return data.ArrayBatcher({"x": images}, config.batch_size, seed=config.seed)
    return data.toy_batches(task.dataset, config.batch_size, seed=config.seed)


def _scorer(config, task):
    """``(metric name, score(x))``: digits Frechet distance, or sliced W2 to exact data samples."""
    from jaxsample import metrics

    if task.has_image_features:  # digits or Fashion-MNIST classifier features
        return "fd", task.frechet_distance
    reference = np.asarray(task.data_samples(jax.random.key(config.eval_seed + 1), config.num_eval))
    return "sliced_w2", lambda x: float(metrics.sliced_wasserstein(np.asarray(x), reference,
                                                                  key=jax.random.key(123)))


def _bns_comparison(config, teacher, noise, score):
    """``compare(n, student_x, teacher_x, ts) -> dict`` for :func:`train_and_evaluate`: the exact
    ODE over the DDIM grid ``ts``'s interval (computed once) and, at every ``n`` with a shipped
    BNS solver, that solver and the exact ODE over its interval, all from ``noise``."""
    from jaxsample import demo
    from jaxsample.distill import bns
    from jaxsample.metrics import psnr
    from jaxsample.sampling import reference_sample, sample

    rtol = config.get("reference_rtol", 1e-4)
    solvers = bns.shipped(config.teacher)
    if not solvers:
        raise ValueError(f"config.compare_bns: no BNS solver is shipped for teacher {config.teacher!r}")
    ode_cache = {}
    try:  # the demo's shipped ground truth of this teacher (noise, Dopri8 target, interval)
        shipped = demo.reference(config.teacher)
    except FileNotFoundError:
        shipped = None

    def ode(t_start, t_end):
        key = (float(t_start), float(t_end))
        if key not in ode_cache:
            if shipped is not None and np.allclose(key, (shipped["t_start"], shipped["t_end"]), rtol=1e-6) \
                    and np.array_equal(shipped["noise"], np.asarray(noise)):
                x = jnp.asarray(shipped["target"])  # the shipped ODE solution of this very noise (Dopri8)
            else:
                x = reference_sample(teacher, noise, t_start=t_start, t_end=t_end, rtol=rtol, atol=rtol)
            ode_cache[key] = (x, score(x))
        return ode_cache[key]

    def compare(n, student_x, teacher_x, ts):
        ode_x, ode_metric = ode(ts[0], ts[-1])
        out = {"exact_ode_metric": ode_metric, "student_psnr_db": float(psnr(student_x, ode_x)),
               "teacher_same_steps_psnr_db": float(psnr(teacher_x, ode_x))}
        if n in solvers:
            times = solvers[n].times
            bns_x = sample(teacher, solvers[n], times, noise)
            bns_ode_x, bns_ode_metric = ode(times[0], times[-1])
            out.update(bns_metric=score(bns_x), bns_psnr_db=float(psnr(bns_x, bns_ode_x)),
                       bns_exact_ode_metric=bns_ode_metric)
        return out

    return compare


def markdown(results: dict) -> str:
    """A markdown table of ``results`` (as written to results.json)."""
    m = results["metric"]
    f = "{:.2f}" if m == "fd" else "{:.3f}"
    lines = [f"| steps (NFE) | student {m} | teacher DDIM {m} (same steps) | student RMSE to teacher@full | "
             f"teacher DDIM RMSE to teacher@full | round wall time (s) | fraction of teacher training |",
             "|---|---|---|---|---|---|---|"]
    for r in results["rounds"]:
        frac = r.get("fraction_of_teacher_training")
        lines.append(f"| {r['student_steps']} | {f.format(r['student_metric'])} | {f.format(r['teacher_same_steps_metric'])} | "
                     f"{r['student_rmse_to_full']:.4f} | {r['teacher_same_steps_rmse_to_full']:.4f} | "
                     f"{r['train_seconds']:.0f} | {'' if frac is None else f'{frac:.2f}'} |")
    lines.append("")
    lines.append(f"Teacher DDIM at {results['start_steps']} steps (the distillation start): "
                 f"{m} {f.format(results['teacher_metric'][str(results['start_steps'])])}; "
                 f"at {results['full_steps']} steps (full): {f.format(results['teacher_metric'][str(results['full_steps'])])}.")
    if any("student_psnr_db" in r for r in results["rounds"]):
        lines += ["", f"Same noise, against the shipped BNS solvers and the teacher's exact ODE (PSNR in dB against "
                      f"the ODE solution over each sampler's own interval):", "",
                  f"| NFE | student {m} | BNS {m} | teacher DDIM {m} | exact ODE {m} (DDIM / BNS interval) | "
                  f"student PSNR | BNS PSNR | teacher DDIM PSNR |", "|---|---|---|---|---|---|---|---|"]
        for r in results["rounds"]:
            opt = lambda k, fmt: fmt.format(r[k]) if k in r else "-"  # noqa: E731
            lines.append(f"| {r['student_steps']} | {f.format(r['student_metric'])} | {opt('bns_metric', f)} | "
                         f"{f.format(r['teacher_same_steps_metric'])} | {f.format(r['exact_ode_metric'])} / "
                         f"{opt('bns_exact_ode_metric', f)} | {r['student_psnr_db']:.2f} | "
                         f"{opt('bns_psnr_db', '{:.2f}')} | {r['teacher_same_steps_psnr_db']:.2f} |")
    return "\n".join(lines)


def train_and_evaluate(config, workdir: str) -> dict:
    """Run the study described by ``config``; write ``workdir/results.json`` and ``results.md``."""
    from jaxsample.grids import get_grid
    from jaxsample.metrics import rmse
    from jaxsample.sampling import sample
    from jaxsample.solvers import ddim

    os.makedirs(workdir, exist_ok=True)
    if config.teacher not in TEACHERS:
        raise ValueError(f"config.teacher must be one of {TEACHERS}, got {config.teacher!r}")
    task = tasks.load_task(config.teacher, edm_interval=config.get("edm_interval", False))
    teacher = task.model
    module, params = task.network()
    batch_fn = _batches(config, task)
    metric_name, score = _scorer(config, task)
    schedule = progressive.halving_schedule(config.start_steps, config.final_steps)
    noise = task.noise(jax.random.key(config.eval_seed), config.num_eval)
    t_start, t_end = config.get("t_start"), config.get("t_end")
    if config.get("edm_interval", False):  # sigma / alpha from 80 to 0.002, the BNS solvers' interval
        t_start, t_end = task.t_start, task.t_end

    def grid(n):
        return get_grid(config.grid, teacher.path, n, t_start=t_start, t_end=t_end)

    def ddim_samples(model, n):
        return sample(model, ddim(), grid(n), noise)

    compare = _bns_comparison(config, teacher, noise, score) if config.get("compare_bns", False) else None
    t0 = time.perf_counter()
    teacher_metric, teacher_samples = {}, {}
    for n in sorted({config.full_steps, config.start_steps, *schedule}, reverse=True):
        teacher_samples[n] = ddim_samples(teacher, n)
        teacher_metric[str(n)] = score(teacher_samples[n])
        print(f"teacher DDIM {n:4d} steps: {metric_name} {teacher_metric[str(n)]:.3f}", flush=True)
    full = teacher_samples[config.full_steps]
    teacher_eval_seconds = time.perf_counter() - t0
    teacher_seconds = task.teacher_train_seconds
    rows = []

    def on_round_end(info, student):
        n = info["student_steps"]
        x = ddim_samples(student, n)
        row = {**{k: v for k, v in info.items() if k != "ts"},
               "student_metric": score(x), "teacher_same_steps_metric": teacher_metric[str(n)],
               "teacher_start_steps_metric": teacher_metric[str(config.start_steps)],
               "teacher_full_steps_metric": teacher_metric[str(config.full_steps)],
               "student_rmse_to_full": float(rmse(x, full)),
               "teacher_same_steps_rmse_to_full": float(rmse(teacher_samples[n], full))}
        if teacher_seconds:
            row["fraction_of_teacher_training"] = info["train_seconds"] / teacher_seconds
        if compare is not None:
            row.update(compare(n, x, teacher_samples[n], grid(n)))
        rows.append(row)
        print(f"round {info['round']}: {n:3d} steps | student {metric_name} {row['student_metric']:.3f} | teacher DDIM "
              f"{row['teacher_same_steps_metric']:.3f} | RMSE to teacher@{config.full_steps} "
              f"{row['student_rmse_to_full']:.4f} vs {row['teacher_same_steps_rmse_to_full']:.4f} | "
              f"{info['train_seconds']:.0f} s", flush=True)
        np.save(os.path.join(workdir, f"student_{n}steps_samples.npy"), np.asarray(x[:64]))

    steps = config.steps_per_round
    steps = list(steps) if isinstance(steps, (list, tuple)) else int(steps)
    _, rounds = progressive.progressive_distill(
        teacher, module.apply, batch_fn, start_steps=config.start_steps, final_steps=config.final_steps,
        parameterization=config.parameterization, init_params=params, weighting=config.weighting,
        steps_per_round=steps, learning_rate=config.learning_rate, grad_clip=config.grad_clip,
        decay=config.decay, ema_decay=config.ema_decay, final_x0=config.final_x0, grid=config.grid,
        t_start=t_start, t_end=t_end, seed=config.seed, workdir=os.path.join(workdir, "rounds"),
        checkpoint_every=config.checkpoint_every, log_every=config.log_every, progress=config.progress,
        on_round_end=on_round_end)
    results = {"teacher": config.teacher, "metric": metric_name, "start_steps": config.start_steps,
               "full_steps": config.full_steps, "teacher_metric": teacher_metric, "rounds": rows,
               "teacher_train_seconds": teacher_seconds, "teacher_eval_seconds": teacher_eval_seconds,
               "total_distill_seconds": sum(r["train_seconds"] for r in rows), "num_eval": config.num_eval,
               "config": config.to_dict(), "jax_version": jax.__version__}
    write_json(os.path.join(workdir, "results.json"), results)
    write_text(os.path.join(workdir, "results.md"), markdown(results) + "\n")
    return results
