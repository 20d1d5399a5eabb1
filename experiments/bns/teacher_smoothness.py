"""How smooth in t is a shipped teacher? Why BNS and UniPC-3 level off near 55 dB on digits_vp.

At a fixed state x (the DDIM-200 state at t0, from the demo's held-out noise), fit a cubic in t
to the teacher's x0 prediction over windows of half-width w around t0, and print the RMS
residual. For a function smooth on the scale of the solver's steps the residual falls ~16x per
halving of w; a teacher with structure on a finer t scale (here: its sinusoidal time embedding,
time_scale = 1000, frequencies up to 1000 rad per unit t) keeps a residual floor until w is below
that scale, and no few-step solver, classical or learned, can follow it.

    python experiments/bns/teacher_smoothness.py [--teacher digits_vp | CARD.json] [--t0 0.6,0.3,0.1]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxsample as js
from jaxsample.demo import digits_reference

WIDTHS = (0.04, 0.02, 0.01, 0.005, 0.0025, 0.00125, 0.000625)


def residuals(teacher, noise, t0: float) -> dict:
    """w -> RMS residual of the cubic fit to x0_hat(x_t0, t) over [t0 - w, t0 + w] (201 points)."""
    x = js.sample(teacher, js.ddim(), js.power(teacher.path, 200, t_start=0.992, t_end=t0), noise)
    f = jax.jit(jax.vmap(lambda t: teacher.x0(x, jnp.full((x.shape[0],), t)).reshape(-1)))
    out = {}
    for w in WIDTHS:
        tt = np.linspace(t0 - w, t0 + w, 201)
        vals = np.asarray(f(jnp.asarray(tt, jnp.float32)), np.float64)
        fit = np.polynomial.polynomial.polyvander(tt - t0, 3) @ np.polyfit(tt - t0, vals, 3)[::-1]
        out[w] = float(np.sqrt(((vals - fit) ** 2).mean()))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default="digits_vp", help="a shipped digits teacher or the .json card of yours")
    parser.add_argument("--t0", default="0.6,0.3,0.1")
    parser.add_argument("--num", type=int, default=16, help="held-out noises (from the demo's ground truth)")
    args = parser.parse_args()
    if args.teacher.endswith(".json"):
        teacher = js.teachers.load_teacher_from_card(args.teacher)
    else:
        teacher = js.load_teacher(args.teacher)
    noise = jnp.asarray(digits_reference()["noise"][:args.num])
    t0s = [float(t) for t in args.t0.split(",")]
    table = {t0: residuals(teacher, noise, t0) for t0 in t0s}
    print(f"RMS residual of a cubic fit to {args.teacher}'s x0 prediction in t (data range 2)\n")
    print("| half-width w | " + " | ".join(f"t0 = {t0}" for t0 in t0s) + " |\n|---:|" + "---:|" * len(t0s))
    for w in WIDTHS:
        print(f"| {w} | " + " | ".join(f"{table[t0][w]:.2e}" for t0 in t0s) + " |")


if __name__ == "__main__":
    main()
