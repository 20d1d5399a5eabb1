"""Generate docs/errors.md, the table of the bad inputs jaxsample guards against, as a user sees them.

Usage: ``python docs/errors_table.py`` rewrites ``docs/errors.md`` (under a minute on a CPU); it exits 1 when
a bad input did not raise (the file is written all the same, with that row marked).

Each :class:`Case` names a bad call and the test that pins its error; the script makes the call and
records the exception it raises (type and the start of its message), so the table shows what the
code says today and cannot drift from it. Command-line cases run ``jaxsample.cli.main(argv)`` with
the sampling and study entry points replaced by failures (as ``tests/test_cli.py`` does), and record
the exit status and the ``jaxsample: error:`` line. A call that does not raise (or starts work before
failing) is printed as a warning and written as ``DID NOT RAISE``; a message that does not match the
pattern its test checks, or does not name the argument, is printed as a warning too.
To add a case: add a :class:`Case` to :func:`cases` naming a test that asserts its error, and rerun.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "errors.md"
MESSAGE_CHARS = 160
NOT_RAISED = "DID NOT RAISE"


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        area: the part of the library (or ``CLI``).
        call: the call as a user writes it, short (shown verbatim).
        fn: makes the call; it should raise (or, for a command line, exit with status 2).
        test: ``tests/FILE.py::test_name`` of the test that asserts this error.
        match: the regular expression that test checks the message against (a warning if it no longer matches).
        names: the argument the message should name ('' when there is none to name).
    """

    area: str
    call: str
    fn: Callable[[], object]
    test: str
    match: str
    names: str = ""


class WorkStarted(Exception):
    """Raised by the stand-ins for sampling and the studies: a command line started work before failing."""


def _no_work(*args, **kwargs):
    raise WorkStarted("work started before the input was checked")


# ----------------------------------------------------------------------------- the cases

T_SAMPLING = "tests/test_sampling.py::"
T_GRIDS = "tests/test_grids.py::test_bad_grids_are_rejected"
T_IO = "tests/test_solver_io.py::"
T_CLI_BEFORE = "tests/test_cli.py::test_bad_input_fails_before_any_work"
T_CLI_CLEAR = "tests/test_cli.py::test_bad_input_is_a_clear_error"
T_TRAIN = "tests/test_train.py::test_bad_config_errors_name_the_field"
T_PEERS = "tests/test_peers_recipes.py::test_unreproduced_settings_are_named"


def _cli(argv: list, tmp: str) -> Callable[[], object]:
    """``jaxsample ARGV`` (``{tmp}`` and ``{gmm}`` filled in), with sampling and the studies replaced by failures."""
    gmm = str(ROOT / "experiments" / "bns" / "configs" / "gmm.py")
    argv = [a.replace("{tmp}", tmp).replace("{gmm}", gmm) for a in argv]

    def run():
        from jaxsample import cli, demo, sampling

        with contextlib.ExitStack() as stack:
            for module, name in ((sampling, "sample"), (demo, "run"), (demo, "run_mixture")):
                stack.enter_context(mock.patch.object(module, name, _no_work))
            if argv[0] == "distill":
                import importlib

                study = importlib.import_module(cli.DISTILL[argv[1]][0])
                stack.enter_context(mock.patch.object(study, "train_and_evaluate", _no_work))
            return cli.main(argv)

    return run


def _shown(argv: list) -> str:
    """The command line as the table shows it: temporary files by their bare names."""
    return "jaxsample " + " ".join(a.replace("{tmp}/", "").replace("{gmm}", "experiments/bns/configs/gmm.py")
                                   for a in argv)


