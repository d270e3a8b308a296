"""Fast max/min derivative paths (poolnets.pooling._fast_extreme) against the brute-force
torch-rule reference and against the general (value, index) reduce_window selection, on
random tie- and NaN-heavy configs: values, reverse and forward mode, second order, and
the tiling (stride == window) reshape path."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from windowed_reference import random_config, ref_avg, ref_extreme, windows_for

from poolnets.pooling import avg_pool, lp_pool, max_pool, min_pool, sum_pool
from poolnets.pooling._fast_extreme import choose_taps, tiles_input
from poolnets.pooling.geometry import window_geometry
from poolnets.pooling.indices import extreme_pool, window_arg_extreme
from poolnets.pooling.windowed import _divisor


def _tie_nan_heavy(rng, shape):
    x = rng.integers(-2, 3, shape).astype(np.float32)
    x[rng.random(shape) < 0.1] = np.nan
    if rng.random() < 0.3:
        x[rng.random(shape) < 0.4] = -np.inf
    return x


def _value_grad_tangent(fn, x, g, t):
    y, pull = jax.vjp(fn, x)
    return y, pull(g)[0], jax.jvp(fn, (x,), (t,))[1]


def _tiling_config(rng):
    n = int(rng.integers(1, 4))
    window = tuple(int(v) for v in rng.integers(1, 4, n))
    out = tuple(int(v) for v in rng.integers(1, 4, n))
    extra = tuple(int(v) for v in rng.integers(0, 2, n))  # a remainder floor mode drops
    spatial = tuple(o * k + e for o, k, e in zip(out, window, extra, strict=True))
    return {"window_shape": window, "strides": window, "padding": 0, "dilation": (1,) * n,
            "ceil_mode": False}, (2,) + spatial + (3,)


@pytest.mark.parametrize("chunk", range(2))
def test_max_min_value_vjp_jvp_match_reference(chunk):
    rng = np.random.default_rng(9100 + chunk)
    tiled = 0
    for trial in range(10):
        if trial % 3 == 0:
            kwargs, shape = _tiling_config(rng)
        else:
            kwargs, shape = random_config(rng, half_window_padding=True)
        w = windows_for(kwargs, shape)
        geom = window_geometry(shape, kwargs["window_shape"], kwargs["strides"],
                               kwargs["padding"], dilation=kwargs["dilation"],
                               ceil_mode=kwargs["ceil_mode"])
        tiled += tiles_input(geom)
        largest = bool(trial % 2)
        fn = functools.partial(max_pool if largest else min_pool, **kwargs)
        x = _tie_nan_heavy(rng, shape)
        xx = x if largest else -x  # min_pool(-x) picks what max_pool(x) picks
        g = rng.standard_normal(np.shape(jax.eval_shape(fn, xx))).astype(np.float32)
        t = rng.standard_normal(shape).astype(np.float32)
        want_vals, _, want_grad = ref_extreme(x, g, w)
        value, grad, tangent = jax.jit(functools.partial(_value_grad_tangent, fn))(xx, g, t)
        msg = str((kwargs, shape, largest))
        sign = 1 if largest else -1
        np.testing.assert_array_equal(sign * np.asarray(value), want_vals, err_msg=msg)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-6, atol=1e-6,
                                   err_msg=msg)
        # forward mode equals the tangent gathered at the general path's chosen index
        index = np.asarray(window_arg_extreme(jnp.asarray(xx), geom, largest))
        nb = geom.num_batch_dims
        flat_t = t.reshape(t.shape[:nb] + (-1, t.shape[-1]))
        flat_t = np.concatenate([flat_t, np.zeros_like(flat_t[..., :1, :])], axis=nb)
        flat_i = index.reshape(index.shape[:nb] + (-1, index.shape[-1]))
        want_t = np.take_along_axis(flat_t, flat_i, axis=nb).reshape(index.shape)
        np.testing.assert_allclose(np.asarray(tangent), want_t, rtol=1e-6, err_msg=msg)
    assert tiled >= 3


def _tap_to_flat_index(chosen, geom):
    """Chosen tap number -> flat spatial index (prod(input_shape) where none)."""
    offsets = np.array(list(itertools.product(*(range(k) for k in geom.window_shape))))
    c = np.asarray(chosen).astype(np.int64)
    nb, flat, mult = geom.num_batch_dims, np.zeros(c.shape, np.int64), 1
    for a in reversed(range(geom.num_spatial)):
        shape = [1] * c.ndim
        shape[nb + a] = -1
        pos = geom.window_starts(a).reshape(shape) + geom.dilation[a] * offsets[np.maximum(c, 0), a]
        flat, mult = flat + mult * pos, mult * geom.input_shape[a]
    return np.where(c < 0, mult, flat)


def test_choose_taps_picks_the_general_paths_element_for_every_dtype():
    rng = np.random.default_rng(9200)
    for dtype, largest, _ in itertools.product((np.float32, np.int32, np.bool_), (True, False),
                                               range(2)):
        kwargs, shape = random_config(rng, half_window_padding=True)
        geom = window_geometry(shape, kwargs["window_shape"], kwargs["strides"],
                               kwargs["padding"], dilation=kwargs["dilation"],
                               ceil_mode=kwargs["ceil_mode"])
        x = _tie_nan_heavy(rng, shape) if dtype == np.float32 else rng.integers(0, 2, shape)
        x = jnp.asarray(x.astype(dtype))
        value = extreme_pool(x, geom, largest)
        chosen = choose_taps(x, value, geom)
        want = np.asarray(window_arg_extreme(x, geom, largest))
        np.testing.assert_array_equal(_tap_to_flat_index(chosen, geom), want,
                                      err_msg=str((kwargs, shape, dtype)))
        fn = max_pool if largest else min_pool
        np.testing.assert_array_equal(value, fn(x, **kwargs), err_msg=str(kwargs))


@pytest.mark.parametrize("largest", [True, False])
def test_second_order_tiled_and_overlapping(largest):
    fn = max_pool if largest else min_pool
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 6, 6, 2)), jnp.float32)
    for kwargs in ({"window_shape": (2, 2)}, {"window_shape": (3, 3), "strides": 2,
                                               "padding": 1, "dilation": 1}):
        f = lambda v, kw=kwargs: (fn(v, **kw) ** 2).sum()  # noqa: E731
        counts = jax.grad(lambda v, kw=kwargs: fn(v, **kw).sum())(x)
        hvp = jax.jit(lambda v, u, f=f: jax.jvp(jax.grad(f), (v,), (u,))[1])(x, jnp.ones_like(x))
        np.testing.assert_allclose(hvp, 2.0 * counts, rtol=1e-6)


@pytest.mark.parametrize("chunk", range(1))
def test_avg_sum_lp_vjp_match_reference(chunk):
    rng = np.random.default_rng(9300 + chunk)
    for trial in range(6):
        kwargs, shape = random_config(rng, half_window_padding=True)
        w = windows_for(kwargs, shape)
        x = rng.standard_normal(shape).astype(np.float32)
        mode = ("avg", "sum", "lp")[trial % 3]
        if mode == "avg":
            cip = bool(trial % 2)
            fn = functools.partial(avg_pool, count_include_pad=cip, **kwargs)
            ref = functools.partial(ref_avg, count_include_pad=cip)
        elif mode == "sum":
            fn, ref = functools.partial(sum_pool, **kwargs), functools.partial(ref_avg, mode="sum")
        else:
            if any(d != 1 for d in np.atleast_1d(kwargs["dilation"])):
                continue
            kw = {k: v for k, v in kwargs.items() if k != "dilation"}
            x = np.abs(x) + 0.1
            fn = functools.partial(lp_pool, p=2.0, **kw)
            ref = functools.partial(ref_avg, mode="lp", p=2.0)
        y, pull = jax.vjp(fn, x)
        g = rng.standard_normal(y.shape).astype(np.float32)
        want, want_grad = ref(x, g, w)
        msg = str((mode, kwargs, shape))
        np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-5, err_msg=msg)
        np.testing.assert_allclose(np.asarray(pull(g)[0]), want_grad, rtol=1e-4, atol=1e-5,
                                   err_msg=msg)


# One geometry per formulation branch (poolnets.pooling._fast_extreme / windowed): tiled
# windows (reshapes, broadcast transposes); up to 32 taps (materialised tap chain as the
# primal under jvp; max/min tangents through phase grids, sums through strided slices,
# avg with a per-window divisor through per-tap input-resolution divisors); > 32 taps
# (reduce_window, separable for sums); tiled sums over > 32 taps (per-axis slice sums
# while every axis has at most 32 taps, a reshape-and-sum beyond).
_BRANCH_CONFIGS = [
    ({"window_shape": (2, 2)}, (2, 6, 4, 3)),
    ({"window_shape": (6, 7)}, (1, 13, 14, 2)),
    ({"window_shape": (34,)}, (2, 70, 3)),
    ({"window_shape": (3, 3), "strides": (2, 2), "padding": 1}, (2, 7, 8, 3)),
    ({"window_shape": (3, 3, 3), "strides": (2, 2, 2), "padding": 1, "ceil_mode": True},
     (1, 5, 6, 5, 2)),
    ({"window_shape": (5, 5), "strides": (1, 1), "padding": 2, "dilation": (1, 2)},
     (1, 6, 9, 2)),
    ({"window_shape": (6, 6), "strides": (2, 2), "padding": (3, 0)}, (1, 9, 8, 2)),
    ({"window_shape": (2, 3, 2, 3), "strides": (1, 2, 1, 2)}, (1, 3, 5, 3, 4, 2)),
]


@pytest.mark.parametrize("kwargs, shape", _BRANCH_CONFIGS)
def test_every_formulation_branch_matches_reference(kwargs, shape):
    n = len(kwargs["window_shape"])
    kwargs = {"strides": None, "padding": 0, "dilation": (1,) * n, "ceil_mode": False,
              **kwargs}
    rng = np.random.default_rng(9400 + len(shape) + kwargs["window_shape"][0])
    w = windows_for(kwargs, shape)
    x = _tie_nan_heavy(rng, shape)
    x = np.where(np.isnan(x), 0.5, x).astype(np.float32)  # no NaN: shared by every pool
    # sums get finite inputs: a -inf makes every large window's sum -inf (or NaN) on both
    # sides, and the comparison could not fail
    finite = np.where(np.isinf(x), -1.5, x).astype(np.float32)
    cases = [("max", x, functools.partial(max_pool, **kwargs), ref_extreme),
             ("avg", finite, functools.partial(avg_pool, count_include_pad=False, **kwargs),
              functools.partial(ref_avg, count_include_pad=False)),
             ("sum", finite, functools.partial(sum_pool, **kwargs),
              functools.partial(ref_avg, mode="sum"))]
    if all(d == 1 for d in kwargs["dilation"]):  # lp_pool has no dilation
        lp_kwargs = {k: v for k, v in kwargs.items() if k != "dilation"}
        # positive: torch's Lp formula is NaN for negative window sums
        cases.append(("lp", np.abs(finite) + 0.1, functools.partial(lp_pool, p=2.0, **lp_kwargs),
                      functools.partial(ref_avg, mode="lp", p=2.0)))
    for name, x, fn, ref in cases:
        y = jax.jit(fn)(x)
        g = rng.standard_normal(y.shape).astype(np.float32)
        t = rng.standard_normal(shape).astype(np.float32)
        out = ref(x, g, w)
        want, want_grad = out[0], out[-1]
        value, grad, tangent = jax.jit(functools.partial(_value_grad_tangent, fn))(x, g, t)
        msg = str((name, kwargs, shape))
        # the fused forward and the materialised primal under jvp agree
        np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-5, err_msg=msg)
        np.testing.assert_allclose(np.asarray(value), np.asarray(y), rtol=1e-6, err_msg=msg)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-4, atol=1e-5,
                                   err_msg=msg)
        # forward mode is the transpose of reverse mode: <g, J t> == <J^T g, t>
        np.testing.assert_allclose(np.vdot(g, tangent), np.vdot(np.asarray(grad), t),
                                   rtol=1e-4, err_msg=msg)


def test_avg_per_window_divisor_path_matches_reference():
    """`avg_pool` with a per-window divisor (count_include_pad=False with padding, or the
    ceil-mode overhang) routes through `_divided_windows`, whose tangent divides each
    tap at input resolution (`_tap_divisors`). Value, reverse and forward mode, and the
    Hessian-vector product of `sum(avg ** 2)` (2 A^T A v) against the brute-force loops,
    on random geometries that have such a divisor."""
    rng = np.random.default_rng(9500)
    checked = 0
    while checked < 5:
        kwargs, shape = random_config(rng, half_window_padding=True)
        cip = bool(rng.random() < 0.3)
        geom = window_geometry(shape, kwargs["window_shape"], kwargs["strides"],
                               kwargs["padding"], dilation=kwargs["dilation"],
                               ceil_mode=kwargs["ceil_mode"])
        divisor = _divisor(geom, cip)
        if tiles_input(geom) or np.all(divisor == divisor.flat[0]):
            continue
        checked += 1
        w = windows_for(kwargs, shape)
        fn = functools.partial(avg_pool, count_include_pad=cip, **kwargs)
        ref = functools.partial(ref_avg, count_include_pad=cip)
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(jax.eval_shape(fn, x).shape).astype(np.float32)
        v = rng.standard_normal(shape).astype(np.float32)
        want, want_grad = ref(x, g, w)
        value, grad, tangent = jax.jit(functools.partial(_value_grad_tangent, fn))(x, g, v)
        msg = str((cip, kwargs, shape))
        np.testing.assert_allclose(np.asarray(value), want, rtol=1e-5, atol=1e-6, err_msg=msg)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-5, atol=1e-6,
                                   err_msg=msg)
        av = ref(v, None, w)[0]  # the pool is linear: A v
        np.testing.assert_allclose(np.asarray(tangent), av, rtol=1e-5, atol=1e-6, err_msg=msg)
        hvp = jax.jvp(jax.grad(lambda a, fn=fn: jnp.sum(fn(a) ** 2)), (x,), (v,))[1]
        want_hvp = 2 * ref(v, av.astype(np.float32), w)[1]
        np.testing.assert_allclose(np.asarray(hvp), want_hvp, rtol=1e-4, atol=1e-5, err_msg=msg)
