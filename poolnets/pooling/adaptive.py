"""Adaptive average and max pooling, exact to PyTorch's `AdaptiveAvgPool{1,2,3}d` and
`AdaptiveMaxPool{1,2,3}d`, for any number of spatial dims.

Layout is channels-last `(*batch, *spatial, features)`. The number of spatial dims is
`len(output_size)`; every dim before them is a batch dim (zero or more). An int
`output_size` means "this size for every dim between the first and the last", i.e. the
input is read as `(N, *spatial, C)` with `x.ndim - 2` spatial dims (the same reading as
the global pools).

Bins (PyTorch's rule, per spatial dim of input length `L` and output length `o`):

    start(i) = floor(i * L / o),   end(i) = ceil((i + 1) * L / o),   i = 0 .. o - 1

so neighbouring bins may overlap and `o > L` repeats input cells. The output shape is
`(*batch, *output_size, features)`, with `None` entries of `output_size` replaced by the
input length (a kept dim: bin `i` is cell `i`).

Bins are rectangles, so both ops are separable: one reduction per spatial axis, each a
handful of array ops whatever the output size (no Python loop over output cells, so
compile time does not grow with `output_size`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.pooling._fast_extreme import MAX_SLICED_TAPS
from poolnets.pooling.geometry import as_array, check_spatial_nonempty
from poolnets.pooling.windowed import avg_pool

OutputSize = int | Sequence[int | None]

_MAX_FLAT_INDEX = np.iinfo(np.int32).max


def bin_bounds(length: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive bins along one axis: `start(i) = floor(i*L/o)`,
    `end(i) = ceil((i+1)*L/o)` for `i < o`; returns `(starts, ends)` as int64 arrays."""
    i = np.arange(out, dtype=np.int64)
    starts = (i * length) // out
    ends = -((-(i + 1) * length) // out)
    return starts, ends


def resolve_output_size(
    fn: str, x_shape: tuple[int, ...], output_size: OutputSize
) -> tuple[int, ...]:
    """Validates `output_size` against an input shape and returns one int per spatial dim
    (`None` replaced by the input length). Raises before any tracing."""
    if isinstance(output_size, Integral) and not isinstance(output_size, bool):
        if len(x_shape) < 3:
            raise ValueError(
                f"{fn}: an int output_size={output_size!r} reads x as (N, *spatial, C) and "
                f"needs x.ndim >= 3, got x.shape={x_shape}"
            )
        entries: tuple = (output_size,) * (len(x_shape) - 2)
    elif isinstance(output_size, Sequence) and not isinstance(output_size, str):
        entries = tuple(output_size)
    else:
        raise TypeError(
            f"{fn}: output_size must be an int or a tuple of ints/None, got {output_size!r}"
        )
    if not entries:
        raise ValueError(f"{fn}: output_size must have at least one entry, got {output_size!r}")
    for entry in entries:
        if entry is None:
            continue
        if not isinstance(entry, Integral) or isinstance(entry, bool):
            raise TypeError(
                f"{fn}: output_size entries must be ints or None, got output_size={output_size!r}"
            )
        if entry <= 0:
            raise ValueError(
                f"{fn}: output_size entries must be positive, got output_size={output_size!r}"
            )
    n = len(entries)
    if len(x_shape) < n + 1:
        raise ValueError(
            f"{fn}: output_size={output_size!r} has {n} spatial entries, so x needs at least "
            f"{n + 1} dims (*batch, *spatial, features), got x.shape={x_shape}"
        )
    check_spatial_nonempty(fn, x_shape, n)
    spatial = x_shape[len(x_shape) - 1 - n : -1]
    return tuple(
        length if o is None else int(o) for o, length in zip(entries, spatial, strict=True)
    )


def _window_view(x: jax.Array, axis: int, length: int, out: int, fill) -> jax.Array:
    """Replaces `axis` (length L) by `(out, k)`: the cells of each bin, k = longest bin.

    Evenly dividing bins are a plain reshape; otherwise the cells are gathered with
    clamped indices and the cells past a bin's end are set to `fill` (the identity)."""
    if length % out == 0:
        return x.reshape(x.shape[:axis] + (out, length // out) + x.shape[axis + 1 :])
    starts, ends = bin_bounds(length, out)
    k = int((ends - starts).max())
    cells = starts[:, None] + np.arange(k)
    windows = jnp.take(x, np.minimum(cells, length - 1), axis=axis, mode="clip")
    valid = (cells < ends[:, None]).reshape((out, k) + (1,) * (x.ndim - axis - 1))
    return jnp.where(valid, windows, jnp.asarray(fill, x.dtype))


def _spatial_axes(x: jax.Array, n: int) -> range:
    return range(x.ndim - 1 - n, x.ndim - 1)


def _axis_shape(ndim: int, axis: int, size: int) -> tuple[int, ...]:
    return tuple(size if d == axis else 1 for d in range(ndim))


def adaptive_avg_pool(x: jax.Array, output_size: OutputSize) -> jax.Array:
    """Adaptive average pooling, as PyTorch `AdaptiveAvgPool{n}d`.

    Args:
      x: `(*batch, *spatial, features)` floating array.
      output_size: one entry per spatial dim (int or `None` = keep that dim), or an int for
        every dim between the first and the last of `x`.

    Returns:
      `(*batch, *output_size, features)`, each cell the mean of its bin
      `prod_d [floor(i_d*L_d/o_d), ceil((i_d+1)*L_d/o_d))`, i.e. the bin sum divided by the
      bin's cell count. Sums accumulate in float32 (or the input dtype if wider) and the
      result is cast back to `x.dtype`.

    Raises:
      TypeError: non-floating `x`; ValueError: bad `output_size` or too few dims in `x`.

    Summation order differs from PyTorch's (per-axis sums here), so float results agree
    to rounding, not bitwise.
    """
    x = as_array(x, "adaptive_avg_pool")
    sizes = resolve_output_size("adaptive_avg_pool", x.shape, output_size)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"adaptive_avg_pool: x must be floating, got x.dtype={x.dtype}")
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    y = x.astype(acc_dtype)
    out_of = dict(zip(_spatial_axes(x, len(sizes)), sizes, strict=True))
    even = {a for a, o in out_of.items() if o != x.shape[a] and x.shape[a] % o == 0}
    uneven = [a for a, o in out_of.items() if o != x.shape[a] and a not in even]
    windows = tuple(x.shape[a] // o for a, o in out_of.items())
    if not uneven and max(windows) <= MAX_SLICED_TAPS:
        # Even bins are avg_pool tiles: one fused pass of per-axis slice sums, and a
        # broadcast for the gradient (measured a faster forward than the reshape-and-sum
        # below, whose reduce XLA:CPU runs apart from the divide).
        return avg_pool(x, windows)
    count = np.ones((), np.float64)
    for axis in sorted(even) + uneven:
        starts, ends = bin_bounds(x.shape[axis], out_of[axis])
        bin_sizes = (ends - starts).reshape(_axis_shape(x.ndim, axis, out_of[axis]))
        count = count * bin_sizes.astype(np.float64)
    if even:
        # Evenly dividing axes all at once: one reshape (L -> (o, L/o)) and one sum.
        split, summed = [], []
        for axis, length in enumerate(x.shape):
            split += [out_of[axis], length // out_of[axis]] if axis in even else [length]
            if axis in even:
                summed.append(len(split) - 1)
        y = y.reshape(split).sum(axis=tuple(summed))
    for axis in uneven:
        # Masked window sums rather than a 0/1 matmul or cumsum differences: those would
        # leak an inf/NaN into bins that do not contain it (0 * inf, inf - inf).
        y = _window_view(y, axis, x.shape[axis], out_of[axis], 0).sum(axis=axis + 1)
    return (y / count.astype(acc_dtype)).astype(x.dtype)


def _max_identity(dtype) -> np.generic:
    if jnp.issubdtype(dtype, jnp.floating):
        return np.array(-np.inf, dtype)
    if dtype == jnp.bool_:
        return np.array(False)
    return np.array(jnp.iinfo(dtype).min, dtype)


def _scan_order_combiner(floating: bool):
    """Combines two (value, flat index) candidates by PyTorch CPU's scan rule over a bin,
    `if val > best or isnan(val): take it`, written as an order so that XLA may reduce in
    any order: a larger value wins, ties go to the smaller index (first in row-major
    order), a NaN beats every number, and among NaNs the larger index (the last) wins."""

    def combine(a, b):
        (va, ia), (vb, ib) = a, b
        b_wins = (vb > va) | ((vb == va) & (ib < ia))
        if floating:
            na, nb = jnp.isnan(va), jnp.isnan(vb)
            b_wins = jnp.where(na | nb, nb & (~na | (ib > ia)), b_wins)
        return jnp.where(b_wins, vb, va), jnp.where(b_wins, ib, ia)

    return combine


def adaptive_max_pool(
    x: jax.Array, output_size: OutputSize, *, return_indices: bool = False
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Adaptive max pooling, as PyTorch `AdaptiveMaxPool{n}d`.

    Args:
      x: `(*batch, *spatial, features)`; floating, integer or bool (integer and bool are an
        extension: PyTorch has no integer adaptive max; the identity is the dtype's minimum).
      output_size: one entry per spatial dim (int or `None` = keep that dim), or an int for
        every dim between the first and the last of `x`.
      return_indices: also return the position of each maximum.

    Returns:
      values `(*batch, *output_size, features)`, each the max of its bin
      `prod_d [floor(i_d*L_d/o_d), ceil((i_d+1)*L_d/o_d))`; with `return_indices`, also
      int32 indices of the same shape: the flat row-major index into the input's spatial
      dims (per batch element and feature), as PyTorch's `return_indices`.

    Ties and NaN follow PyTorch CPU's scan over the bin in row-major order: the first
    maximum wins; a NaN wins over every number and the last NaN wins among NaNs (the value
    is then NaN). The gradient flows to that one element only (ties do not share it).

    Raises:
      ValueError: bad `output_size`, too few dims in `x`, or more than 2**30 spatial
      cells; TypeError: complex `x`.
    """
    x = as_array(x, "adaptive_max_pool")
    sizes = resolve_output_size("adaptive_max_pool", x.shape, output_size)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"adaptive_max_pool: x must be real or bool, got x.dtype={x.dtype}")
    n = len(sizes)
    spatial_shape = x.shape[x.ndim - 1 - n : -1]
    if 2 * math.prod(spatial_shape) > _MAX_FLAT_INDEX:
        raise ValueError(
            "adaptive_max_pool: int32 indices need at most 2**30 spatial cells, "
            f"got x.shape={x.shape}"
        )
    fill = _max_identity(x.dtype)
    combine = _scan_order_combiner(jnp.issubdtype(x.dtype, jnp.floating))
    values = jax.lax.stop_gradient(x)
    # Flat spatial index of each running maximum over the axes reduced so far. Reducing the
    # last axis first, then earlier ones, with the combiner's order, equals PyTorch's
    # row-major scan: within a window the candidates' flat indices grow with scan position.
    # `flat` stays a small NumPy constant (size 1 on the axes not yet reduced) until a
    # reduction makes it data-dependent: windowing a full-size constant would make XLA
    # constant-fold a large gather at compile time.
    flat = np.zeros((1,) * x.ndim, np.int32)
    stride = 1
    for axis, out in reversed(list(zip(_spatial_axes(x, n), sizes, strict=True))):
        length = x.shape[axis]
        if out == length:
            cells = np.arange(length, dtype=np.int32).reshape(_axis_shape(x.ndim, axis, length))
            flat = cells * stride + flat
        else:
            windows = _window_view(values, axis, length, out, fill)
            starts, _ = bin_bounds(length, out)
            k = windows.shape[axis + 1]
            # Cells past a bin's end keep their unclamped position, so they lose every tie.
            cells = (starts[:, None] + np.arange(k)).astype(np.int32)
            cells = cells.reshape((out, k) + (1,) * (x.ndim - axis - 1))
            if flat.shape[axis] == 1:
                prev = flat.reshape(flat.shape[: axis + 1] + (1,) + flat.shape[axis + 1 :])
            else:
                prev = _window_view(flat, axis, length, out, 0)
            values, flat = jax.lax.reduce(
                (windows, jnp.broadcast_to(cells * stride + prev, windows.shape)),
                (fill, np.int32(_MAX_FLAT_INDEX)),
                combine,
                (axis + 1,),
            )
        stride *= length
    flat = jnp.broadcast_to(flat, values.shape)
    out_shape = values.shape
    batch_shape = x.shape[: x.ndim - 1 - n]
    gathered = jnp.take_along_axis(
        x.reshape(batch_shape + (math.prod(spatial_shape), x.shape[-1])),
        flat.reshape(batch_shape + (math.prod(sizes), x.shape[-1])),
        axis=-2,
        mode="promise_in_bounds",
    ).reshape(out_shape)
    return (gathered, flat) if return_indices else gathered
