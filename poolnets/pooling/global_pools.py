"""Global pools and spatial pyramid pooling over `(N, *spatial, C)` inputs.

Here the input is read as one batch dim, then every dim up to the last as spatial, then
the features: `x.ndim - 2` spatial dims (at least one).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import jax
import jax.numpy as jnp

from poolnets.pooling.adaptive import adaptive_avg_pool, adaptive_max_pool
from poolnets.pooling.geometry import as_array, check_spatial_nonempty

_SPP_MODES = ("max", "avg")


def _check_nsc(fn: str, x: jax.Array) -> int:
    """Returns the number of spatial dims of an `(N, *spatial, C)` input, after checking it
    (at least one spatial dim, none of them empty)."""
    if x.ndim < 3:
        raise ValueError(
            f"{fn}: x must be (N, *spatial, C) with at least one spatial dim, got x.shape={x.shape}"
        )
    check_spatial_nonempty(fn, x.shape, x.ndim - 2)
    return x.ndim - 2


def global_avg_pool(x: jax.Array, *, keepdims: bool = False) -> jax.Array:
    """Mean over all spatial dims: `(N, *spatial, C) -> (N, C)`, or `(N, 1, ..., 1, C)` with
    `keepdims`. Equals PyTorch `AdaptiveAvgPool{n}d(1)`; sums accumulate in float32 (or the
    input dtype if wider) and the result has `x.dtype`.

    Raises TypeError for non-floating `x`, ValueError for `x.ndim < 3` or an empty spatial
    dim (whose mean would be NaN; torch's adaptive pools raise too).
    """
    x = as_array(x, "global_avg_pool")
    n = _check_nsc("global_avg_pool", x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"global_avg_pool: x must be floating, got x.dtype={x.dtype}")
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    mean = jnp.mean(x, axis=tuple(range(1, 1 + n)), dtype=acc_dtype, keepdims=keepdims)
    return mean.astype(x.dtype)


def global_max_pool(x: jax.Array, *, keepdims: bool = False) -> jax.Array:
    """Max over all spatial dims: `(N, *spatial, C) -> (N, C)`, or `(N, 1, ..., 1, C)` with
    `keepdims`.

    Equals PyTorch `AdaptiveMaxPool{n}d(1)` including its gradient, which flows to the
    first maximum in row-major order (NaN: to the last NaN) rather than being shared among
    ties as for `torch.amax`/`jnp.max`. Integer and bool inputs are allowed.

    Raises ValueError for `x.ndim < 3` or an empty spatial dim, TypeError for complex `x`.
    """
    x = as_array(x, "global_max_pool")
    n = _check_nsc("global_max_pool", x)
    pooled = adaptive_max_pool(x, (1,) * n)
    return pooled if keepdims else pooled.reshape(x.shape[0], x.shape[-1])


def spatial_pyramid_pool(
    x: jax.Array, levels: Sequence[int] = (1, 2, 4), *, mode: str = "max"
) -> jax.Array:
    """Spatial pyramid pooling (He, Zhang, Ren, Sun, "Spatial Pyramid Pooling in Deep
    Convolutional Networks for Visual Recognition", ECCV 2014 / TPAMI 2015).

    For each level `l`, `x` is adaptively pooled (max or avg) to `l` bins per spatial dim
    with PyTorch's adaptive bins `[floor(i*L/l), ceil((i+1)*L/l))`, and the results are
    flattened and concatenated, giving a fixed length whatever the input's spatial size:

        (N, *spatial, C) -> (N, C * sum(l ** num_spatial for l in levels))

    Feature order: levels in the order given; within a level, row-major over
    `(bin_1, ..., bin_num_spatial, channel)`, i.e. the channel varies fastest (the
    channels-last flatten; an NCHW flatten, as in PyTorch ports, orders channel slowest --
    a fixed permutation of the same features).

    Args:
      x: `(N, *spatial, C)`; floating for `mode="avg"`.
      levels: non-empty sequence of positive ints (bins per spatial dim at each level).
      mode: `"max"` or `"avg"`.
    """
    x = as_array(x, "spatial_pyramid_pool")
    n = _check_nsc("spatial_pyramid_pool", x)
    if mode not in _SPP_MODES:
        raise ValueError(f"spatial_pyramid_pool: mode must be one of {_SPP_MODES}, got {mode!r}")
    if isinstance(levels, str) or not isinstance(levels, Sequence):
        raise TypeError(
            f"spatial_pyramid_pool: levels must be a sequence of positive ints, got {levels!r}"
        )
    if not levels or any(
        not isinstance(level, Integral) or isinstance(level, bool) or level <= 0 for level in levels
    ):
        raise ValueError(
            f"spatial_pyramid_pool: levels must be a non-empty sequence of positive ints, "
            f"got levels={levels!r}"
        )
    if mode == "avg" and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"spatial_pyramid_pool: mode='avg' needs floating x, got x.dtype={x.dtype}")
    pool = adaptive_max_pool if mode == "max" else adaptive_avg_pool
    flat = [
        pool(x, (int(level),) * n).reshape(x.shape[0], int(level) ** n * x.shape[-1])
        for level in levels
    ]
    return jnp.concatenate(flat, axis=-1)
