"""BlurPool/MaxBlurPool/ConvBlurPool/SpectralPool/WaveletPool modules, their registry
entries, and LeNet-5 built with them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets import models, pooling
from poolnets.nn import (
    BlurPool,
    ConvBlurPool,
    MaxBlurPool,
    SpectralPool,
    WaveletPool,
    downsample_names,
    head_names,
)
from poolnets.nn.downsample import PoolGeometry
from poolnets.nn.registry import check_downsample
from poolnets.nn.spectral import wavelet_downsample


@pytest.fixture(scope="module")
def x():
    return jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 8, 3)), jnp.float32)


def test_modules_apply_their_pools(x):
    cases = [
        (BlurPool(filter_size=4, stride=2), pooling.blur_pool(x, filter_size=4, stride=2)),
        (MaxBlurPool(3, padding=1), pooling.max_blur_pool(x, 3, padding=1)),
        (SpectralPool((4, None)), pooling.spectral_pool(x, (4, None))),
        (WaveletPool(levels=2), pooling.wavelet_pool(x, levels=2)),
    ]
    for module, want in cases:
        variables = module.init(jax.random.key(0), x)
        assert not variables  # fixed filters: no parameters
        np.testing.assert_allclose(np.asarray(module.apply(variables, x, train=True)),
                                   np.asarray(want), atol=1e-6)


def test_conv_blur_pool_module(x):
    module = ConvBlurPool(features=5, kernel_size=3)
    variables = module.init(jax.random.key(0), x)
    params = variables["params"]
    assert params["kernel"].shape == (3, 3, 3, 5) and params["bias"].shape == (5,)
    got = module.apply(variables, x)
    want = pooling.conv_blur_pool(x, params["kernel"], params["bias"], activation=jax.nn.relu)
    assert got.shape == (2, 5, 4, 5)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


def test_registry_entries_and_lengths():
    assert {"blur", "max_blur", "spectral", "wavelet"} <= set(downsample_names())
    assert {"attention", "map"} <= set(head_names())
    # every entry's declared output length matches what the layer produces
    for name in ("blur", "max_blur", "spectral", "wavelet"):
        for window, stride, pad in [(2, 2, (0, 0)), (3, 2, (1, 1))]:
            geometry = PoolGeometry((window,) * 2, (stride,) * 2, (pad,) * 2, 3)
            entry = check_downsample(name)
            layer = entry.factory(geometry, jnp.float32, None)
            for length in (7, 8):
                spec = jax.ShapeDtypeStruct((1, length, length, 3), jnp.float32)
                out = jax.eval_shape(lambda v, m=layer: m.init_with_output(
                    jax.random.key(0), v)[0], spec)
                want = entry.output_length(length, window, stride, pad)
                assert out.shape == (1, want, want, 3), (name, window, length)
    with pytest.raises(ValueError, match=r"strides=\(3, 3\)"):
        wavelet_downsample(PoolGeometry((3, 3), (3, 3), ((0, 0), (0, 0)), 3), jnp.float32)


@pytest.mark.parametrize("downsample, head, run", [
    ("max_blur", "map", True), ("blur", "attention", False),
    ("spectral", "avg", False), ("wavelet", "attention", False)])
def test_lenet5_with_antialiased_spectral_and_attention_choices(downsample, head, run):
    """Init + apply compiled for one pair; traced abstractly (no compile) for the others."""
    model = models.create("lenet5", num_classes=10, downsample=downsample, head=head)
    images = jnp.asarray(np.random.default_rng(1).normal(size=(2, 28, 28, 1)), jnp.float32)
    transform = jax.jit if run else (lambda fn: lambda *a: jax.eval_shape(fn, *a))
    variables = transform(lambda v: model.init(jax.random.key(0), v, train=False))(images)
    logits = transform(lambda p, v: model.apply(p, v, train=False))(variables, images)
    assert logits.shape == (2, 10)
    if run:
        assert np.isfinite(np.asarray(logits)).all()
