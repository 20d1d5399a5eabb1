"""UniPC against a line-by-line NumPy transcription of wl-zhao/UniPC's multistep loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsample import grids, models, paths, sample
from jaxsample.sampling import count_model_calls
from jaxsample import solvers as E


def _uni_pc_reference(model_fn, path, x, ts, order, variant, lower_order_final):
    """``UniPC.sample(method='multistep')`` with ``multistep_uni_pc_bh_update`` (predict_x0),
    transcribed with Python lists as in the original (wl-zhao/UniPC ``uni_pc.py``)."""
    lam = lambda t: float(path.lam(jnp.asarray(t)))  # noqa: E731
    alpha = lambda t: float(path.alpha(jnp.asarray(t)))  # noqa: E731
    sigma = lambda t: float(path.sigma(jnp.asarray(t)))  # noqa: E731

    def update(x, model_prev_list, t_prev_list, t, order, use_corrector):
        t_prev_0, model_prev_0 = t_prev_list[-1], model_prev_list[-1]
        h = lam(t) - lam(t_prev_0)
        rks, d1s = [], []
        for i in range(1, order):
            rk = (lam(t_prev_list[-(i + 1)]) - lam(t_prev_0)) / h
            rks.append(rk)
            d1s.append((model_prev_list[-(i + 1)] - model_prev_0) / rk)
        rks.append(1.0)
        rks = np.array(rks)
        hh = -h
        h_phi_1 = np.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial_i = 1
        b_h = hh if variant == "bh1" else np.expm1(hh)
        big_r, b = [], []
        for i in range(1, order + 1):
            big_r.append(rks ** (i - 1))
            b.append(h_phi_k * factorial_i / b_h)
            factorial_i *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        big_r, b = np.stack(big_r), np.array(b)
        if d1s:
            rhos_p = np.array([0.5]) if order == 2 else np.linalg.solve(big_r[:-1, :-1], b[:-1])
        rhos_c = np.array([0.5]) if order == 1 else np.linalg.solve(big_r, b)
        x_t_ = sigma(t) / sigma(t_prev_0) * x - alpha(t) * h_phi_1 * model_prev_0
        pred_res = sum(r * d for r, d in zip(rhos_p, d1s)) if d1s else 0.0
        x_t = x_t_ - alpha(t) * b_h * pred_res
        model_t = None
        if use_corrector:
            model_t = model_fn(x_t, t)
            corr_res = sum(r * d for r, d in zip(rhos_c[:-1], d1s)) if d1s else 0.0
            x_t = x_t_ - alpha(t) * b_h * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
        return x_t, model_t

    steps = len(ts) - 1
    t_prev_list, model_prev_list = [ts[0]], [model_fn(x, ts[0])]
    for step in range(1, order):
        x, model_x = update(x, model_prev_list, t_prev_list, ts[step], step, use_corrector=True)
        if model_x is None:
            model_x = model_fn(x, ts[step])
        t_prev_list.append(ts[step])
        model_prev_list.append(model_x)
    for step in range(order, steps + 1):
        step_order = min(order, steps + 1 - step) if lower_order_final else order
        x, model_x = update(x, model_prev_list, t_prev_list, ts[step], step_order, use_corrector=step < steps)
        t_prev_list = t_prev_list[1:] + [ts[step]]
        if step < steps:
            model_prev_list = model_prev_list[1:] + [model_x]
    return x


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order,lower_order_final", [(1, True), (2, True), (3, True), (3, False)])
def test_matches_wl_zhao_loop(x64, order, variant, lower_order_final):
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=4, num_components=3)
    model = gmm.model(paths.VPLinear(), "eps")
    noise = jax.random.normal(jax.random.key(1), (8, 4), jnp.float64)
    ts = grids.power(model.path, 7)
    x_init = np.asarray(model.path.sigma(ts[0]) * noise)
    fn = lambda x, t: np.asarray(model.x0(jnp.asarray(x), jnp.asarray(t)))  # noqa: E731
    ref = _uni_pc_reference(fn, model.path, x_init, [float(t) for t in ts], order, variant, lower_order_final)
    ours = sample(model, E.unipc(order, variant, lower_order_final=lower_order_final), ts, noise)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_corrector_costs_no_model_call():
    gmm = models.GaussianMixture.random(jax.random.key(0), dim=3, num_components=2)
    model = gmm.model(paths.VPCosine(), "eps")
    for n, corrector in ((1, True), (6, True), (6, False)):
        ts = grids.logsnr_uniform(model.path, n, t_start=0.95, t_end=0.05)
        solver = E.unipc(3, corrector=corrector)
        assert count_model_calls(model, solver, ts, jnp.ones((2, 3))) == n == solver.nfe(n)


def test_corrector_changes_the_result_and_helps(x64):
    """The corrector is really applied: UniPC-2 differs from UniP-2 and is closer to the truth."""
    from jaxsample.sampling import reference_sample
    gmm = models.GaussianMixture.random(jax.random.key(2), dim=4, num_components=3, std_range=(0.3, 0.8))
    gmm = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), gmm)
    model = gmm.model(paths.VPLinear(), "eps")
    noise = jax.random.normal(jax.random.key(3), (8, 4), jnp.float64)
    ts = grids.power(model.path, 32, t_end=0.1)
    ref = reference_sample(model, noise, t_start=ts[0], t_end=ts[-1])
    err = lambda s: float(jnp.sqrt(jnp.mean((sample(model, s, ts, noise) - ref) ** 2)))  # noqa: E731
    assert err(E.unipc(2, lower_order_final=False)) < 0.5 * err(E.unipc(2, lower_order_final=False, corrector=False))
