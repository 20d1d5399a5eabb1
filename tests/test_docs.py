"""docs/solvers.md: generated from the code by docs/solvers_table.py, and complete."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import jaxsample
import jaxsample.distill
import jaxsample.solvers as solvers
from jaxsample.solvers import AbstractSolver

ROOT = Path(__file__).resolve().parents[1]


def _load_table():
    spec = importlib.util.spec_from_file_location("solvers_table", ROOT / "docs" / "solvers_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


table = _load_table()


@pytest.fixture(scope="module")
def rows():
    ns = table.namespace()
    return [(row, table.computed(row, ns)) for row in table.ROWS]


def test_committed_table_is_up_to_date():
    assert (ROOT / "docs" / "solvers.md").read_text() == table.render(), \
        "docs/solvers.md is stale: run python docs/solvers_table.py"


def _exported_solver_classes():
    found = {name: getattr(solvers, name) for name in solvers.__all__}
    for info in pkgutil.iter_modules(jaxsample.distill.__path__):
        module = importlib.import_module(f"jaxsample.distill.{info.name}")
        found.update({name: getattr(module, name) for name in getattr(module, "__all__", [])})
    return {name: obj for name, obj in found.items()
            if inspect.isclass(obj) and issubclass(obj, AbstractSolver) and obj is not AbstractSolver}


def test_every_exported_solver_class_has_a_row(rows):
    classes = {type(s).__name__ for _, c in rows for s in c.get("objects", [])}
    missing = sorted(set(_exported_solver_classes()) - classes)
    assert not missing, f"solver classes with no row in docs/solvers_table.py ROWS: {missing}"


def test_every_registered_solver_is_in_exactly_one_row():
    shown = [name for row in table.ROWS for name in row.registered]
    assert sorted(shown) == sorted(solvers.registry.names()), \
        "each name of jaxsample.solvers.registry must be in the `registered` of exactly one row"


def test_each_row_shows_the_class_its_registered_names_build(rows):
    for row, c in rows:
        classes = {type(s).__name__ for s in c.get("objects", [])}
        for name in row.registered:
            entry = solvers.registry.get(name)
            built = type(entry.make()).__name__ if entry.make is not None else entry.cls
            assert built in classes, f"{row.name}: {name} builds a {built}, not shown in the row ({classes})"


def test_computed_columns_match_the_solvers(rows):
    for row, c in rows:
        if row.pending:
            continue
        objs = c["objects"]
        assert objs, f"{row.name}: a row needs at least one example"
        assert all(isinstance(s, AbstractSolver) for s in objs)
        if row.order is None:
            assert c["order"] == table._join(s.order for s in objs)
        if row.nfe is None:
            assert all(s.nfe(3) == 3 * s.nfe(1) for s in objs), f"{row.name}: nfe must be linear in the steps"
        else:  # an affine cost, stated by the row
            assert all(s.nfe(3) - s.nfe(2) == s.nfe(2) - s.nfe(1) for s in objs), row.name


def test_every_row_cites_a_paper():
    for row in table.ROWS:
        assert row.reference == "classical" or re.search(r"arXiv \d{4}\.\d{4,5}", row.reference), \
            f"{row.name}: reference must give an arXiv id (or be 'classical')"
