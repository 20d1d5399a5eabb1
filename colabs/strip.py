"""Strip the outputs of notebooks before committing them.

Usage:
    python colabs/strip.py colabs/*.ipynb           # strip in place
    python colabs/strip.py --check colabs/*.ipynb   # exit 1, listing them, if any is not stripped

Stripping removes every output, sets every ``execution_count`` to null, and drops the
per-cell execution metadata (timings, collapsed/scrolled state, Colab's output ids) and
the widget state, so a notebook's diff shows only its sources.
"""

from __future__ import annotations

import argparse
import sys

import nbformat

#: Cell metadata that records a run rather than the notebook's content.
RUN_METADATA = ("execution", "collapsed", "scrolled", "outputId", "executionInfo")
#: Notebook metadata that records a run (widget state, Colab's per-user fields).
RUN_NOTEBOOK_METADATA = ("widgets",)


def strip_notebook(nb):
    """Return ``nb`` (an ``nbformat.NotebookNode``) with outputs and run metadata removed, in place."""
    for cell in nb.cells:
        for key in RUN_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    for key in RUN_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    return nb


def is_stripped(nb) -> bool:
    """Whether ``nb`` has no outputs, no execution counts and no run metadata."""
    for cell in nb.cells:
        if any(key in cell.metadata for key in RUN_METADATA):
            return False
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            return False
    return not any(key in nb.metadata for key in RUN_NOTEBOOK_METADATA)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="the .ipynb files")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if any notebook is not stripped")
    args = parser.parse_args(argv)
    bad = []
    for filename in args.notebooks:
        if not filename.endswith(".ipynb"):
            parser.error(f"notebooks must be .ipynb files, got {filename!r}")
        nb = nbformat.read(filename, as_version=4)
        if is_stripped(nb):
            continue
        if args.check:
            bad.append(filename)
        else:
            nbformat.write(strip_notebook(nb), filename)
            print(f"stripped {filename}")
    if bad:
        print("not stripped (run python colabs/strip.py on them): " + " ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
