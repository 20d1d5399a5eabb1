"""Atomic file writes: every file the library writes goes through :func:`atomic_write`."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings

__all__ = ["atomic_write", "write_json", "write_text", "write_jsonl", "read_jsonl", "save_figure"]


@contextlib.contextmanager
def atomic_write(filename: str, mode: str = "wb"):
    """Open a temporary file beside ``filename``; on a clean exit flush, fsync and rename it over
    ``filename``, so a reader sees the old file or the whole new one, never a part. On an error the
    temporary file is removed and ``filename`` is left as it was.

    Example:
        >>> import os, tempfile
        >>> f = os.path.join(tempfile.mkdtemp(), "x.txt")
        >>> with atomic_write(f, "w") as out:
        ...     _ = out.write("hello")
        >>> open(f).read()
        'hello'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    folder = os.path.dirname(os.path.abspath(filename))
    if not os.path.isdir(folder):
        raise ValueError(f"filename {filename!r}: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(filename)}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(filename: str, text: str) -> None:
    """Write ``text`` to ``filename`` atomically."""
    with atomic_write(filename, "w") as f:
        f.write(text)


def write_json(filename: str, obj, indent=1) -> None:
    """Write ``obj`` as JSON to ``filename`` atomically (serialised first: a value JSON cannot hold
    raises before the file is touched)."""
    write_text(filename, json.dumps(obj, indent=indent) + "\n")


def write_jsonl(filename: str, records) -> None:
    """Write ``records`` (dicts), one JSON line each, to ``filename`` atomically."""
    write_text(filename, "".join(json.dumps(r) + "\n" for r in records))


def save_figure(fig, filename: str, **savefig_kwargs) -> None:
    """``fig.savefig`` to ``filename`` atomically (the format from the file's extension)."""
    fmt = os.path.splitext(filename)[1].lstrip(".") or "png"
    with atomic_write(filename) as f:
        fig.savefig(f, format=fmt, **savefig_kwargs)


def read_jsonl(filename: str) -> list:
    """The records of a JSON-lines file; ``[]`` if it does not exist. A damaged line (a torn last
    line of an append-only log, say) is dropped with a ``RuntimeWarning`` that names the file and
    the line, so a resumed run reports it and goes on.

    Example:
        >>> import os, tempfile, warnings
        >>> f = os.path.join(tempfile.mkdtemp(), "log.jsonl")
        >>> write_text(f, '{"step": 1}\\n{"step": 2')
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     records = read_jsonl(f)
        >>> records, "line(s) 2" in str(caught[0].message)
        ([{'step': 1}], True)
    """
    if not os.path.exists(filename):
        return []
    records, damaged = [], []
    with open(filename) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                damaged.append(number)
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                damaged.append(number)
    if damaged:
        warnings.warn(f"{filename}: dropped damaged line(s) {', '.join(map(str, damaged))} "
                      f"(an interrupted write?); kept {len(records)} record(s)", RuntimeWarning, stacklevel=2)
    return records
