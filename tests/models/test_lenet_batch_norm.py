"""LeNet-5's opt-in BatchNorm (`batch_norm=True`, the Fashion-MNIST recipe's option): where it
sits, what it counts, and that the default model is the published one."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nnx_zoo_helpers import concrete

from poolnets.models import nnx as zoo


def counts(model: nnx.Module, kind: type) -> int:
    return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(model, kind)))


def abstract(**kw) -> nnx.Module:
    return nnx.eval_shape(lambda: zoo.create("lenet5", num_classes=10, **kw))


def test_default_lenet5_has_no_batch_norm_and_keeps_its_conv_biases():
    model = abstract()
    assert "batch_norm" in zoo.overrides_of("lenet5")
    assert counts(model, nnx.Param) == 61_706 and counts(model, nnx.BatchStat) == 0
    assert model.C1.bias is not None and model.C3.bias is not None


@pytest.mark.parametrize("width,params", [(1.0, 61_728), (1.25, 96_321)])
def test_batch_norm_parameter_count(width, params):
    # the 6 + 16 conv biases (x width) go; each norm adds a scale and an offset per map
    model = abstract(batch_norm=True, width=width)
    maps = model.C1.out_features + model.C3.out_features
    assert counts(model, nnx.Param) == counts(abstract(width=width), nnx.Param) + maps == params
    assert counts(model, nnx.BatchStat) == 2 * maps  # running mean and variance
    assert model.C1.bias is None and model.C3.bias is None


def test_batch_norm_sits_between_each_conv_and_its_relu():
    model = concrete(abstract(batch_norm=True))  # host-drawn weights: no eager initialisers
    model.C1_norm.mean[...] = jnp.zeros_like(model.C1_norm.mean[...])
    c1, _, c3, _ = (stage.ops for stage in model.stages())
    assert c1[:2] == (model.C1, model.C1_norm) and c3[:2] == (model.C3, model.C3_norm)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 1)), jnp.float32)

    @nnx.jit  # one compilation instead of an eager dispatch per op
    def train_call(model, x):
        conv = model.C1(x)
        model(x, train=True)
        return conv

    conv = train_call(model, x)
    # momentum 0.9 from a zero running mean: one training call stores a tenth of the batch
    # mean of C1's output, so the norm reads C1 directly
    np.testing.assert_allclose(model.C1_norm.mean[...], 0.1 * conv.mean(axis=(0, 1, 2)),
                               rtol=1e-5, atol=1e-7)
