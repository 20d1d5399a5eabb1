"""Where the batch-256 gap to the peers comes from: the bare network, without any sampler.

The MLP and conv net of ``bench/peers.py`` (same weights on both sides) called NFE times in a row:
in JAX as one jitted ``lax.scan`` over the noise levels, and in eager PyTorch as a Python loop
(what k-diffusion's and diffusers' samplers do around their network). If JAX's bare loop is as far
behind torch's as ``js.sample`` is behind the peers, the gap is XLA:CPU's kernels at that size, not
the sampler. Interleaved repeats, medians, torch time / JAX time (> 1: JAX faster).

    python bench/bare_network.py --out bench/results/bare_network_cpu.json
"""
import argparse
import statistics
import sys
import time

sys.path.insert(0, "bench")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import peers  # noqa: E402
from _common import environment, write_json  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", default=["mlp", "conv"])
    p.add_argument("--batches", type=int, nargs="+", default=[256, 4096])
    p.add_argument("--nfe", type=int, default=16)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_grad_enabled(False)
    rows = []
    for name in args.nets:
        module, params = peers.init_network(name)
        net, _ = peers.torch_networks(name, params)
        shape = peers.NETS[name][1]
        cs = jnp.linspace(1.0, -1.0, args.nfe)

        @jax.jit
        def jax_loop(params, x):
            def body(x, c):
                return module.apply({"params": params}, x, jnp.broadcast_to(c, x.shape[:1])), None
            return jax.lax.scan(body, x, cs)[0]

        def torch_loop(x):
            for c in np.asarray(cs):
                x = net(x, torch.full((x.shape[0],), float(c)))
            return x

        for batch in args.batches:
            x = jax.random.normal(jax.random.key(0), (batch, *shape))
            xt = peers.to_torch(x, "cpu")
            diff = float(np.max(np.abs(np.asarray(jax_loop(params, x)) - peers.from_torch(torch_loop(xt)))))
            cases = {"jax": lambda: jax.block_until_ready(jax_loop(params, x)), "torch": lambda: torch_loop(xt)}
            for f in cases.values():
                f(), f()
            times = {k: [] for k in cases}
            for _ in range(args.repeats):
                for k, f in cases.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            row = {"net": name, "batch": batch, "nfe": args.nfe, "median_ms": med,
                   "torch_over_jax": med["torch"] / med["jax"], "max_abs_diff": diff}
            rows.append(row)
            print(f"{name:4s} batch {batch:5d}: JAX {med['jax']:8.2f} ms, torch eager {med['torch']:8.2f} ms, "
                  f"torch / JAX {row['torch_over_jax']:.2f}; max |diff| {diff:.1e}", flush=True)
    if args.out:
        write_json(args.out, {"benchmark": "bare_network", "environment": environment(), "torch": torch.__version__,
                              "config": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
