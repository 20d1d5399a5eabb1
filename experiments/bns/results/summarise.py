"""Print the markdown tables of README.md from the results files in this folder.

    python experiments/bns/results/summarise.py
"""

import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def rows():
    for filename in sorted(glob.glob(os.path.join(HERE, "*.json"))):
        d = json.load(open(filename))
        c = d["config"]
        study = c.get("teacher") or f"gmm {c['setting']}"
        if c.get("guidance_scale", 1.0) != 1.0:
            study += f" (guidance {c['guidance_scale']:g}, sigma0 {c['sigma0']:g})"
        for r in d["rows"]:
            yield os.path.basename(filename), study, d, r


def main():
    print("| study | NFE | BNS PSNR | best baseline | its PSNR | gain (dB) | FD BNS / baseline / exact ODE "
          "| distill s | % of teacher training | file |")
    print("|---|---:|---:|---|---:|---:|---|---:|---:|---|")
    for name, study, d, r in sorted(rows(), key=lambda x: (x[1], x[3]["nfe"], x[0])):
        fd = (f"{r['bns_fd']:.1f} / {r['best_baseline_fd']:.1f} / {r['reference_fd']:.1f}" if "bns_fd" in r else "")
        frac = r.get("distill_fraction_of_teacher_training")
        frac = f"{100 * frac:.0f}%" if frac is not None else "(no trained teacher)"
        print(f"| {study} | {r['nfe']} | {r['bns_psnr_db']:.2f} | {r['best_baseline']} | "
              f"{r['best_baseline_psnr_db']:.2f} | {r['gain_db']:+.2f} | {fd} | {r['distill_seconds']:.0f} | {frac} | {name} |")


if __name__ == "__main__":
    main()
