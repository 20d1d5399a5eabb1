"""Memory of one BNS training step against NFE, batch and rematerialisation (issue 24).

The gradient of BNS's loss (:func:`jaxsample.distill.bns.bns_loss`: sample the teacher with the
solver, log-MSE to the targets) is compiled for each setting, and XLA's own accounting of the
compiled program is read (``compiled.memory_analysis()``: arguments, outputs and the temporary
buffers the program allocates; nothing is run). ``checkpoint=True`` (what ``bns_loss`` uses)
rematerialises each solver step in the backward pass: the activations of one model call are held
at a time instead of all NFE of them. Sampling with ``return_trajectory=True`` (no gradient) is
measured the same way. From the measured sizes the script reports, per setting,
the largest batch that fits in ``--memory-gib`` (default 24, this machine) at that NFE, by the
measured per-sample slope.

    python bench/bns_memory.py --out bench/results/bns_memory_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jaxsample as js  # noqa: E402
from jaxsample.distill import bns  # noqa: E402
from _common import environment, write_json  # noqa: E402


def step_memory(model, shape, nfe, batch, checkpoint):
    """(bytes of temporaries, bytes of arguments + outputs, compile seconds) of one gradient step."""
    init = bns.BespokeNonStationary.from_solver(js.euler(), model.path, js.edm(model.path, nfe))
    noise = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)

    def loss(solver, noise, target):
        return bns.bns_loss(model, solver, {"noise": noise, "target": target}, checkpoint=checkpoint)[0]

    t0 = time.perf_counter()
    compiled = jax.jit(jax.grad(loss)).lower(init, noise, noise).compile()
    seconds = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    return (int(mem.temp_size_in_bytes), int(mem.argument_size_in_bytes + mem.output_size_in_bytes), seconds)


def trajectory_memory(model, shape, nfe, batch):
    """Bytes (temporaries + in/out) of ``sample(..., return_trajectory=True)`` with DPM-Solver++(2M)."""
    noise = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
    ts = js.edm(model.path, nfe)
    fn = jax.jit(lambda z: js.sample(model, js.dpm_solver_pp_2m(), ts, z, return_trajectory=True,
                                     check_finite=False))
    mem = fn.lower(noise).compile().memory_analysis()
    return int(mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--teacher", default="fashion_vp")
    p.add_argument("--nfes", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    p.add_argument("--memory-gib", type=float, default=24.0)
    args = p.parse_args(argv)
    model = js.load_teacher(args.teacher)
    shape = js.teachers.sample_shape(args.teacher)
    rows = []
    for nfe in args.nfes:
        for checkpoint in (True, False):
            sizes = {}
            for batch in args.batches:
                temp, io, seconds = step_memory(model, shape, nfe, batch, checkpoint)
                sizes[batch] = temp + io
                rows.append({"nfe": nfe, "checkpoint": checkpoint, "batch": batch, "temp_bytes": temp,
                             "io_bytes": io, "compile_s": seconds})
                print(f"NFE {nfe:2d} remat {str(checkpoint):5s} batch {batch:4d}: {temp / 2**20:9.1f} MiB temporaries "
                      f"(+{io / 2**20:.1f} MiB in/out), compiled in {seconds:.1f} s", flush=True)
            lo, hi = min(sizes), max(sizes)
            slope = (sizes[hi] - sizes[lo]) / (hi - lo)  # bytes per sample
            fixed = sizes[lo] - slope * lo
            largest = int((args.memory_gib * 2**30 - fixed) / slope) if slope > 0 else None
            rows[-1]["bytes_per_sample"] = slope
            rows[-1]["largest_batch_in_budget"] = largest
            print(f"   -> {slope / 2**20:.2f} MiB a sample; largest batch in {args.memory_gib:g} GiB: {largest}")
    trajectories = []
    for nfe in args.nfes:
        for batch in args.batches:
            size = trajectory_memory(model, shape, nfe, batch)
            trajectories.append({"nfe": nfe, "batch": batch, "bytes": size})
            print(f"return_trajectory NFE {nfe:2d} batch {batch:4d}: {size / 2**20:9.1f} MiB", flush=True)
    lines = ["| NFE | remat | " + " | ".join(f"batch {b} (MiB)" for b in args.batches) +
             f" | MiB a sample | largest batch in {args.memory_gib:g} GiB |", "|---:|---|" + "---:|" * (len(args.batches) + 2)]
    for nfe in args.nfes:
        for checkpoint in (True, False):
            rs = [r for r in rows if r["nfe"] == nfe and r["checkpoint"] == checkpoint]
            cells = " | ".join(f"{(r['temp_bytes'] + r['io_bytes']) / 2**20:.0f}" for r in rs)
            lines.append(f"| {nfe} | {'on' if checkpoint else 'off'} | {cells} | {rs[-1]['bytes_per_sample'] / 2**20:.2f} | "
                         f"{rs[-1]['largest_batch_in_budget']} |")
    lines += ["", "| sampling with return_trajectory, NFE | " + " | ".join(f"batch {b} (MiB)" for b in args.batches) + " |",
              "|---:|" + "---:|" * len(args.batches)]
    for nfe in args.nfes:
        cells = " | ".join(f"{r['bytes'] / 2**20:.0f}" for r in trajectories if r["nfe"] == nfe)
        lines.append(f"| {nfe} | {cells} |")
    print("\n".join(lines))
    write_json(args.out, {"benchmark": "bns_memory", "environment": environment(), "config": vars(args), "rows": rows,
                          "return_trajectory": trajectories, "markdown": "\n".join(lines)})


if __name__ == "__main__":
    main()
