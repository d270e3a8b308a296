"""Grad-CAM against its closed form for conv -> global average -> Dense, where
d y_c / d A_k = W[k, c] / (H W), so cam_c = ReLU(sum_k W[k, c] A_k) / (H W)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from poolnets.analysis.gradcam import grad_cam
from poolnets.analysis.taps import tapped_call
from poolnets.models import nnx as zoo


class ConvGAP(nnx.Module):
    def __init__(self, *, rngs):
        self.feat = nnx.Conv(2, 4, (3, 3), padding="SAME", rngs=rngs)
        self.out = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x, train=None):
        return self.out(jnp.mean(self.feat(x), axis=(1, 2)))


def test_gradcam_closed_form():
    model = ConvGAP(rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (5, 6, 7, 2))
    classes = jnp.array([0, 1, 2, 1, 0])
    cam = grad_cam(model, x, "feat", classes, upsample=False, normalize=False)
    act = model.feat(x)
    w = model.out.kernel[...]  # (4, 3)
    want = jax.nn.relu(jnp.einsum("nhwk,kn->nhw", act, w[:, classes])) / (6 * 7)
    np.testing.assert_allclose(cam, want, rtol=1e-5, atol=1e-6)
    full = grad_cam(model, x, "feat", classes)
    assert full.shape == (5, 6, 7)
    peaks = full.reshape(5, -1).max(1)
    assert np.all((np.isclose(peaks, 1.0)) | (peaks == 0))


def test_tap_leaves_output_unchanged_and_errors():
    model = zoo.create("lenet5", num_classes=10, rngs=nnx.Rngs(1))
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 1))
    y, act = tapped_call(model, x, "S2")
    np.testing.assert_array_equal(y, model(x, train=False))
    np.testing.assert_array_equal(act, model.forward_intermediates(x, [1])[0])
    cams = grad_cam(model, x, "S4")
    assert cams.shape == (2, 32, 32) and np.all(np.asarray(cams) >= 0)
    assert type(model.S2).__name__ == "MaxPool"  # the tap changed a copy only
    with pytest.raises(ValueError, match="layers: "):
        grad_cam(model, x, "S9")
    with pytest.raises(ValueError, match="classes"):
        grad_cam(model, x, "S4", jnp.array([1, 2, 3]))
