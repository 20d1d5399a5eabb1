"""Guards that had no test of their own: each bad input is a ValueError that names the argument."""

import jax
import jax.numpy as jnp
import pytest

import jaxsample as js
from jaxsample import models, nets, paths, peers


def test_the_smaller_guards_name_their_argument():
    model = js.GaussianMixture.random(jax.random.key(0), dim=2, num_components=2).model(js.VPCosine(), "eps")
    ts = js.uniform(model.path, 4, t_start=0.99)
    with pytest.raises(ValueError, match="beta_schedule must be 'linear' or 'scaled_linear'"):
        paths.DiscreteDDPM(beta_schedule="cosine")
    with pytest.raises(ValueError, match="max_value"):
        models.clip_x0(model, 0.0)
    with pytest.raises(ValueError, match="percentile"):
        models.dynamic_threshold(model, percentile=2)
    with pytest.raises(ValueError, match="max_value"):
        models.dynamic_threshold(model, 0.9, max_value=0.5)
    with pytest.raises(ValueError, match="module must be a Flax NNX module"):
        nets.nnx_apply(3)
    with pytest.raises(ValueError, match="noise must be an array"):
        js.sample(model, js.euler(), ts, [[0.0, 0.0]])
    with pytest.raises(ValueError, match="sigmas must be a 1-D list of at least 2"):
        peers.from_k_diffusion("euler", [1.0])
    assert jnp.isfinite(js.sample(model, js.euler(), ts, jnp.zeros((1, 2)))).all()  # the valid call passes