def _solver_files(tmp: Path) -> dict:
    """Solver files, good and damaged, as ``tests/test_solver_io.py`` makes them."""
    import jax.numpy as jnp
    import numpy as np

    import jaxsample as js

    flow = js.RectifiedFlow()
    solver = js.BespokeNonStationary.from_solver(js.heun(), flow, js.uniform(flow, 2))
    good = str(tmp / "s.npz")
    js.save_solver(good, solver, path=flow, teacher="gmm_rectified_flow")
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes().decode())
    np.savez(tmp / "nan.npz", **dict(arrays, a=np.full_like(arrays["a"], np.nan)))
    np.savez(tmp / "shape.npz", **dict(arrays, b=arrays["b"][:2]))
    np.savez(tmp / "cls.npz", **dict(arrays, header=np.frombuffer(json.dumps(dict(header, **{"class": "os"})).encode(),
                                                                  np.uint8)))
    np.savez(tmp / "noarray.npz", **{k: v for k, v in arrays.items() if k != "b"})
    (tmp / "text.npz").write_text("not an archive")
    far = js.BespokeNonStationary.from_solver(js.euler(), js.VPCosine(), jnp.array([1.5, 0.5, 0.1]))
    js.save_solver(str(tmp / "far.npz"), far)
    return {name: str(tmp / f"{name}.npz") for name in ("s", "nan", "shape", "cls", "noarray", "text", "far",
                                                         "missing")}


def _cli_files(tmp: Path) -> None:
    """Files for the command-line cases: the ones ``tests/test_cli.py``'s ``bad_inputs`` fixture makes."""
    sys.path.insert(0, str(ROOT))
    from tests.test_cli import write_bad_inputs

    write_bad_inputs(tmp)


