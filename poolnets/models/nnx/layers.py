"""Downsampling and head registries of the NNX zoo: a name maps to a builder that makes one
`poolnets.nnx` module (or one of the few model-only layers below) from the geometry of
the point where the model puts it. The name is resolved once, when the model is built;
calls run the module itself, never a lookup by string.

A model describes each downsampling point by a `Point` (window, stride, symmetric padding,
spatial rank, channels) and each head site by a `HeadSite` (channels and the final map's
spatial size at the model's `input_size`). Registering a choice is one builder:

    register_downsample("soft", lambda p: pnnx.SoftPool(p.window_shape, p.strides, p.pads))
    register_head("lse", lambda site: pnnx.GlobalLSEPool())

Every layer reports `output_spatial(input_spatial)` (the pool modules from
`poolnets.pooling.geometry`, the convolutions below from the same length rule); models
derive their minimum input size and feature-map sizes from it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

import poolnets.nnx as pnnx
from poolnets.pooling.geometry import output_length, resolve_padding
from poolnets.pooling.spectral import spectral_pool


@dataclasses.dataclass(frozen=True)
class Point:
    """One downsampling point: the same window, stride and padding in every spatial dim
    over `features` channels; `dtype`/`param_dtype`/`rngs` for layers with parameters."""

    window: int
    stride: int
    padding: int
    spatial_dims: int
    features: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    rngs: nnx.Rngs | None = None

    @property
    def window_shape(self) -> tuple[int, ...]:
        return (self.window,) * self.spatial_dims

    @property
    def strides(self) -> tuple[int, ...]:
        return (self.stride,) * self.spatial_dims

    @property
    def pads(self) -> tuple[tuple[int, int], ...]:
        return ((self.padding, self.padding),) * self.spatial_dims


@dataclasses.dataclass(frozen=True)
class HeadSite:
    """Where a head sits: the final feature map has `features` channels and, at the model's
    `input_size`, the spatial size `spatial`; `flatten_grid` is the adaptive-average grid a
    "flatten" head takes first (torchvision VGG's 7x7), None to flatten the map as it is."""

    features: int
    spatial: tuple[int, ...]
    flatten_grid: tuple[int, ...] | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    rngs: nnx.Rngs | None = None


DownsampleBuilder = Callable[[Point], nnx.Module]
HeadBuilder = Callable[[HeadSite], nnx.Module]
_DOWNSAMPLE: dict[str, DownsampleBuilder] = {}
_HEADS: dict[str, HeadBuilder] = {}


def closest(kind: str, name: Any, choices: Sequence[str]) -> str:
    """The error text for an unknown `name`: the choices and the closest match."""
    near = difflib.get_close_matches(str(name), list(choices), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"unknown {kind} {name!r}{hint} Choices: {sorted(choices)}"


def _register(table: dict, kind: str, name: str, builder: Callable | None):
    def add(fn: Callable) -> Callable:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind} name must be a non-empty str, got {name!r}")
        if name in table:
            raise ValueError(f"{kind} {name!r} is already registered")
        table[name] = fn
        return fn

    return add if builder is None else add(builder)


def register_downsample(name: str, builder: DownsampleBuilder | None = None):
    """Registers `builder(point) -> module` under `name` (returns a decorator without one).
    The module maps `(N, *spatial, C)` to `(N, *out, C)` and reports `output_spatial`."""
    return _register(_DOWNSAMPLE, "downsample", name, builder)


def register_head(name: str, builder: HeadBuilder | None = None):
    """Registers `builder(site) -> module` mapping `(N, *spatial, C)` to `(N, D)`, with
    `output_shape(input_shape)` (returns a decorator without one)."""
    return _register(_HEADS, "head", name, builder)


def downsample_names() -> list[str]:
    """Sorted names accepted by `downsample=`."""
    return sorted(_DOWNSAMPLE)


def head_names() -> list[str]:
    """Sorted names accepted by `head=`."""
    return sorted(_HEADS)


def check_downsample(name: Any) -> str:
    if not isinstance(name, str) or name not in _DOWNSAMPLE:
        raise ValueError(closest("downsample", name, _DOWNSAMPLE))
    return name


def check_head(name: Any) -> str:
    if not isinstance(name, str) or name not in _HEADS:
        raise ValueError(closest("head", name, _HEADS))
    return name


def make_downsample(name: str, point: Point) -> nnx.Module:
    """The registered layer `name` for one downsampling point."""
    return _DOWNSAMPLE[check_downsample(name)](point)


def make_head(name: str, site: HeadSite) -> nnx.Module:
    """The registered head `name` for one head site."""
    return _HEADS[check_head(name)](site)


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """A convolution's geometry at one input size, one entry per spatial dim (padding as
    resolved `(low, high)` pairs): what its output length and receptive field follow."""

    window: tuple[int, ...]
    strides: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]


