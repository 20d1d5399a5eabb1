"""One file format for every learned solver (and learned solver part, such as DEIS-SN's statistics).

A file is an ``.npz`` archive: one array a float leaf (named by its field, dotted for nested
modules) and a JSON ``header`` that names the class, its static fields, the path and the teacher the
values were learned for, the shapes and dtypes of the arrays, and free-form metadata::

    {"format": "jaxsample.solver", "version": 1, "class": "BespokeNonStationary",
     "fields": {"t_start": 1.0, "t_end": 0.0, "field": "velocity", "time_logits": {"array": [4]}, ...},
     "path": "RectifiedFlow()", "teacher": "gmm_rectified_flow", "metadata": {"nfe": 4}}

Nested solvers (the base of a plug-in solver) are stored by their registry name. Loading checks the
shapes and finiteness of every array, rebuilds the object through its class (whose own checks run),
and, given the ``model`` (and ``teacher``) it is to be used with, that they match the ones recorded.

Example:
    >>> import os, tempfile
    >>> import jaxsample as js
    >>> from jaxsample.solvers import BespokeNonStationary, load_solver, save_solver
    >>> path = js.RectifiedFlow()
    >>> solver = BespokeNonStationary.from_solver(js.euler(), path, js.uniform(path, 4))
    >>> f = os.path.join(tempfile.mkdtemp(), "bns4.npz")
    >>> save_solver(f, solver, path=path, teacher="my_flow", nfe=4)
    >>> back = load_solver(f)
    >>> back.num_parameters, read_header(f)["teacher"], read_header(f)["metadata"]
    (18, 'my_flow', {'nfe': 4})
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxsample._files import atomic_write
from jaxsample.solvers._base import AbstractSolver

__all__ = ["save_solver", "load_solver", "read_header", "FORMAT"]

FORMAT = "jaxsample.solver"
VERSION = 1


def _is_array(v) -> bool:
    return isinstance(v, (jax.Array, np.ndarray))


def _registry_name(solver) -> str:
    from jaxsample.solvers import registry

    for e in registry.entries(constructible=True, aliases=False):
        candidate = e.make()
        if type(candidate) is type(solver) and eqx.tree_equal(candidate, solver) is True:
            return e.name
    raise ValueError(f"cannot save a nested {type(solver).__name__} that is no registered solver (jaxsample list): "
                     f"{solver!r}")


def _encode(module, prefix: str, arrays: dict) -> dict:
    """The JSON description of ``module``'s fields; its arrays go into ``arrays`` (dotted names)."""
    fields = {}
    for f in dataclasses.fields(module):
        v = getattr(module, f.name)
        name = prefix + f.name
        if _is_array(v):
            arrays[name] = np.asarray(v)
            fields[f.name] = {"array": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
        elif isinstance(v, AbstractSolver) and not _is_learned_class(type(v)):
            fields[f.name] = {"solver": _registry_name(v)}
        elif isinstance(v, eqx.Module):
            fields[f.name] = {"module": type(v).__name__, "fields": _encode(v, name + ".", arrays)}
        elif isinstance(v, tuple):
            fields[f.name] = {"tuple": list(v)}
        elif v is None or isinstance(v, (bool, int, float, str)):
            fields[f.name] = v.item() if isinstance(v, np.generic) else v
        else:
            raise ValueError(f"cannot save field {name!r} of type {type(v).__name__}")
    return fields


def _is_learned_class(cls) -> bool:
    from jaxsample.solvers import registry

    return cls.__name__ in {e.cls for e in registry.entries(learned=True) if e.cls}


def _module_class(name: str, filename: str):
    import jaxsample.solvers as S

    cls = getattr(S, name, None)
    if not (isinstance(cls, type) and issubclass(cls, eqx.Module)):
        raise ValueError(f"filename {filename!r} names class {name!r}, which is no jaxsample.solvers module")
    return cls


def _decode(cls, fields: dict, prefix: str, arrays, filename: str):
    kwargs = {}
    for key, v in fields.items():
        name = prefix + key
        if isinstance(v, dict) and "array" in v:
            if name not in arrays:
                raise ValueError(f"filename {filename!r} lacks the array {name!r}")
            a = arrays[name]
            if list(a.shape) != v["array"] or str(a.dtype) != v["dtype"]:
                raise ValueError(f"filename {filename!r}: array {name!r} has shape {a.shape} and dtype {a.dtype}, "
                                 f"the header says {tuple(v['array'])} and {v['dtype']}")
            if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
                raise ValueError(f"filename {filename!r}: array {name!r} holds non-finite values")
            kwargs[key] = jnp.asarray(a)
        elif isinstance(v, dict) and "solver" in v:
            from jaxsample.solvers import registry

            kwargs[key] = registry.get(v["solver"]).make()
        elif isinstance(v, dict) and "module" in v:
            kwargs[key] = _decode(_module_class(v["module"], filename), v["fields"], name + ".", arrays, filename)
        elif isinstance(v, dict) and "tuple" in v:
            kwargs[key] = tuple(v["tuple"])
        else:
            kwargs[key] = v
    return cls(**kwargs)


def save_solver(filename: str, solver: eqx.Module, *, path=None, teacher: Optional[str] = None, **metadata) -> None:
    """Write a learned solver (or a learned part of one) to ``filename`` (``.npz``), atomically.

    Args:
        filename: the file to write (its folder must exist).
        solver: a module of :mod:`jaxsample.solvers` (a learned solver, or e.g. a ScoreNormStats).
        path: the path of the model the values were learned for (recorded; checked by
            :func:`load_solver` when it is given a model).
        teacher: the name of that model (a shipped teacher, benchmark or card), recorded.
        **metadata: JSON-serialisable extras (NFE, initialisation, scores, ...).
    """
    import jaxsample.solvers as S

    if not isinstance(solver, eqx.Module) or getattr(S, type(solver).__name__, None) is not type(solver):
        raise ValueError(f"solver must be a module of jaxsample.solvers, got {type(solver).__name__}")
    if teacher is not None and not isinstance(teacher, str):
        raise ValueError(f"teacher must be a name (str) or None, got {teacher!r}")
    arrays = {}
    header = {"format": FORMAT, "version": VERSION, "class": type(solver).__name__,
              "fields": _encode(solver, "", arrays), "path": None if path is None else repr(path),
              "teacher": teacher, "metadata": metadata}
    blob = json.dumps(header).encode()  # fails early (before the file is touched) on non-JSON metadata
    with atomic_write(filename) as f:
        np.savez(f, header=np.frombuffer(blob, np.uint8), **arrays)


def read_header(filename: str) -> dict:
    """The JSON header of a saved solver (class, fields, path, teacher, metadata)."""
    if not os.path.isfile(filename):
        raise ValueError(f"filename {filename!r} does not exist")
    try:
        with np.load(filename) as z:
            if "header" not in z.files:
                raise ValueError
            header = json.loads(z["header"].tobytes().decode())
    except Exception:
        raise ValueError(f"filename {filename!r} is not a jaxsample solver file (no readable header)") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"filename {filename!r} is not a jaxsample solver file (format {header.get('format')!r})")
    if header.get("version", 0) > VERSION:
        raise ValueError(f"filename {filename!r} has format version {header['version']}; this jaxsample reads "
                         f"up to {VERSION}")
    return header


