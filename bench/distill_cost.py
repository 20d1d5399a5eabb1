"""What distillation costs, in model evaluations and wall time: the teacher's training, BNS and
progressive distillation, on the same teacher, at the NFEs both produced.

    python bench/distill_cost.py --bns experiments/bns/results/fashion_vp_converged_nfe16_8.json \\
        --progressive experiments/progressive/results/fashion_vp_128to1.json \\
        --out bench/results/distill_cost_fashion_vp.json

Model evaluations are counted from the runs' recorded settings, in forward-pass equivalents of
one sample (a backward pass counts 2, the forward pass recomputed under rematerialisation 1):

- teacher training: steps x batch x 3 (forward and backward), from the teacher's card;
- BNS: ground-truth pairs (train + validation) x the fixed grid's calls; the baseline search (every
  candidate solver and grid scored on the validation pairs at NFE calls); training steps actually
  run x batch x NFE x 4 (forward, the rematerialised forward, backward); validation passes x
  validation pairs x NFE;
- progressive distillation to N steps: every round down to N, steps x batch x 5 (two teacher
  DDIM calls without gradient, the student's forward and backward).

"BNS to reach the student": the same count up to the first validation pass whose PSNR is at least
the progressive student's PSNR against the exact ODE at that NFE (at step 0, the best classical
solver BNS starts from, only the validation pairs and the search count) (both measured against the
teacher's ODE solution; BNS's on its validation pairs, the student's on the demo's 256 noises).
When BNS never reaches it, the row says so and compares Frechet distances instead.
Wall times are the runs' own (BNS: pairs + search + training; progressive: its rounds), on the
machine and load they ran on; the model-evaluation counts do not depend on either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import write_json  # noqa: E402


def teacher_cost(card: dict) -> dict:
    steps, batch = int(card["steps"]), int(card["config"]["batch_size"])
    return {"model_evals": steps * batch * 3, "seconds": card.get("train_wall_time_s"), "steps": steps,
            "batch_size": batch}


def _baseline_candidates(config: dict, path, nfe: int) -> int:
    from jaxsample import compare

    suite = compare.baseline_suite(path, grids=list(config.get("baseline_grids") or []) or None)
    names = config.get("baselines") or list(suite)
    return sum(len(grids) for name, (solver, grids) in suite.items() if name in names and nfe % solver.nfe(1) == 0)


def bns_costs(results: dict, path) -> dict:
    """Per NFE: the whole run's model evaluations and seconds, and a function of the step reached."""
    from jaxsample.solvers import registry

    c = results["config"]
    if c.get("ground_truth") != "fixed_grid":
        raise ValueError("--bns: only runs with fixed-grid ground truth have a known cost per pair "
                         f"(this run's ground_truth is {c.get('ground_truth', 'adaptive')!r})")
    from jaxsample.distill.bns import FIXED_GRID

    spec = {**FIXED_GRID, **(c.get("fixed_grid") or {})}
    per_pair = registry.get(spec["solver"]).make().nfe(int(spec["steps"]))
    pairs, val_pairs = (c["num_train"] + c["num_val"]) * per_pair, c["num_val"] * per_pair
    out = {}
    for row in results["rows"]:
        nfe = row["nfe"]
        search = _baseline_candidates(c, path, nfe) * c["num_val"] * nfe
        log = row.get("validation") or []

        def at(step, evaluations):  # at step 0 (the best classical solver) no training pairs are needed
            return (pairs if step else val_pairs) + search + step * c["batch_size"] * nfe * 4 \
                + evaluations * c["num_val"] * nfe

        stopped = row.get("stopped_at", c["num_steps"])
        out[nfe] = {"pairs": pairs, "pairs_per_pair": per_pair, "search": search,
                    "total_model_evals": at(stopped, max(len(log), 1)),
                    "total_seconds": row["seconds"] + results.get("pairs_seconds", 0.0) / len(results["rows"]),
                    "psnr_db": row["bns_psnr_db"], "fd": row.get("bns_fd"), "validation": log, "at": at}
    return out


