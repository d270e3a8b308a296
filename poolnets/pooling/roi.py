"""Region-of-interest pools with torchvision's semantics, static shapes under jit.

RoIPool: Girshick, "Fast R-CNN", ICCV 2015 (arXiv:1504.08083).
RoIAlign: He et al., "Mask R-CNN", ICCV 2017 (arXiv:1703.06870).
Semantics follow `torchvision.ops.roi_pool` / `roi_align` (their CPU kernels); layout is
channels-last: `features (N, H, W, C)`, `boxes (K, 5)` rows `(batch_index, x1, y1, x2, y2)`
in input-image coordinates (multiplied by `spatial_scale`), result `(K, ph, pw, C)`.

Both ops are separable per axis, which is how they stay static-shaped and cheap:

* RoIAlign averages bilinear samples; bilinear weights, torchvision's "outside -> 0" rule
  and its clamping are all products of a y-factor and an x-factor, so the average over a
  bin's `gh x gw` sample grid is `wy^T F wx`, with `wy (H,)` the sum of the 1-D weight
  vectors of the `gh` row samples (likewise `wx`). Building `wy` costs `K*ph*G*H` and the
  contraction `K*ph*N*H*W*C + K*ph*pw*W*C` multiply-adds (N: batch size of `features`).
* RoIPool takes the max over `[hstart, hend) x [wstart, wend)`. A 2-D sparse table
  (`S[i, j] = max over 2^i x 2^j windows`, `(floor(log2 H) + 1) * (floor(log2 W) + 1)`
  copies of `features`) answers every bin with 4 gathered entries (overlapping
  power-of-two windows), so the cost is independent of box sizes: memory
  `~log2(H) log2(W) N H W C + K ph pw C`.

The adaptive sampling grid (`sampling_ratio <= 0`: `ceil(roi_h / ph)` samples per bin row)
is data-dependent. Samples live on a static grid of `G` per bin and axis, masked beyond
each ROI's own count: `G` is `max_sampling_ratio` if given, else the exact maximum over
the boxes when their values are known while tracing (eager calls, or NumPy/constant
boxes closed over by a jitted function), else (boxes are a jit/vmap argument)
`ceil(H / ph)` (resp. `ceil(W / pw)`), the largest grid of any ROI that lies inside the
feature map. A traced ROI needing more samples than `G` is computed with its grid clamped
to `G` (torchvision with `sampling_ratio = min(adaptive, G)`), so for boxes reaching
outside the image under jit pass `max_sampling_ratio`.

Non-finite boxes (torchvision casts them to int and returns arbitrary values): a NaN or
Inf anywhere in a row of concrete `boxes` (eager calls, or boxes closed over by a
jitted function) raises a ValueError naming the rows. Traced boxes cannot raise: such a
RoI's outputs are all NaN, and the other RoIs' outputs and gradients are unaffected.

Deviations from torchvision (all outside its well-defined inputs, or about gradients):
a batch index outside `[0, N)` gives zeros (torchvision reads out of bounds); an aligned
adaptive ROI with exactly one inverted axis (x2 < x1 xor y2 < y1) has no samples and
gives zeros (torchvision's CPU kernel fails allocating a negative-size buffer); in
RoIPool a NaN in a bin propagates (torchvision's `>` skips it), an all `-inf` bin gives
`-inf` (torchvision `-FLT_MAX`), and tied maxima share the gradient (torchvision sends
it to the first). Gradients flow to `features`; `roi_align` also differentiates the
bilinear sampling w.r.t. box coordinates (torchvision returns none), `roi_pool`'s
rounding makes those zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from poolnets.pooling.blur import compute_dtype
from poolnets.pooling.geometry import as_array


def _pair(output_size) -> tuple[int, int]:
    pair = output_size
    if isinstance(pair, int | np.integer) and not isinstance(pair, bool):
        pair = (pair, pair)
    if not (isinstance(pair, Sequence) and len(pair) == 2 and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair)):
        raise TypeError(
            f"output_size must be an int or a pair of ints; got output_size={output_size!r}"
        )
    if min(pair) < 1:
        raise ValueError(f"output_size entries must be >= 1; got output_size={output_size!r}")
    return int(pair[0]), int(pair[1])


def _check_inputs(features, raw_boxes, output_size, spatial_scale, op):
    features, boxes = as_array(features, op, "features"), as_array(raw_boxes, op, "boxes")
    if features.ndim != 4:
        raise ValueError(f"{op}: features must have shape (N, H, W, C); got shape {features.shape}")
    if not jnp.issubdtype(features.dtype, jnp.floating):
        raise TypeError(f"{op}: features must be floating point; got dtype {features.dtype}")
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(
            f"{op}: boxes must have shape (K, 5) = (batch_index, x1, y1, x2, y2); got shape "
            f"{boxes.shape}"
        )
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, int | float | np.floating):
        raise TypeError(f"{op}: spatial_scale must be a Python number; got {spatial_scale!r}")
    if not (spatial_scale > 0 and math.isfinite(spatial_scale)):
        raise ValueError(f"{op}: spatial_scale must be positive and finite; got {spatial_scale!r}")
    dtype = compute_dtype(features.dtype)
    return features, _finite_boxes(boxes, raw_boxes, op, dtype), _pair(output_size), dtype


def _finite_boxes(boxes: jax.Array, raw_boxes, op: str, dtype):
    """`(boxes, finite)`. Concrete boxes holding NaN/Inf raise a ValueError naming the
    rows (`finite` is then None: every row is finite). Concreteness is read from the
    caller's `raw_boxes`: NumPy boxes closed over by a jitted function are values, though
    `jnp.asarray` stages them as a tracer. Traced boxes cannot raise: `finite` (K,) marks
    the rows whose outputs `_nan_where_invalid` sets to NaN (whatever the kernels made of
    them: RoIAlign's sample masks drop NaN positions, RoIPool casts them to int)."""
    boxes = boxes.astype(dtype)
    if not isinstance(raw_boxes, jax.core.Tracer):
        values = np.asarray(raw_boxes)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            raise ValueError(
                f"{op}: boxes must be finite; rows {bad.tolist()} hold NaN or Inf: "
                f"{values[bad[:4]].tolist()}{' ...' if bad.size > 4 else ''}"
            )
        return boxes, None
    return boxes, jnp.all(jnp.isfinite(boxes), axis=1)


def _nan_where_invalid(out: jax.Array, finite: jax.Array | None) -> jax.Array:
    """NaN outputs for the RoIs whose traced boxes were not finite (see `_finite_boxes`)."""
    if finite is None:
        return out
    return jnp.where(finite[:, None, None, None], out, jnp.asarray(jnp.nan, out.dtype))


def _batch_contract(features, rows, cols, batch_index, dtype):
    """`out[k,p,q,c] = sum_{h,w} rows[k,p,h] * cols[k,q,w] * features[b_k,h,w,c]`."""
    n, h, w, c = features.shape
    k, p, _ = rows.shape
    onehot = (batch_index[:, None] == jnp.arange(n)).astype(dtype)  # (K, N)
    lhs = (onehot[:, None, :, None] * rows[:, :, None, :]).reshape(k * p, n * h)
    partial = jnp.matmul(lhs, features.astype(dtype).reshape(n * h, w * c),
                         precision=lax.Precision.HIGHEST).reshape(k, p, w, c)
    return jnp.einsum("kqw,kpwc->kpqc", cols, partial, precision=lax.Precision.HIGHEST)


def _sample_weights(start, bin_size, grid, max_grid: int, bins: int, length: int, dtype):
    """Summed 1-D bilinear weights of each bin's samples, `(K, bins, length)` (torchvision's
    `bilinear_interpolate`: zero outside [-1, length], clamp to the last row/column)."""
    p = jnp.arange(bins, dtype=dtype)[None, :, None]
    i = jnp.arange(max_grid, dtype=dtype)[None, None, :]
    g = grid[:, None, None]
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    pos = start + p * bin_size + (i + 0.5) * bin_size / jnp.maximum(g, 1).astype(dtype)
    keep = (i < g) & (pos >= -1.0) & (pos <= length)
    pos = jnp.maximum(pos, 0.0)
    low = jnp.floor(pos).astype(jnp.int32)
    at_end = low >= length - 1
    low = jnp.where(at_end, length - 1, low)
    high = jnp.where(at_end, length - 1, low + 1)
    frac = jnp.where(at_end, 0.0, pos - low.astype(dtype))
    cells = jnp.arange(length)
    weights = ((1.0 - frac)[..., None] * (low[..., None] == cells)
               + frac[..., None] * (high[..., None] == cells))
    return jnp.sum(jnp.where(keep[..., None], weights, 0.0), axis=2)


def _concrete_grids(boxes, size, spatial_scale, aligned):
    """Adaptive sample counts `(gh, gw)` per ROI as NumPy int arrays when `boxes` holds
    values (NumPy, or a concrete jax array even inside jit), else None. Computed in
    float32 as the kernel does, so the static bound is the exact maximum."""
    if isinstance(boxes, jax.core.Tracer):
        return None
    b = np.asarray(boxes, np.float32)
    scaled = b[:, 1:] * np.float32(spatial_scale) - np.float32(0.5 if aligned else 0.0)
    roi_w, roi_h = scaled[:, 2] - scaled[:, 0], scaled[:, 3] - scaled[:, 1]
    if not aligned:
        roi_w, roi_h = np.maximum(roi_w, np.float32(1)), np.maximum(roi_h, np.float32(1))
    return (np.ceil(roi_h / np.float32(size[0])).astype(np.int32),
            np.ceil(roi_w / np.float32(size[1])).astype(np.int32))


def roi_align(
    features: jax.Array,
    boxes: jax.Array,
    output_size: int | tuple[int, int],
    *,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    max_sampling_ratio: int | None = None,
) -> jax.Array:
    """RoIAlign (He et al. 2017), exactly as `torchvision.ops.roi_align`.

    Per ROI, with `o = 0.5 if aligned else 0`: `y1' = y1 * scale - o`, `roi_h = y2' - y1'`
    (at least 1 when not aligned), `bin_h = roi_h / ph`, `gh = sampling_ratio` if > 0 else
    `ceil(roi_h / ph)`. Bin `(i, j)` is the mean over `gh x gw` samples at
    `y = y1' + i * bin_h + (iy + 0.5) * bin_h / gh` (likewise x) of the bilinear interpolation
    of `features[batch_index]`, where a sample with `y < -1 or y > H` (or x outside
    `[-1, W]`) counts as 0 and coordinates are clamped to `[0, H - 1]`. The mean divides
    by `max(gh * gw, 1)`.

    Args:
      features: `(N, H, W, C)` floating point.
      boxes: `(K, 5)` rows `(batch_index, x1, y1, x2, y2)`.
      output_size: `ph` or `(ph, pw)`.
      spatial_scale: feature-map size / image size.
      sampling_ratio: samples per bin and axis; <= 0 is adaptive (module docstring).
      aligned: shift boxes by -0.5 pixel (pixel-centre convention, Detectron2).
      max_sampling_ratio: static bound of the adaptive grid (module docstring).

    Returns:
      `(K, ph, pw, C)` in the dtype of `features`; all NaN for a RoI whose traced box is
      not finite (concrete non-finite boxes raise; module docstring).
    """
    raw_boxes = boxes
    features, (boxes, finite), (ph, pw), dtype = _check_inputs(
        features, boxes, output_size, spatial_scale, "roi_align")
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int | np.integer):
        raise TypeError(f"sampling_ratio must be an int; got sampling_ratio={sampling_ratio!r}")
    if not isinstance(aligned, bool | np.bool_):
        raise TypeError(f"aligned must be a bool; got aligned={aligned!r}")
    if max_sampling_ratio is not None and (
            isinstance(max_sampling_ratio, bool)
            or not isinstance(max_sampling_ratio, int | np.integer) or max_sampling_ratio < 1):
        raise ValueError(
            f"max_sampling_ratio must be None or an int >= 1; got {max_sampling_ratio!r}"
        )
    _, height, width, _ = features.shape
    offset = 0.5 if aligned else 0.0
    scaled = boxes[:, 1:] * jnp.asarray(spatial_scale, dtype) - offset
    x1, y1, x2, y2 = (scaled[:, i] for i in range(4))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    if sampling_ratio > 0:
        grid_h = grid_w = jnp.full(boxes.shape[:1], int(sampling_ratio), jnp.int32)
        max_h = max_w = int(sampling_ratio)
    else:
        concrete = _concrete_grids(raw_boxes, (ph, pw), spatial_scale, aligned)
        if concrete is not None:
            grid_h, grid_w = (jnp.asarray(g) for g in concrete)
        else:
            grid_h = jnp.ceil(roi_h / ph).astype(jnp.int32)
            grid_w = jnp.ceil(roi_w / pw).astype(jnp.int32)
        if max_sampling_ratio is not None:
            max_h = max_w = int(max_sampling_ratio)
        elif concrete is not None:
            max_h, max_w = (max(1, int(g.max(initial=0))) for g in concrete)
        else:
            max_h, max_w = -(-height // ph), -(-width // pw)
        grid_h, grid_w = jnp.minimum(grid_h, max_h), jnp.minimum(grid_w, max_w)
    rows = _sample_weights(y1, bin_h, grid_h, max_h, ph, height, dtype)
    cols = _sample_weights(x1, bin_w, grid_w, max_w, pw, width, dtype)
    count = jnp.maximum(grid_h * grid_w, 1).astype(dtype)
    out = _batch_contract(features, rows, cols, boxes[:, 0].astype(jnp.int32), dtype)
    return _nan_where_invalid((out / count[:, None, None, None]).astype(features.dtype), finite)


def _round_half_away(v: jax.Array) -> jax.Array:
    """C `round`: halves away from zero (jnp.round rounds halves to even)."""
    return (jnp.sign(v) * jnp.floor(jnp.abs(v) + 0.5)).astype(jnp.int32)


def _bin_bounds(start, roi_len, bins: int, length: int, dtype):
    """`[lo, hi)` of torchvision's RoIPool bins along one axis, `(K, bins)` each."""
    bin_size = roi_len.astype(dtype) / bins
    p = jnp.arange(bins, dtype=dtype)[None, :]
    lo = jnp.floor(p * bin_size[:, None]).astype(jnp.int32) + start[:, None]
    hi = jnp.ceil((p + 1) * bin_size[:, None]).astype(jnp.int32) + start[:, None]
    return jnp.clip(lo, 0, length), jnp.clip(hi, 0, length)


def _shifted_max(table: jax.Array, shift: int, axis: int) -> jax.Array:
    """`max(t[i], t[i + shift])` along `axis`, -inf past the end."""
    tail = jax.lax.slice_in_dim(table, shift, table.shape[axis], axis=axis)
    pad = [(0, 0)] * table.ndim
    pad[axis] = (0, shift)
    return jnp.maximum(table, jnp.pad(tail, pad, constant_values=-jnp.inf))


def _sparse_table(features: jax.Array) -> jax.Array:
    """`S[i, j, n, h, w] = max(features[n, h:h + 2**i, w:w + 2**j])` (where in range),
    shape `(levels_h, levels_w, N, H, W, C)`: any box max is the max of 4 entries."""
    _, height, width, _ = features.shape
    rows = [features]
    while 2 ** len(rows) <= height:
        rows.append(_shifted_max(rows[-1], 2 ** (len(rows) - 1), axis=1))
    table = []
    for level in rows:
        cols = [level]
        while 2 ** len(cols) <= width:
            cols.append(_shifted_max(cols[-1], 2 ** (len(cols) - 1), axis=2))
        table.append(jnp.stack(cols))
    return jnp.stack(table)


def _floor_log2(lengths: jax.Array, longest: int) -> jax.Array:
    table = np.zeros(longest + 1, np.int32)
    table[2:] = np.floor(np.log2(np.arange(2, longest + 1))).astype(np.int32)
    return jnp.asarray(table)[jnp.clip(lengths, 0, longest)]


def roi_pool(
    features: jax.Array,
    boxes: jax.Array,
    output_size: int | tuple[int, int],
    *,
    spatial_scale: float = 1.0,
) -> jax.Array:
    """RoIPool (Girshick 2015), exactly as `torchvision.ops.roi_pool`.

    Per ROI: `x1' = round(x1 * scale)` (C rounding, halves away from zero), likewise the
    other corners; `roi_w = max(x2' - x1' + 1, 1)`, `bin_w = roi_w / pw`; bin `j` covers
    columns `[floor(j * bin_w), ceil((j + 1) * bin_w)) + x1'` clipped to `[0, W]` (rows
    alike). The output is the max over the bin, or 0 for an empty bin.

    Args and returns as `roi_align` (no sampling): `(K, ph, pw, C)`.
    """
    features, (boxes, finite), (ph, pw), dtype = _check_inputs(
        features, boxes, output_size, spatial_scale, "roi_pool")
    n, height, width, _ = features.shape
    corners = _round_half_away(boxes[:, 1:] * jnp.asarray(spatial_scale, dtype))
    x1, y1, x2, y2 = (corners[:, i] for i in range(4))
    top, bottom = _bin_bounds(y1, jnp.maximum(y2 - y1 + 1, 1), ph, height, dtype)
    left, right = _bin_bounds(x1, jnp.maximum(x2 - x1 + 1, 1), pw, width, dtype)
    batch_index = boxes[:, 0].astype(jnp.int32)
    empty = ((bottom <= top)[:, :, None] | (right <= left)[:, None, :]
             | ((batch_index < 0) | (batch_index >= n))[:, None, None])
    # A bin [a, b) is covered by the two power-of-two windows starting at a and b - 2^i.
    level_h = _floor_log2(bottom - top, height)
    level_w = _floor_log2(right - left, width)
    row_ends = jnp.maximum(bottom - 2 ** level_h, top)
    col_ends = jnp.maximum(right - 2 ** level_w, left)
    table = _sparse_table(features)
    i, j = level_h[:, :, None], level_w[:, None, :]
    batch = jnp.clip(batch_index, 0, n - 1)[:, None, None]
    corners = [table[i, j, batch, r[:, :, None], c[:, None, :]]
               for r in (jnp.minimum(top, height - 1), jnp.minimum(row_ends, height - 1))
               for c in (jnp.minimum(left, width - 1), jnp.minimum(col_ends, width - 1))]
    out = jnp.maximum(jnp.maximum(corners[0], corners[1]), jnp.maximum(corners[2], corners[3]))
    return _nan_where_invalid(jnp.where(empty[..., None], jnp.zeros((), features.dtype), out),
                              finite)
