"""Flax modules over the adaptive and global pools: same numbers as the functions, no
parameters, usable inside a jitted, differentiated model."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.nn import AdaptiveAvgPool, AdaptiveMaxPool, GlobalPool, SpatialPyramidPool
from poolnets.pooling import (
    adaptive_avg_pool,
    adaptive_max_pool,
    global_avg_pool,
    global_max_pool,
    spatial_pyramid_pool,
)

# LLVM level 0 only shortens the compiles.
quick_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
X = np.random.default_rng(0).standard_normal((2, 7, 5, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "module,fn",
    [
        (AdaptiveAvgPool((3, None)), lambda a: adaptive_avg_pool(a, (3, None))),
        (AdaptiveMaxPool(2), lambda a: adaptive_max_pool(a, 2)),
        (
            AdaptiveMaxPool((4, 3), return_indices=True),
            lambda a: adaptive_max_pool(a, (4, 3), return_indices=True),
        ),
        (GlobalPool(), global_avg_pool),
        (GlobalPool("max", keepdims=True), lambda a: global_max_pool(a, keepdims=True)),
        (SpatialPyramidPool(), spatial_pyramid_pool),
        (
            SpatialPyramidPool([1, 3], mode="avg"),
            lambda a: spatial_pyramid_pool(a, (1, 3), mode="avg"),
        ),
    ],
)
def test_module_equals_function_and_has_no_params(module, fn):
    variables = jax.eval_shape(module.init, jax.random.key(0), X)
    assert jax.tree.leaves(variables) == []
    both = quick_jit(lambda a: (module.apply({}, a), fn(a)))(X)  # one compile for both
    jax.tree.map(np.testing.assert_array_equal, *both)


class _Classifier(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3))(x)
        x = AdaptiveMaxPool((3, 3))(x)
        x = jnp.concatenate([GlobalPool("avg")(x), SpatialPyramidPool((1, 2))(x)], axis=-1)
        return nn.Dense(2)(x)


def test_modules_inside_jitted_model_with_grad():
    model = _Classifier()
    params = quick_jit(model.init)(jax.random.key(1), X)

    @quick_jit
    def loss_and_grad(p, x):
        return jax.value_and_grad(lambda q: jnp.mean(model.apply(q, x) ** 2))(p)

    loss, grads = loss_and_grad(params, X)
    assert np.isfinite(loss)
    conv_kernel_grad = grads["params"]["Conv_0"]["kernel"]
    assert conv_kernel_grad.shape == (3, 3, 3, 4) and np.abs(conv_kernel_grad).sum() > 0


def test_bad_kind_and_mode_raise_at_construction():
    with pytest.raises(ValueError, match=r"kind.*'sum'"):
        GlobalPool("sum")
    with pytest.raises(ValueError, match=r"mode.*'median'"):
        SpatialPyramidPool(mode="median")
    with pytest.raises(ValueError, match=r"output_size=\(0, 2\)"):
        AdaptiveAvgPool((0, 2)).init(jax.random.key(0), X)
