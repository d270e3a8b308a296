"""Learned mixtures of max and average pooling: mixed, gated and tree pooling.

Windowed with the conventions of `poolnets.pooling.geometry` (no dilation or ceil mode;
padding at most half the window): `(*batch, *spatial, C) -> (*batch, *out, C)` with
`out = floor((L + lo + hi - k) / s) + 1` per spatial dim. Padded positions belong to no
window: `max` and `avg` below run over the window's real elements (`avg` as
`count_include_pad=False`) and a padded tap contributes 0 to the gating/leaf responses
`w . x`. Half-precision inputs are computed in float32 and cast back.

Responses `w . x = sum_k w_k x_k` run over the window's taps in row-major order; `w`
has shape `window_shape` (shared by all features, as in Lee et al.'s per-layer variant)
or `window_shape + (C,)` (one per feature).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.pooling.geometry import IntOrSeq, Padding, WindowGeometry, as_array
from poolnets.pooling.window_taps import (
    compute_dtype,
    gather_window_taps,
    require_float,
    research_geometry,
    valid_tap_mask,
)

ArrayLike = Any


def _prepare(x, window_shape, strides, padding, op):
    x = as_array(x, op)
    require_float(x, op)
    geometry = research_geometry(x, window_shape, strides, padding)
    dtype = compute_dtype(x.dtype)
    return x, geometry, gather_window_taps(x.astype(dtype), geometry), dtype


def _max_and_avg(taps: jax.Array, geometry: WindowGeometry) -> tuple[jax.Array, jax.Array]:
    mask = valid_tap_mask(geometry)
    window_max = jnp.max(jnp.where(mask, taps, -jnp.inf), axis=-1)
    # Padded taps hold 0, so the plain sum is the sum over real elements.
    window_avg = jnp.sum(taps, axis=-1) / mask.sum(axis=-1)
    return window_max, window_avg


def _filter_bank(name: str, weights: ArrayLike, geometry: WindowGeometry, features: int,
                 count: int | None, dtype) -> jax.Array:
    """`count` window filters (or one when `count` is None) -> `(count, C or 1, K)`."""
    weights = jnp.asarray(weights)
    lead = () if count is None else (count,)
    window = geometry.window_shape
    if weights.shape not in (lead + window, lead + window + (features,)):
        raise ValueError(
            f"{name} must have shape {lead + window} (shared by the features) or "
            f"{lead + window + (features,)} (one per feature); got {name}.shape={weights.shape}"
        )
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point; got {name}.dtype={weights.dtype}")
    k = int(np.prod(window))
    per_feature = weights.shape[-1] == features and weights.ndim == len(lead + window) + 1
    flat = weights.reshape((-1, k, features) if per_feature else (-1, k, 1))
    return jnp.swapaxes(flat, -1, -2).astype(dtype)


def _responses(taps: jax.Array, bank: jax.Array) -> jax.Array:
    """`w . x` for every filter: taps `(..., C, K)`, bank `(M, C|1, K)` -> `(M, ..., C)`."""
    bank = bank.reshape(bank.shape[:1] + (1,) * (taps.ndim - 2) + bank.shape[1:])
    return jnp.sum(taps[None] * bank, axis=-1)


def mixed_pool(
    x: ArrayLike, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
    padding: Padding = 0, *, alpha: ArrayLike,
) -> jax.Array:
    """Mixed max-average pooling, `y = alpha * max(window) + (1 - alpha) * avg(window)`.

    Learned `alpha` in `[0, 1]`: Lee, Gallagher & Tu, "Generalizing Pooling Functions in
    Convolutional Neural Networks: Mixed, Gated, and Tree", AISTATS 2016. A random
    `alpha in {0, 1}` per region during training is Yu et al.'s mixed pooling ("Mixed
    Pooling for Convolutional Neural Networks", RSKT 2014). `alpha` broadcasts to the
    output `(*batch, *out, C)`: a scalar, one per feature, or one per output element.
    """
    if not isinstance(alpha, jax.core.Tracer):
        a = np.asarray(alpha)
        if not np.issubdtype(a.dtype, np.number) or not np.all((a >= 0) & (a <= 1)):
            raise ValueError(f"alpha must lie in [0, 1]; got alpha={alpha!r}")
    x, geometry, taps, dtype = _prepare(x, window_shape, strides, padding, "mixed_pool")
    alpha = jnp.asarray(alpha, dtype)
    out_shape = taps.shape[:-1]
    try:
        ok = jnp.broadcast_shapes(alpha.shape, out_shape) == out_shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"alpha must broadcast to the output shape {out_shape}; got alpha.shape={alpha.shape}"
        )
    window_max, window_avg = _max_and_avg(taps, geometry)
    return (alpha * window_max + (1 - alpha) * window_avg).astype(x.dtype)


def gated_pool(
    x: ArrayLike, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
    padding: Padding = 0, *, gate_weights: ArrayLike,
) -> jax.Array:
    """Gated max-average pooling (Lee, Gallagher & Tu, AISTATS 2016):

        y = s * max(window) + (1 - s) * avg(window),   s = sigmoid(w . x_window)

    The gate `s` responds to each region's content. `gate_weights` (the gating mask `w`):
    shape `window_shape` or `window_shape + (C,)`.
    """
    x, geometry, taps, dtype = _prepare(x, window_shape, strides, padding, "gated_pool")
    bank = _filter_bank("gate_weights", gate_weights, geometry, x.shape[-1], None, dtype)
    gate = jax.nn.sigmoid(_responses(taps, bank)[0])
    window_max, window_avg = _max_and_avg(taps, geometry)
    return (gate * window_max + (1 - gate) * window_avg).astype(x.dtype)


def tree_pool(
    x: ArrayLike, window_shape: IntOrSeq, strides: IntOrSeq | None = None,
    padding: Padding = 0, *, leaf_filters: ArrayLike, gate_weights: ArrayLike,
) -> jax.Array:
    """Tree pooling (Lee, Gallagher & Tu, AISTATS 2016): a complete binary tree of learned
    pooling filters. With nodes in heap order (root 0, children `2m+1`, `2m+2`):

        f_m(x) = v_m . x                                              at a leaf,
        f_m(x) = s_m f_{2m+1}(x) + (1 - s_m) f_{2m+2}(x),  s_m = sigmoid(w_m . x)  inside,

    and `y = f_0(x)` per window and feature. `leaf_filters` `v`: shape
    `(L, *window_shape[, C])` with `L` a power of two >= 2 (the paper's level-2 tree has
    `L = 2`); `gate_weights` `w`: `(L - 1, *window_shape[, C])`. A constant input maps to
    itself when every leaf filter sums to 1 and the window has no padded taps (those hold
    0 in the linear responses, as in a zero-padded convolution).
    """
    x, geometry, taps, dtype = _prepare(x, window_shape, strides, padding, "tree_pool")
    num_leaves = int(np.shape(leaf_filters)[0]) if np.ndim(leaf_filters) else 0
    if num_leaves < 2 or num_leaves & (num_leaves - 1):
        raise ValueError(
            "leaf_filters must stack a power of two (>= 2) of filters on its first axis; got "
            f"leaf_filters.shape={np.shape(leaf_filters)}"
        )
    features = x.shape[-1]
    leaves = _filter_bank("leaf_filters", leaf_filters, geometry, features, num_leaves, dtype)
    gates = _filter_bank("gate_weights", gate_weights, geometry, features, num_leaves - 1, dtype)
    nodes = list(jax.nn.sigmoid(_responses(taps, gates))) + list(_responses(taps, leaves))
    for m in range(num_leaves - 2, -1, -1):
        nodes[m] = nodes[m] * nodes[2 * m + 1] + (1 - nodes[m]) * nodes[2 * m + 2]
    return nodes[0].astype(x.dtype)
