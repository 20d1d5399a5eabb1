"""The layers of DESIGN.md: the bottom of the library loads no training or plotting stack, and no
import runs upward."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("flax", "optax", "orbax", "matplotlib", "sklearn", "tensorflow", "grain")


@pytest.mark.parametrize("module", ["jaxsample", "jaxsample.solvers", "jaxsample.sampling", "jaxsample.metrics",
                                    "jaxsample.grids", "jaxsample.paths", "jaxsample.models"])
def test_the_bottom_layers_load_no_training_or_plotting_stack(module):
    code = (f"import sys, {module}; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"import {module} loaded {out.stdout.strip()}"


#: package -> the jaxsample modules it must not import (at module level or inside functions).
FORBIDDEN = {
    "jaxsample/solvers": ("jaxsample.distill", "jaxsample.train", "jaxsample.nets", "jaxsample.teachers",
                          "jaxsample.compare", "jaxsample.tasks", "jaxsample.cli", "jaxsample.demo", "jaxsample.data"),
    "jaxsample/paths.py": ("jaxsample.models", "jaxsample.solvers", "jaxsample.nets"),
    "jaxsample/grids.py": ("jaxsample.solvers", "jaxsample.sampling", "jaxsample.nets"),
    "jaxsample/metrics.py": ("jaxsample.nets", "jaxsample.train", "jaxsample.distill"),
    "jaxsample/distill": ("jaxsample.cli", "jaxsample.demo", "jaxsample.tasks", "experiments"),
}


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_no_import_runs_upward(where):
    target = ROOT / where
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    bad = [(f.relative_to(ROOT).as_posix(), name) for f in files for name in _imports(f)
           if any(name == m or name.startswith(m + ".") for m in FORBIDDEN[where])]
    assert not bad, f"upward imports: {bad}"
