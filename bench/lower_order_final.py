"""DPM-Solver++(2M) on a shipped teacher's time-uniform grid, with and without its first-order last
step (``lower_order_final``) at every NFE: PSNR against the shipped exact ODE solutions.

LuChengTHU/dpm-solver takes the first-order last step only on grids of fewer than 10 steps (the
default here too, ``lower_order_final_below=10``); diffusers below 15. On a grid whose last steps
are long in log-SNR (the time-uniform grid ends with them), the second-order last step costs accuracy
from NFE 10 up. ``--below`` sets the thresholds compared (``none``: always).

    python bench/lower_order_final.py --out bench/results/lower_order_final_fashion_vp.json
"""
import argparse
import sys

sys.path.insert(0, "bench")
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxsample as js  # noqa: E402
from jaxsample._assets import ASSETS_DIR  # noqa: E402
from jaxsample.metrics import psnr  # noqa: E402
from _common import environment, write_json  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default="fashion_vp")
    p.add_argument("--grid", default="time_uniform")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--nfes", type=int, nargs="+", default=[6, 8, 10, 12, 16, 24, 32])
    p.add_argument("--below", nargs="+", default=["10", "15", "none"])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    model = js.load_teacher(args.teacher)
    ref = np.load(ASSETS_DIR / "demo" / f"{args.teacher}_reference.npz")
    noise, target = jnp.asarray(ref["noise"][:args.samples]), jnp.asarray(ref["target"][:args.samples])
    interval = dict(t_start=float(ref["t_start"]), t_end=float(ref["t_end"]))
    rows = []
    print("| NFE | " + " | ".join(f"below {b}" for b in args.below) + " |")
    for nfe in args.nfes:
        ts = js.grids.get_grid(args.grid, model.path, nfe, **interval)
        row = {"nfe": nfe}
        for b in args.below:
            solver = js.dpm_solver_pp_2m(lower_order_final_below=None if b == "none" else int(b))
            row[f"below_{b}"] = float(psnr(js.sample(model, solver, ts, noise), target))
        rows.append(row)
        print(f"| {nfe} | " + " | ".join(f"{row[f'below_{b}']:.2f}" for b in args.below) + " |", flush=True)
    if args.out:
        write_json(args.out, {"benchmark": "lower_order_final", "environment": environment(), "config": vars(args),
                              "rows": rows})


if __name__ == "__main__":
    main()
