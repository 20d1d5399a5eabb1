"""Atomic file writes: every file the library writes goes through :func:`atomic_write`."""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["atomic_write"]


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
