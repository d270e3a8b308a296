"""Anti-aliased downsampling layers (Zhang, ICML 2019, arXiv:1904.11486) over
`poolnets.pooling.blur`: `BlurPool`, `MaxBlurPool` and `ConvBlurPool`.

Layers are called as `module(x, train=...)` on `(*batch, *spatial, C)`; the blur filter is
fixed (not a parameter). Formulas, padding and output lengths are in `pooling/blur.py`.
The `*_downsample` factories build the registry choices "blur" and "max_blur" from a
model's `PoolGeometry` (`poolnets.nn.registry`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from poolnets.nn.downsample import PoolGeometry
from poolnets.pooling.blur import blur_pool, conv_blur_pool, max_blur_pool

Shape = int | Sequence[int]


class BlurPool(nn.Module):
    """Binomial blur then subsample; replaces `AvgPool(k, s)` (Zhang's BlurPool)."""

    filter_size: Shape = 3
    stride: Shape = 2
    pad_mode: str = "reflect"
    spatial_dims: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return blur_pool(x, filter_size=self.filter_size, stride=self.stride,
                         pad_mode=self.pad_mode, spatial_dims=self.spatial_dims)


class MaxBlurPool(nn.Module):
    """Max over `window_shape` with stride 1, then `BlurPool`; replaces `MaxPool(k, s)`."""

    window_shape: Shape = 2
    filter_size: Shape = 3
    stride: Shape = 2
    padding: Any = 0
    pad_mode: str = "reflect"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        return max_blur_pool(x, self.window_shape, filter_size=self.filter_size,
                             stride=self.stride, padding=self.padding, pad_mode=self.pad_mode)


class ConvBlurPool(nn.Module):
    """Convolution with stride 1, activation, then `BlurPool`; replaces a strided conv.

    Parameters `kernel (*kernel_size, C_in, features)` and `bias (features,)`, named as in
    `flax.linen.Conv`. An int `kernel_size` means `x.ndim - 2` spatial dims.
    """

    features: int
    kernel_size: Shape = 3
    filter_size: Shape = 3
    stride: Shape = 2
    padding: Any = "SAME"
    pad_mode: str = "reflect"
    activation: Callable[[jax.Array], jax.Array] | None = nn.relu
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        window = ((self.kernel_size,) * (x.ndim - 2) if isinstance(self.kernel_size, int)
                  else tuple(self.kernel_size))
        kernel = self.param("kernel", self.kernel_init, (*window, x.shape[-1], self.features),
                            self.param_dtype)
        bias = (self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
                if self.use_bias else None)
        return conv_blur_pool(x, kernel, bias, padding=self.padding, activation=self.activation,
                              filter_size=self.filter_size, stride=self.stride,
                              pad_mode=self.pad_mode)


def blur_downsample(geometry: PoolGeometry, dtype: Any, name: str | None = None) -> nn.Module:
    """Registry "blur": `BlurPool` with the geometry's strides (window and padding unused);
    output `ceil(L / s)` (register with `output_length=ceil_length`)."""
    del dtype
    return BlurPool(stride=geometry.strides, spatial_dims=geometry.spatial_dims, name=name)


def max_blur_downsample(geometry: PoolGeometry, dtype: Any, name: str | None = None) -> nn.Module:
    """Registry "max_blur": `MaxBlurPool` with the geometry's window, padding and strides;
    its output length equals the strided max pool's (floor rule, see `max_blur_pool`)."""
    del dtype
    return MaxBlurPool(window_shape=geometry.window, stride=geometry.strides,
                       padding=geometry.padding, name=name)