def cases(tmp: Path) -> list:
    """Every case, in table order; files they need are written under ``tmp``."""
    import jax
    import jax.numpy as jnp
    import optax

    import jaxsample as js
    from jaxsample import grids, nets, paths, peers, solvers, train
    from jaxsample.solvers import registry
    from jaxsample.solvers.adasde import NoiseInjected

    gmm = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2)
    model = gmm.model(js.VPCosine(), "eps")
    ts = js.logsnr_uniform(model.path, 4)
    noise = js.initial_noise(jax.random.key(1), (4, 2))
    flow = js.RectifiedFlow()
    labelled = js.Model(lambda x, t, label=None: model.fn(x, t), model.path, "eps")  # takes labels, ignores them
    files = _solver_files(tmp)
    _cli_files(tmp)
    state = train.TrainState.create({"w": jnp.zeros(2)}, optax.sgd(0.1))
    loss_fn = lambda p, batch, key: jnp.sum(p["w"] ** 2)  # noqa: E731
    batch_fn = lambda step: None  # noqa: E731

    def sample(*args, **kwargs):
        return lambda: js.sample(*args, **kwargs)

    def call(f, *args, **kwargs):
        return lambda: f(*args, **kwargs)

    def diffusers(name, steps=10, **config):
        def make():
            import diffusers

            return peers.from_diffusers(getattr(diffusers, name)(**config), steps)
        return make

    tmp_s = str(tmp)
    rows = [
        # ------------------------------------------------------------------- sample()
        Case("sample", "sample(model, 'euler', ts, noise)", sample(model, "euler", ts, noise),
             T_SAMPLING + "test_bad_inputs_raise_value_errors_naming_the_argument",
             "solver must be a jaxsample AbstractSolver", "solver"),
        Case("sample", "sample(model, euler(), ts=[1.0, 0.3, 0.6, 0.1], noise)",
             sample(model, js.euler(), jnp.array([1.0, 0.3, 0.6, 0.1]), noise),
             T_SAMPLING + "test_bad_inputs_raise_value_errors_naming_the_argument", "ts must be strictly decreasing",
             "ts"),
        Case("sample", "sample(model, euler(), ts=[1.0], noise)", sample(model, js.euler(), jnp.array([1.0]), noise),
             T_SAMPLING + "test_bad_inputs_raise_value_errors_naming_the_argument",
             "ts must be a 1-D array of at least 2 times", "ts"),
        Case("sample", "sample(model, euler(), ts=[1.5, 0.5], noise) on VPCosine (the grids.check_grid it calls)",
             sample(model, js.euler(), jnp.array([1.5, 0.5]), noise), T_GRIDS, r"range \[0.0, 1.0\]", "ts"),
        Case("sample", "sample(model, euler(), ts, noise of shape (4, 3)) for a 2-d model",
             sample(model, js.euler(), ts, jnp.zeros((4, 3))),
             T_SAMPLING + "test_bad_inputs_raise_value_errors_naming_the_argument",
             r"noise of shape \(4, 3\) is rejected by the model", "noise"),
        Case("sample", "sample(model, euler(), ts, noise of dtype int32)",
             sample(model, js.euler(), ts, jnp.zeros((4, 2), jnp.int32)),
             T_SAMPLING + "test_bad_inputs_raise_value_errors_naming_the_argument",
             "noise must be a floating-point array", "noise"),
        Case("sample", "sample(model, ddpm_ancestral(), ts, noise) (no key)",
             sample(model, js.ddpm_ancestral(), ts, noise),
             "tests/test_stochastic.py::test_batch_size_invariance_and_key_determinism", "key", "key"),
        Case("sample", "sample(..., key=True)", sample(model, js.ddpm_ancestral(), ts, noise, key=True),
             T_SAMPLING + "test_keys_may_be_typed_legacy_or_integer_seeds", "key must be .*got True", "key"),
        Case("sample", "sample(..., key=jnp.zeros((3, 2), jnp.uint32)) for 4 samples",
             sample(model, js.ddpm_ancestral(), ts, noise, key=jnp.zeros((3, 2), jnp.uint32)),
             T_SAMPLING + "test_keys_may_be_typed_legacy_or_integer_seeds", r"key must be .*shape \(3, 2\)", "key"),
        Case("sample", "sample(model, heun(), ts, noise, final_x0='yes')",
             sample(model, js.heun(), ts, noise, final_x0="yes"),
             T_SAMPLING + "test_final_x0_adds_one_denoising_call_and_a_trajectory_entry", "final_x0", "final_x0"),
        Case("sample", "sample(flow_model, euler(), ts=[0.99, 0.0], noise, final_x0=True)",
             sample(gmm.model(flow, "velocity"), js.euler(), js.uniform(flow, 1, t_start=0.99, t_end=0.0), noise,
                    final_x0=True),
             T_SAMPLING + "test_final_x0_on_a_grid_ending_at_sigma_zero_keeps_every_solver_finite", "at least 3",
             "final_x0"),
        Case("sample", "sample(eps model on RectifiedFlow, euler(), uniform(path, 4), noise) (NaN samples)",
             sample(gmm.model(flow, "eps"), js.euler(), js.uniform(flow, 4), noise),
             T_SAMPLING + "test_non_finite_samples_are_not_silent", "NaN or inf"),
        Case("sample", "sample(model, cfg_pp(0.6, 4), ts, noise) (no cond={'label': ...})",
             sample(labelled, solvers.cfg_pp(0.6, 4), ts, noise),
             "tests/test_nets.py::test_cfg_pp_against_its_definition_and_limits", "label", "label"),
        # ------------------------------------------------------------------- grids
        Case("grids", "uniform(path, 0)", call(grids.uniform, model.path, 0), T_GRIDS,
             "num_steps must be a positive integer", "num_steps"),
        Case("grids", "uniform(path, 4, t_start=0.2, t_end=0.5)", call(grids.uniform, model.path, 4, t_start=0.2,
                                                                        t_end=0.5),
             T_GRIDS, "t_start must be greater than t_end", "t_start"),
        Case("grids", "get_grid('cosine', path, 4)", call(grids.get_grid, "cosine", model.path, 4), T_GRIDS,
             "grid must be one of", "grid"),
        Case("grids", "shifted(RectifiedFlow(), 4, shift=0.0)", call(grids.shifted, flow, 4, shift=0.0),
             "tests/test_grids.py::test_shifted_grid_is_the_sd3_flux_time_shift", "shift must be positive", "shift"),
        Case("grids", "from_sigmas(VPCosine(), [1.0, 2.0])", call(grids.from_sigmas, model.path, [1.0, 2.0]),
             "tests/test_grids.py::test_align_your_steps_and_user_sigmas", "sigmas must be strictly decreasing",
             "sigmas"),
        Case("grids", "from_sigmas(VPCosine(), [14.6, 1.0, 0.0])",
             call(grids.from_sigmas, model.path, [14.6, 1.0, 0.0]),
             "tests/test_grids.py::test_align_your_steps_and_user_sigmas", "leave out a final 0", "sigmas"),
        # ------------------------------------------------------------------- paths and models
        Case("paths", "get_path('vp_quadratic')", call(paths.get_path, "vp_quadratic"),
             "tests/test_paths.py::test_get_path_rejects_unknown_name", "path must be one of", "path"),
        Case("models", "Model(fn, VPCosine(), 'noise')", call(js.Model, model.fn, js.VPCosine(), "noise"),
             "tests/test_models.py::test_bad_inputs_name_the_argument", "prediction must be one of", "prediction"),
        Case("models", "GaussianMixture(jnp.zeros((2, 3)), -1.0)", call(js.GaussianMixture, jnp.zeros((2, 3)), -1.0),
             "tests/test_models.py::test_bad_inputs_name_the_argument", "positive", "stds"),
        # ------------------------------------------------------------------- solver constructors
        Case("solvers", "dpm_solver(4)", call(solvers.dpm_solver, 4),
             "tests/test_exponential.py::test_bad_hyperparameters_raise", "order", "order"),
        Case("solvers", "unipc(2, variant='bh3')", call(solvers.unipc, 2, variant="bh3"),
             "tests/test_exponential.py::test_bad_hyperparameters_raise", "variant", "variant"),
        Case("solvers", "deis(2, kind='xab')", call(solvers.deis, 2, kind="xab"),
             "tests/test_exponential.py::test_bad_hyperparameters_raise", "kind", "kind"),
        Case("solvers", "heun('sigma')", call(solvers.heun, "sigma"),
             "tests/test_runge_kutta.py::test_unknown_space_is_rejected", "space must be 't' or 'edm'", "space"),
        Case("solvers", "ddpm_ancestral(eta=1.5)", call(solvers.ddpm_ancestral, eta=1.5),
             "tests/test_stochastic.py::test_bad_hyperparameters_raise", "eta", "eta"),
        Case("solvers", "edm_stochastic_heun(s_min=2.0, s_max=1.0)",
             call(solvers.edm_stochastic_heun, s_min=2.0, s_max=1.0),
             "tests/test_stochastic.py::test_bad_hyperparameters_raise", "s_min", "s_min"),
        Case("solvers", "dpm_solver_pp_2m_sde(solver_type='euler')", call(solvers.dpm_solver_pp_2m_sde,
                                                                          solver_type="euler"),
             "tests/test_stochastic.py::test_bad_hyperparameters_raise", "solver_type", "solver_type"),
        Case("solvers", "cfg_pp(-0.1, 4)", call(solvers.cfg_pp, -0.1, 4),
             "tests/test_nets.py::test_cfg_pp_against_its_definition_and_limits", "guidance", "guidance"),
        Case("solvers", "cfg_pp(0.6, -1)", call(solvers.cfg_pp, 0.6, -1),
             "tests/test_nets.py::test_cfg_pp_against_its_definition_and_limits", "null_label", "null_label"),
        Case("solvers", "NoiseInjected(euler_maruyama(), jnp.zeros(3))",
             call(NoiseInjected, solvers.euler_maruyama(), jnp.zeros(3)),
             "tests/test_adasde.py::test_bad_input_is_rejected", "deterministic", "base"),
        Case("solvers", "registry.get('eulr')", call(registry.get, "eulr"),
             "tests/test_registry.py::test_bad_names_and_entries_are_clear_errors",
             "solver must be one of .*euler.*; got 'eulr'", "solver"),
        # ------------------------------------------------------------------- learned-solver files
        Case("load_solver", "load_solver('missing.npz')", call(js.load_solver, files["missing"]),
             T_IO + "test_damaged_files_are_clear_errors", "does not exist", "filename"),
        Case("load_solver", "load_solver(f) on a text file", call(js.load_solver, files["text"]),
             T_IO + "test_damaged_files_are_clear_errors", "not a jaxsample solver file", "filename"),
        Case("load_solver", "load_solver(f) with NaN in array 'a'", call(js.load_solver, files["nan"]),
             T_IO + "test_damaged_files_are_clear_errors", "array 'a' holds non-finite values", "filename"),
        Case("load_solver", "load_solver(f) with array 'b' cut to 2 rows", call(js.load_solver, files["shape"]),
             T_IO + "test_damaged_files_are_clear_errors", r"array 'b' has shape \(2, 4\)", "filename"),
        Case("load_solver", "load_solver(f) whose header names class 'os'", call(js.load_solver, files["cls"]),
             T_IO + "test_damaged_files_are_clear_errors", "names class 'os', which is no jaxsample.solvers module",
             "filename"),
        Case("load_solver", "load_solver(f, model=vp_model) for a solver learned on RectifiedFlow",
             call(js.load_solver, files["s"], model=model),
             T_IO + "test_a_solver_learned_on_one_path_is_refused_on_another",
             r"learned on the path RectifiedFlow\(\), but the model's path is VPCosine", "path"),
        Case("load_solver", "load_solver(f, teacher='digits_vp') for one learned for another teacher",
             call(js.load_solver, files["s"], teacher="digits_vp"),
             T_IO + "test_a_solver_learned_on_one_path_is_refused_on_another",
             "learned for teacher 'gmm_rectified_flow', not 'digits_vp'", "teacher"),
        Case("load_solver", "load_solver(f, model=flow_model) with times [1.5, 0.5, 0.1]",
             call(js.load_solver, files["far"], model=gmm.model(flow, "velocity")),
             T_IO + "test_times_outside_the_models_path_are_refused", "times do not fit the model's path", "times"),
        # ------------------------------------------------------------------- networks and guidance
        Case("nets", "network_model(nnx_module, {'w': 1}, path, 'velocity')",
             lambda: _network_model("nnx", {"w": 1}),
             "tests/test_nnx.py::test_network_model_names_what_it_expected", "params must be None for an NNX module",
             "params"),
        Case("nets", "network_model(3, {}, path, 'velocity')", call(nets.network_model, 3, {}, flow, "velocity"),
             "tests/test_nnx.py::test_network_model_names_what_it_expected",
             "module must be a Flax linen module .* or an NNX module, got int", "module"),
        Case("nets", "network_model(linen_module, None, path, 'velocity')", lambda: _network_model("linen", None),
             "tests/test_nnx.py::test_network_model_names_what_it_expected", "params is required for a linen module",
             "params"),
        Case("nets", "guided(lambda x, t: x, 1.0, 0)", call(nets.guided, lambda x, t: x, 1.0, 0),
             "tests/test_nets.py::test_guided_scalar_t_and_jit", "Model", "model"),
        Case("nets", "guided(model, 2.0, 4, interval=(2.0, 1.0))",
             call(nets.guided, model, 2.0, 4, interval=(2.0, 1.0)),
             "tests/test_nets.py::test_guidance_interval_and_schedule", "interval", "interval"),
        # ------------------------------------------------------------------- peers
        Case("peers", "from_diffusers(DDIMScheduler(), 10)", diffusers("DDIMScheduler"), T_PEERS, "clip_sample",
             "clip_sample"),
        Case("peers", "from_diffusers(DDIMScheduler(beta_schedule='squaredcos_cap_v2', clip_sample=False), 10)",
             diffusers("DDIMScheduler", beta_schedule="squaredcos_cap_v2", clip_sample=False), T_PEERS, "beta_schedule",
             "beta_schedule"),
        Case("peers", "from_diffusers(EulerDiscreteScheduler(), 10)", diffusers("EulerDiscreteScheduler"), T_PEERS,
             "scheduler must be one of", "scheduler"),
        Case("peers", "from_diffusers(DPMSolverMultistepScheduler(), 1)",
             diffusers("DPMSolverMultistepScheduler", steps=1), T_PEERS, "num_inference_steps", "num_inference_steps"),
        Case("peers", "from_k_diffusion('dpmpp_sde', [80.0, 1.0, 0.0])",
             call(peers.from_k_diffusion, "dpmpp_sde", [80.0, 1.0, 0.0]), T_PEERS, "sampler must be one of", "sampler"),
        Case("peers", "from_k_diffusion('euler', [1.0, 80.0, 0.0])",
             call(peers.from_k_diffusion, "euler", [1.0, 80.0, 0.0]), T_PEERS, "strictly decreasing", "sigmas"),
        # ------------------------------------------------------------------- training loop
        Case("train", "fit(state, loss_fn, batch_fn, num_steps=0)",
             call(train.fit, state, loss_fn, batch_fn, num_steps=0, progress=False), T_TRAIN, "num_steps", "num_steps"),
        Case("train", "fit(..., num_steps=3, checkpoint_every=1) without a workdir",
             call(train.fit, state, loss_fn, batch_fn, num_steps=3, checkpoint_every=1, progress=False), T_TRAIN,
             "checkpoint_every", "checkpoint_every"),
        Case("train", "fit({'w': 1}, loss_fn, batch_fn, num_steps=3)",
             call(train.fit, {"w": 1}, loss_fn, batch_fn, num_steps=3, progress=False), T_TRAIN, "state", "state"),
        Case("train", "TrainState.create(params, optax.sgd(0.1), ema_decay=1.0)",
             call(train.TrainState.create, {"w": jnp.zeros(2)}, optax.sgd(0.1), ema_decay=1.0), T_TRAIN, "ema_decay",
             "ema_decay"),
        Case("train", "make_optimizer(0.0)", call(train.make_optimizer, 0.0), T_TRAIN, "learning_rate",
             "learning_rate"),
    ]
    sample_argv = ["sample", "--teacher", "checkerboard_flow", "--solver", "heun", "--nfe", "4", "--num", "4"]
    bns = ["distill", "bns", "--config", "{gmm}", "--workdir", "{tmp}/w", "--set"]
    cli_rows = [
        (["sample", "--teacher", "{tmp}/no_config.json", "--solver", "heun", "--out", "{tmp}/o"], T_CLI_BEFORE,
         "lacks \\['config'\\]", "--teacher"),
        (["sample", "--teacher", "{tmp}/no_weights.json", "--solver", "heun", "--out", "{tmp}/o"], T_CLI_BEFORE,
         "gone.msgpack.*does not exist", "--teacher"),
        (["sample", "--teacher", "cifar", "--solver", "ddim", "--out", "{tmp}/o"], T_CLI_CLEAR,
         "--teacher: unknown teacher 'cifar'", "--teacher"),
        (sample_argv + ["--out", "{tmp}/file"], T_CLI_BEFORE, "--out .* is an existing file", "--out"),
        (sample_argv + ["--label", "3", "--out", "{tmp}/o"], T_CLI_BEFORE,
         "--label needs a class-conditional teacher", "--label"),
        (["sample", "--teacher", "checkerboard_flow", "--solver", "heun", "--nfe", "5", "--out", "{tmp}/o"],
         T_CLI_CLEAR, "--nfe must be a positive multiple of 2", "--nfe"),
        (["sample", "--teacher", "checkerboard_flow", "--solver-file", "{tmp}/bns4.npz", "--nfe", "8", "--out",
          "{tmp}/o"], T_CLI_BEFORE, "--nfe 8 disagrees with --solver-file", "--nfe"),
        (["distill", "bns", "--config", "{tmp}/bad.py", "--workdir", "{tmp}/w"], T_CLI_BEFORE,
         "--config .*not valid Python.*line 1", "--config"),
        (bns + ["num_stepz=3"], T_CLI_CLEAR, "no field 'num_stepz'", "--set"),
        (bns + ["setting='unknown'"], T_CLI_BEFORE,
         r"config.setting must be one of \['rectified_flow', 'vp_cosine'\], got 'unknown'", "setting"),
        (bns + ["nfes=(0,)"], T_CLI_BEFORE, r"config.nfes must be a non-empty tuple of positive integers, got \(0,\)",
         "nfes"),
        (bns + ["num_train=0"], T_CLI_BEFORE, "config.num_train must be a positive integer, got 0", "num_train"),
    ]
    rows += [Case("CLI", _shown(argv), _cli(argv, tmp_s), test, match, names)
             for argv, test, match, names in cli_rows]
    return rows


