"""Max/min pooling derivatives without `select_and_scatter` or index gathers.

PyTorch's CPU kernel scans each window's taps in row-major order and moves its choice to
a tap when `value > running or isnan(value)` (first maximum wins ties, last NaN wins,
padding never wins; a window of `-inf` picks its first real element). `choose_taps`
replays that scan over whole arrays: tap `k` of every window is one strided slice of the
padded input, so the scan is a short chain of elementwise compare/selects that XLA fuses
into one pass, giving each window's chosen tap number (or -1 if it has no real element).

The derivative is then linear in the tangent and needs no indices:
`dy = sum_k where(chosen == k, tap_k(dx), 0)`. Its transpose (reverse mode) is, per tap,
a masked cotangent scattered back by `lax.pad` with interior padding `stride - 1` (the
transpose of a strided slice), summed over taps. When windows tile the input
(`stride == window`, no dilation) the taps are axes of a reshape instead, and the
transpose is a single masked broadcast with no summation.
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


def _taps(xp: jax.Array, geom: WindowGeometry):
    """Yield each tap's `(*batch, *out, C)` array, taps in row-major window order."""
    nb = geom.num_batch_dims
    for offset in itertools.product(*(range(k) for k in geom.window_shape)):
        if tiles_input(geom):
            index = (slice(None),) * nb + tuple(
                v for i in offset for v in (slice(None), i)) + (slice(None),)
            yield xp[index]
            continue
        start = tuple(i * d for i, d in zip(offset, geom.dilation, strict=True))
        limit = tuple(b + (o - 1) * s + 1 for b, o, s
                      in zip(start, geom.output_shape, geom.strides, strict=True))
        yield lax.slice(xp, (0,) * nb + start + (0,), xp.shape[:nb] + limit + xp.shape[-1:],
                        (1,) * nb + geom.strides + (1,))


def window_taps(x: jax.Array, geom: WindowGeometry, fill):
    """Each tap of every window, `(*batch, *out, C)`, row-major over window offsets;
    positions in the padding hold `fill`."""
    xp = _padded(x, geom, fill)
    yield from _taps(_tile_view(xp, geom) if tiles_input(geom) else xp, geom)


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
    reduction XLA does not fuse into the interior-padded scatters that consume it, so an
    elementwise cotangent (e.g. an Lp pool's chain rule, which itself re-reads the
    forward window sums) is computed once instead of once per tap (measured 100x+ on
    the benchmark's Lp pool).
    """
    pair = lax.broadcast_in_dim(t, t.shape + (2,), tuple(range(t.ndim)))
    return pair[..., 0]


def _materialized(a: jax.Array) -> jax.Array:
    """`a`, computed once into memory.

    Without this, XLA (CPU) fuses the whole tap scan into the transposed scatter and
    re-runs it for every tap of every window (measured ~20x slower); an
    `optimization_barrier` does not stop fusion. A reduction over a pair is not fused
    into its elementwise consumers, so it is a cheap fusion boundary.
    """
    floor = jnp.full(a.shape, jnp.iinfo(a.dtype).min, a.dtype)
    return jnp.max(jnp.stack([a, floor], axis=-1), axis=-1)


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
        return cotangent_boundary(jnp.where(mask, tiles, zero).sum(axis=expand))
    total = None
    for k, tap in enumerate(window_taps(t, geom, 0)):
        term = jnp.where(chosen == k, tap, zero)
        total = term if total is None else total + term
    return cotangent_boundary(total)
