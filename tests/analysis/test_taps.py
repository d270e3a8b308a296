"""The layer tap on pools that evaluate themselves abstractly for their shape (blur,
spectral, wavelet): the model's input check asks them for their output shape inside
jax.eval_shape before the forward, and that call must not be taken for the activation."""

import jax
import numpy as np
from flax import nnx

from poolnets.analysis.taps import tapped_call
from poolnets.models import nnx as zoo


def test_tap_on_a_blur_pool_returns_the_forward_activation():
    model = zoo.create("lenet5", num_classes=10, downsample="blur", rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 1))
    _, act = tapped_call(model, x, "S4")
    # It was the eval_shape tracer of the shape check, shaped (1, 5, 5, 1).
    assert not isinstance(act, jax.core.Tracer) and act.shape == (2, 5, 5, 16)
    np.testing.assert_array_equal(act, model.forward_intermediates(x, [3])[0])
