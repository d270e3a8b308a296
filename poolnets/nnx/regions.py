"""NNX modules for the region pools of `poolnets.pooling.roi`, exactly as torchvision's:
`RoIPool` (Girshick 2015) and `RoIAlign` (He et al. 2017). Called as
`module(features, boxes)` with features `(N, H, W, C)` and boxes `(K, 5)` rows
`(batch_index, x1, y1, x2, y2)`; they return `(K, *output_size, C)`. No parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from poolnets.nnx._base import Pool, Shape, check_shape, frozen
from poolnets.pooling.roi import roi_align, roi_pool


class _Region(Pool):
    def __init__(self, output_size: int | Sequence[int]):
        self.output_size = frozen(output_size)

    def output_shape(self, input_shape: Sequence[int], num_boxes: int = 1) -> Shape:
        """Result shape for features of `input_shape` and `num_boxes` boxes."""
        shape = check_shape("input shape", input_shape)
        # Concrete boxes (the function reads their values for its sample grid); any
        # box gives the same shape.
        boxes = np.zeros((num_boxes, 5), np.float32)
        return jax.eval_shape(lambda f: self(f, boxes),
                              jax.ShapeDtypeStruct(shape, jnp.float32)).shape


class RoIPool(_Region):
    """`roi_pool(features, boxes, output_size, spatial_scale=)`: the max over each bin."""

    def __init__(self, output_size: int | Sequence[int], *, spatial_scale: float = 1.0):
        super().__init__(output_size)
        self.spatial_scale = spatial_scale
        self.output_shape((1, 1, 1, 1))  # the function's argument checks, when built

    def __call__(self, features: jax.Array, boxes: jax.Array) -> jax.Array:
        return roi_pool(features, boxes, self.output_size, spatial_scale=self.spatial_scale)


class RoIAlign(_Region):
    """`roi_align(features, boxes, output_size, spatial_scale=, sampling_ratio=, aligned=,
    max_sampling_ratio=)`: the mean of bilinear samples per bin (`max_sampling_ratio`
    bounds the adaptive grid when the boxes are traced)."""

    def __init__(self, output_size: int | Sequence[int], *, spatial_scale: float = 1.0,
                 sampling_ratio: int = -1, aligned: bool = False,
                 max_sampling_ratio: int | None = None):
        super().__init__(output_size)
        self.spatial_scale, self.sampling_ratio = spatial_scale, sampling_ratio
        self.aligned, self.max_sampling_ratio = aligned, max_sampling_ratio
        self.output_shape((1, 1, 1, 1))  # the function's argument checks, when built

    def __call__(self, features: jax.Array, boxes: jax.Array) -> jax.Array:
        return roi_align(features, boxes, self.output_size, spatial_scale=self.spatial_scale,
                         sampling_ratio=self.sampling_ratio, aligned=self.aligned,
                         max_sampling_ratio=self.max_sampling_ratio)
