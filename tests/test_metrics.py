import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js


def test_psnr_per_sample_then_mean():
    ref = jnp.zeros((2, 10))
    x = ref.at[0].set(0.1).at[1].set(0.01)  # per-sample MSE 1e-2 and 1e-4
    expected = np.mean([10 * np.log10(4 / 1e-2), 10 * np.log10(4 / 1e-4)])
    np.testing.assert_allclose(js.psnr(x, ref, data_range=2.0), expected, rtol=1e-5)
    np.testing.assert_allclose(js.rmse(x, ref), np.sqrt((1e-2 + 1e-4) / 2), rtol=1e-5)


def test_exact_log_likelihood():
    g = js.GaussianMixture(jnp.zeros((1, 2)), jnp.ones((1, 2)))
    x = jnp.zeros((3, 2))
    np.testing.assert_allclose(js.mean_log_likelihood(g, x), -np.log(2 * np.pi), rtol=1e-6)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        js.psnr(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
