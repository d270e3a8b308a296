"""Registries of downsampling layers and global heads, timm style.

A model names each of its downsampling points by geometry (`PoolGeometry`: window, stride,
padding, channels) and asks the registry for a layer; `downsample="avg"` thus swaps VGG's
2x2/2 max pools and ResNet's 3x3/2 pad-1 stem pool alike. Registering a choice is one line:

    register_downsample("soft", windowed("soft_pool"))            # a pure pool by name
    register_downsample("stochastic", windowed("stochastic_pool", random=True))
    register_head("lse", global_pool("global_lse_pool"))

or, for a layer with its own parameters, a decorated factory
`(geometry, dtype, name) -> flax module` whose module is called as `module(x, train=...)`.
`output_length(n, window, stride, (lo, hi))` tells models the output length of an entry so
that they can reject too-small inputs before tracing; it defaults to the floor-mode rule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from poolnets.nn.antialias import blur_downsample, max_blur_downsample
from poolnets.nn.attention_pool import attention_head, map_head
from poolnets.nn.downsample import (
    Identity,
    PoolGeometry,
    ResizingPool,
    StridedConv,
    TrainableSubsample,
    WindowedPool,
    ceil_length,
    pooled_length,
    same_length,
)
from poolnets.nn.heads import (
    AvgMax,
    CatAvgMax,
    Flatten,
    HeadSpec,
    NamedGlobalPool,
    SpatialPyramid,
)
from poolnets.nn.research import (
    GatedPool,
    GeMPool,
    GlobalGeMPool,
    LIPPool,
    MixedPool,
    TreePool,
    fractional_factory,
    from_geometry,
    ratio_length,
)
from poolnets.nn.spectral import wavelet_downsample

DownsampleFactory = Callable[[PoolGeometry, Any, str | None], nn.Module]
HeadFactory = Callable[[HeadSpec, str | None], nn.Module]
LengthRule = Callable[[int, int, int, tuple[int, int]], int]


@dataclasses.dataclass(frozen=True)
class DownsampleEntry:
    factory: DownsampleFactory
    output_length: LengthRule = pooled_length


_DOWNSAMPLE: dict[str, DownsampleEntry] = {}
_HEADS: dict[str, HeadFactory] = {}


def _check_new(name: str, table: dict, kind: str) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{kind} name must be a non-empty str, got {name!r}")
    if name in table:
        raise ValueError(f"{kind} {name!r} is already registered")


def register_downsample(
    name: str,
    factory: DownsampleFactory | None = None,
    *,
    output_length: LengthRule = pooled_length,
):
    """Registers `factory(geometry, dtype, name) -> module` under `name`.

    Called with a factory it registers it and returns it; without, it returns a decorator.
    """

    def add(fn: DownsampleFactory) -> DownsampleFactory:
        _check_new(name, _DOWNSAMPLE, "downsample")
        _DOWNSAMPLE[name] = DownsampleEntry(fn, output_length)
        return fn

    return add if factory is None else add(factory)


def register_head(name: str, factory: HeadFactory | None = None):
    """Registers `factory(spec, name) -> module` mapping `(N, *spatial, C)` to `(N, D)`."""

    def add(fn: HeadFactory) -> HeadFactory:
        _check_new(name, _HEADS, "head")
        _HEADS[name] = fn
        return fn

    return add if factory is None else add(factory)


def windowed(fn_name: str, *, random: bool = False, **kwargs: Any) -> DownsampleFactory:
    """Factory for `poolnets.pooling.<fn_name>(x, window_shape, strides, padding, **kwargs)`.

    random=True: the pool takes `key=`, drawn from the "pool" RNG stream in training.
    """
    frozen = tuple(sorted(kwargs.items()))

    def factory(geometry: PoolGeometry, dtype: Any, name: str | None = None) -> nn.Module:
        del dtype  # pools keep their input's dtype
        return WindowedPool(fn_name, geometry, frozen, random, name=name)

    return factory


def resized(fn_name: str, *, random: bool = False, **kwargs: Any) -> DownsampleFactory:
    """Factory for `poolnets.pooling.<fn_name>(x, output_size, **kwargs)`, output_size =
    ceil(L / stride) per dim; register it with `output_length=ceil_length`."""
    frozen = tuple(sorted(kwargs.items()))

    def factory(geometry: PoolGeometry, dtype: Any, name: str | None = None) -> nn.Module:
        del dtype
        return ResizingPool(fn_name, geometry, frozen, random, name=name)

    return factory


def global_pool(fn_name: str) -> HeadFactory:
    """Head factory for a global pool `poolnets.pooling.<fn_name>(x) -> (N, C)`."""

    def factory(spec: HeadSpec, name: str | None = None) -> nn.Module:
        del spec
        return NamedGlobalPool(fn_name, name=name)

    return factory


def downsample_names() -> list[str]:
    """Sorted names accepted by `downsample=`."""
    return sorted(_DOWNSAMPLE)


def head_names() -> list[str]:
    """Sorted names accepted by `head=`."""
    return sorted(_HEADS)


def check_downsample(name: str) -> DownsampleEntry:
    """The entry for `name`, or ValueError listing the choices."""
    if not isinstance(name, str) or name not in _DOWNSAMPLE:
        raise ValueError(f"unknown downsample {name!r}; choices: {downsample_names()}")
    return _DOWNSAMPLE[name]


def check_head(name: str) -> HeadFactory:
    """The factory for `name`, or ValueError listing the choices."""
    if not isinstance(name, str) or name not in _HEADS:
        raise ValueError(f"unknown head {name!r}; choices: {head_names()}")
    return _HEADS[name]


def make_downsample(
    name: str, geometry: PoolGeometry, *, dtype: Any, module_name: str | None = None
) -> nn.Module:
    """The registered layer `name` for one downsampling point."""
    return check_downsample(name).factory(geometry, dtype, module_name)


def make_head(name: str, spec: HeadSpec, *, module_name: str | None = None) -> nn.Module:
    """The registered head `name`."""
    return check_head(name)(spec, module_name)


def blur_length(n: int, window: int, stride: int, padding: tuple[int, int]) -> int:
    """ceil(n / stride); 0 (too small) when n < 2, where the 3-tap blur's reflect padding
    of 1 is impossible (as torch's ReflectionPad in antialiased-cnns)."""
    return ceil_length(n, window, stride, padding) if n >= 2 else 0


def max_blur_length(n: int, window: int, stride: int, padding: tuple[int, int]) -> int:
    """The strided max pool's length; 0 when the stride-1 max leaves fewer than 2 samples
    for the blur's reflect padding."""
    dense = n + sum(padding) - window + 1
    return pooled_length(n, window, stride, padding) if dense >= 2 else 0


# Built-in downsampling choices.
register_downsample("max", windowed("max_pool"))
register_downsample("avg", windowed("avg_pool"))
register_downsample("lp", windowed("lp_pool", p=2.0))
register_downsample("strided_conv", lambda g, dtype, name=None: StridedConv(g, dtype, name=name))
register_downsample(
    "none", lambda g, dtype, name=None: Identity(name=name), output_length=same_length
)
register_downsample(
    "subsample", lambda g, dtype, name=None: TrainableSubsample(g, dtype, name=name)
)
# Research pools: one `register_downsample("<name>", windowed("<fn>_pool"))` line each.
register_downsample("stochastic", windowed("stochastic_pool", random=True))
register_downsample("gem", from_geometry(GeMPool))  # learnable p (Radenovic et al. 2018)
register_downsample("lse", windowed("lse_pool", r=1.0))
register_downsample("soft", windowed("soft_pool"))
register_downsample("median", windowed("median_pool"))
register_downsample("blur", blur_downsample, output_length=blur_length)  # Zhang 2019
register_downsample("max_blur", max_blur_downsample, output_length=max_blur_length)
register_downsample("spectral", resized("spectral_pool"), output_length=ceil_length)
register_downsample("wavelet", wavelet_downsample, output_length=ceil_length)  # Haar LL
register_downsample("mixed", from_geometry(MixedPool))  # learned alpha (Lee et al. 2016)
register_downsample("mixed_random", from_geometry(MixedPool, random=True))  # Yu et al. 2014
register_downsample("gated", from_geometry(GatedPool))
register_downsample("tree", from_geometry(TreePool))
register_downsample("lip", from_geometry(LIPPool))
# Graham's FMP sqrt(2) at each stride-2 point: a ratio of exactly 2 would leave every
# increment equal to 2 on even lengths, i.e. plain 2x2 max pooling with nothing random.
register_downsample("fractional", fractional_factory(), output_length=ratio_length())

# Built-in heads.
register_head("avg", global_pool("global_avg_pool"))
register_head("max", global_pool("global_max_pool"))
register_head("avgmax", lambda spec, name=None: AvgMax(name=name))
register_head("catavgmax", lambda spec, name=None: CatAvgMax(name=name))
register_head("spp", lambda spec, name=None: SpatialPyramid(name=name))
register_head("flatten", lambda spec, name=None: Flatten(spec.flatten_size, name=name))
# Research heads: one `register_head("<name>", global_pool("global_<fn>_pool"))` line each.
register_head("gem", lambda spec, name=None: GlobalGeMPool(name=name))  # learnable p
register_head("lse", global_pool("global_lse_pool"))
register_head("soft", global_pool("global_soft_pool"))
register_head("attention", attention_head)  # CLIP AttentionPool2d, N-d
register_head("map", map_head)  # multi-head attention probe (big_vision MAPHead)