def _network_model(kind: str, params):
    from flax import linen, nnx

    import jaxsample as js
    from jaxsample import nets

    module = nnx.Linear(3, 2, rngs=nnx.Rngs(0)) if kind == "nnx" else linen.Dense(2)
    return nets.network_model(module, params, js.RectifiedFlow(), "velocity")


# ----------------------------------------------------------------------------- running them


@dataclass(frozen=True)
class Result:
    case: Case
    error: str  # the exception type, 'SystemExit(2)' for a command line, or NOT_RAISED
    message: str  # the whole message, temporary folder left out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _type_name(e: BaseException) -> str:
    cls = type(e)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def trigger(case: Case, tmp: str = "") -> Result:
    """Make the call; its exception (or exit status and ``jaxsample: error:`` line), or NOT_RAISED.
    Paths in the temporary folder ``tmp`` are shown by their bare names."""

    def scrub(text: str) -> str:
        for folder in {tmp, os.path.realpath(tmp)} - {""}:
            text = text.replace(folder + os.sep, "")
        return text

    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            value = case.fn()
    except WorkStarted:
        return Result(case, NOT_RAISED, "started work (sampling or a study) before failing")
    except SystemExit as e:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        text = next((line for line in lines if line.startswith("jaxsample: error:")), lines[-1] if lines else "")
        return Result(case, f"SystemExit({e.code})", scrub(text))
    except Exception as e:  # noqa: BLE001 - recording what the user would see is the point
        return Result(case, _type_name(e), scrub(str(e)))
    return Result(case, NOT_RAISED, f"returned {type(value).__name__}")


