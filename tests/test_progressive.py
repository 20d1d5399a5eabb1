"""Progressive distillation: the x~ target (exact, and against the official code's formulas),
a round beating the teacher's own DDIM at the student's step count, one compilation per round,
exact resume across rounds, and the same parameters on 1 and 8 devices."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsample as js
from jaxsample.distill import progressive
from jaxsample.models import expand_to


def _gmm(dim=2):
    return js.GaussianMixture.random(jax.random.key(3), dim=dim, num_components=3)


def _exact_student(teacher, ts_teacher, parameterization, final_x0=False):
    """A student whose output is exactly its target: x~ in the requested parameterisation."""
    ts_teacher = jnp.asarray(ts_teacher)
    ts = ts_teacher[::2]
    path = teacher.path

    def fn(x, t):
        i = jnp.argmin(jnp.abs(ts[:-1] - t))
        x_tilde = progressive.distillation_target(teacher, x, ts[i], ts_teacher[2 * i + 1], ts[i + 1],
                                                  final=i == ts.shape[0] - 2, final_x0=final_x0)
        eps = (x - path.alpha(t) * x_tilde) / path.sigma(t)
        if parameterization == "both":
            return jnp.concatenate([x_tilde, eps], axis=-1)
        return js.models.from_x0_eps(path, parameterization, x_tilde, eps, x, t)

    if parameterization == "both":
        return progressive.student_model(lambda v, x, t: fn(x, t), {}, path, "both")
    return js.Model(fn, path, parameterization)


@pytest.mark.parametrize("setting", ["vp_v", "rf_velocity"])
def test_exact_student_reproduces_two_teacher_ddim_steps(setting, x64):
    """Float64: an exact student's 2 DDIM steps equal the teacher's 4 (interior and last
    interval), for every parameterisation (eps only where alpha > 0 on the grid), to 1e-9."""
    gmm = _gmm()
    path, prediction = (js.VPCosine(), "v") if setting == "vp_v" else (js.RectifiedFlow(), "velocity")
    teacher = gmm.model(path, prediction)
    noise = js.initial_noise(jax.random.key(0), (16, 2), jnp.float64)
    ts_teacher = js.uniform(path, 4)
    want = js.sample(teacher, js.ddim(), ts_teacher, noise)
    # an eps model is singular where alpha = 0 (rectified flow's noise end)
    params = progressive.PARAMETERIZATIONS if setting == "vp_v" else ("x0", "v", "velocity", "both")
    for parameterization in params:
        student = _exact_student(teacher, ts_teacher, parameterization)
        got = js.sample(student, js.ddim(), ts_teacher[::2], noise)
        np.testing.assert_allclose(got, want, atol=1e-9, rtol=1e-9, err_msg=parameterization)


def test_exact_student_in_float32():
    """The same in float32 (v student, eps teacher, 3 student steps), to 1e-5."""
    teacher = _gmm().model(js.VPCosine(), "eps")
    noise = js.initial_noise(jax.random.key(0), (64, 2))
    ts_teacher = js.uniform(teacher.path, 6)
    got = js.sample(_exact_student(teacher, ts_teacher, "v"), js.ddim(), ts_teacher[::2], noise)
    np.testing.assert_allclose(got, js.sample(teacher, js.ddim(), ts_teacher, noise), atol=1e-5)


def _official_target(teacher, z, u, num_steps):
    """google-research diffusion_distillation/dpm.py training_losses (distillation branch),
    transcribed with its logSNR formulas (alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr))."""
    def logsnr(t):
        return 2.0 * teacher.path.lam(t)

    def run(z, ls):
        t = teacher.path.t_from_lam(ls / 2.0)
        return teacher.x0_and_eps(z, t)

    ls = logsnr(u)
    x_pred, eps_pred = run(z, ls)
    ls_mid = logsnr(u - 0.5 / num_steps)
    z_mid = jnp.sqrt(jax.nn.sigmoid(ls_mid)) * x_pred + jnp.sqrt(jax.nn.sigmoid(-ls_mid)) * eps_pred
    x_pred, eps_pred = run(z_mid, ls_mid)
    ls_s = logsnr(u - 1.0 / num_steps)
    a_s, stdv_s = jnp.sqrt(jax.nn.sigmoid(ls_s)), jnp.sqrt(jax.nn.sigmoid(-ls_s))
    z_teacher = a_s * x_pred + stdv_s * eps_pred
    a_t = jnp.sqrt(jax.nn.sigmoid(ls))
    stdv_frac = jnp.exp(0.5 * (jax.nn.softplus(ls) - jax.nn.softplus(ls_s)))
    x_target = (z_teacher - stdv_frac * z) / (a_s - stdv_frac * a_t)
    return x_target, x_pred


def test_target_matches_the_official_formula(x64):
    """Against the official code's formulas (VP cosine, u = (i + 1) / N): interior intervals
    equal the x~ formula, the last interval (i = 0) equals the teacher's x0 at u - 0.5 / N (1e-8)."""
    teacher = _gmm(4).model(js.VPCosine(), "eps")
    z = js.initial_noise(jax.random.key(1), (8, 4), jnp.float64)
    num_steps = 4  # the student's
    ts_teacher = js.uniform(teacher.path, 2 * num_steps)
    for i in range(num_steps):  # official index i: u = (i + 1) / N; ours runs from noise: k = N - 1 - i
        u = (i + 1) / num_steps
        k = num_steps - 1 - i
        want, x_mid = jax.jit(_official_target, static_argnums=3)(teacher, z, u, num_steps)
        got = jax.jit(lambda z, t, m, s, f: progressive.distillation_target(teacher, z, t, m, s, final=f, final_x0=True))(
            z, ts_teacher[2 * k], ts_teacher[2 * k + 1], ts_teacher[2 * k + 2], k == num_steps - 1)
        np.testing.assert_allclose(got, x_mid if i == 0 else want, rtol=1e-8, atol=1e-8)


