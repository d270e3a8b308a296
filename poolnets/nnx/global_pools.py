"""NNX modules for the global pools of `poolnets.pooling.global_pools`: `GlobalAvgPool`,
`GlobalMaxPool`, `SpatialPyramidPool`, and the timm-style combinations `GlobalAvgMaxPool`
and `GlobalCatAvgMaxPool`. They read the input as `(N, *spatial, C)` and return `(N, D)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from poolnets.nnx._base import Pool, Shape, check_bool, check_shape, frozen
from poolnets.pooling.global_pools import global_avg_pool, global_max_pool, spatial_pyramid_pool


class GlobalPool(Pool):
    """Base of the global heads: `(N, *spatial, C) -> (N, C)`, or `(N, 1, ..., 1, C)` with
    `keepdims`."""

    def __init__(self, *, keepdims: bool = False):
        self.keepdims = check_bool("keepdims", keepdims)

    def spatial_input(self, input_shape: Sequence[int]) -> Shape:
        """`input_shape` checked as `(N, *spatial, C)` with at least one spatial dim."""
        shape = check_shape("input shape", input_shape)
        self.check_input(shape)
        if len(shape) < 3:
            raise ValueError(f"{type(self).__name__} needs an input (N, *spatial, C) with at "
                             f"least one spatial dim; got shape {shape}")
        return shape

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        shape = self.spatial_input(input_shape)
        kept = (1,) * (len(shape) - 2) if self.keepdims else ()
        return (shape[0], *kept, shape[-1])


class GlobalAvgPool(GlobalPool):
    """`global_avg_pool(x, keepdims=)`: the mean over all spatial dims."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return global_avg_pool(x, keepdims=self.keepdims)


class GlobalMaxPool(GlobalPool):
    """`global_max_pool(x, keepdims=)`: the max over all spatial dims."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return global_max_pool(x, keepdims=self.keepdims)


class GlobalAvgMaxPool(GlobalPool):
    """`(global_avg_pool + global_max_pool) / 2`, timm's "avgmax": `(N, C)`."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return 0.5 * (global_avg_pool(x, keepdims=self.keepdims)
                      + global_max_pool(x, keepdims=self.keepdims))


class GlobalCatAvgMaxPool(GlobalPool):
    """`[global_avg_pool, global_max_pool]` concatenated, timm's "catavgmax": `(N, 2C)`."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([global_avg_pool(x, keepdims=self.keepdims),
                                global_max_pool(x, keepdims=self.keepdims)], axis=-1)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        shape = super().output_shape(input_shape)
        return shape[:-1] + (2 * shape[-1],)


class SpatialPyramidPool(GlobalPool):
    """`spatial_pyramid_pool(x, levels, mode=)` (He et al. 2014):
    `(N, *spatial, C) -> (N, C * sum(l ** num_spatial for l in levels))`."""

    def __init__(self, levels: Sequence[int] = (1, 2, 4), *, mode: str = "max"):
        super().__init__()
        self.levels = frozen(levels)
        self.mode = mode
        # The function checks levels and mode before it computes anything: run its checks
        # on an abstract input now, so a bad argument fails when the module is built.
        self.output_shape((1, 1, 1))

    def __call__(self, x: jax.Array) -> jax.Array:
        return spatial_pyramid_pool(x, self.levels, mode=self.mode)

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        shape = self.spatial_input(input_shape)
        out = jax.eval_shape(lambda x: spatial_pyramid_pool(x, self.levels, mode=self.mode),
                             jax.ShapeDtypeStruct(shape, jnp.float32))
        return out.shape