def conv_geometry(conv: nnx.Conv, spatial: Sequence[int]) -> ConvGeometry:
    """`conv`'s window, strides, dilation and padding resolved for input size `spatial`."""
    n = len(spatial)
    window = tuple(conv.kernel_size)
    strides = conv.strides if isinstance(conv.strides, Sequence) else (conv.strides,) * n
    dilation = conv.kernel_dilation
    dilation = dilation if isinstance(dilation, Sequence) else (dilation,) * n
    eff = tuple(d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True))
    pads = resolve_padding(conv.padding, spatial, eff, strides)
    return ConvGeometry(window, tuple(strides), tuple(dilation), tuple(map(tuple, pads)))


def conv_spatial(conv: nnx.Conv, spatial: Sequence[int]) -> tuple[int, ...]:
    """Output spatial size of `conv` (its window, strides, padding and dilation) by the
    length rule of `poolnets.pooling.geometry`; an entry below 1 means too small."""
    g = conv_geometry(conv, spatial)
    return tuple(output_length(length, d * (k - 1) + 1, s, lo, hi, False)
                 for length, k, d, s, (lo, hi)
                 in zip(spatial, g.window, g.dilation, g.strides, g.pads, strict=True))


def make_batch_norm(features: int, *, dtype: Any, param_dtype: Any) -> nnx.BatchNorm:
    """The zoo's BatchNorm (momentum 0.9, epsilon 1e-5, as the Linen models and torch).

    Its initial values are constants (scale 1, bias 0), yet `nnx.BatchNorm` draws two keys
    from the `rngs` it gets. Under tracing (`nnx.eval_shape`, `jit`) Flax 0.12.8 reads the
    `.sharding` of each new traced RNG count, and JAX builds that attribute error's text by
    walking the whole trace: quadratic in depth, 60% of resnet152's abstract build. So the
    norm gets a private stream evaluated eagerly, and draws nothing from the model's.
    """
    with jax.ensure_compile_time_eval():
        return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, dtype=dtype,
                             param_dtype=param_dtype, rngs=nnx.Rngs(0))


