"""Flax wrappers of the windowed pools: same values as the functions, shapes, params and
gradients (incl. a learnable LPPool exponent)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets import pooling
from poolnets.nn import AvgPool, LPPool, MaxPool, MinPool

X = jnp.asarray(np.random.default_rng(0).uniform(0.1, 2.0, (2, 7, 6, 3)), jnp.float32)


@pytest.mark.parametrize("module, fn, kwargs", [
    (MaxPool, pooling.max_pool, dict(padding=1, dilation=(1, 2), ceil_mode=True)),
    (MinPool, pooling.min_pool, dict(padding="SAME")),
    (AvgPool, pooling.avg_pool, dict(padding=1, ceil_mode=True, count_include_pad=False)),
    (AvgPool, pooling.avg_pool, dict(divisor_override=3)),
])
def test_modules_equal_their_functions(module, fn, kwargs):
    layer = module(window_shape=(3, 3), strides=2, **kwargs)
    variables = layer.init(jax.random.key(0), X)
    assert variables == {}
    out = layer.apply(variables, X)
    np.testing.assert_array_equal(out, fn(X, (3, 3), 2, **kwargs))
    grad = jax.grad(lambda x: layer.apply(variables, x).sum())(X)
    assert grad.shape == X.shape


def test_lppool_fixed_p():
    layer = LPPool(window_shape=2, p=3.0, ceil_mode=True)
    variables = layer.init(jax.random.key(0), X)
    assert variables == {}
    np.testing.assert_allclose(layer.apply(variables, X),
                               pooling.lp_pool(X, 3.0, 2, ceil_mode=True), rtol=1e-6)


@pytest.mark.parametrize("per_feature", [False, True])
def test_lppool_learnable_p_starts_at_p_and_trains(per_feature):
    layer = LPPool(window_shape=(2, 2), p=2.5, learnable=True, per_feature=per_feature)
    variables = layer.init(jax.random.key(0), X)
    raw = variables["params"]["p_raw"]
    assert raw.shape == ((3,) if per_feature else ())
    np.testing.assert_allclose(1 + jax.nn.softplus(raw), 2.5, rtol=1e-6)
    np.testing.assert_allclose(layer.apply(variables, X), pooling.lp_pool(X, 2.5, (2, 2)),
                               rtol=1e-5)
    grads = jax.grad(lambda v: (layer.apply(v, X) ** 2).sum())(variables)
    g = grads["params"]["p_raw"]
    assert g.shape == raw.shape and np.all(np.isfinite(g)) and np.all(g != 0)


def test_lppool_rejects_bad_learnable_settings():
    with pytest.raises(ValueError, match="p=1.0"):
        LPPool(window_shape=2, p=1.0, learnable=True).init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="per_feature"):
        LPPool(window_shape=2, per_feature=True).init(jax.random.key(0), X)