def progressive_costs(results: dict) -> dict:
    """Per student step count: the cumulative cost of every round down to it (optimizer steps, model
    evaluations, seconds) and the student's scores."""
    batch = results["config"]["batch_size"]
    out, steps, evals, seconds = {}, 0, 0, 0.0
    for r in results["rounds"]:
        steps += r["num_steps"]
        evals += r["num_steps"] * batch * 5
        seconds += r["train_seconds"]
        out[r["student_steps"]] = {"optimizer_steps": steps, "model_evals": evals, "seconds": seconds,
                                   "psnr_db": r.get("student_psnr_db"),
                                   "fd": r.get("student_metric"), "bns_psnr_db_same_noise": r.get("bns_psnr_db"),
                                   "bns_fd_same_noise": r.get("bns_metric")}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bns", required=True, help="results JSON of experiments/bns (fixed-grid ground truth)")
    p.add_argument("--progressive", required=True, help="results JSON of experiments/progressive")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from jaxsample import teachers

    with open(args.bns) as f:
        bres = json.load(f)
    with open(args.progressive) as f:
        pres = json.load(f)
    name = bres["config"]["teacher"]
    if pres["teacher"] != name:
        raise ValueError(f"--bns is for teacher {name!r} but --progressive for {pres['teacher']!r}")
    card = teachers.teacher_card(name)
    teacher = teacher_cost(card)
    path = teachers.load_teacher(name).path
    bns, prog = bns_costs(bres, path), progressive_costs(pres)
    rows = []
    for nfe in sorted(set(bns) & set(prog)):
        b, s = bns[nfe], prog[nfe]
        reach = next((i for i, r in enumerate(b["validation"]) if s["psnr_db"] is not None
                      and r["val_psnr_db"] >= s["psnr_db"]), None)
        row = {"nfe": nfe, "progressive_model_evals": s["model_evals"], "progressive_seconds": s["seconds"],
               "student_psnr_db": s["psnr_db"], "student_fd": s["fd"],
               "bns_model_evals": b["total_model_evals"], "bns_seconds": b["total_seconds"], "bns_psnr_db": b["psnr_db"],
               "bns_fd": b["fd"], "bns_pairs_model_evals": b["pairs"], "bns_search_model_evals": b["search"],
               "bns_fraction_of_teacher_evals": b["total_model_evals"] / teacher["model_evals"],
               "bns_fraction_of_teacher_seconds": b["total_seconds"] / teacher["seconds"] if teacher["seconds"] else None,
               "progressive_fraction_of_teacher_evals": s["model_evals"] / teacher["model_evals"]}
        if reach is None:
            row["bns_reaches_student_psnr"] = False
        else:
            step = b["validation"][reach]["step"]
            row.update(bns_reaches_student_psnr=True, bns_reach_step=step,
                       bns_model_evals_to_reach=b["at"](step, reach + 1),
                       progressive_over_bns_to_reach=s["model_evals"] / b["at"](step, reach + 1))
        rows.append(row)
        print(row, flush=True)
    lines = [f"# Distillation cost on `{name}` (forward-pass equivalents; teacher training "
             f"{teacher['model_evals']:.3g} = {teacher['steps']} steps x {teacher['batch_size']} x 3, "
             f"{teacher['seconds']:.0f} s)", "",
             "| NFE | progressive student: evals / s / PSNR / FD | BNS run: evals / s / PSNR / FD | "
             "BNS evals to reach the student's PSNR | progressive / BNS-to-reach | BNS run / teacher (evals, s) |",
             "|---:|---|---|---|---:|---|"]
    for r in rows:
        reach = (f"{r['bns_model_evals_to_reach']:.3g} (step {r['bns_reach_step']})" if r["bns_reaches_student_psnr"]
                 else "never (compare FD)")
        ratio = f"{r['progressive_over_bns_to_reach']:.1f}x" if r["bns_reaches_student_psnr"] else "-"
        lines.append(f"| {r['nfe']} | {r['progressive_model_evals']:.3g} / {r['progressive_seconds']:.0f} / "
                     f"{r['student_psnr_db']:.2f} / {r['student_fd']:.1f} | {r['bns_model_evals']:.3g} / "
                     f"{r['bns_seconds']:.0f} / {r['bns_psnr_db']:.2f} / {r['bns_fd'] or float('nan'):.1f} | {reach} | "
                     f"{ratio} | {100 * r['bns_fraction_of_teacher_evals']:.2f}%, "
                     f"{100 * (r['bns_fraction_of_teacher_seconds'] or float('nan')):.1f}% |")
    write_json(args.out, {"teacher": name, "teacher_cost": teacher, "rows": rows, "bns_results": args.bns,
                          "progressive_results": args.progressive, "markdown": "\n".join(lines)})
    from jaxsample._files import write_text

    write_text(os.path.splitext(args.out)[0] + ".md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
