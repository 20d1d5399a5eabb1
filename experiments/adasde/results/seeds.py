"""The spread over seeds of the AdaSDE study's held-out Frechet distances.

    python experiments/adasde/results/seeds.py fashion_official   # fashion_official_seed{0,1,2}_results.json
    python experiments/adasde/results/seeds.py digits_official_1024

Prints, per NFE and method (AdaSDE, gamma = 0, the best classical solver each seed picked on
validation, and the official fine-grid teacher), the FD of every seed, their mean and standard
deviation, and how many seeds AdaSDE beat the best classical solver in.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys

METHODS = ("adasde", "adasde_gamma0", "best_baseline", "teacher_fine_grid_scores")


def table(stem: str) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(here, f"{stem}_seed*_results.json")))
    if not files:
        raise SystemExit(f"no {stem}_seed*_results.json in {here}")
    runs = []
    for name in files:
        with open(name) as f:
            runs.append(json.load(f))
    nfes = sorted({r["nfe"] for run in runs for r in run["rows"]})
    lines = [f"{stem}: {len(runs)} seeds ({', '.join(str(run['config']['seed']) for run in runs)}), "
             f"{runs[0]['num_test']} test samples each", "",
             "| NFE | method | FD per seed | mean +- sd |", "|---:|---|---|---|"]
    for nfe in nfes:
        rows = [next(r for r in run["rows"] if r["nfe"] == nfe) for run in runs if any(r["nfe"] == nfe
                                                                                     for r in run["rows"])]
        for m in METHODS:
            fds = [r[m]["fd"] for r in rows]
            label = {"teacher_fine_grid_scores": "official teacher (fine grid)"}.get(m, m)
            if m == "best_baseline":
                label += " (" + ", ".join(r[m]["solver"] for r in rows) + ")"
            sd = statistics.stdev(fds) if len(fds) > 1 else float("nan")
            lines.append(f"| {nfe} | {label} | {' / '.join(f'{v:.1f}' for v in fds)} | "
                         f"{statistics.mean(fds):.1f} +- {sd:.1f} |")
        wins = sum(r["adasde"]["fd"] < r["best_baseline"]["fd"] for r in rows)
        lines.append(f"| {nfe} | AdaSDE below the best classical solver | {wins} of {len(rows)} seeds | |")
    return "\n".join(lines)


if __name__ == "__main__":
    for stem in sys.argv[1:] or ["fashion_official", "digits_official_1024"]:
        print(table(stem), end="\n\n")
