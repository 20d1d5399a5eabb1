"""The ``jaxsample`` command line.

    jaxsample demo [--out DIR] [--samples N]
"""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    from jaxsample import demo

    if args.samples < 1:
        raise SystemExit("--samples must be a positive integer")
    demo.run(args.out, num_samples=args.samples)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxsample", description="Fast samplers for diffusion and flow models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="compare every solver against ground truth on a Gaussian mixture; "
                                    "prints tables, writes results.json and psnr_vs_nfe.png")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--samples", type=int, default=512, help="number of samples per run (default: 512)")
    p.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
