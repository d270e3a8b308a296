"""Arg-max/arg-min over pooling windows: PyTorch's tie and NaN rules, `max_pool_with_indices`
and its transpose `max_unpool`.

PyTorch's CPU max-pool kernels scan each window in row-major order and replace the running
maximum when `value > running or isnan(value)`. So within a window the **first** maximum
wins among ties, any NaN beats every number, and among several NaNs the **last** one wins;
padding never wins (a window of all `-inf` picks its first real element). The input
gradient goes to exactly that element, accumulating over overlapping windows.

Here the same choice is an associative, commutative selection over `(value, flat_index)`
pairs evaluated by one variadic `lax.reduce_window`, so it works for any rank, stride,
padding, dilation and ceil mode. Windows that contain no real element (possible only with
dilation, where the taps can straddle a short input) hold no index: their value is the
identity (`-inf` for max) and they receive no gradient.

Derivatives of `extreme_pool` make the same choice by a tap-by-tap scan instead
(`poolnets.pooling._fast_extreme`), which needs no gather/scatter and is much faster.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from poolnets.pooling._fast_extreme import (
    MAX_SLICED_TAPS,
    choose_taps,
    materialized,
    routed_tangent,
    tiles_input,
    window_taps,
)
from poolnets.pooling.geometry import (
    IntOrSeq,
    Padding,
    WindowGeometry,
    as_array,
    normalize_tuple,
    num_spatial_dims,
    resolve_padding,
    window_geometry,
    window_size,
)


def extreme_identity(dtype: jnp.dtype, largest: bool) -> np.ndarray:
    """Identity of max (`largest`) or min for `dtype`: -inf/+inf, or the integer/bool
    extreme (so integer pools never see an infinity)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.array(not largest)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.array(info.min if largest else info.max, dtype)
    return np.array(-np.inf if largest else np.inf, dtype)


def check_extreme_dtype(x: jax.Array, arg: str = "x") -> None:
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
            or x.dtype == jnp.bool_):
        raise TypeError(f"{arg} must be a real float, integer or bool array; got dtype {x.dtype}")


def _flat_spatial_index(shape: tuple[int, ...], geom: WindowGeometry) -> jax.Array:
    """int32 array of `shape` holding each element's row-major index over spatial dims."""
    flat = jnp.zeros(shape, jnp.int32)
    multiplier = 1
    for axis in reversed(geom.spatial_axes):
        flat = flat + multiplier * lax.broadcasted_iota(jnp.int32, shape, axis)
        multiplier *= shape[axis]
    return flat


def _select(a, b, largest: bool, is_float: bool):
    (va, ia), (vb, ib) = a, b
    beats = va > vb if largest else va < vb
    pick_a = beats | ((va == vb) & (ia < ib))
    if is_float:
        a_nan, b_nan = jnp.isnan(va), jnp.isnan(vb)
        pick_a = jnp.where(a_nan | b_nan, a_nan & (~b_nan | (ia > ib)), pick_a)
    return lax.select(pick_a, va, vb), lax.select(pick_a, ia, ib)


def window_arg_extreme(x: jax.Array, geom: WindowGeometry, largest: bool) -> jax.Array:
    """Flat spatial index of PyTorch's chosen max (`largest`) or min of every window.

    Returns int32 of shape `(*batch, *geom.output_shape, features)`; a window with no
    real element gets `prod(geom.input_shape)` (one past the end).
    """
    x = lax.stop_gradient(x)
    size = math.prod(geom.input_shape)
    if size >= np.iinfo(np.int32).max:
        raise ValueError(f"spatial size {geom.input_shape} too large for int32 indices")
    init = (jnp.asarray(extreme_identity(x.dtype, largest)), jnp.asarray(size, jnp.int32))
    reducer = functools.partial(
        _select, largest=largest, is_float=bool(jnp.issubdtype(x.dtype, jnp.floating))
    )
    _, index = lax.reduce_window(
        (x, _flat_spatial_index(x.shape, geom)), init, reducer, **geom.lax_window_args()
    )
    return index


def _flat_spatial(a: jax.Array, nb: int) -> jax.Array:
    """`(*batch, *spatial, C) -> (*batch, prod(spatial), C)`; the size is explicit because
    reshape cannot infer a -1 when the batch is empty (0 / 0)."""
    return a.reshape(a.shape[:nb] + (math.prod(a.shape[nb:-1]), a.shape[-1]))


