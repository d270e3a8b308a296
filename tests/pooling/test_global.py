"""global_avg_pool, global_max_pool and spatial_pyramid_pool against NumPy references."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.pooling import (
    adaptive_avg_pool,
    adaptive_max_pool,
    global_avg_pool,
    global_max_pool,
    spatial_pyramid_pool,
)

# Small tests, one compile each; LLVM level 0 only shortens the compile.
quick_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
SHAPES = [(2, 5, 3), (3, 4, 6, 2), (1, 3, 2, 4, 3)]  # 1-D, 2-D, 3-D spatial


def first_max_onehot(x: np.ndarray) -> np.ndarray:
    """Per (n, c): one-hot of PyTorch's adaptive-max winner over all spatial cells (row-major
    scan, `val > best or isnan(val)`), shaped like x."""
    n, c = x.shape[0], x.shape[-1]
    flat = x.reshape(n, -1, c)
    onehot = np.zeros(flat.shape)
    for b, ch in itertools.product(range(n), range(c)):
        best, best_i = flat[b, 0, ch], 0
        for i, val in enumerate(flat[b, :, ch]):
            if val > best or np.isnan(val):
                best, best_i = val, i
        onehot[b, best_i, ch] = 1.0
    return onehot.reshape(x.shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_avg_matches_mean(shape, keepdims):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = quick_jit(lambda a: global_avg_pool(a, keepdims=keepdims))(x)
    want = x.astype(np.float64).mean(axis=tuple(range(1, x.ndim - 1)), keepdims=keepdims)
    assert got.shape == want.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES)
def test_global_max_values_and_grad_to_first_max(shape):
    rng = np.random.default_rng(1)
    x = rng.integers(-1, 2, shape).astype(np.float32)  # many ties
    g = rng.standard_normal((shape[0], shape[-1])).astype(np.float32)
    y, pullback = jax.vjp(global_max_pool, jnp.asarray(x))
    np.testing.assert_array_equal(y, x.max(axis=tuple(range(1, x.ndim - 1))))
    (grad,) = pullback(jnp.asarray(g))
    want = first_max_onehot(x) * g.reshape((shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],))
    np.testing.assert_array_equal(grad, want)


def test_global_max_nan_and_keepdims():
    x = np.zeros((1, 3, 3, 2), np.float32)
    x[0, 0, 2, 0] = x[0, 2, 0, 0] = np.nan  # channel 0: NaN, gradient to the last NaN
    y, pullback = jax.vjp(lambda a: global_max_pool(a, keepdims=True), jnp.asarray(x))
    assert y.shape == (1, 1, 1, 2)
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 0
    (grad,) = pullback(jnp.ones_like(y))
    np.testing.assert_array_equal(grad, first_max_onehot(x))
    assert grad[0, 2, 0, 0] == 1 and grad[0, 0, 0, 1] == 1


def test_global_max_integers_and_low_precision_avg():
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    np.testing.assert_array_equal(global_max_pool(x), x.max(axis=1))
    ones = jnp.ones((1, 100, 100, 1), jnp.bfloat16)  # a bf16 running sum stalls at 256
    got = global_avg_pool(ones)
    assert got.dtype == jnp.bfloat16 and float(got[0, 0]) == 1.0


def spp_reference(x: np.ndarray, levels, mode: str) -> np.ndarray:
    """Loops over levels and bins (PyTorch's floor/ceil bins), features in the documented
    order: level, then bins row-major, then channel."""
    spatial = x.shape[1:-1]
    rows = []
    for level in levels:
        for cell in itertools.product(range(level), repeat=len(spatial)):
            region = tuple(
                slice((i * length) // level, ((i + 1) * length + level - 1) // level)
                for i, length in zip(cell, spatial, strict=True)
            )
            block = x[(slice(None), *region, slice(None))].astype(np.float64)
            axes = tuple(range(1, x.ndim - 1))
            rows.append(block.max(axis=axes) if mode == "max" else block.mean(axis=axes))
    return np.concatenate(rows, axis=-1)


SPP_CASES = [
    ((2, 7, 5), (1, 2, 4), "max"),
    ((2, 5, 6, 3), (1, 2, 4), "max"),
    ((1, 9, 4, 2), (3, 1, 6), "avg"),
    ((2, 3, 4, 5, 2), (1, 2), "max"),
    ((1, 3, 4, 5, 2), (2, 3), "avg"),
]


@pytest.mark.parametrize("shape,levels,mode", SPP_CASES)
def test_spatial_pyramid_pool_matches_loops(shape, levels, mode):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    got = quick_jit(lambda a: spatial_pyramid_pool(a, levels, mode=mode))(x)
    n = len(shape) - 2
    assert got.shape == (shape[0], shape[-1] * sum(level**n for level in levels))
    np.testing.assert_allclose(got, spp_reference(x, levels, mode), rtol=1e-6, atol=1e-7)


def test_spatial_pyramid_feature_order_by_hand():
    # (1, 2, 2, 2): channel 1 = 10 * channel 0. levels (1, 2): [global max per channel,
    # then cell (0,0) c0, c1, cell (0,1) c0, c1, cell (1,0) ..., cell (1,1) ...].
    c0 = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    x = np.stack([c0, 10 * c0], axis=-1)[None]
    got = spatial_pyramid_pool(x, (1, 2))
    np.testing.assert_array_equal(got[0], [4, 40, 1, 10, 2, 20, 3, 30, 4, 40])


def test_spatial_pyramid_gradient_and_default_levels():
    x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype(np.float32)
    f = quick_jit(jax.grad(lambda a: jnp.sum(spatial_pyramid_pool(a) ** 2)))
    # same function written as separate adaptive max pools
    g = quick_jit(
        jax.grad(lambda a: sum(jnp.sum(adaptive_max_pool(a, (k, k)) ** 2) for k in (1, 2, 4)))
    )
    np.testing.assert_allclose(f(x), g(x), rtol=1e-6)
    avg = quick_jit(lambda a: spatial_pyramid_pool(a, (2,), mode="avg"))(x)
    np.testing.assert_allclose(avg, adaptive_avg_pool(x, (2, 2)).reshape(2, -1), rtol=1e-6)


@pytest.mark.parametrize(
    "call,exc,words",
    [
        (lambda: global_avg_pool(np.zeros((2, 3), np.float32)), ValueError, ["x.shape=(2, 3)"]),
        (lambda: global_max_pool(np.zeros((4,), np.float32)), ValueError, ["x.shape=(4,)"]),
        (lambda: global_avg_pool(np.zeros((2, 3, 1), np.int32)), TypeError, ["x.dtype=int32"]),
        (
            lambda: spatial_pyramid_pool(np.zeros((1, 4, 4, 1)), (1, 2), mode="min"),
            ValueError,
            ["mode", "'min'"],
        ),
        (
            lambda: spatial_pyramid_pool(np.zeros((1, 4, 4, 1)), (1, 0)),
            ValueError,
            ["levels", "(1, 0)"],
        ),
        (lambda: spatial_pyramid_pool(np.zeros((1, 4, 4, 1)), ()), ValueError, ["levels", "()"]),
        (lambda: spatial_pyramid_pool(np.zeros((1, 4, 4, 1)), 2), TypeError, ["levels", "2"]),
        (
            lambda: spatial_pyramid_pool(np.zeros((1, 4, 4, 1), np.int32), mode="avg"),
            TypeError,
            ["x.dtype=int32"],
        ),
        (lambda: spatial_pyramid_pool(np.zeros((4, 4))), ValueError, ["x.shape=(4, 4)"]),
    ],
)
def test_bad_arguments_name_argument_and_value(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value)


def test_errors_raise_before_tracing_under_jit():
    with pytest.raises(ValueError, match="mode"):
        jax.jit(lambda a: spatial_pyramid_pool(a, mode="sum"))(jnp.zeros((1, 4, 4, 1)))
    with pytest.raises(TypeError, match="x.dtype"):
        jax.jit(global_avg_pool)(jnp.zeros((1, 4, 1), jnp.int8))


def test_vmap_and_second_order():
    x = np.random.default_rng(4).standard_normal((3, 2, 5, 4, 2)).astype(np.float32)

    def per_example(a):
        return global_avg_pool(a), global_max_pool(a), spatial_pyramid_pool(a, (1, 2))

    mapped = quick_jit(jax.vmap(per_example))(x)
    for i in range(3):
        want = (x[i].mean(axis=(1, 2)), x[i].max(axis=(1, 2)), spp_reference(x[i], (1, 2), "max"))
        for got, ref in zip(mapped, want, strict=True):
            np.testing.assert_allclose(got[i], ref, rtol=1e-6, atol=1e-7)
    # global average is linear: the Hessian of 0.5*|gap(x)|^2 applied to v is
    # gap^T gap v = broadcast(mean(v)) / (number of spatial cells).
    v = np.random.default_rng(5).standard_normal(x.shape[1:]).astype(np.float32)
    f = jax.grad(lambda a: 0.5 * jnp.sum(global_avg_pool(a) ** 2))
    _, hvp = quick_jit(lambda a, t: jax.jvp(f, (a,), (t,)))(x[0], v)
    want = np.broadcast_to(v.mean(axis=(1, 2), keepdims=True) / 20, v.shape)
    np.testing.assert_allclose(hvp, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", [(2, 5, 6, 0), (0, 5, 6, 3)])
def test_empty_batch_or_features_keep_their_shape(shape):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    n, c = shape[0], shape[-1]
    assert jax.eval_shape(lambda a: adaptive_max_pool(a, (3, 4)), x).shape == (n, 3, 4, c)
    assert jax.eval_shape(lambda a: adaptive_avg_pool(a, (3, 4)), x).shape == (n, 3, 4, c)
    assert jax.eval_shape(global_max_pool, x).shape == (n, c)
    assert jax.eval_shape(spatial_pyramid_pool, x).shape == (n, 21 * c)
