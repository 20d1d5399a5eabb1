"""Generate docs/solvers.md, the table of every jaxsample solver, from the code.

Usage: ``python docs/solvers_table.py`` rewrites ``docs/solvers.md``; ``--check`` exits 1 if it is stale.

Each row names its constructor and one or more example calls; the class, order, model calls per
step and deterministic/stochastic columns are computed from those solver objects (``type(s)``,
``s.order``, ``s.nfe(1)``, ``s.is_stochastic``), so they cannot drift from the code.
``tests/test_docs.py`` checks that the committed file equals this script's output and that every
solver exported by ``jaxsample.solvers`` and ``jaxsample.distill`` has a row.
To add a solver: register it (:mod:`jaxsample.solvers.registry`), add a :class:`Row` naming it in
``registered`` to :data:`ROWS` (or fill a pending one) and rerun the script.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

OUT = Path(__file__).resolve().parent / "solvers.md"


@dataclass(frozen=True)
class Row:
    """One solver (or family of solvers) in the table.

    Attributes:
        name: the method's usual name.
        constructor: how a user builds it (shown verbatim).
        examples: Python expressions evaluated in :func:`namespace`, each building a solver; the
            computed columns list their values, separated by ' / ' when they differ.
        output: the model output its update uses (and so which paths it can start on).
        learned: 'no', or what is learned.
        reference: paper(s) with arXiv ids.
        order: overrides the computed order column (e.g. for learned solvers whose order depends on
            their coefficients); ``None`` computes it.
        nfe: overrides the computed calls-per-step column for solvers whose cost is not linear in
            the steps (Restart's intervals); ``None`` computes it.
        pending: a method being added; its computed columns are left for the lead to fill.
        registered: the names of :mod:`jaxsample.solvers.registry` this row covers (``--solver NAME``);
            every registered name is in exactly one row.
    """

    name: str
    constructor: str
    examples: tuple = ()
    output: str = ""
    learned: str = "no"
    reference: str = ""
    order: Optional[str] = None
    nfe: Optional[str] = None
    pending: bool = False
    notes: str = field(default="")
    registered: tuple = ()


KARRAS = "Karras et al. 2022, arXiv 2206.00364"
LU = "Lu et al. 2022, arXiv 2206.00927"
LU_PP = "Lu et al. 2022, arXiv 2211.01095"
DEIS = "Zhang & Chen 2023, arXiv 2204.13902"
BNS = "Shaul et al. 2024, arXiv 2403.01329"

ROWS = [
    Row("Euler", "euler(space='t')", ("euler()",), "velocity (`space='edm'`: eps)",
        reference=f"classical; `space='edm'`: {KARRAS}",
        registered=("euler",)),
    Row("Heun", "heun(space='t')", ("heun()",), "velocity (`space='edm'`: eps)",
        reference=f"classical; `space='edm'` is EDM's deterministic sampler, {KARRAS}",
        registered=("heun", "heun_edm")),
    Row("explicit midpoint", "midpoint(space='t')", ("midpoint()",), "velocity (`space='edm'`: eps)",
        reference="classical",
        registered=("midpoint",)),
    Row("Kutta's third order", "kutta3(space='t')", ("kutta3()",), "velocity (`space='edm'`: eps)",
        reference="classical",
        registered=("kutta3",)),
    Row("classical Runge-Kutta", "rk4(space='t')", ("rk4()",), "velocity (`space='edm'`: eps)",
        reference="classical",
        registered=("rk4",)),
    Row("DDIM", "ddim()", ("ddim()",), "x0", reference="Song et al. 2021, arXiv 2010.02502",
        registered=("ddim",)),
    Row("DPM-Solver-1/2/3 (singlestep)", "dpm_solver(order=3)",
        ("dpm_solver(1)", "dpm_solver(2)", "dpm_solver(3)"), "eps", reference=LU,
        registered=("dpm_solver_1", "dpm_solver_2", "dpm_solver_3", "dpm_solver")),
    Row("DPM-Solver++(2S)", "dpm_solver_pp_2s(r1=0.5)", ("dpm_solver_pp_2s()",), "x0", reference=LU_PP,
        registered=("dpm_solver_pp_2s",)),
    Row("DPM-Solver++(2M)", "dpm_solver_pp_2m()", ("dpm_solver_pp_2m()",), "x0", reference=LU_PP,
        registered=("dpm_solver_pp_2m",)),
    Row("DPM-Solver++(3M)", "dpm_solver_pp_3m()", ("dpm_solver_pp_3m()",), "x0", reference=LU_PP,
        registered=("dpm_solver_pp_3m",)),
    Row("UniPC (UniP-p + UniC, bh1/bh2)", "unipc(order=2, variant='bh2')", ("unipc(1)", "unipc(2)", "unipc(3)"),
        "x0", reference="Zhao et al. 2023, arXiv 2302.04867",
        notes="the corrector reuses the next step's model call, so order p + 1 at one call a step",
        registered=("unipc_bh1_2", "unipc_bh2_2", "unipc_bh1_3", "unipc_bh2_3", "unipc")),
    Row("UniC plug-in corrector", "unic(predictor, order=None, variant='bh2', reuse='eps')",
        ("unic(ddim())", "unic(dpm_solver_pp_3m())", "unic(deis(3))", "unic(ipndm())"), "as the predictor",
        reference="Zhao et al. 2023, arXiv 2302.04867",
        notes="UniPC's corrector on any one-call multistep solver, no extra call; on DDIM / DPM-Solver++(2M) it is UniPC",
        registered=("ddim_unic", "dpm_solver_pp_3m_unic", "deis_tab_3_unic", "ipndm_unic")),
    Row("DEIS (tAB / rhoAB / log-rho AB)", "deis(order=3, kind='tab')",
        ("deis(1)", "deis(2)", "deis(3)", "deis(4)"), "eps", reference=DEIS,
        registered=("deis_tab_1", "deis_tab_2", "deis_tab_3", "deis_rhoab_3", "deis")),
    Row("iPNDM", "ipndm(order=4)", ("ipndm(1)", "ipndm(2)", "ipndm(3)", "ipndm(4)"), "eps",
        reference=f"{DEIS}; Zhou et al. 2024 (AMED), arXiv 2312.00094",
        notes="nominal order on grids uniform in sigma/alpha; lower on others",
        registered=("ipndm",)),
    Row("Restart sampler", "restart(intervals=[(3, 2, 0.06, 0.30)], s_noise=1.0)", ("restart()",), "x0 and eps",
        nfe="2, plus 2 K (N_R - 1) per interval",
        reference="Xu et al. 2023, arXiv 2306.14878",
        notes="EDM Heun main pass; each interval jumps back to t_max and re-solves, repeats times",
        registered=("restart",)),
    Row("Euler-Maruyama (reverse SDE)", "euler_maruyama()", ("euler_maruyama()",), "x0 and eps",
        reference="Song et al. 2021, arXiv 2011.13456", notes="weak order",
        registered=("euler_maruyama",)),
    Row("CFG++ (DDIM)", "cfg_pp(guidance, null_label)", ("cfg_pp(0.6, 10)",), "x0 and eps (conditional and unconditional)",
        reference="Chung et al. 2025, arXiv 2406.08070",
        notes="guided x0, unconditional eps in the renoising; needs `cond={'label': ...}` (not registered: not a baseline)"),
    Row("DDPM ancestral / DDIM-eta", "ddpm_ancestral(eta=1.0)", ("ddpm_ancestral()",), "x0",
        reference="Ho et al. 2020, arXiv 2006.11239; Song et al. 2021, arXiv 2010.02502",
        notes="weak order; `eta=0` is DDIM",
        registered=("ddpm_ancestral",)),
    Row("EDM stochastic Heun (churn)", "edm_stochastic_heun(s_churn=0.0, s_min, s_max, s_noise)",
        ("edm_stochastic_heun()",), "x0 and eps", reference=KARRAS,
        notes="weak order; one call on a final step to sigma = 0",
        registered=("edm_stochastic_heun",)),
    Row("DPM-Solver++(2M) SDE", "dpm_solver_pp_2m_sde(eta=1.0, solver_type='midpoint')",
        ("dpm_solver_pp_2m_sde(eta=1.0)", "dpm_solver_pp_2m_sde(eta=0.0)"), "x0", reference=LU_PP,
        notes="weak order 1 with `eta=1`; `eta=0` is deterministic DPM-Solver++(2M)",
        registered=("dpm_solver_pp_2m_sde",)),
    Row("non-stationary (NS) solver", "NonStationary(times, a, b, field) / embed(solver, path, ts)",
        ("embed(euler(), RectifiedFlow(), uniform(RectifiedFlow(), 2))",), "velocity, x0 or eps (`field`)",
        reference=BNS, order="that of the embedded solver",
        notes="`embed` gives the exact NS coefficients of any deterministic linear solver"),
    Row("Bespoke Non-Stationary (BNS)", "distill.bns.distill(model, train, val, init) / load_solver(f)",
        ("BespokeNonStationary.from_solver(euler(), RectifiedFlow(), uniform(RectifiedFlow(), 2))",),
        "velocity, x0 or eps (`field`)", learned="times and coefficients, n (n + 5) / 2 parameters",
        reference=BNS, order="- (learned)", notes="sample with `ts = solver.times`; shipped ones in `jaxsample/assets/bns`",
        registered=("bns",)),
    Row("DEIS-SN (score-normalised DEIS)", "deis_sn(stats, order=3, kind='tab')",
        ("deis_sn(ScoreNormStats.constant(), 1)", "deis_sn(ScoreNormStats.constant(), 2)",
         "deis_sn(ScoreNormStats.constant(), 3)"), "eps",
        learned="calibrated r(t) = mean abs(eps) (`distill.deis_sn.calibrate`)", reference="Xia et al. 2023, arXiv 2311.00157",
        notes="constant r is exactly DEIS; shipped statistics in `jaxsample/assets/deis_sn`",
        registered=("deis_sn",)),
    Row("DPM-Solver-SN (score-normalised DPM-Solver)", "dpm_solver_sn(stats, order=3) / score_normalise(solver, stats)",
        ("dpm_solver_sn(ScoreNormStats.constant(), 1)", "dpm_solver_sn(ScoreNormStats.constant(), 2)",
         "dpm_solver_sn(ScoreNormStats.constant(), 3)"), "eps",
        learned="calibrated r(t), as DEIS-SN", reference=f"Xia et al. 2023, arXiv 2311.00157; {LU}",
        notes="`score_normalise` wraps DEIS, DPM-Solver and DDIM",
        registered=("dpm_solver_sn",)),
    Row("DPM-Solver-v3", "dpm_solver_v3(ems, order=3)  (ems = distill.dpm_solver_v3.calibrate(model, shape))",
        ("dpm_solver_v3(EMS.degenerate(jnp.linspace(-5.0, 5.0, 11), (2,)), 2)",
         "dpm_solver_v3(EMS.degenerate(jnp.linspace(-5.0, 5.0, 11), (2,)), 3)"), "eps and x0",
        learned="empirical model statistics l, s, b per element and log-SNR (calibrated, not trained)",
        reference="Zheng et al. 2023, arXiv 2310.13268",
        notes="degenerate statistics (l = 1, s = b = 0) give multistep DPM-Solver++ in its Taylor form",
        registered=("dpm_solver_v3",)),
    Row("AdaSDE", "distill.adasde.distill(...) -> LearnedAdaSDE / load_solver(f); AdaSDE.dpm_solver_2(n)",
        ("AdaSDE.dpm_solver_2(4)", "LearnedAdaSDE(jnp.zeros(4), jnp.zeros(4), jnp.zeros(4), jnp.zeros(4), num_steps=4)"),
        "x0 and eps", learned="per-step gamma, r, a, c (4 n parameters, stored unconstrained)",
        reference="Wang et al. 2025, arXiv 2510.23285",
        notes="gamma = 0, r = 1/2, a = c = 1 is DPM-Solver-2; `afs=True`: analytic first step, 2 n - 1 calls",
        registered=("adasde",)),
    Row("learned noise on any solver (AdaSDE plug-in)", "noise_injected(base, gamma)",
        ("noise_injected(euler(), jnp.zeros(4))", "noise_injected(heun(), jnp.zeros(4))"), "that of `base`",
        learned="per-step gamma", reference="Wang et al. 2025, arXiv 2510.23285",
        notes="gamma = 0 is `base` exactly"),
    Row("progressive distillation (student network)",
        "distill.progressive.progressive_distill(teacher, ...) -> student_model(...), sampled with ddim()",
        ("ddim()",), "eps, x0, v, velocity or both (the student's)", learned="a student network, N -> N/2 steps a round",
        reference="Salimans & Ho 2022, arXiv 2202.00512", notes="the student is a `Model`: any solver runs it; "
        "DDIM on its own halved grid is what it was trained for"),
    Row("catch-up distillation (student network)",
        "distill.catch_up.train_catch_up(...) -> catch_up_model(...), sampled with euler() / heun()",
        ("euler()", "heun()"), "velocity", learned="a student network (with extra heads during training)",
        reference="Shao et al. 2023, arXiv 2305.10769", notes="the student is a `Model`: any solver runs it"),
]

def namespace() -> dict:
    """Names the example expressions may use: every export of ``jaxsample.solvers``, paths and grids."""
    import jaxsample.solvers as solvers
    from jaxsample import grids, paths
    ns = {name: getattr(solvers, name) for name in solvers.__all__}
    ns.update({name: getattr(paths, name) for name in paths.__all__})
    ns.update({name: getattr(grids, name) for name in grids.__all__})
    ns["jnp"] = __import__("jax.numpy", fromlist=["numpy"])
    return ns


def _join(values) -> str:
    values = [str(v) for v in values]
    return values[0] if len(set(values)) == 1 else " / ".join(values)


def computed(row: Row, ns: Optional[dict] = None) -> dict:
    """The columns computed from the row's example solvers: class, order, nfe (calls a step), kind."""
    if row.pending:
        return {"class": "", "order": "", "nfe": "", "kind": ""}
    ns = namespace() if ns is None else ns
    objs = [eval(expr, dict(ns)) for expr in row.examples]  # noqa: S307 - our own fixed expressions
    return {
        "class": _join(f"`{type(s).__name__}`" for s in objs),
        "order": row.order if row.order is not None else _join(s.order for s in objs),
        "nfe": row.nfe if row.nfe is not None else _join(s.nfe(1) for s in objs),
        "kind": _join("stochastic" if s.is_stochastic else "deterministic" for s in objs),
        "objects": objs,
    }


HEADER = """# Solvers

Every solver in jaxsample, in one table. Build one with its constructor (all are exported by
`jaxsample.solvers`, and the classical ones by `jaxsample` itself), or by its registered name
(`jaxsample.solvers.registry.get(NAME).make()`, `jaxsample sample --solver NAME`), and run it with
`jaxsample.sample(model, solver, ts, noise, key=...)`; learned solvers own their times
(`ts = solver.times`). The class, order, model calls per step and deterministic/stochastic columns
are computed from the code by `docs/solvers_table.py`, which writes this file
(`tests/test_docs.py` fails when it is stale or a solver is missing); where a row lists several
values they belong to the example calls shown after the constructor, in order.

- **order**: the nominal order of convergence in the step size (weak order for stochastic solvers).
  Multistep methods warm up with lower orders, and most lower the order of their last steps on
  short grids (`lower_order_final`).
- **calls / step**: model evaluations per step, so a budget of NFE model calls buys `NFE / calls` steps.
- **model output**: the prediction the update is written in. Any model works with any solver
  (predictions are converted through the path), but updates in eps divide by alpha, so they
  cannot start where alpha = 0 (rectified flow at t = 1): start such grids below t = 1 or use an
  x0 or velocity solver there.

"""

FOOTER = """
Every deterministic solver also runs inside `diffrax.diffeqsolve`: `jaxsample.solvers.as_diffrax(solver, ts)`
with `jaxsample.solvers.probability_flow_term(model)` and `diffrax.StepTo(ts)` gives the same numbers.
The ground truth every solver is measured against is `jaxsample.reference_sample` (diffrax Dopri8, adaptive).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    ns = namespace()
    lines = ["| method | `--solver` names | constructor | class | order | calls / step | kind | learned | model output "
             "| reference | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in ROWS:
        c = computed(row, ns)
        constructor = row.constructor if row.pending else f"`{row.constructor}`"
        if len(row.examples) > 1:
            constructor += "; " + ", ".join(f"`{e}`" for e in row.examples)
        names = ", ".join(f"`{n}`" for n in row.registered) or "-"
        cells = [row.name, names, constructor, c["class"], c["order"], c["nfe"], c["kind"], row.learned, row.output,
                 row.reference, row.notes]
        lines.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    return HEADER + "\n".join(lines) + "\n" + FOOTER


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/solvers.md from the code.")
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/solvers.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python docs/solvers_table.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