def check(result: Result) -> list:
    """Warnings for one result: it did not raise, a command line did not exit 2, the message no longer
    matches its test's pattern, or it does not name the argument."""
    case, warnings = result.case, []
    if result.error == NOT_RAISED:
        return [f"{NOT_RAISED}: {case.call} ({result.message}); {case.test}"]
    if case.area == "CLI" and result.error != "SystemExit(2)":
        warnings.append(f"{case.call}: {result.error}, expected exit status 2")
    message = _one_line(result.message)
    if not re.search(case.match, message):
        warnings.append(f"{case.call}: message does not match {case.match!r}, which {case.test} checks: "
                        f"{message[:200]!r}")
    if case.names and case.names not in message:
        warnings.append(f"{case.call}: message does not name {case.names!r}: {message[:200]!r}")
    return warnings


def _code(text: str) -> str:
    """A markdown code span that survives a table cell."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _short(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS].rstrip() + " ..."


def excerpt(result: Result) -> str:
    """The start of the message; when the part its test checks comes later (a message that opens with
    a stack trace, as equinox's runtime errors do), the line holding that part instead, saying so."""
    message = _one_line(result.message)
    found = re.search(result.case.match, message)
    if found is None or found.start() < MESSAGE_CHARS:
        return _code(_short(message))
    line = next((_one_line(x) for x in result.message.splitlines() if re.search(result.case.match, x)), None)
    if line is None:
        return _code(_short(message))
    return f"(after a stack trace) {_code(_short(line))}"


def render(results: list) -> str:
    import jax

    import jaxsample

    failed = sum(r.error == NOT_RAISED for r in results)
    header = f"""# Errors

Every bad input jaxsample guards against, as a user sees it: the call, the exception (for the
`jaxsample` command, its exit status and `jaxsample: error:` line) with the first {MESSAGE_CHARS} characters
of its message, and the test that pins it. This file is written by `python docs/errors_table.py`,
which makes each call and records what it raises (no message is typed in by hand). Command-line
cases run `jaxsample.cli.main` with sampling and the studies replaced by failures, so each error is
shown to come before any work; temporary files are shown by their bare names. A row marked
`{NOT_RAISED}` is a call that no longer fails ({failed} in this run). Generated with
jax {jax.__version__} and jaxsample {getattr(jaxsample, "__version__", "(no version)")}.

"""
    lines = ["| area | input | the error the user sees | test |", "|---|---|---|---|"]
    for r in results:
        error = f"**{NOT_RAISED}**: {r.message}" if r.error == NOT_RAISED else f"{r.error}: {excerpt(r)}"
        lines.append(f"| {r.case.area} | {_code(r.case.call)} | {error} | `{r.case.test}` |")
    return header + "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        results = [trigger(case, tmp) for case in cases(Path(tmp))]
    warnings = [w for r in results for w in check(r)]
    for w in warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    failed = [r for r in results if r.error == NOT_RAISED]
    if failed:
        print(f"\n!!! {len(failed)} of {len(results)} bad inputs DID NOT RAISE: see the warnings above !!!\n",
              file=sys.stderr)
    _write_atomic(OUT, render(results))
    print(f"wrote {OUT}: {len(results)} rows, {len(failed)} did not raise, {len(warnings)} warnings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
