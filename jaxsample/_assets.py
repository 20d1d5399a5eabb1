"""Where the files shipped with jaxsample live (``jaxsample/assets``): the one place that knows.

Example:
    >>> from jaxsample._assets import ASSETS_DIR, asset_path
    >>> asset_path("digits_vp.json") == ASSETS_DIR / "digits_vp.json"
    True
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ASSETS_DIR", "asset_path"]

#: The folder of the shipped assets (teacher weights and cards, learned solvers, demo ground truth).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def asset_path(*parts: str) -> Path:
    """The path of the shipped asset ``ASSETS_DIR / parts[0] / parts[1] / ...``.

    Raises:
        FileNotFoundError: if it does not exist (the message names the missing file).
    """
    path = ASSETS_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"shipped asset {'/'.join(map(str, parts))!r} not found: {path} does not exist "
                                f"(is jaxsample installed with its package data?)")
    return path
