"""Latency a user feels: the first call of ``js.sample`` (trace + compile + run) per solver family
and NFE, in a fresh process, with the persistent compilation cache cold and then warm (issue 24).

Each measurement is its own Python process (a fresh process is what a user starting a script
gets; within one process JAX's in-memory caches would hide the compile). Per (solver, NFE):

- ``cold``: a fresh process with an empty persistent cache directory: the first call's wall time,
  then the same call again (``run``: the compiled program alone), then the call on a *different*
  grid of the same length (``regrid``: must not recompile, so it costs about ``run``);
- ``warm``: a second fresh process on the same cache directory (the program is loaded from disk,
  as :func:`jaxsample.experiment.enable_compilation_cache` gives the CLI and the studies).

``compile_s = first - run``; the table gives the first-call times and the ratio cold / warm. The
model is a shipped teacher (default ``fashion_vp``, batch 64, the demo's scale).

    python bench/compile_latency.py --out bench/results/compile_latency_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SOLVERS = ("euler", "heun", "dpm_solver_pp_2m", "unipc_bh2_3", "deis_tab_3", "ipndm", "bns")
NFES = (4, 8, 16)


def child(args) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    t_import = time.perf_counter()
    import jax

    from jaxsample.experiment import enable_compilation_cache

    enable_compilation_cache(args.cache, min_compile_seconds=0.0)
    import jaxsample as js
    from jaxsample.distill import bns
    from jaxsample.grids import get_grid
    from jaxsample.solvers import registry

    model = js.load_teacher(args.teacher)
    noise = js.initial_noise(jax.random.key(0), (args.batch, *js.teachers.sample_shape(args.teacher)))
    t_ready = time.perf_counter()
    if args.solver == "bns":
        solver = bns.shipped(args.teacher)[args.nfe]
        ts = jax.numpy.asarray(solver.times)
        ts2 = ts  # a BNS solver carries its own grid
    else:
        solver = registry.get(args.solver).make()
        steps = args.nfe // solver.nfe(1)
        ts = get_grid("time_uniform", model.path, steps)
        ts2 = get_grid("edm", model.path, steps)
    times = []
    for grid in (ts, ts, ts2):
        t0 = time.perf_counter()
        jax.block_until_ready(js.sample(model, solver, grid, noise))
        times.append(time.perf_counter() - t0)
    print(json.dumps({"first_s": times[0], "run_s": times[1], "regrid_s": times[2],
                      "setup_s": t_ready - t_import}), flush=True)


def measure(args, solver, nfe, cache) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--solver", solver, "--nfe", str(nfe),
           "--cache", cache, "--teacher", args.teacher, "--batch", str(args.batch)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="JSON file to write")
    p.add_argument("--teacher", default="fashion_vp")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    p.add_argument("--nfes", type=int, nargs="+", default=list(NFES))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--solver", help=argparse.SUPPRESS)
    p.add_argument("--nfe", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if not args.out:
        p.error("--out is required")
    from _common import environment, write_json

    rows = []
    for solver in args.solvers:
        for nfe in args.nfes:
            if solver in ("heun",) and nfe % 2:
                continue
            with tempfile.TemporaryDirectory() as cache:
                cold = measure(args, solver, nfe, cache)
                warm = measure(args, solver, nfe, cache)
            row = {"solver": solver, "nfe": nfe, "cold": cold, "warm": warm,
                   "compile_s": cold["first_s"] - cold["run_s"],
                   "warm_first_s": warm["first_s"], "cold_over_warm": cold["first_s"] / warm["first_s"]}
            rows.append(row)
            print(f"{solver:18s} NFE {nfe:2d}: first call {cold['first_s']:6.2f} s cold, {warm['first_s']:6.2f} s "
                  f"with the cache warm (run {cold['run_s']:.3f} s, other grid of the same length "
                  f"{cold['regrid_s']:.3f} s)", flush=True)
    lines = ["| solver | NFE | first call, cold (s) | first call, cache warm (s) | run (s) | same length, other grid (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['solver']} | {r['nfe']} | {r['cold']['first_s']:.2f} | {r['warm']['first_s']:.2f} | "
                     f"{r['cold']['run_s']:.3f} | {r['cold']['regrid_s']:.3f} |")
    print("\n".join(lines))
    write_json(args.out, {"benchmark": "compile_latency", "environment": environment(), "config": vars(args),
                          "rows": rows, "markdown": "\n".join(lines)})


if __name__ == "__main__":
    main()
