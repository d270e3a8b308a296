"""Window taps, and max/min/sum derivatives without `select_and_scatter` or gathers.

Tap `k` of every window is one strided slice of the input, padded at output resolution
where the tap falls in the padding (`window_taps`; a reshape when windows tile the
input). A pool over up to `MAX_SLICED_TAPS` taps is then a chain of elementwise ops on
slices that XLA fuses into one pass; on the bench/pooling.py shapes this measured 2-4x
faster forwards than XLA's CPU `reduce_window`.

PyTorch's CPU max kernel scans each window's taps in row-major order and moves its
choice to a tap when `value > running or isnan(value)` (first maximum wins ties, last NaN
wins, padding never wins; a window of `-inf` picks its first real element).
`choose_taps` finds the same tap from the window's value in one fused pass, and the
derivative is linear in the tangent and needs no indices:
`dy = sum_k where(chosen == k, tap_k(dx), 0)`; JAX transposes it for reverse mode.
`tangent_taps` gives the taps as slices of phase grids (the input split by position
modulo the stride), whose transposes are per-phase sums of shifted cotangents and one
interleave, touching only the taps that land on each element; tiled windows transpose
to one masked broadcast. (Window sums, whose cotangent is the same for every tap, keep
strided slices: their transposes, interior pads, fuse into one pass.)
Same choice as the variadic `reduce_window` in `poolnets.pooling.indices` (tested); timings
against flax.linen and PyTorch in bench/pooling.py.
"""

from __future__ import annotations

import functools
import itertools
import operator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from poolnets.pooling.geometry import WindowGeometry, broadcast_per_axis

# Up to this many taps, forwards and tangents are built from `window_taps` (one fused pass
# each); XLA's CPU `reduce_window` measured 2-4x slower forwards on the bench/pooling.py
# shapes and its transpose (pad + reduce_window) several times slower gradients. Larger
# windows use reduce_window (program size independent of the window).
MAX_SLICED_TAPS = 32


def tiles_input(geom: WindowGeometry) -> bool:
    """True when windows are disjoint and contiguous (stride == window, dilation 1)."""
    return geom.strides == geom.window_shape and all(d == 1 for d in geom.dilation)


def padded(x: jax.Array, geom: WindowGeometry, fill) -> jax.Array:
    nb = geom.num_batch_dims
    config = [(0, 0, 0)] * nb + [(lo, hi, 0) for lo, hi in geom.padding] + [(0, 0, 0)]
    if all(lo == hi == 0 for lo, hi in geom.padding):
        return x
    return lax.pad(x, jnp.asarray(fill, x.dtype), config)


def tile_view(xp: jax.Array, geom: WindowGeometry) -> jax.Array:
    """Padded input -> `(*batch, o1, k1, o2, k2, ..., C)` (tiling case)."""
    nb = geom.num_batch_dims
    crop = tuple(o * k for o, k in zip(geom.output_shape, geom.window_shape, strict=True))
    xp = lax.slice(xp, (0,) * xp.ndim, xp.shape[:nb] + crop + xp.shape[-1:])
    split = tuple(v for o, k in zip(geom.output_shape, geom.window_shape, strict=True)
                  for v in (o, k))
    return xp.reshape(xp.shape[:nb] + split + xp.shape[-1:])


def tile_sum(x: jax.Array, geom: WindowGeometry) -> jax.Array:
    """Sum of each window of a tiling geometry: a reshape and a reduction, whose
    transpose (reverse mode) is one broadcast."""
    nb = geom.num_batch_dims
    tiles = tile_view(padded(x, geom, 0), geom)
    return tiles.sum(axis=tuple(nb + 2 * a + 1 for a in range(geom.num_spatial)))


def separable_tile_sum(x: jax.Array, geom: WindowGeometry) -> jax.Array:
    """Sum of each window of a tiling geometry whose windows have at most
    `MAX_SLICED_TAPS` taps per axis: per axis, last first, a chain of `k` slices of the
    tile view, `k_1 + k_2 + ...` adds per output that XLA fuses into one pass (a reduce
    over the tile view runs apart from its consumers on XLA:CPU; see bench/pooling.py,
    adaptive avg 56->7). Summation order: last axis first, taps in order."""
    nb = geom.num_batch_dims
    view = tile_view(padded(x, geom, 0), geom)
    for axis in reversed(range(geom.num_spatial)):
        dim = nb + 2 * axis + 1
        taps = (lax.index_in_dim(view, i, dim, keepdims=False)
                for i in range(geom.window_shape[axis]))
        view = functools.reduce(operator.add, taps)
    return view