def test_final_x0_is_the_formula_where_sigma_vanishes():
    """Rectified flow has sigma(0) = 0: the paper's last-step special case is the formula's limit."""
    teacher = _gmm().model(js.RectifiedFlow(), "velocity")
    z = js.initial_noise(jax.random.key(2), (32, 2)) * 0.5
    t, mid, s = 0.5, 0.25, 0.0

    @jax.jit
    def targets(z):
        a = progressive.distillation_target(teacher, z, t, mid, s)
        b = progressive.distillation_target(teacher, z, t, mid, s, final=True, final_x0=True)
        return a, b, teacher.x0(progressive.ddim_step(teacher, z, t, mid)[0], mid)

    a, b, x0_mid = targets(z)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(b, x0_mid, atol=1e-6)


def test_both_heads_mix_by_sigma_squared():
    path = js.VPCosine()
    x = jax.random.normal(jax.random.key(0), (5, 3))
    raw = jax.random.normal(jax.random.key(1), (5, 6))
    t = jnp.linspace(0.1, 0.9, 5)
    a, s = expand_to(path.alpha(t), x), expand_to(path.sigma(t), x)
    want = s ** 2 * raw[:, :3] + (1 - s ** 2) * (x - s * raw[:, 3:]) / a
    np.testing.assert_allclose(progressive.split_both(raw, x, t, path), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="x head then eps head"):
        progressive.split_both(raw[:, :3], x, t, path)


class _Residual(nn.Module):
    """Tiny MLP correction with a zero output layer: the student starts equal to its base."""

    @nn.compact
    def __call__(self, x, t):
        emb = js.nets.sinusoidal_embedding(jnp.broadcast_to(t, x.shape[:1]) * 1000.0, 16)
        h = nn.silu(nn.Dense(64)(x) + nn.Dense(64)(emb))
        h = nn.silu(nn.Dense(64)(h))
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(h)


def _residual_setup(setting="vp"):
    gmm = _gmm()
    teacher = gmm.model(js.VPCosine(), "x0") if setting == "vp" else gmm.model(js.RectifiedFlow(), "velocity")
    net = _Residual()
    params = net.init(jax.random.key(0), jnp.zeros((1, 2)), 0.5)["params"]

    def apply_fn(variables, x, t):  # the analytic teacher plus the learned correction
        return teacher.fn(x, t) + net.apply(variables, x, t)

    def batch_fn(step, size=64):
        return {"x": gmm.sample(jax.random.fold_in(jax.random.key(7), step), size)}

    return teacher, apply_fn, params, batch_fn