def gather_windows(x: jax.Array, index: jax.Array, geom: WindowGeometry, fill) -> jax.Array:
    """`x` at flat spatial `index` per batch/feature; out-of-range indices give `fill`."""
    nb = geom.num_batch_dims
    flat_x, flat_i = _flat_spatial(x, nb), _flat_spatial(index, nb)
    fill = np.asarray(fill).item()  # take_along_axis needs a hashable fill value
    out = jnp.take_along_axis(flat_x, flat_i, axis=nb, mode="fill", fill_value=fill)
    return out.reshape(index.shape)


def extreme_pool(x: jax.Array, geom: WindowGeometry, largest: bool) -> jax.Array:
    """Max (`largest`) or min over each window; derivatives route through PyTorch's
    chosen element (see module docstring), to any order, with or without dilation."""
    return _extreme_pool(x, geom, largest, True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _extreme_pool(x: jax.Array, geom: WindowGeometry, largest: bool, fused: bool) -> jax.Array:
    # fused: a chain of max/min over `window_taps`, which XLA fuses into one pass (and
    # into its consumers); otherwise (the primal under jvp) that chain materialised.
    # Larger windows: reduce_window, which XLA always materialises.
    op = lax.max if largest else lax.min
    identity = extreme_identity(x.dtype, largest)
    # Tiles stay fused under jvp too: their cotangent is broadcast, read once per tap.
    if window_size(geom) <= MAX_SLICED_TAPS:
        value = functools.reduce(op, window_taps(x, geom, identity))
        return value if fused or tiles_input(geom) else materialized(value)
    return lax.reduce_window(x, identity, op, **geom.lax_window_args())


@_extreme_pool.defjvp
def _extreme_pool_jvp(geom, largest, fused, primals, tangents):
    # Tap-wise choice and routing (poolnets.pooling._fast_extreme): same choice as
    # `window_arg_extreme`, but its transpose is shifted sums per phase, not a scatter.
    # The primal is materialised: a fused tap chain would be re-evaluated once per tap
    # inside a transposed cotangent that depends on it (bench/pooling_cotangent.py:
    # jit(grad) of sum(relu(max_pool(x)) ** 2) 6x slower without it).
    (x,), (t,) = primals, tangents
    value = _extreme_pool(x, geom, largest, False)
    return value, routed_tangent(t, choose_taps(x, value, geom), geom)


def max_pool_with_indices(
    x: jax.Array,
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Max pool plus the flat index of each chosen element, as torch `return_indices=True`.

    Args/shape rules as `max_pool`. Returns `(values, indices)`, both of shape
    `(*batch, *out_spatial, features)`; `indices` is int32, the row-major index into the
    input's spatial dims for that batch element and feature. Ties and NaNs follow PyTorch
    (module docstring). Deviation: a window with no real input element (only possible
    with dilation) has index -1 and value -inf; PyTorch returns an out-of-range index.
    """
    x = as_array(x, "max_pool_with_indices")
    check_extreme_dtype(x)
    geom = window_geometry(x.shape, window_shape, strides, padding, dilation=dilation,
                           ceil_mode=ceil_mode, max_padding_half_window=True)
    index = window_arg_extreme(x, geom, largest=True)
    values = gather_windows(x, index, geom, extreme_identity(x.dtype, True))
    size = math.prod(geom.input_shape)
    return values, jnp.where(index >= size, -1, index)


def _unpool_output_shape(
    in_shape: Sequence[int],
    window: tuple[int, ...],
    strides: tuple[int, ...],
    padding: Padding,
    output_size: Sequence[int] | None,
) -> tuple[int, ...]:
    n = len(in_shape)
    if output_size is not None:
        output_size = tuple(output_size)
        if len(output_size) != n:
            output_size = output_size[-n - 1 : -1] if len(output_size) >= n + 1 else None
        if output_size is None or not all(isinstance(v, int | np.integer) for v in output_size):
            raise ValueError(
                f"output_size must give the {n} spatial sizes (or the full output shape); "
                f"got output_size={output_size!r}"
            )
    if isinstance(padding, str) and padding.upper() == "SAME":
        if output_size is None:
            raise ValueError("max_unpool with padding='SAME' needs an explicit output_size")
        for o, i, s in zip(output_size, in_shape, strides, strict=True):
            if -(-o // s) != i:
                raise ValueError(
                    f"output_size={output_size!r} does not pool to the input spatial shape "
                    f"{tuple(in_shape)} with padding='SAME', strides={strides}"
                )
        return tuple(int(o) for o in output_size)
    pads = resolve_padding(padding, in_shape, window, strides)
    default = tuple((i - 1) * s - lo - hi + k
                    for i, s, k, (lo, hi) in zip(in_shape, strides, window, pads, strict=True))
    if output_size is None:
        return default
    for o, d, s in zip(output_size, default, strides, strict=True):
        if not d - s < o < d + s:
            raise ValueError(
                f"output_size={output_size!r} must lie strictly between default-stride and "
                f"default+stride per dim (PyTorch's rule), default {default}, strides {strides}"
            )
    return tuple(int(o) for o in output_size)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _scatter_to(values: jax.Array, index: jax.Array, out_spatial: tuple[int, ...]) -> jax.Array:
    nb = values.ndim - len(out_spatial) - 1
    batch, feat = values.shape[:nb], values.shape[-1]
    size = math.prod(out_spatial)
    v = values.reshape((math.prod(batch), math.prod(values.shape[nb:-1]), feat))
    i = index.reshape(v.shape)
    i = jnp.where(i < 0, size, i)  # -1 (no element) is dropped, not wrapped around
    b = jnp.arange(v.shape[0])[:, None, None]
    c = jnp.arange(feat)[None, None, :]
    out = jnp.zeros((v.shape[0], size, feat), values.dtype).at[b, i, c].set(v, mode="drop")
    return out.reshape(batch + tuple(out_spatial) + (feat,))


def _scatter_fwd(values, index, out_spatial):
    return _scatter_to(values, index, out_spatial), index


def _scatter_bwd(out_spatial, index, g):
    nb = g.ndim - len(out_spatial) - 1
    flat_g, flat_i = _flat_spatial(g, nb), _flat_spatial(index, nb)
    flat_i = jnp.where(flat_i < 0, flat_g.shape[nb], flat_i)
    back = jnp.take_along_axis(flat_g, flat_i, axis=nb, mode="fill", fill_value=0)
    return back.reshape(index.shape), None


_scatter_to.defvjp(_scatter_fwd, _scatter_bwd)


def max_unpool(
    values: jax.Array,
    indices: jax.Array,
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    output_size: Sequence[int] | None = None,
) -> jax.Array:
    """Partial inverse of `max_pool_with_indices`: zeros except `values` at `indices`.

    Shapes: `values`, `indices` `(*batch, *in_spatial, features)` ->
    `(*batch, *output_size, features)`. Default output size per dim (PyTorch's formula)
    `(in - 1) * s - lo - hi + k`; an explicit `output_size` (spatial sizes, or the full
    output shape) must lie strictly within `default ± stride`. `padding='SAME'` needs
    `output_size`. As in PyTorch the forward writes (duplicates keep one copy) and the
    gradient w.r.t. `values` is the output cotangent gathered at `indices`.
    Deviations: out-of-range indices (e.g. -1 from an all-padding window) are dropped
    instead of raising (indices are data, unchecked under `jit`); forward-mode
    differentiation (`jax.jvp`) is not supported (custom VJP).
    """
    values = as_array(values, "max_unpool", "values")
    indices = as_array(indices, "max_unpool", "indices")
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise TypeError(f"indices must be an integer array; got dtype {indices.dtype}")
    if indices.shape != values.shape:
        raise ValueError(
            f"indices.shape must equal values.shape; got {indices.shape} vs {values.shape}"
        )
    n = num_spatial_dims(values.ndim, window_shape)
    if values.ndim < n + 1:
        raise ValueError(
            f"values must have at least {n + 1} dims (*batch, {n} spatial, features); "
            f"got values.shape={values.shape}"
        )
    window = normalize_tuple(window_shape, n, "window_shape")
    stride = window if strides is None else normalize_tuple(strides, n, "strides")
    in_shape = values.shape[values.ndim - 1 - n : -1]
    out_spatial = _unpool_output_shape(in_shape, window, stride, padding, output_size)
    if any(o < 1 for o in out_spatial):
        raise ValueError(f"max_unpool output size {out_spatial} must be positive")
    return _scatter_to(values, indices.astype(jnp.int32), out_spatial)
