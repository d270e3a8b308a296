"""Windowed pools under jit/vmap/grad, second-order derivatives, half-precision and
integer dtypes, and small hand-computed PyTorch cases."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from windowed_reference import ref_extreme, windows_for

from poolnets.pooling import (
    avg_pool,
    lp_pool,
    max_pool,
    max_pool_with_indices,
    min_pool,
    sum_pool,
)

CONFIG = {"window_shape": (3, 2), "strides": (2, 1), "padding": ((1, 0), (1, 1)),
          "dilation": (2, 1), "ceil_mode": True}
OPS = {
    "max": functools.partial(max_pool, **CONFIG),
    "min": functools.partial(min_pool, **CONFIG),
    "avg": functools.partial(avg_pool, count_include_pad=False, **CONFIG),
    "sum": functools.partial(sum_pool, **CONFIG),
    "lp": functools.partial(lp_pool, p=3.0, window_shape=(3, 2), strides=(2, 1),
                            ceil_mode=True),
}


def _input(seed=0, shape=(2, 7, 5, 3)):
    rng = np.random.default_rng(seed)
    return jnp.asarray(np.abs(rng.integers(-3, 4, shape)) + 0.5, jnp.float32)


class TestTransforms(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_value_and_grad_agree_across_jit_and_vmap(self):
        x = _input()
        for name, fn in OPS.items():
            loss = lambda v, fn=fn: (fn(v) ** 2).sum()  # noqa: E731
            value, grad = self.variant(jax.value_and_grad(loss))(x)
            batched = jax.jit(jax.vmap(jax.value_and_grad(loss)))(x[:, None])
            np.testing.assert_allclose(batched[0].sum(), value, rtol=1e-5, err_msg=name)
            np.testing.assert_allclose(batched[1][:, 0], grad, rtol=1e-5, err_msg=name)
            np.testing.assert_allclose(self.variant(fn)(x), fn(x), rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("largest", [True, False])
def test_second_order_of_max_and_min_with_dilation(largest):
    # f = sum(pool(x)^2) = sum_j c_j x_j^2 with c_j = how many windows pick x_j, so its
    # Hessian is diag(2 c); c comes from the loop reference's torch-rule choices.
    x = _input(1, (1, 6, 5, 1)) * jnp.where(jnp.arange(5) % 2 == 0, 1.0, -1.0)[:, None]
    fn = OPS["max" if largest else "min"]
    w = windows_for(CONFIG, x.shape)
    _, idx, _ = ref_extreme(np.asarray(x), None, w, largest=largest)
    counts = np.bincount(idx[idx >= 0].ravel(), minlength=30).reshape(x.shape)
    f = lambda v: (fn(v) ** 2).sum()  # noqa: E731
    hessian = jax.jit(jax.hessian(f))(x).reshape(30, 30)
    np.testing.assert_allclose(hessian, np.diag(2.0 * counts.ravel()))
    grad_of_grad = jax.grad(lambda v: jax.grad(f)(v).sum())(x)
    np.testing.assert_allclose(grad_of_grad, 2.0 * counts)
    tangent = jnp.asarray(np.random.default_rng(2).standard_normal(x.shape), jnp.float32)
    hvp = jax.jvp(jax.grad(f), (x,), (tangent,))[1]
    np.testing.assert_allclose(hvp, 2.0 * counts * tangent, rtol=1e-6)


def test_second_order_of_avg_and_lp():
    x = _input(3, (1, 5, 4, 2))
    for name in ("avg", "sum", "lp"):
        f = lambda v, fn=OPS[name]: (fn(v) ** 3).sum()  # noqa: E731
        tangent = jnp.ones_like(x)
        hvp = jax.jvp(jax.grad(f), (x,), (tangent,))[1]
        eps = 1e-2
        fd = (jax.grad(f)(x + eps * tangent) - jax.grad(f)(x - eps * tangent)) / (2 * eps)
        np.testing.assert_allclose(hvp, fd, rtol=2e-2, atol=2e-2, err_msg=name)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_sums_accumulate_in_float32(dtype):
    # 300 (bfloat16) / 3000 (float16) ones: a half-precision accumulator stalls at
    # 256 / 2048, where adding 1 no longer changes the sum.
    n = 300 if dtype == jnp.bfloat16 else 3000
    ones = jnp.ones((1, n, 1), dtype)
    assert sum_pool(ones, (n,)).dtype == dtype
    assert float(sum_pool(ones, (n,))[0, 0, 0]) == n
    assert float(avg_pool(ones * 3, (n,))[0, 0, 0]) == 3.0
    assert lp_pool(ones, 1.0, (n,)).dtype == dtype
    assert float(lp_pool(ones, 1.0, (n,))[0, 0, 0]) == n
    x = _input(4).astype(dtype)
    for name, fn in OPS.items():
        got = fn(x)
        assert got.dtype == dtype, name
        np.testing.assert_allclose(np.asarray(got, np.float32), fn(x.astype(jnp.float32)),
                                   rtol=2e-2, err_msg=name)
        assert jax.grad(lambda v, fn=fn: fn(v).astype(jnp.float32).sum())(x).dtype == dtype


@pytest.mark.parametrize("dtype", [jnp.int8, jnp.uint8, jnp.int32, jnp.bool_])
def test_integer_and_bool_max_min_use_dtype_extremes(dtype):
    rng = np.random.default_rng(5)
    x = rng.integers(0 if dtype != jnp.int8 else -128, 2 if dtype == jnp.bool_ else 100,
                     (2, 5, 4, 2)).astype(dtype)
    w = windows_for({"window_shape": (2, 3), "strides": (2, 2), "padding": (1, 1),
                     "dilation": (1, 1), "ceil_mode": True}, x.shape)
    for largest, fn in ((True, max_pool), (False, min_pool)):
        got = fn(x, (2, 3), (2, 2), (1, 1), ceil_mode=True)
        assert got.dtype == dtype
        want = ref_extreme(x.astype(np.float64), None, w, largest=largest)[0]
        np.testing.assert_array_equal(np.asarray(got).astype(np.float64), want)
    values, _ = max_pool_with_indices(x, (2, 3), (2, 2), (1, 1), ceil_mode=True)
    assert values.dtype == dtype


def test_hand_computed_torch_cases():
    # torch.nn.functional.avg_pool1d(torch.ones(1, 1, 5), 3, 2, padding=1, ceil_mode=True)
    np.testing.assert_allclose(avg_pool(jnp.ones((1, 5, 1)), (3,), 2, 1, ceil_mode=True)
                               [0, :, 0], [2 / 3, 1, 2 / 3], rtol=1e-6)
    # lp_pool1d([1, 2, 3], 2, 2, ceil_mode=True): the overhanging window is scaled by 2/1
    np.testing.assert_allclose(lp_pool(jnp.array([[1.0], [2.0], [3.0]]), 2, (2,),
                                       ceil_mode=True)[:, 0], [5 ** 0.5, 18 ** 0.5],
                               rtol=1e-6)
    # lp_pool1d([0, 0, 1, 2], 2, 2) has gradient 0 (not NaN) on the all-zero window
    grad = jax.grad(lambda v: lp_pool(v, 2, (2,)).sum())(jnp.array([[0.0], [0], [1], [2]]))
    np.testing.assert_allclose(grad[:, 0], [0, 0, 1 / 5 ** 0.5, 2 / 5 ** 0.5], rtol=1e-6)
    # lp_pool1d([-1, -2, 1, 2], p, 2) for p = 1, 2, 3: signed sum, norm, NaN (no abs)
    x = jnp.array([[-1.0], [-2.0], [1.0], [2.0]])
    np.testing.assert_allclose(lp_pool(x, 1, (2,))[:, 0], [-3, 3])
    np.testing.assert_allclose(lp_pool(x, 2, (2,))[:, 0], [5 ** 0.5] * 2, rtol=1e-6)
    np.testing.assert_allclose(lp_pool(x, 3, (2,))[:, 0], [np.nan, 9 ** (1 / 3)], rtol=1e-6)
    # p = inf is max_pool(|x|)
    x = jnp.array([[-3.0], [1.0], [2.0], [-1.0]])
    np.testing.assert_array_equal(lp_pool(x, float("inf"), (2,))[:, 0], [3, 2])
    np.testing.assert_array_equal(lp_pool(x, float("-inf"), (2,))[:, 0], [1, 1])


def test_learnable_p_gets_a_finite_gradient():
    x = _input(6, (1, 4, 4, 3)).at[0, :2, :2].set(0.0)
    p = jnp.array([1.5, 2.0, 3.0])
    grad = jax.grad(lambda q: lp_pool(x, q, (2, 2)).sum())(p)
    assert grad.shape == (3,) and np.isfinite(np.asarray(grad)).all()
    eps = 1e-3
    for c in range(3):
        bump = jnp.zeros(3).at[c].set(eps)
        fd = (lp_pool(x, p + bump, (2, 2)).sum() - lp_pool(x, p - bump, (2, 2)).sum()) / (2 * eps)
        np.testing.assert_allclose(grad[c], fd, rtol=2e-2)


def test_nan_propagates_through_max_and_min():
    x = jnp.array([[1.0], [jnp.nan], [3.0], [4.0]])
    assert np.isnan(max_pool(x, (2,))[0, 0]) and max_pool(x, (2,))[1, 0] == 4
    assert np.isnan(min_pool(x, (2,))[0, 0]) and min_pool(x, (2,))[1, 0] == 3
