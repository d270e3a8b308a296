"""Grad-CAM against its closed form for conv -> global average -> Dense, where
d y_c / d A_k = W[k, c] / (H W), so cam_c = ReLU(sum_k W[k, c] A_k) / (H W)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets import models
from poolnets.analysis.gradcam import grad_cam
from poolnets.analysis.taps import tapped_apply


class ConvGAP(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(4, (3, 3), padding="SAME", name="feat")(x)
        return nn.Dense(3, name="out")(jnp.mean(x, axis=(1, 2)))


def test_gradcam_closed_form():
    model = ConvGAP()
    x = jax.random.normal(jax.random.key(0), (5, 6, 7, 2))
    variables = model.init(jax.random.key(1), x)
    classes = jnp.array([0, 1, 2, 1, 0])
    cam = grad_cam(model, variables, x, "feat", classes, upsample=False, normalize=False)
    act = nn.Conv(4, (3, 3), padding="SAME").apply({"params": variables["params"]["feat"]}, x)
    w = variables["params"]["out"]["kernel"]  # (4, 3)
    want = jax.nn.relu(jnp.einsum("nhwk,kn->nhw", act, w[:, classes])) / (6 * 7)
    np.testing.assert_allclose(cam, want, rtol=1e-5, atol=1e-6)
    full = grad_cam(model, variables, x, "feat", classes)
    assert full.shape == (5, 6, 7)
    peaks = full.reshape(5, -1).max(1)
    assert np.all((np.isclose(peaks, 1.0)) | (peaks == 0))


def test_tap_leaves_output_unchanged_and_errors():
    model = models.create("lenet5", num_classes=10)
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 1))
    variables = model.init(jax.random.key(1), x)
    y, act = tapped_apply(model, variables, x, "S2")
    np.testing.assert_array_equal(y, model.apply(variables, x))
    assert act.shape == (2, 14, 14, 6)
    cams = grad_cam(model, variables, x, "S4")
    assert cams.shape == (2, 32, 32) and np.all(np.asarray(cams) >= 0)
    with pytest.raises(ValueError, match="layers: "):
        grad_cam(model, variables, x, "S9")
    with pytest.raises(ValueError, match="classes"):
        grad_cam(model, variables, x, "S4", jnp.array([1, 2, 3]))
