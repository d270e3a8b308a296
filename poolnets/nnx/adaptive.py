"""NNX modules for the adaptive pools of `poolnets.pooling.adaptive`: `AdaptiveAvgPool` and
`AdaptiveMaxPool`, `(*batch, *spatial, C) -> (*batch, *output_size, C)` with PyTorch's
bins. `output_size` has one entry per spatial dim (None keeps that dim); an int means
every one of `x.ndim - 2` spatial dims.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from poolnets.nnx._base import PROBE_LENGTH, Pool, Shape, check_bool, check_shape, frozen
from poolnets.pooling.adaptive import (
    OutputSize,
    adaptive_avg_pool,
    adaptive_max_pool,
    resolve_output_size,
)


class _Adaptive(Pool):
    def __init__(self, output_size: OutputSize):
        self.output_size = frozen(output_size)
        rank = len(output_size) if isinstance(output_size, Sequence) else 1
        self.output_shape((1,) + (PROBE_LENGTH,) * rank + (1,))

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        shape = check_shape("input shape", input_shape)
        size = resolve_output_size(type(self).__name__, shape, self.output_size)
        return shape[: len(shape) - 1 - len(size)] + size + shape[-1:]

    def output_spatial(self, input_spatial: Sequence[int]) -> Shape:
        spatial = check_shape("input_spatial", input_spatial)
        if isinstance(self.output_size, tuple) and len(spatial) != len(self.output_size):
            raise ValueError(f"{type(self).__name__} has output_size={self.output_size!r} for "
                             f"{len(self.output_size)} spatial dims; got input_spatial={spatial}")
        return super().output_spatial(spatial)


class AdaptiveAvgPool(_Adaptive):
    """`adaptive_avg_pool(x, output_size)`."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return adaptive_avg_pool(x, self.output_size)


class AdaptiveMaxPool(_Adaptive):
    """`adaptive_max_pool(x, output_size, return_indices=)` (indices: int32, flat into the
    input's spatial dims, as torch's)."""

    def __init__(self, output_size: OutputSize, *, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = check_bool("return_indices", return_indices)

    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
        return adaptive_max_pool(x, self.output_size, return_indices=self.return_indices)
