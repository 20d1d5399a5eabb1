import os

# Tests that need several devices use host CPU devices; set before jax initialises.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The CLI and the studies turn on a persistent compilation cache; tests compile fresh (and write
# nothing under ~/.cache). tests/test_experiment_cache.py turns it on in a temporary folder.
os.environ.setdefault("JAXSAMPLE_COMPILATION_CACHE", "off")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run a test in float64 (for ground-truth comparisons below float32 precision)."""
    with jax.enable_x64(True):
        yield
