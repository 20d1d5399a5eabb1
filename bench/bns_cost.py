"""What does distilling a BNS solver cost, against training its teacher, on the same machine?

For the shipped ``digits_vp`` teacher, in one run and each timing the median of ``--repeats``
runs after warm-up:

- teacher: one training step of the teacher exactly as it was trained (its card's network,
  loss, optimizer and batch); the teacher's training cost is this step times its card's steps;
- pairs: the ground truth BNS trains on, ``bns.make_pairs`` on a batch of noises, per pair, both
  ways: adaptive Dopri8 at the BNS study's tolerance (the check) and the batched fixed-grid solve
  (``bns.FIXED_GRID``); ``--ground-truth`` picks the one counted in the totals;
- BNS steps: one jitted BNS distillation step (loss through the whole rollout, Adam) at each
  NFE, at the study's batch size;
- validation: one PSNR evaluation pass over the validation pairs.

BNS cost at NFE n = pairs x (train + validation pairs) + steps x step time + evaluations x
validation pass. Written as seconds and as a fraction of the teacher's training cost, for the
BNS study's settings (``--steps``) and for a short run (``--short-steps``).

    python bench/bns_cost.py --out bns_cost.json
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxsample as js  # noqa: E402
from _common import environment, time_call, write_json  # noqa: E402
from jaxsample import data, objectives, tasks, teachers, train  # noqa: E402
from jaxsample.distill import bns
from jaxsample.distill._fit_solver import trainable_leaves  # noqa: E402

TEACHER = "digits_vp"


def teacher_step_seconds(repeats: int) -> tuple[float, dict]:
    card = teachers.teacher_card(TEACHER)
    c = card["config"]
    module = teachers.build_module(c["module"], c["net"])
    path = teachers.build_path(c["path"])
    images, _ = data.load_digits("train")
    batch = {"x": jnp.asarray(images[: c["batch_size"]])}
    params = module.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,)))["params"]
    loss_fn = objectives.diffusion_loss(module.apply, path, c["prediction"], c["weighting"])
    tx = train.make_optimizer(c["learning_rate"], warmup_steps=c["warmup_steps"], decay_steps=c["num_steps"],
                              grad_clip=c["grad_clip"])
    state = train.TrainState.create(params, tx, seed=0, ema_decay=c["ema_decay"])
    median, _ = time_call(lambda s: train.train_step(s, batch, loss_fn)[0].params, state, repeats=repeats)
    return median, {"steps": card["steps"], "batch_size": c["batch_size"],
                    "card_train_wall_time_s": card["train_wall_time_s"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--nfes", default="4,8,16")
    p.add_argument("--num-train", type=int, default=256, help="training pairs (the BNS study's digits runs)")
    p.add_argument("--num-val", type=int, default=128, help="validation pairs")
    p.add_argument("--batch", type=int, default=16, help="BNS batch size")
    p.add_argument("--steps", type=int, default=300, help="BNS steps of the study's digits runs")
    p.add_argument("--short-steps", type=int, default=50, help="a short run (most of the gain at NFE 4)")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--pair-batch", type=int, default=64, help="noises per timed make_pairs call")
    p.add_argument("--rtol", type=float, default=1e-4, help="adaptive reference tolerance (the BNS digits configs)")
    p.add_argument("--fixed-grid-steps", type=int, default=bns.FIXED_GRID["steps"],
                   help="steps of the fixed-grid ground truth (default: bns.FIXED_GRID's)")
    p.add_argument("--ground-truth", default="fixed_grid", choices=("fixed_grid", "adaptive"),
                   help="the pairs counted in the totals: bns.make_pairs' method (both are timed)")
    args = p.parse_args(argv)
    nfes = [int(n) for n in args.nfes.split(",")]

    teacher_s, teacher_info = teacher_step_seconds(args.repeats)
    teacher_total = teacher_s * teacher_info["steps"]
    print(f"teacher step {1e3 * teacher_s:.1f} ms x {teacher_info['steps']} steps = {teacher_total:.0f} s", flush=True)

    task = tasks.load_task(TEACHER, edm_interval=True)  # as the BNS study's digits configs
    model, shape, iv = task.model, task.sample_shape, task.interval
    methods = {"adaptive": dict(rtol=args.rtol, atol=args.rtol, **iv),
               "fixed_grid": dict(method="fixed_grid", batch_size=args.pair_batch, **iv,
                                  fixed_grid={"steps": args.fixed_grid_steps})}
    per_pair_by_method = {}
    for method, kw in methods.items():  # the adaptive solve is the check; the fixed grid is batched
        pairs_call, _ = time_call(lambda s: bns.make_pairs(model, args.pair_batch, shape, seed=s, **kw)["target"], 0,
                                  repeats=max(2, args.repeats // 2), warmup=1)
        per_pair_by_method[method] = pairs_call / args.pair_batch
        print(f"ground truth ({method}): {per_pair_by_method[method] * 1e3:.1f} ms per pair", flush=True)
    per_pair = per_pair_by_method[args.ground_truth]
    val = bns.make_pairs(model, args.num_val, shape, seed=1, **methods[args.ground_truth])
    train_batch = {k: v[: args.batch] for k, v in val.items()}

    rows = []
    for nfe in nfes:
        solver = js.unipc(2, "bh2") if nfe % 2 == 0 else js.ddim()
        init = bns.BespokeNonStationary.from_solver(solver, model.path, js.get_grid("quadratic", model.path, nfe, **iv),
                                                    field="x0")
        params0, rebuild = trainable_leaves(init)
        state = train.TrainState.create(params0, train.make_optimizer(1e-3, decay_steps=args.steps), seed=0,
                                        ema_decay=0.0)

        def loss_fn(params, batch, key, rebuild=rebuild):
            return bns.bns_loss(model, rebuild(params), batch)

        step_s, _ = time_call(lambda s: train.train_step(s, train_batch, loss_fn)[0].params, state,
                              repeats=args.repeats)
        val_s, _ = time_call(lambda: bns.evaluate_psnr(model, init, val), repeats=max(2, args.repeats // 2), warmup=1)
        pairs_s = per_pair * (args.num_train + args.num_val)
        row = {"nfe": nfe, "step_s": step_s, "validation_pass_s": val_s, "pairs_s": pairs_s}
        for label, steps in [("study", args.steps), ("short", args.short_steps)]:
            evals = -(-steps // args.eval_every) + 1
            total = pairs_s + steps * step_s + evals * val_s
            row[f"{label}_steps"] = steps
            row[f"{label}_total_s"] = total
            row[f"{label}_fraction_of_teacher"] = total / teacher_total
            row[f"{label}_fraction_without_pairs"] = (total - pairs_s) / teacher_total
        rows.append(row)
        print(f"NFE {nfe:2d}: step {1e3 * step_s:.0f} ms, validation pass {val_s:.2f} s | "
              f"{args.steps} steps: {row['study_total_s']:.0f} s = {100 * row['study_fraction_of_teacher']:.1f}% "
              f"of the teacher ({100 * row['study_fraction_without_pairs']:.1f}% without the pairs) | "
              f"{args.short_steps} steps: {100 * row['short_fraction_of_teacher']:.1f}% "
              f"({100 * row['short_fraction_without_pairs']:.1f}%)", flush=True)

    write_json(args.out, {"benchmark": "bns_cost", "teacher": TEACHER, "environment": environment(),
                          "args": vars(args), "teacher_step_s": teacher_s, "teacher_train_s": teacher_total,
                          **{f"teacher_{k}": v for k, v in teacher_info.items()},
                          "ground_truth_per_pair_s": per_pair, "ground_truth_per_pair_s_by_method": per_pair_by_method,
                          "fixed_grid": {**bns.FIXED_GRID, "steps": args.fixed_grid_steps}, "rows": rows})


if __name__ == "__main__":
    main()
