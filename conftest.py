"""Repository-wide pytest set-up (tests/, the doctests of jaxsample/ and experiments/)."""

import gc

import pytest


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_code():
    """Drop JAX's compiled executables after each module: a long-lived xdist worker otherwise
    accumulates thousands of them, and both clean-clone CI runs of this change lost a worker to a
    segfault inside an XLA compile late in the run (at 92-95%)."""
    yield
    import jax

    jax.clear_caches()
    gc.collect()
