"""max_pool_with_indices and max_unpool against the brute-force references (random configs),
plus hand-checked PyTorch tie/NaN cases."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from windowed_reference import random_config, ref_extreme, ref_unpool, windows_for

from poolnets.pooling import max_pool, max_pool_with_indices, max_unpool


def _tie_heavy(rng, shape):
    x = rng.integers(-2, 3, shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = np.nan
    return x


@pytest.mark.parametrize("chunk", range(2))
def test_indices_and_values_match_reference(chunk):
    rng = np.random.default_rng(5000 + chunk)
    for _ in range(20):
        kwargs, shape = random_config(rng, half_window_padding=True)
        w = windows_for(kwargs, shape)
        x = _tie_heavy(rng, shape)
        want_vals, want_idx, _ = ref_extreme(x, None, w)
        vals, idx = jax.jit(functools.partial(max_pool_with_indices, **kwargs))(x)
        assert idx.dtype == jnp.int32
        np.testing.assert_array_equal(np.asarray(idx), want_idx, err_msg=str((kwargs, shape)))
        np.testing.assert_array_equal(np.asarray(vals), want_vals, err_msg=str((kwargs, shape)))


def _vjp(fn, x, g):
    out, pullback = jax.vjp(fn, x)
    return out, pullback(g)[0]


@pytest.mark.parametrize("chunk", range(2))
def test_unpool_matches_reference_forward_and_gradient(chunk):
    rng = np.random.default_rng(6000 + chunk)
    done = 0
    while done < 12:
        kwargs, shape = random_config(rng, half_window_padding=True, dilation=False)
        if kwargs["padding"] == "SAME":
            continue  # needs output_size; covered by test_unpool_argument_errors
        done += 1
        w = windows_for(kwargs, shape)
        values, indices = jax.jit(functools.partial(max_pool_with_indices, **kwargs))(
            _tie_heavy(rng, shape))
        default = tuple((i - 1) * s - lo - hi + k for i, s, k, (lo, hi)
                        in zip(w.out, w.strides, w.window, w.pads, strict=True))
        size = None
        if rng.random() < 0.5 and all(d - s < o < d + s for o, d, s
                                      in zip(w.spatial, default, w.strides, strict=True)):
            size = w.spatial
        out_spatial = default if size is None else size
        g = rng.standard_normal(values.shape[: values.ndim - len(w.out) - 1] + out_spatial
                                + values.shape[-1:]).astype(np.float32)
        unpool = functools.partial(max_unpool, indices=indices,
                                   window_shape=kwargs["window_shape"],
                                   strides=kwargs["strides"], padding=kwargs["padding"],
                                   output_size=size)
        out, grad = jax.jit(functools.partial(_vjp, unpool))(values, g)
        want, want_grad = ref_unpool(np.asarray(values), np.asarray(indices), out_spatial, g)
        msg = str((kwargs, shape, size))
        np.testing.assert_array_equal(np.asarray(out), want, err_msg=msg)
        np.testing.assert_allclose(np.asarray(grad), want_grad, err_msg=msg)


def test_torch_tie_and_nan_rules_by_hand():
    # torch.nn.functional.max_pool1d(..., return_indices=True), PyTorch 2.13 CPU
    x = np.array([1, np.nan, 3, np.nan, 2, 5], np.float32)[None, :, None]
    vals, idx = max_pool_with_indices(x, (6,))
    assert np.isnan(vals).all() and int(idx[0, 0, 0]) == 3  # last NaN wins
    grad = jax.grad(lambda v: max_pool(v, (6,)).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(grad)[0, :, 0], [0, 0, 0, 1, 0, 0])
    x = np.array([2, 2, 1, 2], np.float32)[None, :, None]
    assert int(max_pool_with_indices(x, (4,))[1][0, 0, 0]) == 0  # first maximum wins
    x = np.full((1, 1, 1), -np.inf, np.float32)
    vals, idx = max_pool_with_indices(x, (2,), 1, 1)
    np.testing.assert_array_equal(np.asarray(idx).ravel(), [0, 0])  # padding never wins
    # overlapping windows accumulate: window 3 stride 1 over ones picks 0, then 1
    grad = jax.grad(lambda v: max_pool(v, (3,), 1).sum())(jnp.ones((1, 4, 1)))
    np.testing.assert_array_equal(np.asarray(grad)[0, :, 0], [1, 1, 0, 0])


def test_window_missing_the_input_has_index_minus_one_and_no_gradient():
    # taps at -1 and 2 (dilation 3, padding 1) of a length-2 input: no real element
    x = jnp.array([[1.0], [2.0]])
    vals, idx = max_pool_with_indices(x, (2,), 1, 1, dilation=3)
    assert idx.tolist() == [[-1]] and vals.tolist() == [[-np.inf]]
    assert max_unpool(vals, idx, (2,), 1, output_size=(2,)).tolist() == [[0.0], [0.0]]


def test_unpool_duplicates_write_once_and_each_gets_the_gradient():
    # torch: max_unpool1d([5, 5], [1, 1], 3, 1) -> [0, 5, 0, 0]; grad w.r.t. values [1, 1]
    values = jnp.array([[5.0], [5.0]])
    indices = jnp.array([[1], [1]])
    out, pullback = jax.vjp(lambda v: max_unpool(v, indices, (3,), 1), values)
    np.testing.assert_array_equal(np.asarray(out)[:, 0], [0, 5, 0, 0])
    np.testing.assert_array_equal(np.asarray(pullback(jnp.ones_like(out))[0])[:, 0], [1, 1])


def test_unpool_argument_errors_name_the_argument():
    v = jnp.ones((1, 2, 2, 1))
    i = jnp.zeros((1, 2, 2, 1), jnp.int32)
    with pytest.raises(ValueError, match="output_size"):
        max_unpool(v, i, 2, output_size=(9, 4))
    with pytest.raises(ValueError, match="indices.shape"):
        max_unpool(v, i[..., :1, :], 2)
    with pytest.raises(TypeError, match="indices"):
        max_unpool(v, i.astype(jnp.float32), 2)
    with pytest.raises(ValueError, match="SAME"):
        max_unpool(v, i, 2, padding="SAME")
    with pytest.raises(ValueError, match="strides"):
        max_unpool(v, i, 2, strides=0)
    assert max_unpool(v, i, 2, padding="SAME", output_size=(3, 4)).shape == (1, 3, 4, 1)
    assert max_unpool(v, i, 2, output_size=(1, 1, 5, 4, 1)).shape == (1, 5, 4, 1)


def test_pool_unpool_round_trip_under_vmap_jit_and_second_order():
    x = jnp.asarray(np.random.default_rng(7).standard_normal((3, 2, 6, 6, 2)), jnp.float32)

    def round_trip(v):
        return max_unpool(*max_pool_with_indices(v, (2, 2)), (2, 2))

    np.testing.assert_array_equal(jax.vmap(round_trip)(x), round_trip(x))
    loss = lambda v: (round_trip(v) ** 3).sum()  # noqa: E731
    np.testing.assert_allclose(jax.vmap(jax.grad(loss))(x), jax.grad(loss)(x), rtol=1e-6)
    # round_trip keeps each window's max in place: d2/dx2 sum(y^3) = 6 x at the maxima
    kept = round_trip(x) != 0
    second = jax.jit(jax.grad(lambda v: jax.grad(loss)(v).sum()))(x)
    np.testing.assert_allclose(second, jnp.where(kept, 6 * x, 0), rtol=1e-5)


def test_indices_and_unpool_accept_an_empty_batch():
    # reshape(..., -1, C) cannot infer -1 from a zero-size array (0 / 0).
    x = jax.ShapeDtypeStruct((0, 4, 4, 2), jnp.float32)
    values, indices = jax.eval_shape(lambda a: max_pool_with_indices(a, 2), x)
    assert values.shape == indices.shape == (0, 2, 2, 2)

    def unpool_grad(v):
        return jax.grad(lambda t: jnp.sum(max_unpool(t, jnp.zeros(v.shape, jnp.int32), 2)))(v)

    assert jax.eval_shape(unpool_grad, values).shape == (0, 2, 2, 2)
