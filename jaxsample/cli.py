"""The ``jaxsample`` command line.

    jaxsample demo [--setting fashion|digits|mixture] [--out DIR] [--samples N]
    jaxsample sample --teacher digits_vp --solver dpm_solver_pp_2m --nfe 8 --out DIR
    jaxsample sample --teacher digits_vp --solver-file jaxsample/assets/bns/digits_vp_nfe8.npz --out DIR
    jaxsample distill bns --config experiments/bns/configs/gmm.py --workdir DIR [--set num_steps=200]
    jaxsample bench scaling --out scaling.json
    jaxsample list

Every sub-command has ``--help``.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: method -> (module with ``train_and_evaluate(config, workdir)``, experiments folder)
DISTILL = {
    "bns": ("experiments.bns.train", "bns"),
    "adasde": ("experiments.adasde.train", "adasde"),
    "deis-sn": ("experiments.deis_sn.train", "deis_sn"),
    "progressive": ("experiments.progressive.train", "progressive"),
    "catch-up": ("experiments.catch_up.train", "catch_up"),
}

BENCH = {"overhead": "sampler_overhead.py", "scaling": "scaling.py", "solver-table": "solver_table.py",
         "convergence": "convergence_orders.py", "bns-cost": "bns_cost.py", "peers": "peers.py",
         "hand-written": "hand_written.py"}

GRIDS = ("uniform", "quadratic", "logsnr", "edm", "time_uniform", "shifted")


class CLIError(Exception):
    """A user error: printed as ``jaxsample: error: ...`` with exit status 2."""


# ----------------------------------------------------------------------------- solvers


def solver_names() -> list:
    """The solvers ``--solver`` accepts: every registered solver that needs no file
    (:mod:`jaxsample.solvers.registry`)."""
    from jaxsample.solvers import registry

    return sorted(registry.names(constructible=True))


def load_solver_file(path: str, model=None):
    """A learned solver saved to ``path`` (:func:`jaxsample.solvers.save_solver`), checked against
    ``model``'s path when given; returns ``(solver, ts)``."""
    from jaxsample.solvers import load_solver

    if not os.path.isfile(path):
        raise CLIError(f"--solver-file {path!r} does not exist")
    try:
        solver = load_solver(path, model=model)
    except ValueError as e:
        raise CLIError(f"--solver-file: {e}") from None
    if getattr(solver, "times", None) is None:
        raise CLIError(f"--solver-file {path!r} holds no time grid (saved without times)")
    return solver, solver.times


# ----------------------------------------------------------------------------- sample


def _load_task(args):
    """The :class:`~jaxsample.tasks.Task` of ``--teacher`` (guided with ``--guidance``)."""
    from jaxsample import tasks

    try:
        task = tasks.load_task(args.teacher)
    except ValueError as e:
        raise CLIError(f"--teacher: {e}") from None
    if args.guidance != 1.0:
        if task.num_classes is None:
            raise CLIError(f"--guidance needs a class-conditional teacher; {args.teacher!r} is unconditional")
        task = tasks.load_task(args.teacher, guidance_scale=args.guidance)
    return task


