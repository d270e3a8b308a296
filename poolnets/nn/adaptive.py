"""Flax (linen) modules for the adaptive and global pools of `poolnets.pooling`.

They hold no parameters; each is a thin, configurable wrapper so that models can choose a
pool by module. Shapes and formulas are those of the wrapped functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from poolnets.pooling.adaptive import OutputSize, adaptive_avg_pool, adaptive_max_pool
from poolnets.pooling.global_pools import global_avg_pool, global_max_pool, spatial_pyramid_pool

_GLOBAL_KINDS = ("avg", "max")
_SPP_MODES = ("max", "avg")


class AdaptiveAvgPool(nn.Module):
    """`adaptive_avg_pool(x, output_size)`: `(*batch, *spatial, C) -> (*batch, *output_size, C)`."""

    output_size: OutputSize

    def __call__(self, x: jax.Array) -> jax.Array:
        return adaptive_avg_pool(x, self.output_size)


class AdaptiveMaxPool(nn.Module):
    """`adaptive_max_pool(x, output_size, return_indices=...)`:
    `(*batch, *spatial, C) -> (*batch, *output_size, C)` (and int32 indices)."""

    output_size: OutputSize
    return_indices: bool = False

    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
        return adaptive_max_pool(x, self.output_size, return_indices=self.return_indices)


class GlobalPool(nn.Module):
    """Global average (`kind="avg"`) or max (`kind="max"`) over all spatial dims:
    `(N, *spatial, C) -> (N, C)`, or `(N, 1, ..., 1, C)` with `keepdims`."""

    kind: str = "avg"
    keepdims: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _GLOBAL_KINDS:
            raise ValueError(f"GlobalPool: kind must be one of {_GLOBAL_KINDS}, got {self.kind!r}")
        super().__post_init__()

    def __call__(self, x: jax.Array) -> jax.Array:
        pool = global_avg_pool if self.kind == "avg" else global_max_pool
        return pool(x, keepdims=self.keepdims)


class SpatialPyramidPool(nn.Module):
    """Spatial pyramid pooling (He et al., 2014):
    `(N, *spatial, C) -> (N, C * sum(l ** num_spatial for l in levels))`; feature order as
    in `poolnets.pooling.spatial_pyramid_pool`."""

    levels: Sequence[int] = (1, 2, 4)
    mode: str = "max"

    def __post_init__(self) -> None:
        if self.mode not in _SPP_MODES:
            raise ValueError(
                f"SpatialPyramidPool: mode must be one of {_SPP_MODES}, got {self.mode!r}"
            )
        super().__post_init__()

    def __call__(self, x: jax.Array) -> jax.Array:
        return spatial_pyramid_pool(x, self.levels, mode=self.mode)
