"""The solver registry: the one list of named solvers.

The CLI (``--solver NAME``, ``jaxsample list``), the baseline searches of the studies and the demo
(:func:`jaxsample.compare.baseline_suite`), the docs table (``docs/solvers_table.py``) and the
parametrised tests (``tests/test_registry.py``: convergence order, batch independence, diffrax
equivalence, NFE) all read it. Registering a solver is all it takes to have it listed and tested:

    >>> from jaxsample.solvers import registry
    >>> entry = registry.get("dpm_solver_pp_2m")
    >>> entry.family, entry.stochastic, entry.learned, entry.make().nfe(8)
    ('dpm_solver', False, False, 8)
    >>> "unipc_bh2_3" in registry.names(baseline=True)
    True

An entry's ``make`` builds the solver with the settings the name stands for. Learned solvers are
registered by class (``make`` is None): they come from a file (:func:`~jaxsample.solvers.load_solver`)
or from their distillation (``jaxsample.distill.<method>.distill``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

__all__ = ["SolverEntry", "register", "get", "entries", "names", "learned_classes"]


@dataclasses.dataclass(frozen=True)
class SolverEntry:
    """One registered solver.

    Attributes:
        name: the name users type (``--solver NAME``).
        family: the method family (one module of :mod:`jaxsample.solvers` each).
        make: builds the solver (no arguments); None for learned solvers, which come from a file.
        stochastic: whether it draws noise (needs a ``key``).
        learned: whether its values are trained or calibrated for one model.
        baseline: part of the classical baseline search of the studies and the demo.
        on_flow: usable on a rectified-flow path started at t = 1 (where alpha = 0 makes
            noise-prediction updates singular).
        alias_of: this name is another name's solver under its constructor's defaults
            (listed, but not searched or tested twice).
        cls: the solver's class name (learned solvers: the class a saved file names).
        description: one line for listings.
    """

    name: str
    family: str
    make: Optional[Callable] = None
    stochastic: bool = False
    learned: bool = False
    baseline: bool = False
    on_flow: bool = True
    alias_of: Optional[str] = None
    cls: Optional[str] = None
    description: str = ""


_REGISTRY: dict = {}


def register(entry: SolverEntry) -> SolverEntry:
    """Add ``entry`` to the registry (its name must be new)."""
    if not isinstance(entry, SolverEntry):
        raise ValueError(f"entry must be a SolverEntry, got {type(entry).__name__}")
    if entry.name in _REGISTRY:
        raise ValueError(f"a solver named {entry.name!r} is already registered")
    if entry.make is None and not entry.learned:
        raise ValueError(f"entry {entry.name!r}: only learned solvers may have no make()")
    _REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> SolverEntry:
    """The entry registered as ``name``; a ValueError lists the names when there is none."""
    if name not in _REGISTRY:
        raise ValueError(f"solver must be one of {', '.join(sorted(_REGISTRY))}; got {name!r}")
    return _REGISTRY[name]


def entries(*, stochastic: Optional[bool] = None, learned: Optional[bool] = None, baseline: Optional[bool] = None,
            constructible: Optional[bool] = None, aliases: bool = True) -> list:
    """The registered entries (in registration order), filtered by the flags that are not None.

    ``constructible``: only those with (True) or without (False) a ``make``; ``aliases=False`` leaves
    out the names that are another entry's solver under default settings.
    """
    out = []
    for e in _REGISTRY.values():
        if stochastic is not None and e.stochastic != stochastic:
            continue
        if learned is not None and e.learned != learned:
            continue
        if baseline is not None and e.baseline != baseline:
            continue
        if constructible is not None and (e.make is not None) != constructible:
            continue
        if not aliases and e.alias_of is not None:
            continue
        out.append(e)
    return out


def names(**filters) -> list:
    """The names of :func:`entries` with the same filters."""
    return [e.name for e in entries(**filters)]


def learned_classes() -> dict:
    """Class name -> class of every registered learned solver (what a saved file may hold)."""
    import jaxsample.solvers as S

    return {e.cls: getattr(S, e.cls) for e in _REGISTRY.values() if e.learned and e.cls}


# ------------------------------------------------------------------------------ the solvers


def _solvers():
    import jaxsample.solvers as S

    return S


def _r(name, family, make=None, **kw):
    register(SolverEntry(name, family, make, **kw))


# Runge-Kutta (velocity field; heun_edm is EDM's deterministic sampler in sigma space).
for _name, _desc in [("euler", "Euler"), ("heun", "Heun (2nd order)"), ("midpoint", "explicit midpoint"),
                     ("kutta3", "Kutta's 3rd order"), ("rk4", "classical Runge-Kutta")]:
    _r(_name, "runge_kutta", (lambda n=_name: getattr(_solvers(), n)()), baseline=True, description=_desc)
_r("heun_edm", "runge_kutta", lambda: _solvers().heun("edm"), baseline=True, on_flow=False,
   description="Heun in EDM's sigma space (Karras et al. 2022)")

# Exponential integrators.
_r("ddim", "ddim", lambda: _solvers().ddim(), baseline=True, description="DDIM, deterministic")
for _k in (1, 2, 3):
    _r(f"dpm_solver_{_k}", "dpm_solver", (lambda k=_k: _solvers().dpm_solver(k)), baseline=True,
       description=f"DPM-Solver-{_k} (singlestep, noise prediction)")
_r("dpm_solver", "dpm_solver", lambda: _solvers().dpm_solver(), alias_of="dpm_solver_3", description="DPM-Solver-3")
_r("dpm_solver_pp_2s", "dpm_solver", lambda: _solvers().dpm_solver_pp_2s(), baseline=True,
   description="DPM-Solver++(2S)")
_r("dpm_solver_pp_2m", "dpm_solver", lambda: _solvers().dpm_solver_pp_2m(), baseline=True,
   description="DPM-Solver++(2M)")
_r("dpm_solver_pp_3m", "dpm_solver", lambda: _solvers().dpm_solver_pp_3m(), baseline=True,
   description="DPM-Solver++(3M)")
for _order in (2, 3):
    for _variant in ("bh1", "bh2"):
        _r(f"unipc_{_variant}_{_order}", "unipc", (lambda o=_order, v=_variant: _solvers().unipc(o, v)), baseline=True,
           description=f"UniPC order {_order}, {_variant}")
_r("unipc", "unipc", lambda: _solvers().unipc(), alias_of="unipc_bh2_2", description="UniPC order 2, bh2")
for _order in (1, 2, 3):
    _r(f"deis_tab_{_order}", "deis", (lambda o=_order: _solvers().deis(o)), baseline=True,
       description=f"DEIS tAB order {_order}")
_r("deis_rhoab_3", "deis", lambda: _solvers().deis(3, "rhoab"), baseline=True, description="DEIS rhoAB order 3")
_r("deis", "deis", lambda: _solvers().deis(), alias_of="deis_tab_3", description="DEIS tAB order 3")
_r("ipndm", "ipndm", lambda: _solvers().ipndm(), baseline=True, description="iPNDM (order 4)")

# UniC (UniPC's corrector) plugged into one-call multistep predictors: one order more, no extra call.
for _name, _make, _desc in [("ddim_unic", lambda: _solvers().ddim(), "DDIM"),
                            ("dpm_solver_pp_3m_unic", lambda: _solvers().dpm_solver_pp_3m(), "DPM-Solver++(3M)"),
                            ("deis_tab_3_unic", lambda: _solvers().deis(3), "DEIS tAB order 3"),
                            ("ipndm_unic", lambda: _solvers().ipndm(), "iPNDM")]:
    _r(_name, "unic", (lambda m=_make: _solvers().unic(m())), description=f"{_desc} + UniC corrector (bh2)")

# Stochastic samplers (the settings the SDE baseline search uses).
_r("euler_maruyama", "stochastic", lambda: _solvers().euler_maruyama(), stochastic=True, baseline=True,
   description="Euler-Maruyama on the reverse SDE")
_r("ddpm_ancestral", "ddim", lambda: _solvers().ddpm_ancestral(1.0), stochastic=True, baseline=True,
   description="DDPM ancestral sampling (DDIM eta = 1)")
_r("edm_stochastic_heun", "stochastic",
   lambda: _solvers().edm_stochastic_heun(s_churn=40.0, s_min=0.05, s_max=50.0, s_noise=1.003),
   stochastic=True, baseline=True, description="EDM's stochastic Heun sampler, S_churn = 40 (without churn: heun_edm)")
_r("dpm_solver_pp_2m_sde", "dpm_solver", lambda: _solvers().dpm_solver_pp_2m_sde(1.0), stochastic=True,
   baseline=True, description="DPM-Solver++(2M) SDE")
_r("restart", "restart", lambda: _solvers().restart(), stochastic=True,
   description="the Restart sampler: EDM Heun + restarts (default: the CIFAR-10 VP interval)")

# Score-normalised DEIS and DPM-Solver: their statistics are calibrated per model (jaxsample distill deis-sn).
_r("deis_sn", "score_norm", learned=True, cls="DEISSN", description="score-normalised DEIS (calibrated r(t))")
_r("dpm_solver_sn", "score_norm", learned=True, cls="DPMSolverSN", description="score-normalised DPM-Solver")
_r("dpm_solver_v3", "dpm_solver_v3", learned=True, cls="DPMSolverV3", on_flow=False,
   description="DPM-Solver-v3 with calibrated empirical model statistics (jaxsample.distill.dpm_solver_v3)")

# Learned solvers: loaded from a file or distilled.
_r("bns", "nonstationary", learned=True, cls="BespokeNonStationary",
   description="Bespoke Non-Stationary solver (distilled; jaxsample distill bns)")
_r("adasde", "adasde", learned=True, cls="LearnedAdaSDE", stochastic=True,
   description="AdaSDE per-step noise and step parameters, or its noise on a base solver (jaxsample distill adasde)")

del _name, _desc, _k, _order, _variant, _make