def _check_out(path: str) -> None:
    """Fail now, before any work, if the output folder ``--out`` cannot be created or written
    (missing parent folders are created later, as ``os.makedirs`` does)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"--out {path!r} is an existing file; expected a folder to write into")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # the nearest folder that exists
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CLIError(f"--out {path!r} cannot be created: {existing!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"--out {path!r} is not writable: no write permission in {existing!r}")


def _save_grid(x, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.asarray(x)
    if x.ndim == 2 and x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
        ax.scatter(x[:, 0], x[:, 1], s=1, c="k")
        ax.set_aspect("equal")
    elif x.ndim == 4:
        n = min(len(x), 100)
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        h, w, c = x.shape[1:]
        grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
        for k in range(n):
            r, q = divmod(k, cols)
            grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = (x[k] + 1) / 2
        fig, ax = plt.subplots(figsize=(cols * 0.5, rows * 0.5), dpi=100)
        ax.imshow(np.clip(grid[..., 0] if c == 1 else grid, 0, 1), cmap="gray", interpolation="nearest")
        ax.axis("off")
    else:
        print(f"(no picture for samples of shape {x.shape})")
        return
    fig.tight_layout()
    from jaxsample._files import save_figure

    save_figure(fig, path)
    plt.close(fig)


def _sample(args) -> int:
    import jax
    import numpy as np
    from tqdm.auto import tqdm

    from jaxsample import grids, sampling

    if args.num < 1:
        raise CLIError(f"--num must be a positive integer, got {args.num}")
    if args.batch < 1:
        raise CLIError(f"--batch must be a positive integer, got {args.batch}")
    if (args.solver is None) == (args.solver_file is None):
        raise CLIError("give exactly one of --solver NAME and --solver-file FILE")
    _check_out(args.out)
    task = _load_task(args)
    if args.label is not None:
        if task.num_classes is None:
            raise CLIError(f"--label needs a class-conditional teacher; {args.teacher!r} is unconditional")
        if not 0 <= args.label <= task.num_classes:
            raise CLIError(f"--label must be in [0, {task.num_classes}] ({task.num_classes}: unconditional), "
                           f"got {args.label}")
    model = task.model
    if args.solver_file:
        solver, ts = load_solver_file(args.solver_file, model)
        nfe = solver.nfe(len(ts) - 1)
        if args.nfe is not None and args.nfe != nfe:
            raise CLIError(f"--nfe {args.nfe} disagrees with --solver-file {args.solver_file!r}, a learned solver "
                           f"of NFE {nfe} (leave --nfe out, or pass --nfe {nfe})")
    else:
        names = solver_names()
        if args.solver not in names:
            raise CLIError(f"--solver must be one of {', '.join(names)}; got {args.solver!r}")
        from jaxsample.solvers import registry

        solver = registry.get(args.solver).make()
        per_step = solver.nfe(1)
        nfe = 8 if args.nfe is None else args.nfe
        if nfe < per_step or nfe % per_step:
            raise CLIError(f"--nfe must be a positive multiple of {per_step} for {args.solver} "
                           f"({per_step} model calls a step), got {nfe}")
        ts = grids.get_grid(args.grid, model.path, nfe // per_step, **task.interval)
    noise = task.noise(jax.random.key(args.seed), args.num)
    cond = {}
    if args.label is not None:
        cond = {"label": np.full((args.num,), args.label, np.int32)}
    if args.guidance != 1.0:  # the task's model is guided; labels drawn uniformly unless --label fixes one
        cond = cond or {k: v.astype(np.int32) for k, v in task.conditioning(args.num, args.seed).items()}
    key = jax.random.key(args.seed + 1) if getattr(solver, "is_stochastic", False) else None
    out = []
    for lo in tqdm(range(0, args.num, args.batch), desc="sample", disable=args.num <= args.batch):
        c = {k: v[lo:lo + args.batch] for k, v in cond.items()}
        k = None if key is None else jax.random.fold_in(key, lo)
        out.append(np.asarray(sampling.sample(model, solver, ts, noise[lo:lo + args.batch], key=k, cond=c)))
    x = np.concatenate(out)
    os.makedirs(args.out, exist_ok=True)
    npz, png = os.path.join(args.out, "samples.npz"), os.path.join(args.out, "samples.png")
    from jaxsample._files import atomic_write

    with atomic_write(npz) as f:
        np.savez_compressed(f, samples=x, noise=np.asarray(noise), ts=np.asarray(ts), nfe=nfe, **cond)
    _save_grid(x, png)
    print(f"{len(x)} samples at NFE {nfe}: {npz}, {png}")
    return 0


# ----------------------------------------------------------------------------- distill


def _load_config(path: str, overrides):
    if not os.path.isfile(path):
        raise CLIError(f"--config {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"_jaxsample_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise CLIError(f"--config {path!r} is not valid Python: {e.msg} (line {e.lineno})") from None
    if not hasattr(module, "get_config"):
        raise CLIError(f"--config {path!r} must define get_config()")
    config = module.get_config()
    config.lock()  # a misspelt override is an error, not a new field
    for item in overrides or ():
        if "=" not in item:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        parents = key.split(".")
        target = config
        for part in parents[:-1]:
            if part not in target:
                raise CLIError(f"--set {key}: the config has no field {part!r}")
            target = target[part]
        if parents[-1] not in target:
            raise CLIError(f"--set {key}: the config has no field {parents[-1]!r}; fields: {', '.join(sorted(target))}")
        try:
            target[parents[-1]] = value
        except (TypeError, ValueError) as e:
            raise CLIError(f"--set {key}: {e}") from None
    return config


def _distill(args) -> int:
    from jaxsample import experiment

    module_name = DISTILL[args.method][0]
    try:
        module = importlib.import_module(module_name)  # experiments/<folder>/train.py, as main.py runs it
    except ImportError as e:
        raise CLIError(f"distill {args.method} is not available: {e} (the experiments package is installed "
                       f"with the repository: pip install -e .)") from None
    config_path = args.config
    if config_path is None:
        configs = Path(module.__file__).resolve().parent / "configs"  # experiments/<folder>/configs
        config_path = str(configs / "gmm.py")
        if not os.path.isfile(config_path):
            options = sorted(p for p in configs.glob("*.py") if p.name != "__init__.py")
            if not options:
                raise CLIError(f"no default config for {args.method}: pass --config FILE")
            config_path = str(options[0])
    config = _load_config(config_path, args.set)
    print(f"distill {args.method}: config {config_path}, workdir {args.workdir}", flush=True)
    try:  # validates the config (experiment.validate_config) before the study starts
        experiment.run(module.train_and_evaluate, config, args.workdir, coordinator_address=args.coordinator_address,
                       num_processes=args.num_processes, process_id=args.process_id,
                       distributed_auto=args.distributed_auto)
    except experiment.ConfigError as e:
        raise CLIError(f"--config/--set: {e}") from None
    return 0


# ----------------------------------------------------------------------------- bench, demo, list


def _bench(args) -> int:
    import runpy

    script = REPO / "bench" / BENCH[args.name]
    if not script.is_file():
        raise CLIError(f"bench scripts live in the repository's bench/ folder, not found at {script}")
    sys.argv = [str(script), "--out", args.out, *args.extra]
    sys.path.insert(0, str(script.parent))
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _demo(args) -> int:
    from jaxsample import demo

    if args.samples is not None and args.samples < 1:
        raise CLIError(f"--samples must be a positive integer, got {args.samples}")
    out = args.out or ("out/demo_mixture" if args.setting == "mixture" else "out/demo")
    _check_out(out)
    if args.setting == "mixture":
        demo.run_mixture(out, num_samples=args.samples or 512)
    else:
        demo.run(out, num_samples=args.samples, setting=args.setting)
    return 0


def _list(args) -> int:
    from jaxsample import teachers

    print("teachers:", ", ".join(sorted(teachers.GENERATIVE)))
    print("solvers: ", ", ".join(solver_names()))
    print("grids:   ", ", ".join(GRIDS))
    print("distill: ", ", ".join(DISTILL))
    print("bench:   ", ", ".join(BENCH))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxsample", description="Fast samplers for diffusion and flow models.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the README demo: classical and shipped learned solvers against ground truth")
    p.add_argument("--setting", choices=("fashion", "digits", "mixture"), default="fashion",
                   help="fashion: the shipped Fashion-MNIST teacher (default); digits: the shipped 8x8 digits "
                        "teacher; mixture: the 64-d Gaussian-mixture benchmark")
    p.add_argument("--out", help="output folder (default: out/demo, or out/demo_mixture)")
    p.add_argument("--samples", type=int, help="number of held-out noises (default: 256 for the image teachers, 512 for mixture)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("sample", help="sample a shipped or saved teacher with any solver; writes samples.npz and "
                                      "samples.png")
    p.add_argument("--teacher", default="digits_vp",
                   help="a shipped teacher (jaxsample list), the .json card of one you trained with "
                        "experiments/teachers, or gmm (the Gaussian-mixture benchmark) (default: digits_vp)")
    p.add_argument("--solver", help="a solver name (jaxsample list)")
    p.add_argument("--solver-file", help="a learned solver saved as .npz (e.g. by jaxsample distill bns)")
    p.add_argument("--nfe", type=int, help="model evaluations (default: 8 with --solver; with --solver-file, "
                                            "the file's, which --nfe must match if given)")
    p.add_argument("--grid", default="quadratic", choices=GRIDS, help="time grid (with --solver; default: quadratic)")
    p.add_argument("--num", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--batch", type=int, default=512, help="samples per jitted call (default: 512)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    p.add_argument("--label", type=int, help="class label for a class-conditional teacher (10: none)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (default: 1)")
    p.add_argument("--out", default="out/sample", help="output folder (default: out/sample)")
    p.set_defaults(func=_sample)

    p = sub.add_parser("distill", help="run a learned-solver or distillation study (wraps experiments/)")
    p.add_argument("method", choices=list(DISTILL), help="which method")
    p.add_argument("--config", help="config file (default: experiments/METHOD/configs/gmm.py or the first one)")
    p.add_argument("--workdir", required=True, help="folder for checkpoints and results (resumes if present)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    from jaxsample import experiment

    experiment.add_multihost_arguments(p)
    p.set_defaults(func=_distill)

    p = sub.add_parser("bench", help="run a benchmark from bench/ (JSON output); further options go to the script",
                       epilog="e.g. jaxsample bench scaling --out s.json --repeats 5 (see python bench/NAME.py --help)")
    p.add_argument("name", choices=list(BENCH), help="which benchmark")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=_bench)

    p = sub.add_parser("list", help="list teachers, solvers, grids, distillation methods and benchmarks")
    p.set_defaults(func=_list)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    from jaxsample.experiment import enable_compilation_cache

    enable_compilation_cache()  # restarted runs load their compiled programs from disk
    try:
        return args.func(args)
    except CLIError as e:
        parser.exit(2, f"jaxsample: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
