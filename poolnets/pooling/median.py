"""Median pooling: the median of every window."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.pooling.geometry import IntOrSeq, Padding, as_array
from poolnets.pooling.window_taps import gather_window_taps, research_geometry, valid_tap_mask


def median_pool(
    x: jax.Array, window_shape: IntOrSeq, strides: IntOrSeq | None = None, padding: Padding = 0
) -> jax.Array:
    """Median pooling: `y = median(window)`, `(*batch, *spatial, C) -> (*batch, *out, C)`.

    For an even count `n` of taps this is the lower median, the sorted element of rank
    `(n - 1) // 2` (as `torch.median`; no averaging, so integer inputs stay exact and the
    output is always an input element, to which the gradient flows). Padded taps are
    excluded, so border windows take the median of fewer elements. A classic nonlinear
    filter for impulse noise (Tukey 1974; see Huang, Yang & Tang, "A fast two-dimensional
    median filtering algorithm", IEEE TASSP 1979). A NaN in a window makes its output NaN,
    as `torch.median` (the gradient flows to a NaN of the window); `torch.nanmedian`'s
    skipping of NaNs is not offered.
    Geometry as in `poolnets.pooling.geometry` (no dilation/ceil mode, padding at most half
    the window): `out = floor((L + lo + hi - k) / s) + 1`. Any real or integer dtype.
    """
    x = as_array(x, "median_pool")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise TypeError(f"median_pool needs a real or integer x; got x.dtype={x.dtype}")
    geometry = research_geometry(x, window_shape, strides, padding)
    mask = valid_tap_mask(geometry)
    taps = gather_window_taps(x, geometry)
    # Padded taps sort after every real element; the rank only counts real elements.
    high = jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).max
    ordered = jnp.sort(jnp.where(mask, taps, jnp.asarray(high, x.dtype)), axis=-1)
    rank = (mask.sum(axis=-1, keepdims=True) - 1) // 2
    rank = jnp.broadcast_to(np.asarray(rank), ordered.shape[:-1] + (1,))
    if jnp.issubdtype(x.dtype, jnp.floating):
        # jnp.sort puts NaNs last (after the +inf padding), so the last rank is a NaN
        # whenever the window holds one.
        has_nan = jnp.any(jnp.isnan(taps) & mask, axis=-1, keepdims=True)
        rank = jnp.where(has_nan, ordered.shape[-1] - 1, rank)
    return jnp.take_along_axis(ordered, rank, axis=-1)[..., 0]