def _tiled_taps(xp: jax.Array, geom: WindowGeometry):
    """Taps of the tile view `(*batch, o1, k1, ..., C)`, row-major over window offsets."""
    nb = geom.num_batch_dims
    for offset in itertools.product(*(range(k) for k in geom.window_shape)):
        yield xp[(slice(None),) * nb + tuple(v for i in offset for v in (slice(None), i))]


def strided_tap(x: jax.Array, geom: WindowGeometry, offset: tuple[int, ...], fill) -> jax.Array:
    """Tap `offset` of every window: a strided slice of `x` over the windows where the tap
    lies on the input, padded with `fill` (at output resolution) where it does not.

    Tap `i` of window `o` reads input `o * s + i * d - lo`. Nothing input-sized is padded,
    and every tap is its own slice, so XLA fuses all taps and their consumer into one
    pass; reverse mode transposes each slice into an interior pad of the cotangent
    (`interior = s - 1`), and the sum of those pads is again one fused pass.
    """
    nb = geom.num_batch_dims
    start, limit, strides = [0] * x.ndim, list(x.shape), [1] * x.ndim
    pads = [(0, 0, 0)] * x.ndim
    for axis, i in enumerate(offset):
        s, out = geom.strides[axis], geom.output_shape[axis]
        e = i * geom.dilation[axis] - geom.padding[axis][0]
        first = max(0, -(e // s))  # ceil(-e / s): first window whose tap is on the input
        last = min(out - 1, (geom.input_shape[axis] - 1 - e) // s)
        if first > last:
            return jnp.full(x.shape[:nb] + geom.output_shape + x.shape[-1:], fill, x.dtype)
        full = nb + axis
        start[full], limit[full], strides[full] = first * s + e, last * s + e + 1, s
        pads[full] = (first, out - 1 - last, 0)
    tap = lax.slice(x, start, limit, strides)
    if any(p != (0, 0, 0) for p in pads):
        tap = lax.pad(tap, jnp.asarray(fill, x.dtype), pads)
    return tap


def window_taps(x: jax.Array, geom: WindowGeometry, fill):
    """Each tap of every window, `(*batch, *out, C)`, row-major over window offsets;
    positions in the padding hold `fill`."""
    if tiles_input(geom):
        yield from _tiled_taps(tile_view(padded(x, geom, fill), geom), geom)
        return
    for offset in itertools.product(*(range(k) for k in geom.window_shape)):
        yield strided_tap(x, geom, offset, fill)


def _phase_grids(x: jax.Array, geom: WindowGeometry, fill) -> dict:
    """Split the padded input by position modulo the stride, per spatial axis.

    Tap offset `e = i * d` reads input `o * s + e = (o + e // s) * s + e % s`, so it is
    the unstrided slice `[e // s : e // s + out]` of phase grid `e % s`. Phases come from
    a reshape and `lax.split`, whose transpose is a concatenation: reverse mode writes
    each input element once instead of summing one interior-padded array per tap.
    Returns `{phase tuple: (*batch, *M, C) grid}`, `M = d * (k - 1) // s + out` per axis.
    """
    nb = geom.num_batch_dims
    grid = []
    for axis, (k, d, s) in enumerate(zip(geom.window_shape, geom.dilation, geom.strides,
                                         strict=True)):
        grid.append((d * (k - 1)) // s + geom.output_shape[axis])
    xp = padded(x, geom, fill)
    target = tuple(m * s for m, s in zip(grid, geom.strides, strict=True))
    spatial = xp.shape[nb:-1]
    # crop what no tap reads, pad what the phase reshape needs
    cut = tuple(min(a, b) for a, b in zip(spatial, target, strict=True))
    xp = lax.slice(xp, (0,) * xp.ndim, xp.shape[:nb] + cut + xp.shape[-1:])
    extra = [(0, t - c, 0) for t, c in zip(target, cut, strict=True)]
    if any(e[1] for e in extra):
        xp = lax.pad(xp, jnp.asarray(fill, x.dtype),
                     [(0, 0, 0)] * nb + extra + [(0, 0, 0)])
    split = tuple(v for m, s in zip(grid, geom.strides, strict=True) for v in (m, s))
    view = xp.reshape(xp.shape[:nb] + split + xp.shape[-1:])
    grids = {(): view}
    for axis, s in enumerate(geom.strides):
        dim = nb + 2 * axis + 1
        grids = {key + (r,): piece for key, arr in grids.items()
                 for r, piece in enumerate(lax.split(arr, (1,) * s, axis=dim))}
    shape = x.shape[:nb] + tuple(grid) + x.shape[-1:]
    return {key: arr.reshape(shape) for key, arr in grids.items()}


def tangent_taps(t: jax.Array, geom: WindowGeometry):
    """`window_taps(t, geom, 0)` in the form whose reverse mode is fastest for `geom`:
    tiles as reshapes (transpose: one broadcast), other windows as slices of phase
    grids (transpose: per-phase sums of shifted cotangents and one interleave, touching
    only the taps that land on each element). For routed max/min tangents, with an
    allocator that reuses memory (so page faults do not hide compute), phase grids
    measured faster than the strided slices' interior-padded transposes, which evaluate
    every tap at every input element, for 3x3 stride 2 and no slower for stride 1.
    """
    if tiles_input(geom):
        yield from window_taps(t, geom, 0)
        return
    nb = geom.num_batch_dims
    grids = _phase_grids(t, geom, 0)
    for offset in itertools.product(*(range(k) for k in geom.window_shape)):
        e = [i * d for i, d in zip(offset, geom.dilation, strict=True)]
        phase = tuple(v % s for v, s in zip(e, geom.strides, strict=True))
        start = tuple(v // s for v, s in zip(e, geom.strides, strict=True))
        arr = grids[phase]
        limit = tuple(b + o for b, o in zip(start, geom.output_shape, strict=True))
        yield lax.slice(arr, (0,) * nb + start + (0,), arr.shape[:nb] + limit + arr.shape[-1:])


def _real_tap_masks(geom: WindowGeometry):
    """Per tap: None if it lies on the input for every window, else a static bool
    `(*out, 1)` saying where it does."""
    for offset in itertools.product(*(range(k) for k in geom.window_shape)):
        per_axis = []
        for axis, i in enumerate(offset):
            pos = geom.window_starts(axis) + i * geom.dilation[axis]
            per_axis.append((pos >= 0) & (pos < geom.input_shape[axis]))
        if all(v.all() for v in per_axis):
            yield None
        else:
            yield broadcast_per_axis(per_axis, np.logical_and)


def choose_taps(x: jax.Array, value: jax.Array, geom: WindowGeometry) -> jax.Array:
    """PyTorch's choice per window given its extreme `value` (`(*batch, *out, C)`, from
    `poolnets.pooling.indices.extreme_pool`, which propagates NaN): the row-major number
    of the first tap equal to `value`, or of the last NaN tap in a window whose value is
    NaN; -1 for a window with no real element. int8 (int32 beyond 127 taps), `(*batch, *out, C)`.

    Equivalent to PyTorch's running `value > best or isnan(value)` scan (tested against
    it): the running best ends at the window's extreme; it first reaches it at the first
    tap holding it (padding never wins), and NaN taps win over everything, the last one
    finally. One pass over the taps, last to first, keeps the earliest equal tap and the
    latest NaN tap.
    """
    is_float = bool(jnp.issubdtype(x.dtype, jnp.floating))
    num_taps = int(np.prod(geom.window_shape))
    index_dtype = jnp.int8 if num_taps <= 127 else jnp.int32
    none = jnp.full(value.shape, -1, index_dtype)
    first_equal, last_nan = none, none
    # Each tap feeds a single comparison: a tap read twice (`== value` and `isnan`) is a
    # multi-use operand that XLA materialises (one output-sized array per border tap).
    # Reading the NaN taps with a different fill keeps the two reads distinct (no CSE);
    # a fill of 0 is never NaN and border positions are masked out of the equality.
    equal_taps = list(zip(window_taps(x, geom, 0), _real_tap_masks(geom), strict=True))
    nan_taps = list(window_taps(x, geom, 1)) if is_float else None
    for k in reversed(range(num_taps)):
        tap, real = equal_taps[k]
        tap_number = jnp.full(value.shape, k, index_dtype)
        equal = tap == value
        if real is not None:
            equal = equal & real
        first_equal = lax.select(equal, tap_number, first_equal)
        if is_float:
            nan = jnp.isnan(nan_taps[k])
            last_nan = lax.select(nan & (last_nan < 0), tap_number, last_nan)
    if is_float:
        first_equal = lax.select(jnp.isnan(value), last_nan, first_equal)
    return materialized(first_equal)


def cotangent_boundary(t: jax.Array) -> jax.Array:
    """Identity on tangents whose transpose materialises the cotangent in one pass.

    `t -> broadcast(t, (..., 2))[..., 0]` transposes to a sum over a zero-padded pair, a
    reduction XLA does not fuse into the scatters that consume it. Worth it only when
    the cotangent is an expensive elementwise expression that XLA would otherwise
    recompute once per tap: an Lp pool's chain rule, which re-reads the forward window
    sums (measured 2.8x faster with it). For a plain cotangent it costs an extra pass
    (measured ~2x slower max VJPs), so max/sum/avg pools do not use it.
    """
    pair = lax.broadcast_in_dim(t, t.shape + (2,), tuple(range(t.ndim)))
    return pair[..., 0]


def materialized(a: jax.Array) -> jax.Array:
    """`a` (an integer or float array), computed once into memory.

    Without this, XLA (CPU) fuses the whole tap scan into the transposed scatter and
    re-runs it for every tap of every window (measured ~20x slower); an
    `optimization_barrier` does not stop fusion. A `reduce_window` of `a` against the
    dtype minimum (over a new pair axis) is an identity that XLA does not fuse into
    its consumers; it measured the cheapest such boundary.
    """
    if jnp.issubdtype(a.dtype, jnp.floating):
        init = np.array(-np.inf, a.dtype)  # max(v, -inf) is v, NaN and -0.0 included
    else:
        init = np.array(jnp.iinfo(a.dtype).min, a.dtype)
    pair = lax.reduce_window(a[..., None], init, lax.max, (1,) * a.ndim + (2,),
                             (1,) * (a.ndim + 1), ((0, 0),) * a.ndim + ((0, 1),))
    return pair[..., 0]


def routed_tangent(t: jax.Array, chosen: jax.Array, geom: WindowGeometry) -> jax.Array:
    """`sum_k where(chosen == k, tap_k(t), 0)`: the tangent of the chosen elements.

    Linear in `t` (padding contributes zeros), so JAX transposes it into interior-padded
    scatters (or, when windows tile the input, one masked broadcast).
    """
    zero = jnp.zeros((), t.dtype)
    if tiles_input(geom):
        tiles = tile_view(padded(t, geom, 0), geom)
        nb, n = geom.num_batch_dims, geom.num_spatial
        # tap number of each position in the tile view, row-major over window offsets
        tap_id = np.zeros([1] * (2 * n), np.int32)
        mult = 1
        for axis in reversed(range(n)):
            k = geom.window_shape[axis]
            shape = [1] * (2 * n)
            shape[2 * axis + 1] = k
            tap_id = tap_id + mult * np.arange(k, dtype=np.int32).reshape(shape)
            mult *= k
        tap_id = tap_id.reshape(tap_id.shape + (1,))
        expand = tuple(nb + 2 * a + 1 for a in range(n))
        mask = jnp.expand_dims(chosen, expand) == tap_id.astype(chosen.dtype)
        return jnp.where(mask, tiles, zero).sum(axis=expand)
    total = None
    for k, tap in enumerate(tangent_taps(t, geom)):
        term = jnp.where(chosen == k, tap, zero)
        total = term if total is None else total + term
    return total
