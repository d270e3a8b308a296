"""Windowed pools (max, min, avg, sum, Lp and a generic `pool`), exact to PyTorch.

Layout `(*batch, *spatial, features)`; arguments and the output-shape rule are those of
`poolnets.pooling.geometry` (int `window_shape` => `x.ndim - 2` spatial dims; `strides=None`
=> `strides = window_shape`; padding 'VALID' | 'SAME' | int | ints | (low, high) pairs;
PyTorch's `ceil_mode`). Output shape `(*batch, *out, features)` with, per spatial dim,
`out = floor((L + lo + hi - d * (k - 1) - 1) / s) + 1` (ceil instead of floor in
`ceil_mode`, dropping a last window that would start at or past `L + lo`).

Padding rule: like PyTorch, max/min/avg pools require every padding entry to be at most
`floor(k_eff / 2)`, `k_eff = d * (k - 1) + 1` (PyTorch's documented bound). Deviation: PyTorch's
kernels also check against the undilated `k // 2`, so with dilation > 1 a few paddings are
accepted here that PyTorch rejects. `sum_pool`, `lp_pool` and `pool` accept any padding.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from poolnets.pooling._fast_extreme import (
    MAX_SLICED_TAPS,
    cotangent_boundary,
    materialized,
    separable_tile_sum,
    strided_tap,
    tile_sum,
    tiles_input,
    window_taps,
)
from poolnets.pooling.geometry import (
    IntOrSeq,
    Padding,
    WindowGeometry,
    as_array,
    broadcast_per_axis,
    window_geometry,
    window_size,
)
from poolnets.pooling.indices import check_extreme_dtype, extreme_pool


def _accumulate_dtype(dtype: jnp.dtype) -> jnp.dtype:
    # Half-precision sums lose integers above 2048 (float16) / 256 (bfloat16).
    return jnp.float32 if dtype in (jnp.bfloat16, jnp.float16) else dtype


def _float_input(x, op: str) -> jax.Array:
    x = as_array(x, op)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{op} needs a real floating-point x; got x.dtype={x.dtype}")
    return x


def _window_sum(
    x: jax.Array, geom: WindowGeometry, materialize_cotangent: bool = False
) -> jax.Array:
    """Zero-padded window sums in the accumulation dtype. `materialize_cotangent`: see
    `poolnets.pooling._fast_extreme.cotangent_boundary` (for expensive cotangents)."""
    return _summed_windows(x.astype(_accumulate_dtype(x.dtype)), geom, materialize_cotangent,
                           True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _summed_windows(
    x: jax.Array, geom: WindowGeometry, materialize_cotangent: bool, fused: bool
) -> jax.Array:
    # fused: a sum of `window_taps`, one pass that XLA also fuses into consumers;
    # otherwise (the primal under jvp) that sum materialised, so that a cotangent
    # computed from it does not re-run it once per tap. Tiles stay fused unless their
    # cotangent re-reads the sums (Lp): a broadcast reads a plain cotangent once per
    # input element, but XLA kept an input-sized tile view of x ** p for Lp's.
    if tiles_input(geom) and max(geom.window_shape) <= MAX_SLICED_TAPS:
        total = separable_tile_sum(x, geom)
        return total if fused or not materialize_cotangent else materialized(total)
    if tiles_input(geom):
        return tile_sum(x, geom)
    if window_size(geom) <= MAX_SLICED_TAPS:
        total = functools.reduce(operator.add, window_taps(x, geom, 0))
        return total if fused else materialized(total)
    # Larger windows: one 1-D reduce_window per spatial axis (a box sum is a product of
    # 1-D box sums), k_1 + k_2 + ... adds per output instead of k_1 * k_2 * ...; measured
    # 3x faster than one n-D reduce_window for 5x5 stride 1 (bench/pooling.py).
    zero = np.zeros((), x.dtype)  # a NumPy init lets lax recognise the add monoid
    for axis in reversed(range(geom.num_spatial)):
        k, s, pad = geom.window_shape[axis], geom.strides[axis], geom.padding[axis]
        if (k, s, pad) == (1, 1, (0, 0)):
            continue  # identity along this axis
        full = geom.spatial_axes[axis]
        window, strides, dilation = [1] * x.ndim, [1] * x.ndim, [1] * x.ndim
        padding = [(0, 0)] * x.ndim
        window[full], strides[full], dilation[full] = k, s, geom.dilation[axis]
        padding[full] = pad
        x = lax.reduce_window(x, zero, lax.add, tuple(window), tuple(strides),
                              tuple(padding), window_dilation=tuple(dilation))
    return x


def _tap_sum(t: jax.Array, geom: WindowGeometry) -> jax.Array:
    if tiles_input(geom):
        return tile_sum(t, geom)
    if window_size(geom) <= MAX_SLICED_TAPS:
        return functools.reduce(operator.add, window_taps(t, geom, 0))
    return _summed_windows(t, geom, False, False)


@_summed_windows.defjvp
def _summed_windows_jvp(geom, materialize_cotangent, fused, primals, tangents):
    # The barrier stops XLA from constant-folding the transposed window sum when the
    # cotangent is a constant (as in grad of `.sum()`): measured 168 s of compile for
    # (8, 112, 112, 64) under jit(grad) without it, 0.6 s with it. The primal is
    # materialised (fused=False) so that a cotangent computed from it does not re-run
    # the tap sum once per tap (see poolnets.pooling.indices._extreme_pool_jvp).
    (x,), (t,) = primals, tangents
    tangent = _tap_sum(t, geom)
    if materialize_cotangent and not tiles_input(geom):  # a broadcast reads it only once
        tangent = cotangent_boundary(tangent)
    # A materialised cotangent already stops that re-run, so the primal may stay fused
    # (tiles have no cotangent boundary: their primal is materialised instead).
    fused_primal = materialize_cotangent and not tiles_input(geom)
    primal = _summed_windows(x, geom, materialize_cotangent, fused_primal)
    return primal, lax.optimization_barrier(tangent)


def _window_mean(x: jax.Array, geom: WindowGeometry, count_include_pad: bool) -> jax.Array:
    """Window sums over a per-window divisor (`_divisor`), in the accumulation dtype."""
    acc = x.astype(_accumulate_dtype(x.dtype))
    if tiles_input(geom) or window_size(geom) > MAX_SLICED_TAPS:
        # tiles: the transposed sum is one broadcast, which reads `g / divisor` once
        return _window_sum(acc, geom) / jnp.asarray(_divisor(geom, count_include_pad),
                                                    acc.dtype)
    return _divided_windows(acc, geom, count_include_pad, True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _divided_windows(x: jax.Array, geom: WindowGeometry, count_include_pad: bool,
                     fused: bool) -> jax.Array:
    # fused: one pass (also fused into consumers); under jvp the mean is materialised,
    # so that a cotangent computed from it does not redo the division once per tap.
    total = functools.reduce(operator.add, window_taps(x, geom, 0))
    mean = total / jnp.asarray(_divisor(geom, count_include_pad), x.dtype)
    return mean if fused else materialized(mean)


@_divided_windows.defjvp
def _divided_windows_jvp(geom, count_include_pad, fused, primals, tangents):
    # Tangent `sum_k tap_k(t / D_k)`, see `_tap_divisors`; the barrier as in
    # `_summed_windows_jvp`.
    (x,), (t,) = primals, tangents
    offsets = itertools.product(*(range(k) for k in geom.window_shape))
    taps = (strided_tap(t / jnp.asarray(d, t.dtype), geom, offset, 0)
            for offset, d in zip(offsets, _tap_divisors(geom, count_include_pad), strict=True))
    tangent = functools.reduce(operator.add, taps)
    return _divided_windows(x, geom, count_include_pad, False), lax.optimization_barrier(tangent)


def _divisor(geom: WindowGeometry, count_include_pad: bool) -> np.ndarray:
    """Per-window divisor, shape `(*out, 1)`, as a product of per-axis tap counts.

    Closed form per axis (never `reduce_window` over ones, which XLA constant-folds at
    great compile cost). With `count_include_pad`, taps in the requested padding count and
    the ceil-mode overhang does not (PyTorch's `pool_size`); otherwise only taps on real
    input elements count.
    """
    counts = [geom.tap_counts(a, include_padding=count_include_pad)
              for a in range(geom.num_spatial)]
    return np.maximum(broadcast_per_axis(counts), 1)


def _tap_divisors(geom: WindowGeometry, count_include_pad: bool):
    """Per window offset (row-major), `(*input_spatial, 1)`: at each input position, the
    divisor of the window whose tap lands there (1 where none does).

    `sum_k tap_k(t / D_k) == window_sum(t) / divisor`, and its transpose
    `sum_k pad_k(g) / D_k` divides at input resolution by a constant, where the transpose
    of `window_sum(t) / divisor` pads `g / divisor` once per tap: with a per-window
    divisor XLA re-evaluates that broadcast division inside every tap's pad, which
    measured several times slower on the bench/pooling.py stem shape.
    """
    per_axis = []
    for a in range(geom.num_spatial):
        counts = geom.tap_counts(a, include_padding=count_include_pad)
        starts = geom.window_starts(a)
        vectors = []
        for i in range(geom.window_shape[a]):
            vec = np.ones(geom.input_shape[a], np.int64)
            pos = starts + i * geom.dilation[a]
            real = (pos >= 0) & (pos < geom.input_shape[a])
            vec[pos[real]] = counts[real]
            vectors.append(vec)
        per_axis.append(vectors)
    for offset in itertools.product(*(range(k) for k in geom.window_shape)):
        divisor = broadcast_per_axis([per_axis[a][i] for a, i in enumerate(offset)])
        yield np.maximum(divisor, 1)


def pool(
    x: jax.Array,
    init_value,
    reduce_fn: Callable[[jax.Array, jax.Array], jax.Array],
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """Generic `lax.reduce_window` with this package's argument conventions.

    `init_value` is both the reduction identity and the padding value. No padding bound is
    enforced. Gradients are JAX's own: available for `lax.add`, and for `lax.max`/`lax.min`
    without dilation (use `max_pool`/`min_pool` for PyTorch's gradient routing).
    """
    x = as_array(x, "pool")
    if not callable(reduce_fn):
        raise TypeError(f"reduce_fn must be callable; got reduce_fn={reduce_fn!r}")
    geom = window_geometry(x.shape, window_shape, strides, padding, dilation=dilation,
                           ceil_mode=ceil_mode)
    init = np.asarray(init_value, x.dtype) if not isinstance(init_value, jax.Array) else init_value
    if np.ndim(init) != 0:
        raise ValueError(f"init_value must be a scalar; got shape {np.shape(init)}")
    return lax.reduce_window(x, init, reduce_fn, **geom.lax_window_args())


def _extreme(x, window_shape, strides, padding, dilation, ceil_mode, largest):
    x = as_array(x, "max_pool" if largest else "min_pool")
    check_extreme_dtype(x)
    geom = window_geometry(x.shape, window_shape, strides, padding, dilation=dilation,
                           ceil_mode=ceil_mode, max_padding_half_window=True)
    return extreme_pool(x, geom, largest)


def max_pool(
    x: jax.Array,
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """Max over each window, as `torch.nn.functional.max_pool{1,2,3}d`, for any rank.

    Padding counts as `-inf` (the dtype minimum for integers, False for bool). A NaN in a
    window makes its output NaN. Derivatives (first and higher order, forward and
    reverse mode, with or without dilation) route to the element PyTorch's CPU kernel
    picks: the first maximum in row-major window order, or the last NaN (see
    `poolnets.pooling.indices`), accumulated over overlapping windows.
    Deviation: the forward value is XLA's max, which for a window holding both -0.0 and
    +0.0 returns +0.0 where PyTorch returns the first; `max_pool_with_indices` matches.
    """
    return _extreme(x, window_shape, strides, padding, dilation, ceil_mode, largest=True)


def min_pool(
    x: jax.Array,
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """Min over each window; the mirror of `max_pool` (PyTorch has no min pool: values and
    gradients equal torch's `-max_pool(-x)`, i.e. first minimum wins, last NaN wins).
    Padding counts as `+inf` (dtype maximum for integers, True for bool)."""
    return _extreme(x, window_shape, strides, padding, dilation, ceil_mode, largest=False)


def sum_pool(
    x: jax.Array,
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """Sum over each window (zero padding). float16/bfloat16 accumulate in float32 and the
    result is cast back; integers sum in their own dtype (wrapping on overflow); bool is
    rejected."""
    x = as_array(x, "sum_pool")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"sum_pool needs a real float or integer x; got x.dtype={x.dtype}")
    geom = window_geometry(x.shape, window_shape, strides, padding, dilation=dilation,
                           ceil_mode=ceil_mode)
    return _window_sum(x, geom).astype(x.dtype)


def avg_pool(
    x: jax.Array,
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """Mean over each window, as `torch.nn.functional.avg_pool{1,2,3}d`, for any rank.

    `out = window_sum / divisor` with, per window, `divisor = divisor_override` if given,
    else the product over spatial dims of the per-axis tap count: with
    `count_include_pad=True` taps on input or requested padding (not the ceil-mode
    overhang: PyTorch's `min(start + k, L + pad) - start`), with `False` taps on real input
    only. float16/bfloat16 accumulate in float32; integer input raises `TypeError`.
    `padding='SAME'` pads explicitly, so with the default `count_include_pad=True` the
    padded zeros count (as in Flax's default); Keras/TF 'same' averaging corresponds to
    `count_include_pad=False`.
    Extension: `dilation` (PyTorch's avg pools have none) spreads the taps as in max pool.
    Deviation: with dilation a window can miss the input entirely; under
    `count_include_pad=False` its divisor is taken as 1 (output 0) instead of 0/0.
    """
    x = _float_input(x, "avg_pool")
    if not isinstance(count_include_pad, bool | np.bool_):
        raise TypeError(f"count_include_pad must be a bool; got {count_include_pad!r}")
    if divisor_override is not None and (
        isinstance(divisor_override, bool) or not isinstance(divisor_override, int | np.integer)
        or divisor_override == 0
    ):
        raise ValueError(
            f"divisor_override must be a non-zero int or None; got divisor_override="
            f"{divisor_override!r}"
        )
    geom = window_geometry(x.shape, window_shape, strides, padding, dilation=dilation,
                           ceil_mode=ceil_mode, max_padding_half_window=True)
    if divisor_override is not None:
        divisor = np.asarray(divisor_override)
    else:
        divisor = _divisor(geom, bool(count_include_pad))
        if np.any(divisor != divisor.flat[0]):
            return _window_mean(x, geom, bool(count_include_pad)).astype(x.dtype)
        divisor = divisor.flat[0]
    total = _window_sum(x, geom)
    return (total / jnp.asarray(divisor, total.dtype)).astype(x.dtype)


def _power(v: jax.Array, p) -> jax.Array:
    """`v ** p`; Python exponents 0.5 and small integers use sqrt / repeated
    multiplication, as torch's CPU `pow` does (also far cheaper than exp-log `pow`)."""
    if isinstance(p, int | float | np.number):
        if p == 0.5:
            return jnp.sqrt(v)
        if float(p).is_integer() and abs(p) <= 4:
            return lax.integer_pow(v, int(p))
    return jnp.power(v, jnp.asarray(p, v.dtype))


def _safe_root(t: jax.Array, inv_p) -> jax.Array:
    # t ** inv_p with zero gradient where t == 0 (PyTorch's documented LPPool behaviour),
    # instead of 0 * inf = NaN.
    at_zero = t == 0
    root = _power(jnp.where(at_zero, jnp.ones_like(t), t), inv_p)
    return jnp.where(at_zero, lax.stop_gradient(_power(t, inv_p)), root)


def lp_pool(
    x: jax.Array,
    p: float | jax.Array,
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    ceil_mode: bool = False,
) -> jax.Array:
    """Power-average pool `(sum_window x^p)^(1/p)`, PyTorch's `lp_pool{1,2,3}d` formula.

    Computed exactly as PyTorch does: `a = avg_pool(x**p, count_include_pad=True)`,
    `t = sign(a) * relu(|a|) * prod(window_shape)`, `out = t ** (1/p)`. Quirks kept:

    * In `ceil_mode` an overhanging last window's average divides by its in-bounds size and
      is then multiplied by the full window size, so it is scaled up by
      `prod(k) / in-bounds taps` rather than being the plain sum.
    * No absolute value: negative `x` with non-integer `p`, or a negative window sum with
      non-integer `1/p`, gives NaN; `p = 1` is the signed window sum.
    * Where `t == 0` the gradient is 0 (not NaN), as PyTorch documents.
    * `p = inf` is `max_pool(|x|)`, `p = -inf` is `-max_pool(-|x|)` (Python float `p` only).

    `p`: a non-zero Python number or a float array broadcastable to the output (e.g.
    shape `(features,)`, learnable). Extension: `padding` (PyTorch's LPPool has none) pads
    with zeros, which add nothing to the sum. float16/bfloat16 compute in float32.
    """
    x = _float_input(x, "lp_pool")
    if isinstance(p, bool) or not isinstance(p, int | float | np.number | jax.Array | np.ndarray):
        raise TypeError(f"p must be a number or a float array; got p={p!r}")
    if isinstance(p, int | float | np.number):
        if p == 0 or np.isnan(p):
            raise ValueError(f"p must be non-zero and not NaN; got p={p!r}")
        if np.isinf(p):
            geom = window_geometry(x.shape, window_shape, strides, padding, ceil_mode=ceil_mode)
            sign = 1 if p > 0 else -1
            return sign * extreme_pool(sign * jnp.abs(x), geom, True)
    geom = window_geometry(x.shape, window_shape, strides, padding, ceil_mode=ceil_mode)
    acc = _accumulate_dtype(x.dtype)
    if not isinstance(p, int | float | np.number):
        p = jnp.asarray(p, acc)
    # The cotangent of the window sum re-reads the forward sums (chain rule of the root);
    # materialise it once rather than once per tap.
    mean = _window_sum(_power(x.astype(acc), p), geom, materialize_cotangent=True) / jnp.asarray(
        _divisor(geom, count_include_pad=True), acc
    )
    t = jnp.sign(mean) * jax.nn.relu(jnp.abs(mean)) * window_size(geom)
    return _safe_root(t, 1 / p).astype(x.dtype)
