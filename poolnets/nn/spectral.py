"""Frequency-domain pooling layers over `poolnets.pooling.spectral`: `SpectralPool`
(Rippel et al. 2015, arXiv:1506.03767) and `WaveletPool` (Haar low-low band; Williams &
Li, ICLR 2018). No parameters; called as `module(x, train=...)` on `(*batch, *spatial, C)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from poolnets.nn.downsample import PoolGeometry
from poolnets.pooling.spectral import spectral_pool, wavelet_pool


class SpectralPool(nn.Module):
    """Crop the DFT to `output_size` (one entry per spatial dim, None keeps the dim; an int
    means every one of `x.ndim - 2` spatial dims)."""

    output_size: int | Sequence[int | None]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return spectral_pool(x, self.output_size)


class WaveletPool(nn.Module):
    """Haar approximation band after `levels` DWT levels: each level halves every spatial
    dim (`ceil(L / 2)`), block mean (or orthonormal scale)."""

    levels: int = 1
    orthonormal: bool = False
    spatial_dims: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return wavelet_pool(x, levels=self.levels, orthonormal=self.orthonormal,
                            spatial_dims=self.spatial_dims)


def wavelet_downsample(geometry: PoolGeometry, dtype: Any, name: str | None = None) -> nn.Module:
    """Registry "wavelet": `log2(stride)` Haar levels; needs one power-of-two stride on every
    spatial dim. Output `ceil(L / stride)` (register with `output_length=ceil_length`)."""
    del dtype
    strides = set(geometry.strides)
    stride = strides.pop()
    if strides or stride < 2 or stride & (stride - 1):
        raise ValueError(
            "wavelet downsampling halves every spatial dim per level and needs equal "
            f"power-of-two strides >= 2; got strides={geometry.strides}"
        )
    return WaveletPool(levels=int(math.log2(stride)), spatial_dims=geometry.spatial_dims,
                       name=name)
