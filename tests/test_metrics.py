import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import jaxsample as js
from jaxsample import metrics


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


def test_frechet_closed_form_diagonal_and_1d():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # commuting covariances: |dmu|^2 + sum (sqrt v1 - sqrt v2)^2 = 5 + (4 + 1 + 0) = 10
    fd = metrics.frechet_distance_from_stats(mu1, np.diag(v1), mu2, np.diag(v2))
    np.testing.assert_allclose(fd, 10.0, rtol=1e-12)
    np.testing.assert_allclose(metrics.frechet_distance_from_stats([0.0], [[4.0]], [3.0], [[1.0]]), 9.0 + 1.0)


def test_frechet_non_commuting_matches_scipy_and_is_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2)).real
    fd = metrics.frechet_distance_from_stats(mu1, c1, mu2, c2)
    np.testing.assert_allclose(fd, ref, rtol=1e-9)
    np.testing.assert_allclose(metrics.frechet_distance_from_stats(mu2, c2, mu1, c1), fd, rtol=1e-9)
    # identical Gaussians, even singular ones: exactly 0 up to rounding
    sing = np.outer(a[0], a[0])
    assert abs(metrics.frechet_distance_from_stats(mu1, sing, mu1, sing)) < 1e-9
    assert metrics.frechet_distance_from_stats(mu1, c1, mu1, c1) < 1e-9


def test_frechet_from_samples_of_two_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3))
    c1, c2 = np.eye(3), a @ a.T + 0.5 * np.eye(3)
    mu1, mu2 = np.zeros(3), np.array([1.0, -1.0, 0.5])
    n = 200_000
    x = rng.multivariate_normal(mu1, c1, size=n)
    y = rng.multivariate_normal(mu2, c2, size=n)
    exact = metrics.frechet_distance_from_stats(mu1, c1, mu2, c2)
    np.testing.assert_allclose(metrics.frechet_distance(x, y), exact, rtol=0.02)
    with pytest.raises(ValueError, match="feature sizes"):
        metrics.frechet_distance(x[:, :2], y)


def test_mmd_hand_computed_and_kernels():
    x, y = np.array([[0.0], [1.0]]), np.array([[2.0], [4.0]])
    # linear kernel: mean_{i!=j} xx = 0, mean_{i!=j} yy = 8, mean xy = 1.5 -> 0 + 8 - 3 = 5
    np.testing.assert_allclose(metrics.mmd(x, y, kernel="linear"), 5.0, rtol=1e-12)
    # KID kernel (x.y / d + 1)^3, d = 1: kxx_01 = 1, kyy_01 = 729, kxy = [1, 1, 27, 125] -> 1 + 729 - 77
    np.testing.assert_allclose(metrics.mmd(x, y), 1.0 + 729.0 - 2 * (1 + 1 + 27 + 125) / 4, rtol=1e-12)
    # rbf with bandwidth 1: k = exp(-d^2 / 2)
    e = lambda d: np.exp(-(d**2) / 2)  # noqa: E731
    expected = e(1) + e(2) - 2 * (e(2) + e(4) + e(1) + e(3)) / 4
    np.testing.assert_allclose(metrics.mmd(x, y, kernel="rbf", bandwidth=1.0), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="kernel"):
        metrics.mmd(x, y, kernel="laplace")


def test_mmd_statistics():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2000, 4))
    y = rng.normal(size=(2000, 4))
    # unbiased: same distribution -> close to 0 (KID kernel values are O(1))
    assert abs(metrics.mmd(x, y)) < 5e-3
    # linear kernel estimates |mu_x - mu_y|^2 = 4 * 0.5^2 = 1
    np.testing.assert_allclose(metrics.mmd(x, y + 0.5, kernel="linear"), 1.0, atol=0.1)
    # KID over one subset holding everything equals the MMD (a permutation does not matter)
    np.testing.assert_allclose(metrics.kid(x[:300], y[:300] + 0.3, num_subsets=1, subset_size=300),
                               metrics.mmd(x[:300], y[:300] + 0.3), rtol=1e-10)
    k1 = metrics.kid(x, y + 0.3, num_subsets=5, subset_size=200, seed=0)
    assert k1 == metrics.kid(x, y + 0.3, num_subsets=5, subset_size=200, seed=0) and k1 > 0.05


def test_sliced_wasserstein_known_shift():
    x = np.asarray(jax.random.normal(jax.random.key(0), (500, 2)), np.float64)
    shift = np.array([3.0, -1.0])
    dirs = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    # translation: sorted projections move by theta . s exactly
    exact = np.sqrt(np.mean((unit @ shift) ** 2))
    np.testing.assert_allclose(metrics.sliced_wasserstein(x, x + shift, directions=dirs), exact, rtol=1e-10)
    np.testing.assert_allclose(metrics.sliced_wasserstein(x, x + shift, directions=dirs, p=1),
                               np.mean(np.abs(unit @ shift)), rtol=1e-10)
    # random directions: E[(theta . s)^2] = |s|^2 / d
    sw = metrics.sliced_wasserstein(x, x + shift, num_projections=4000, key=jax.random.key(1))
    np.testing.assert_allclose(sw, np.linalg.norm(shift) / np.sqrt(2), rtol=0.03)
    # invariant to the order of samples; zero for the same set
    perm = np.random.default_rng(0).permutation(500)
    assert metrics.sliced_wasserstein(x, x[perm]) < 1e-12
