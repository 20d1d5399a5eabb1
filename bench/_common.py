"""Shared helpers for the benchmarks: timing with warm-up and medians, JSON output, device info."""

from __future__ import annotations

import json
import platform
import statistics
import time

import jax


def time_call(fn, *args, repeats: int = 10, warmup: int = 2):
    """Median and all wall times (s) of ``fn(*args)`` with results blocked until ready."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def environment() -> dict:
    return {"jax": jax.__version__, "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "python": platform.python_version(), "machine": platform.machine()}


def write_json(path: str, payload: dict) -> None:
    """Write ``payload`` as JSON, atomically (a killed run leaves the old file or the new one)."""
    from jaxsample._files import write_text

    write_text(path, json.dumps(payload, indent=2))
    print(f"wrote {path}")