@pytest.mark.parametrize("setting,margin", [("vp", 0.5), ("rf", 0.8)])
def test_a_round_beats_the_teachers_own_ddim_at_the_student_step_count(setting, margin):
    """Teacher at 4 DDIM steps, student at 2: on held-out noise the student's RMSE to the teacher's
    4-step samples is at most ``margin`` times that of the teacher's own 2-step DDIM (the
    student's initialisation)."""
    teacher, apply_fn, params, batch_fn = _residual_setup(setting)
    parameterization = "x0" if setting == "vp" else "velocity"
    ts_teacher = js.uniform(teacher.path, 4)
    student, _, log = progressive.distill_round(
        teacher, apply_fn, params, ts_teacher, batch_fn, parameterization=parameterization,
        weighting="snr_plus_one" if setting == "vp" else "truncated_snr",
        num_steps=300, learning_rate=1e-2, progress=False)
    noise = js.initial_noise(jax.random.key(99), (512, 2))
    target = js.sample(teacher, js.ddim(), ts_teacher, noise)
    before = float(js.rmse(js.sample(teacher, js.ddim(), ts_teacher[::2], noise), target))
    after = float(js.rmse(js.sample(student, js.ddim(), ts_teacher[::2], noise), target))
    assert after <= margin * before, (before, after)
    assert log["num_traces"] == 1  # one compilation for the whole round


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def test_progressive_loop_resumes_exactly_and_compiles_once_per_round(tmp_path):
    """8 -> 4 -> 2, interrupted in the middle of round 1 and re-run: the same students (1e-6)."""
    teacher, apply_fn, params, batch_fn = _residual_setup()
    kw = dict(start_steps=8, final_steps=2, parameterization="x0", init_params=params, steps_per_round=4,
              learning_rate=1e-3, log_every=1, progress=False)
    ref, rounds = progressive.progressive_distill(teacher, apply_fn, batch_fn, **kw)
    assert [r["num_traces"] for r in rounds] == [1, 1]
    assert [r["student_steps"] for r in rounds] == [4, 2]
    np.testing.assert_allclose(rounds[1]["ts"], np.asarray(js.uniform(teacher.path, 8))[::4], atol=1e-7)

    calls = []

    def flaky(step):
        calls.append(step)
        if len(calls) == 4 + 3:  # round 1, fetching step 3 (its checkpoint at step 2 is written)
            raise KeyboardInterrupt("simulated preemption")
        return batch_fn(step)

    with pytest.raises(KeyboardInterrupt):
        progressive.progressive_distill(teacher, apply_fn, flaky, workdir=tmp_path, checkpoint_every=2, **kw)
    got, rounds2 = progressive.progressive_distill(teacher, apply_fn, batch_fn, workdir=tmp_path, checkpoint_every=2, **kw)
    assert rounds2[0].get("restored") and not rounds2[1].get("restored")
    for a, b in zip(ref, got):
        for x, y in zip(_leaves(a.fn), _leaves(b.fn)):
            np.testing.assert_allclose(x, y, atol=1e-6)


def test_same_parameters_on_1_and_8_devices():
    teacher, apply_fn, params, batch_fn = _residual_setup()
    ts_teacher = js.uniform(teacher.path, 8)
    out = []
    for n in (1, 8):
        _, state, _ = progressive.distill_round(teacher, apply_fn, params, ts_teacher, lambda s: batch_fn(s, 16),
                                                parameterization="v", num_steps=3, learning_rate=1e-3,
                                                mesh=js.make_mesh(n), progress=False)
        out.append(_leaves(state.params))
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_arguments_are_named():
    teacher, apply_fn, params, batch_fn = _residual_setup()
    ts = js.uniform(teacher.path, 4)
    with pytest.raises(ValueError, match="parameterization"):
        progressive.distillation_loss(apply_fn, teacher, ts, "noise")
    with pytest.raises(ValueError, match="weighting"):
        progressive.distillation_loss(apply_fn, teacher, ts, "x0", "snr")
    with pytest.raises(ValueError, match="ts_teacher"):
        progressive.distillation_loss(apply_fn, teacher, js.uniform(teacher.path, 3), "x0")
    with pytest.raises(ValueError, match="power of 2"):
        progressive.halving_schedule(12, 1)
    assert progressive.halving_schedule(256) == [128, 64, 32, 16, 8, 4, 2, 1]
    with pytest.raises(ValueError, match="steps_per_round"):
        progressive.progressive_distill(teacher, apply_fn, batch_fn, start_steps=4, parameterization="x0",
                                        init_params=params, steps_per_round=[1, 2, 3])
