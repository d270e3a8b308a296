"""Max/min pooling derivatives without `select_and_scatter` or index gathers.

PyTorch's CPU kernel scans each window's taps in row-major order and moves its choice to
a tap when `value > running or isnan(value)` (first maximum wins ties, last NaN wins,
padding never wins; a window of `-inf` picks its first real element). `choose_taps`
replays that scan over whole arrays: tap `k` of every window is one slice of the padded
input (`window_taps`), so the scan is a short chain of elementwise compare/selects that
XLA fuses into one pass, giving each window's chosen tap number (-1 if it has no real
element).

The derivative is then linear in the tangent and needs no indices:
`dy = sum_k where(chosen == k, tap_k(dx), 0)`, and JAX transposes it for reverse mode.
Taps are unstrided slices of "phase grids" (the padded input split by position modulo
the stride with a reshape and `lax.split`), so the transpose is, per phase, a sum of
shifted masked cotangents, then one concatenation: the strided scatter of the issue's
"interior padding" formulation without summing one input-sized array per tap. When
windows tile the input (`stride == window`, no dilation) the taps are axes of a reshape
and the transpose is one masked broadcast. `window_taps` also serves the window-sum
tangent of avg/sum/Lp pools (poolnets.pooling.windowed).
Same choice as the variadic `reduce_window` in `poolnets.pooling.indices` (tested); timings
against flax.linen and PyTorch in bench/pooling.py.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from poolnets.pooling.geometry import WindowGeometry, broadcast_per_axis


def tiles_input(geom: WindowGeometry) -> bool:
    """True when windows are disjoint and contiguous (stride == window, dilation 1)."""
    return geom.strides == geom.window_shape and all(d == 1 for d in geom.dilation)


def _padded(x: jax.Array, geom: WindowGeometry, fill) -> jax.Array:
    nb = geom.num_batch_dims
    config = [(0, 0, 0)] * nb + [(lo, hi, 0) for lo, hi in geom.padding] + [(0, 0, 0)]
    if all(lo == hi == 0 for lo, hi in geom.padding):
        return x
    return lax.pad(x, jnp.asarray(fill, x.dtype), config)


def _tile_view(xp: jax.Array, geom: WindowGeometry) -> jax.Array:
    """Padded input -> `(*batch, o1, k1, o2, k2, ..., C)` (tiling case)."""
    nb = geom.num_batch_dims
    crop = tuple(o * k for o, k in zip(geom.output_shape, geom.window_shape, strict=True))
    xp = lax.slice(xp, (0,) * xp.ndim, xp.shape[:nb] + crop + xp.shape[-1:])
    split = tuple(v for o, k in zip(geom.output_shape, geom.window_shape, strict=True)
                  for v in (o, k))
    return xp.reshape(xp.shape[:nb] + split + xp.shape[-1:])


def _tiled_taps(xp: jax.Array, geom: WindowGeometry):
    """Taps of the tile view `(*batch, o1, k1, ..., C)`, row-major over window offsets."""
    nb = geom.num_batch_dims
    for offset in itertools.product(*(range(k) for k in geom.window_shape)):
        yield xp[(slice(None),) * nb + tuple(v for i in offset for v in (slice(None), i))]


def _phase_grids(x: jax.Array, geom: WindowGeometry, fill) -> tuple[dict, tuple[int, ...]]:
    """Split the padded input by position modulo the stride, per spatial axis.

    Tap offset `e = i * d` reads input `o * s + e = (o + e // s) * s + e % s`, so it is
    the unstrided slice `[e // s : e // s + out]` of phase grid `e % s`. Phases come from
    a reshape and `lax.split`, whose transpose is a concatenation: reverse mode writes
    each input element once instead of summing one interior-padded array per tap.
    Returns `{phase tuple: (*batch, *M, C) grid}` and `M` per axis.
    """
    nb = geom.num_batch_dims
    grid = []
    for axis, (k, d, s) in enumerate(zip(geom.window_shape, geom.dilation, geom.strides,
                                         strict=True)):
        grid.append((d * (k - 1)) // s + geom.output_shape[axis])
    padded = _padded(x, geom, fill)
    target = tuple(m * s for m, s in zip(grid, geom.strides, strict=True))
    spatial = padded.shape[nb:-1]
    # crop what no tap reads, pad what the phase reshape needs
    cut = tuple(min(a, b) for a, b in zip(spatial, target, strict=True))
    padded = lax.slice(padded, (0,) * padded.ndim, padded.shape[:nb] + cut + padded.shape[-1:])
    extra = [(0, t - c, 0) for t, c in zip(target, cut, strict=True)]
    if any(e[1] for e in extra):
        padded = lax.pad(padded, jnp.asarray(fill, x.dtype),
                         [(0, 0, 0)] * nb + extra + [(0, 0, 0)])
    split = tuple(v for m, s in zip(grid, geom.strides, strict=True) for v in (m, s))
    view = padded.reshape(padded.shape[:nb] + split + padded.shape[-1:])
    grids = {(): view}
    for axis, s in enumerate(geom.strides):
        dim = nb + 2 * axis + 1
        grids = {key + (r,): piece for key, arr in grids.items()
                 for r, piece in enumerate(lax.split(arr, (1,) * s, axis=dim))}
    shape = x.shape[:nb] + tuple(grid) + x.shape[-1:]
    return {key: arr.reshape(shape) for key, arr in grids.items()}, tuple(grid)


def window_taps(x: jax.Array, geom: WindowGeometry, fill):
    """Each tap of every window, `(*batch, *out, C)`, row-major over window offsets;
    positions in the padding hold `fill`."""
    if tiles_input(geom):
        yield from _tiled_taps(_tile_view(_padded(x, geom, fill), geom), geom)
        return
    nb = geom.num_batch_dims
    grids, _ = _phase_grids(x, geom, fill)
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


def choose_taps(x: jax.Array, geom: WindowGeometry, largest: bool, identity):
    """PyTorch's choice per window: `(value, chosen_tap)`, both `(*batch, *out, C)`.

    `chosen_tap` is the row-major tap number (int8/int32), -1 for a window with no real
    element (its value is `identity`).
    """
    # No stop_gradient: `value` is a chain of selects, so differentiating it again (second
    # order) routes through the same choice.
    is_float = bool(jnp.issubdtype(x.dtype, jnp.floating))
    num_taps = int(np.prod(geom.window_shape))
    index_dtype = jnp.int8 if num_taps <= 127 else jnp.int32
    best = chosen = None
    found = False  # Python False/True when static, else a bool array
    for k, (value, real) in enumerate(zip(window_taps(x, geom, identity), _real_tap_masks(geom),
                                          strict=True)):
        if best is None and real is None:
            best, chosen, found = value, jnp.zeros(value.shape, index_dtype), True
            continue
        if best is None:
            best = jnp.full(value.shape, identity, x.dtype)
            chosen = jnp.full(value.shape, -1, index_dtype)
        if found is False:  # no real tap seen yet anywhere: take this one where real
            beats = jnp.ones(value.shape, bool)
        else:
            beats = value > best if largest else value < best
            if is_float:
                beats = beats | jnp.isnan(value)
            if found is not True:
                beats = beats | ~found
        if real is not None:
            beats = beats & real
        best = lax.select(beats, value, best)
        chosen = lax.select(beats, jnp.full(value.shape, k, index_dtype), chosen)
        if found is not True:
            found = (found | beats) if real is not None else True
    return best, _materialized(chosen)


def cotangent_boundary(t: jax.Array) -> jax.Array:
    """Identity on tangents whose transpose materialises the cotangent in one pass.

    `t -> broadcast(t, (..., 2))[..., 0]` transposes to a sum over a zero-padded pair, a
    reduction XLA does not fuse into the scatters that consume it. Worth it only when
    the cotangent is an expensive elementwise expression that XLA would otherwise
    recompute once per tap (an Lp pool's chain rule, which re-reads the forward window
    sums: measured 2.8x faster with it); for a plain cotangent it costs an extra pass
    (measured ~2x slower max/avg VJPs), so max/avg/sum pools do not use it.
    """
    pair = lax.broadcast_in_dim(t, t.shape + (2,), tuple(range(t.ndim)))
    return pair[..., 0]


def _materialized(a: jax.Array) -> jax.Array:
    """`a` (an integer array), computed once into memory.

    Without this, XLA (CPU) fuses the whole tap scan into the transposed scatter and
    re-runs it for every tap of every window (measured ~20x slower); an
    `optimization_barrier` does not stop fusion. A `reduce_window` of `a` against the
    dtype minimum (over a new pair axis) is an identity that XLA does not fuse into
    its consumers; it measured the cheapest such boundary.
    """
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
        tiles = _tile_view(_padded(t, geom, 0), geom)
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
    for k, tap in enumerate(window_taps(t, geom, 0)):
        term = jnp.where(chosen == k, tap, zero)
        total = term if total is None else total + term
    return total
