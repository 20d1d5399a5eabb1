"""Empirical convergence orders of the deterministic solvers, in float64.

Error (RMSE) against the adaptive reference (Dopri8, rtol = atol = 1e-10) on a Gaussian mixture
in d = 8, fitted log-log slope against the number of steps:

- Runge-Kutta on rectified flow (velocity model), uniform grid, 8 to 256 steps;
- exponential integrators on VP linear (eps model, a smoother mixture in d = 4), t from 1 to 0.1,
  quadratic grid, 32 to 64 steps (UniPC-3: 48 to 96): the setting of tests/test_exponential.py.

    python bench/convergence_orders.py --out orders.json
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxsample as js  # noqa: E402
from _common import environment, write_json  # noqa: E402


def slope(steps, errors):
    return float(-np.polyfit(np.log2(steps), np.log2(errors), 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    gmm = js.GaussianMixture.random(jax.random.key(0), dim=8, num_components=4, std_range=(0.2, 0.6))
    noise = js.initial_noise(jax.random.key(1), (16, 8), jnp.float64)
    rows = []

    flow = gmm.model(js.RectifiedFlow(), "velocity")
    ref = js.reference_sample(flow, noise, rtol=1e-10, atol=1e-10)
    steps = [8, 16, 32, 64, 128, 256]
    for name, nominal in [("euler", 1), ("heun", 2), ("midpoint", 2), ("kutta3", 3), ("rk4", 4)]:
        errs = [float(js.rmse(js.sample(flow, getattr(js, name)(), js.uniform(flow.path, n), noise), ref))
                for n in steps]
        rows.append({"solver": name, "path": "rectified_flow", "nominal": nominal, "steps": steps,
                     "errors": errs, "order": slope(steps, errs)})

    # The exponential integrators on the setting of tests/test_exponential.py: a smoother mixture
    # (d = 4, stds 0.3 to 0.8) on which their asymptotic orders are reached by 32 to 96 steps.
    small = js.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3, std_range=(0.3, 0.8))
    vp = small.model(js.VPLinear(), "eps")
    noise4 = jax.random.normal(jax.random.key(1), (8, 4), jnp.float64)
    t_end = 0.1
    ref = js.reference_sample(vp, noise4, t_start=1.0, t_end=t_end, rtol=1e-10, atol=1e-10)
    lof = dict(lower_order_final=False)
    for name, solver, nominal, steps in [
            ("ddim", js.ddim(), 1, [32, 48, 64]), ("dpm_solver_2", js.dpm_solver(2), 2, [32, 48, 64]),
            ("dpm_solver_3", js.dpm_solver(3), 3, [32, 48, 64]),
            ("dpm_solver_pp_2s", js.dpm_solver_pp_2s(), 2, [32, 48, 64]),
            ("dpm_solver_pp_2m", js.dpm_solver_pp_2m(**lof), 2, [32, 48, 64]),
            ("dpm_solver_pp_3m", js.dpm_solver_pp_3m(**lof), 3, [32, 48, 64]),
            ("unipc_bh1_2", js.unipc(2, "bh1", **lof), 3, [32, 48, 64]),
            ("unipc_bh2_2", js.unipc(2, "bh2", **lof), 3, [32, 48, 64]),
            ("unipc_bh2_3", js.unipc(3, "bh2", **lof), 4, [48, 64, 96]),
            ("deis_tab_2", js.deis(2), 2, [32, 48, 64]), ("deis_tab_3", js.deis(3), 3, [32, 48, 64]),
            ("deis_rhoab_2", js.deis(2, "rhoab"), 2, [32, 48, 64]),
            ("deis_logrho_3", js.deis(3, "logrho"), 3, [32, 48, 64]),
            ("ipndm (fixed AB weights: 2 on non-uniform grids)", js.ipndm(), 2, [32, 48, 64])]:
        errs = [float(js.rmse(js.sample(vp, solver, js.power(vp.path, n, t_start=1.0, t_end=t_end), noise4), ref))
                for n in steps]
        rows.append({"solver": name, "path": "vp_linear", "nominal": nominal, "steps": steps, "errors": errs,
                     "order": slope(steps, errs)})
    print("| solver | path | nominal | measured |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['solver']} | {r['path']} | {r['nominal']} | {r['order']:.2f} |")
    write_json(args.out, {"benchmark": "convergence_orders", "environment": environment(), "rows": rows})


if __name__ == "__main__":
    main()