class StridedConv(nnx.Module):
    """All-CNN style learned downsampling (Springenberg et al. 2014, arXiv:1412.6806): a
    convolution with the point's window, stride and padding keeping the channel count,
    then ReLU (the activation the zoo's models use after their convolutions)."""

    def __init__(self, point: Point):
        c = point.features
        self.conv = nnx.Conv(c, c, point.window_shape, point.strides, padding=point.pads,
                             dtype=point.dtype, param_dtype=point.param_dtype, rngs=point.rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.conv(x))

    def output_spatial(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return conv_spatial(self.conv, spatial)


class Identity(nnx.Module):
    """The "none" choice: keeps the resolution."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x

    def output_spatial(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return tuple(spatial)


class Subsample(nnx.Module):
    """LeNet-5 subsampling (LeCun et al. 1998, section II-B): `coef[c] * mean(window) +
    bias[c]`, two float32 parameters per map. The paper adds the four inputs; the mean
    differs by the constant 1/4 that `coef` absorbs. The squashing belongs to the model."""

    def __init__(self, point: Point):
        self.pool = pnnx.AvgPool(point.window_shape, point.strides, point.pads)
        self.coef = nnx.Param(jnp.ones((point.features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((point.features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.pool(x) * self.coef[...].astype(x.dtype) + self.bias[...].astype(x.dtype)

    def output_spatial(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return self.pool.output_spatial(spatial)


class StridedSpectralPool(nnx.Module):
    """Spectral pooling standing in for a stride-`s` layer: `pooling.spectral_pool` to
    `ceil(L / s)` per spatial dim of whatever input arrives (`pnnx.SpectralPool` fixes its
    output size when built, which would fix the model's input size)."""

    def __init__(self, strides: tuple[int, ...]):
        self.strides = strides

    def output_spatial(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return tuple(-(-n // s) for n, s in zip(spatial, self.strides, strict=True))

    def __call__(self, x: jax.Array) -> jax.Array:
        return spectral_pool(x, self.output_spatial(x.shape[-1 - len(self.strides):-1]))


class Flatten(nnx.Module):
    """Flatten head (LeNet, VGG): `(N, *spatial, C) -> (N, prod(spatial) * C)` in
    channels-last order, after an adaptive average pool to `grid` when given (torchvision
    VGG's 7x7 `avgpool`, which frees the classifier from the input size)."""

    def __init__(self, grid: tuple[int, ...] | None):
        self.grid = grid
        self.pool = None if grid is None else pnnx.AdaptiveAvgPool(grid)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.pool is not None:
            x = self.pool(x)
        # An explicit width: reshape(N, -1) cannot infer it for an empty batch (0 / 0).
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        spatial = self.grid if self.grid is not None else tuple(input_shape[1:-1])
        return (input_shape[0], math.prod(spatial) * input_shape[-1])


def _wavelet(point: Point) -> nnx.Module:
    """`log2(stride)` Haar levels; the stride must be a power of two >= 2."""
    s = point.stride
    if s < 2 or s & (s - 1):
        raise ValueError(f"downsample 'wavelet' halves every spatial dim per level and needs a "
                         f"power-of-two stride >= 2; this point has stride {s}")
    return pnnx.WaveletPool(levels=int(math.log2(s)), spatial_dims=point.spatial_dims)


def _windowed(cls: type, **kwargs: Any) -> DownsampleBuilder:
    return lambda p: cls(p.window_shape, p.strides, p.pads, **kwargs)


# Built-in downsampling choices.
register_downsample("max", _windowed(pnnx.MaxPool))
register_downsample("avg", _windowed(pnnx.AvgPool))
register_downsample("lp", _windowed(pnnx.LPPool, p=2.0))
register_downsample("strided_conv", StridedConv)
register_downsample("none", lambda p: Identity())
register_downsample("subsample", Subsample)
register_downsample("stochastic", lambda p: pnnx.StochasticPool(
    p.window_shape, p.strides, p.pads, rngs=p.rngs))
register_downsample("gem", _windowed(pnnx.GeMPool))  # learnable p (Radenovic et al. 2018)
register_downsample("lse", _windowed(pnnx.LSEPool, r=1.0))
register_downsample("soft", _windowed(pnnx.SoftPool))
register_downsample("median", _windowed(pnnx.MedianPool))
register_downsample("blur", lambda p: pnnx.BlurPool(stride=p.strides,
                                                    spatial_dims=p.spatial_dims))  # Zhang 2019
register_downsample("max_blur", lambda p: pnnx.MaxBlurPool(p.window_shape, stride=p.strides,
                                                           padding=p.pads))
register_downsample("spectral", lambda p: StridedSpectralPool(p.strides))
register_downsample("wavelet", _wavelet)  # Haar LL band
register_downsample("mixed", _windowed(pnnx.MixedPool))  # learned alpha (Lee et al. 2016)
register_downsample("mixed_random", lambda p: pnnx.RandomMixedPool(
    p.window_shape, p.strides, p.pads, rngs=p.rngs))  # Yu et al. 2014
register_downsample("gated", lambda p: pnnx.GatedPool(
    p.features, p.window_shape, p.strides, p.pads, rngs=p.rngs))
register_downsample("tree", lambda p: pnnx.TreePool(
    p.features, p.window_shape, p.strides, p.pads, rngs=p.rngs))
register_downsample("lip", lambda p: pnnx.LIPPool(
    p.features, p.window_shape, p.strides, p.pads, dtype=p.dtype, rngs=p.rngs))
# Graham's FMP sqrt(2) at each stride-2 point: a ratio of exactly 2 would leave every
# increment equal to 2 on even lengths, i.e. plain 2x2 max pooling with nothing random.
register_downsample("fractional", lambda p: pnnx.FractionalMaxPool(
    ratio=tuple(s ** 0.5 for s in p.strides), spatial_dims=p.spatial_dims, rngs=p.rngs))

# Built-in heads.
register_head("avg", lambda s: pnnx.GlobalAvgPool())
register_head("max", lambda s: pnnx.GlobalMaxPool())
register_head("avgmax", lambda s: pnnx.GlobalAvgMaxPool())
register_head("catavgmax", lambda s: pnnx.GlobalCatAvgMaxPool())
register_head("spp", lambda s: pnnx.SpatialPyramidPool((1, 2, 4), mode="max"))
register_head("flatten", lambda s: Flatten(s.flatten_grid))
register_head("gem", lambda s: pnnx.GlobalGeMPool())  # learnable p
register_head("lse", lambda s: pnnx.GlobalLSEPool(r=1.0))
register_head("soft", lambda s: pnnx.GlobalSoftPool())
register_head("attention", lambda s: pnnx.AttentionPool(
    s.features, s.spatial, param_dtype=s.param_dtype, rngs=s.rngs))  # CLIP, N-d
register_head("map", lambda s: pnnx.MAPHead(
    s.features, param_dtype=s.param_dtype, rngs=s.rngs))  # big_vision MAPHead