def load_solver(filename: str, *, model=None, teacher: Optional[str] = None, expect=None):
    """Read what :func:`save_solver` wrote.

    Args:
        filename: the ``.npz`` file.
        model: the model the solver is to be used with: its path must be the recorded one.
        teacher: the teacher's name: must be the recorded one (when one was recorded).
        expect: a class (or tuple of classes) the file must hold.

    Raises:
        ValueError: for every problem, naming the file and what is wrong: missing or unreadable
            file, another format or a newer version, unknown class, a missing array, a shape or
            dtype the header does not promise, non-finite values, fields the class rejects,
            and, given ``model``/``teacher``, another path or teacher or times outside the path.
    """
    header = read_header(filename)
    cls = _module_class(header["class"], filename)
    if expect is not None and not issubclass(cls, expect):
        names = [c.__name__ for c in (expect if isinstance(expect, tuple) else (expect,))]
        raise ValueError(f"filename {filename!r} holds a {cls.__name__}, expected {' or '.join(names)}")
    if model is not None and header["path"] is not None and repr(model.path) != header["path"]:
        raise ValueError(f"filename {filename!r} holds a solver learned on the path {header['path']}, but the "
                         f"model's path is {model.path!r}")
    if teacher is not None and header["teacher"] is not None and teacher != header["teacher"]:
        raise ValueError(f"filename {filename!r} holds a solver learned for teacher {header['teacher']!r}, "
                         f"not {teacher!r}")
    try:
        with np.load(filename) as z:
            arrays = {k: z[k] for k in z.files if k != "header"}
        solver = _decode(cls, header["fields"], "", arrays, filename)
    except ValueError as err:
        if repr(filename) in str(err):
            raise
        raise ValueError(f"filename {filename!r}: cannot rebuild its {cls.__name__}: {err}") from err
    except (KeyError, TypeError, AttributeError, OSError, EOFError) as err:  # a damaged header or archive
        raise ValueError(f"filename {filename!r}: cannot rebuild its {cls.__name__} "
                         f"({type(err).__name__}: {err})") from err
    times = getattr(solver, "times", None)  # a learned grid, or the times of a statistics table
    if model is not None and times is not None:
        try:
            model.path.check_times("times", np.asarray(times))
        except ValueError as err:
            raise ValueError(f"filename {filename!r}: the solver's times do not fit the model's path: {err}") from None
    return solver
