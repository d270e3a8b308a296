"""NNX modules for the filtering pools: anti-aliased downsampling over
`poolnets.pooling.blur` (Zhang, ICML 2019: `BlurPool`, `MaxBlurPool`, `AvgBlurPool`,
`ConvBlurPool`) and frequency-domain pooling over `poolnets.pooling.spectral`
(`SpectralPool`, Rippel et al. 2015; `WaveletPool`, Haar low-low band, Williams & Li 2018).

Arguments are the functions' (keyword-only where theirs are); the blur filter is fixed,
only `ConvBlurPool` has parameters. Output shapes come from the functions themselves,
evaluated abstractly, and bad arguments fail when the module is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.nnx._base import (
    PROBE_LENGTH,
    Pool,
    Shape,
    abstract_shape,
    check_bool,
    check_in_features,
    check_spatial_dims,
    frozen,
    rank_hint,
)
from poolnets.pooling.blur import avg_blur_pool, blur_pool, conv_blur_pool, max_blur_pool
from poolnets.pooling.geometry import IntOrSeq, Padding, normalize_tuple
from poolnets.pooling.spectral import spectral_pool, wavelet_pool

LECUN_NORMAL = nnx.initializers.lecun_normal()  # flax.linen.Conv's default kernel init


class _Abstract(Pool):
    """Output shape from the wrapped function; arguments checked on a probe input of
    `rank` long spatial dims when built."""

    def check_arguments(self, rank: int) -> None:
        self.output_shape((1,) + (PROBE_LENGTH,) * rank + (self.in_features or 1,))

    def output_shape(self, input_shape: Sequence[int]) -> Shape:
        self.check_input(input_shape)
        return abstract_shape(self.__call__, input_shape)


class BlurPool(_Abstract):
    """`blur_pool(x, filter_size=, stride=, pad_mode=, spatial_dims=)`: binomial blur then
    subsample, Zhang's replacement for `AvgPool(k, s)`; output `ceil(L / stride)`."""

    def __init__(self, *, filter_size: IntOrSeq = 3, stride: IntOrSeq = 2,
                 pad_mode: str = "reflect", spatial_dims: int | None = None):
        self.filter_size, self.stride = frozen(filter_size), frozen(stride)
        self.pad_mode, self.spatial_dims = pad_mode, spatial_dims
        self.check_arguments(spatial_dims or rank_hint(filter_size, stride))

    def __call__(self, x: jax.Array) -> jax.Array:
        return blur_pool(x, filter_size=self.filter_size, stride=self.stride,
                         pad_mode=self.pad_mode, spatial_dims=self.spatial_dims)


class _DenseBlur(_Abstract):
    def __init__(self, window_shape: IntOrSeq = 2, *, filter_size: IntOrSeq = 3,
                 stride: IntOrSeq = 2, padding: Padding = 0, pad_mode: str = "reflect"):
        self.window_shape, self.filter_size = frozen(window_shape), frozen(filter_size)
        self.stride, self.padding, self.pad_mode = frozen(stride), frozen(padding), pad_mode
        self.check_arguments(rank_hint(window_shape, filter_size, stride, padding))

    def kwargs(self) -> dict[str, Any]:
        return dict(filter_size=self.filter_size, stride=self.stride, padding=self.padding,
                    pad_mode=self.pad_mode)


class MaxBlurPool(_DenseBlur):
    """`max_blur_pool(x, window_shape, filter_size=, stride=, padding=, pad_mode=)`: max
    with stride 1, then `BlurPool`; replaces `MaxPool(k, s)` at the same output length."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_blur_pool(x, self.window_shape, **self.kwargs())


class AvgBlurPool(_DenseBlur):
    """`avg_blur_pool(x, window_shape, filter_size=, stride=, padding=, pad_mode=)`:
    average with stride 1, then `BlurPool`."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return avg_blur_pool(x, self.window_shape, **self.kwargs())


class ConvBlurPool(_Abstract):
    """`conv_blur_pool`: convolution with stride 1, activation, then `BlurPool`; Zhang's
    replacement for a strided convolution. Parameters `kernel` `(*kernel_size,
    in_features, out_features)` (`kernel_init`) and `bias` `(out_features,)` (zeros), as
    `flax.linen.Conv`'s. An int `kernel_size` needs `spatial_dims`."""

    def __init__(self, in_features: int, out_features: int, kernel_size: IntOrSeq = 3, *,
                 filter_size: IntOrSeq = 3, stride: IntOrSeq = 2, padding: Padding = "SAME",
                 pad_mode: str = "reflect",
                 activation: Callable[[jax.Array], jax.Array] | None = nnx.relu,
                 use_bias: bool = True, kernel_init: Callable = LECUN_NORMAL,
                 param_dtype: Any = jnp.float32, spatial_dims: int | None = None,
                 rngs: nnx.Rngs):
        self.in_features = check_in_features(in_features)
        self.out_features = check_in_features(out_features, name="out_features")
        n = check_spatial_dims(spatial_dims) or rank_hint(kernel_size)
        if not isinstance(kernel_size, Sequence) and spatial_dims is None:
            raise ValueError(f"ConvBlurPool: an int kernel_size={kernel_size!r} needs "
                             "spatial_dims= (the kernel's rank)")
        window = normalize_tuple(kernel_size, n, "kernel_size")
        self.filter_size, self.stride = frozen(filter_size), frozen(stride)
        self.padding, self.pad_mode, self.activation = frozen(padding), pad_mode, activation
        self.use_bias = check_bool("use_bias", use_bias)
        shape = (*window, self.in_features, self.out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
        if use_bias:
            self.bias = nnx.Param(jnp.zeros((self.out_features,), param_dtype))
        self.check_arguments(len(window))

    def __call__(self, x: jax.Array) -> jax.Array:
        self.check_input(jnp.shape(x))
        return conv_blur_pool(x, self.kernel[...], self.bias[...] if self.use_bias else None,
                              padding=self.padding, activation=self.activation,
                              filter_size=self.filter_size, stride=self.stride,
                              pad_mode=self.pad_mode)


class SpectralPool(_Abstract):
    """`spectral_pool(x, output_size)`: crop the DFT to `output_size` (one entry per spatial
    dim, None keeps the dim; an int means every one of `x.ndim - 2` spatial dims)."""

    def __init__(self, output_size: int | Sequence[int | None]):
        self.output_size = frozen(output_size)
        self.check_arguments(rank_hint(output_size))

    def __call__(self, x: jax.Array) -> jax.Array:
        return spectral_pool(x, self.output_size)


class WaveletPool(_Abstract):
    """`wavelet_pool(x, levels=, orthonormal=, spatial_dims=)`: the Haar approximation band
    after `levels` DWT levels, each halving every spatial dim (`ceil(L / 2)`)."""

    def __init__(self, *, levels: int = 1, orthonormal: bool = False,
                 spatial_dims: int | None = None):
        self.levels, self.orthonormal, self.spatial_dims = levels, orthonormal, spatial_dims
        self.check_arguments(spatial_dims or 1)

    def __call__(self, x: jax.Array) -> jax.Array:
        return wavelet_pool(x, levels=self.levels, orthonormal=self.orthonormal,
                            spatial_dims=self.spatial_dims)
