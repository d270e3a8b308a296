"""`poolnets.pooling.geometry` against window enumeration, and argument errors of the
windowed pools (each raised before tracing, naming the argument)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from windowed_reference import Windows, count_windows, random_config, same_pads

from poolnets.pooling import (
    avg_pool,
    lp_pool,
    max_pool,
    max_pool_with_indices,
    min_pool,
    pool,
    sum_pool,
)
from poolnets.pooling.geometry import output_length, window_geometry


def test_output_length_matches_enumeration():
    rng = np.random.default_rng(7000)
    for _ in range(3000):
        length, k, s, d = (int(v) for v in rng.integers(1, 9, 4))
        lo, hi = (int(v) for v in rng.integers(0, 5, 2))
        eff = d * (k - 1) + 1
        for ceil_mode in (False, True):
            want = count_windows(length, eff, s, lo, hi, ceil_mode)
            if want >= 1:
                assert output_length(length, eff, s, lo, hi, ceil_mode) == want


def test_geometry_drives_reduce_window_to_the_reference_shape():
    rng = np.random.default_rng(7001)
    for _ in range(150):
        kwargs, shape = random_config(rng, half_window_padding=bool(rng.random() < 0.5))
        geom = window_geometry(shape, **kwargs)
        n = geom.num_spatial
        w = Windows(shape[len(shape) - 1 - n : -1], geom.window_shape,
                    geom.strides, geom.dilation, kwargs["padding"], kwargs["ceil_mode"])
        assert geom.output_shape == w.out
        assert geom.requested_padding == tuple(w.pads)
        out = jax.eval_shape(
            lambda x, g=geom: lax.reduce_window(x, 0.0, lax.add, **g.lax_window_args()),
            jax.ShapeDtypeStruct(shape, jnp.float32))
        assert out.shape == shape[: len(shape) - 1 - n] + w.out + shape[-1:]
        for axis in range(n):
            for include in (True, False):
                want = [sum(1 for in_pad, coord in taps if (in_pad if include else coord))
                        for cell, taps in sorted(w.cells.items()) if all(
                            c == 0 for a, c in enumerate(cell) if a != axis)]
                # along one axis the per-axis count times the other axes' first-cell counts
                others = np.prod([geom.tap_counts(a, include_padding=include)[0]
                                  for a in range(n) if a != axis], dtype=int)
                np.testing.assert_array_equal(
                    geom.tap_counts(axis, include_padding=include) * others, want)


def test_same_padding_follows_the_xla_rule():
    for length in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 4):
                geom = window_geometry((1, length, 1), (k,), (s,), "SAME")
                assert geom.output_shape == (-(-length // s),)
                assert geom.requested_padding == (same_pads(length, k, s),)


def test_int_window_means_one_batch_and_one_feature_dim():
    assert window_geometry((2, 5, 6, 3), 2).output_shape == (2, 3)
    assert window_geometry((2, 5, 6, 7, 3), 2).output_shape == (2, 3, 3)
    assert window_geometry((5, 6, 3), (2, 2)).num_batch_dims == 0
    assert window_geometry((4, 2, 5, 6, 3), (2, 2)).num_batch_dims == 2
    assert max_pool(jnp.ones((2, 4, 4, 4, 3)), 2).shape == (2, 2, 2, 2, 3)


BAD_ARGUMENTS = [
    # (kwargs, exception, text the message must contain)
    (dict(window_shape=0), ValueError, "window_shape"),
    (dict(window_shape=(2, -1)), ValueError, "window_shape"),
    (dict(window_shape=(2, 2, 2, 2)), ValueError, "x must have at least"),
    (dict(window_shape=(2.0, 2)), TypeError, "window_shape"),
    (dict(window_shape="2"), TypeError, "window_shape"),
    (dict(window_shape=(2, 2), strides=(1, 0)), ValueError, "strides"),
    (dict(window_shape=(2, 2), strides=(1, 1, 1)), ValueError, "strides"),
    (dict(window_shape=(2, 2), dilation=0), ValueError, "dilation"),
    (dict(window_shape=(2, 2), padding="FULL"), ValueError, "padding"),
    (dict(window_shape=(2, 2), padding=-1), ValueError, "padding"),
    (dict(window_shape=(2, 2), padding=(1, 1, 1)), ValueError, "padding"),
    (dict(window_shape=(2, 2), padding=((1, 1, 1), (0, 0))), ValueError, "padding"),
    (dict(window_shape=(2, 2), padding=1.5), TypeError, "padding"),
    (dict(window_shape=(2, 2), padding=2), ValueError, "padding"),  # > half window
    (dict(window_shape=(9, 2)), ValueError, "window_shape=(9, 2)"),
    (dict(window_shape=(3, 2), dilation=(4, 1)), ValueError, "window_shape"),
    (dict(window_shape=(2, 2), ceil_mode="yes"), TypeError, "ceil_mode"),
]


@pytest.mark.parametrize("fn", [max_pool, min_pool, avg_pool, max_pool_with_indices])
@pytest.mark.parametrize("kwargs, exc, text", BAD_ARGUMENTS)
def test_bad_arguments_raise_before_tracing(fn, kwargs, exc, text):
    x = jax.ShapeDtypeStruct((1, 5, 5, 2), jnp.float32)
    with pytest.raises(exc, match=text.replace("(", r"\(").replace(")", r"\)")):
        jax.eval_shape(lambda v: fn(v, **kwargs), x)


def test_ops_without_a_padding_bound_accept_wide_padding():
    x = jnp.ones((1, 4, 1))
    assert sum_pool(x, (2,), 1, 3).shape == (1, 9, 1)
    assert lp_pool(x, 2.0, (2,), 1, 3).shape == (1, 9, 1)
    assert pool(x, 0.0, lax.add, (2,), 1, 3).shape == (1, 9, 1)


def test_int_window_needs_a_batch_dim():
    with pytest.raises(ValueError, match="window_shape=2"):
        max_pool(jnp.ones((4, 3)), 2)


def test_dtype_errors_name_the_input():
    ints = jnp.ones((1, 4, 4, 1), jnp.int32)
    with pytest.raises(TypeError, match="x.dtype=int32"):
        avg_pool(ints, 2)
    with pytest.raises(TypeError, match="x.dtype=int32"):
        lp_pool(ints, 2.0, 2)
    with pytest.raises(TypeError, match="bool"):
        sum_pool(ints.astype(bool), 2)
    with pytest.raises(TypeError, match="complex"):
        max_pool(ints.astype(jnp.complex64), 2)


def test_option_errors_name_the_option():
    x = jnp.ones((1, 4, 4, 1))
    with pytest.raises(ValueError, match="divisor_override"):
        avg_pool(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="divisor_override"):
        avg_pool(x, 2, divisor_override=1.5)
    with pytest.raises(TypeError, match="count_include_pad"):
        avg_pool(x, 2, count_include_pad=None)
    with pytest.raises(ValueError, match="p="):
        lp_pool(x, 0.0, 2)
    with pytest.raises(TypeError, match="p="):
        lp_pool(x, "2", 2)
    with pytest.raises(TypeError, match="reduce_fn"):
        pool(x, 0.0, "add", 2)
    with pytest.raises(ValueError, match="init_value"):
        pool(x, jnp.zeros(2), lax.add, 2)
