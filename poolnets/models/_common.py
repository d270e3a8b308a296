"""Shape rules and argument checks shared by the model families.

Every model describes its resolution-changing layers as a chain of `Step`s (window, stride,
padding, length rule) once; `check_input` runs the chain on the input's static shape and
raises a ValueError naming the minimum input size before anything is traced, and
`check_head_width` names the input size that a flatten head's parameters were made for.
None of the checks reads the batch dim, which may be symbolic (`jax.export`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from poolnets.nn.downsample import PoolGeometry, pooled_length
from poolnets.nn.registry import LengthRule, check_downsample, check_head


@dataclasses.dataclass(frozen=True)
class Step:
    """One resolution-changing layer, identical in every spatial dim."""

    window: int
    stride: int
    padding: tuple[int, int]
    rule: LengthRule = pooled_length

    def __call__(self, n: int) -> int:
        return self.rule(n, self.window, self.stride, self.padding)


def conv_step(window: int, stride: int = 1, padding: int = 0) -> Step:
    return Step(window, stride, (padding, padding))


def pool_step(downsample: str, window: int, stride: int, padding: int = 0) -> Step:
    """A downsampling point; its length rule comes from the registry entry."""
    return Step(window, stride, (padding, padding), check_downsample(downsample).output_length)


def _final_length(n: int, chain: Sequence[Step]) -> int:
    for step in chain:
        n = step(n)
        if n < 1:
            return n
    return n


def minimum_input_size(chain: Sequence[Step], limit: int = 1 << 16, final: int = 1) -> int:
    """Smallest spatial length whose final length through `chain` is at least `final`
    (default: that every step accepts; lengths are monotone in n)."""
    lo, hi = 1, limit
    if _final_length(hi, chain) < final:
        raise ValueError(f"no input length up to {limit} fits this model")
    while lo < hi:
        mid = (lo + hi) // 2
        if _final_length(mid, chain) >= final:
            hi = mid
        else:
            lo = mid + 1
    return lo


def check_input(x: Any, *, model: str, spatial_dims: int, chain: Sequence[Step]) -> None:
    """Rank and size checks on `x: (N, *spatial, C)`, with errors naming the minimum size."""
    shape = tuple(x.shape)
    if len(shape) != spatial_dims + 2:
        raise ValueError(
            f"{model}: input must have shape (N, *spatial, C) with {spatial_dims} spatial "
            f"dims (spatial_dims={spatial_dims}), got shape {shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{model}: input must be floating point, got dtype {x.dtype}")
    spatial = shape[1:-1]
    if any(_final_length(n, chain) < 1 for n in spatial):
        need = minimum_input_size(chain)
        raise ValueError(
            f"{model}: input spatial size {spatial} is too small for its downsampling; the "
            f"minimum is {need} in every spatial dim"
        )


def check_head_width(
    module: nn.Module, features: Any, *, layer: str, model: str, chain: Sequence[Step],
    input_shape: Sequence[int], plain_flatten: bool,
) -> None:
    """When parameters exist, the head's output width `features.shape[-1]` must be the
    input width of the dense `layer` that follows it. A plain flatten head's width grows
    with the input's spatial size, so its parameters fix that size: the error then names
    the sizes they fit (Flax's own error would be a kernel shape mismatch)."""
    params = module.variables.get("params", {})
    if layer not in params:
        return
    expected, got = params[layer]["kernel"].shape[0], features.shape[-1]
    if expected == got:
        return
    spatial = tuple(input_shape[1:-1])
    message = (f"{model}: the head gives {got} features for input spatial size {spatial}, "
               f"but the parameters' {layer!r} layer takes {expected}")
    if plain_flatten:
        message += (f"; a flatten head fixes the input size: these parameters fit inputs of "
                    f"{_flatten_fit(chain, spatial, got, expected)}, the size they were "
                    "initialised at (or use a global head, e.g. head='avg')")
    raise ValueError(message)


def _flatten_fit(chain: Sequence[Step], spatial: tuple[int, ...], got: int, expected: int) -> str:
    """Input sizes whose flattened final map has `expected` features, read from the
    channel count that `got` implies (`got = prod(final map) * channels`)."""
    channels = got // math.prod(_final_length(n, chain) for n in spatial)
    cells = expected / channels
    side = round(cells ** (1 / len(spatial)))
    if side < 1 or side ** len(spatial) != cells:
        return f"a final map of {cells:g} cells (a non-cubic input)"
    lo = minimum_input_size(chain, final=side)
    hi = minimum_input_size(chain, final=side + 1) - 1
    per_dim = f"{lo}" if lo == hi else f"{lo} to {hi}"
    return f"{per_dim} per spatial dim (final map {'x'.join([str(side)] * len(spatial))})"


# Compute/parameter dtypes the models accept. float64 computes in float64 only under
# `jax_enable_x64` (otherwise JAX falls back to float32 with a warning).
FLOAT_DTYPES = ("float32", "bfloat16", "float16", "float64")


def check_float_dtype(model: str, name: str, value: Any) -> np.dtype:
    """`value` as a NumPy dtype among `FLOAT_DTYPES`, else a ValueError naming `name` (an
    integer or float8 dtype would otherwise fail deep inside Flax at `init`)."""
    try:
        dtype = None if value is None else np.dtype(value)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.name not in FLOAT_DTYPES:
        raise ValueError(
            f"{model}: {name} must be a floating dtype, one of {list(FLOAT_DTYPES)}; got "
            f"{name}={value!r}"
        )
    return dtype


def check_config(
    model: str, *, num_classes: int, downsample: str, head: str, spatial_dims: int,
    dtype: Any, width: float = 1.0,
) -> None:
    """Argument checks common to all families (names are resolved, i.e. not None)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"{model}: num_classes must be a positive int, got {num_classes!r}")
    check_float_dtype(model, "dtype", dtype)
    check_downsample(downsample)
    check_head(head)
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"{model}: spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    if isinstance(width, bool) or not isinstance(width, int | float) or not width > 0:
        raise ValueError(f"{model}: width must be a positive number, got {width!r}")


def check_channels(module: nn.Module, x: Any, first_conv: str) -> None:
    """When parameters exist, the input's channel count must match the first conv's kernel."""
    params = module.variables.get("params", {})
    if first_conv in params:
        expected = params[first_conv]["kernel"].shape[-2]
        if x.shape[-1] != expected:
            raise ValueError(
                f"input has {x.shape[-1]} channels but the model's parameters expect "
                f"{expected} (first conv {first_conv!r}); got input shape {tuple(x.shape)}"
            )


def scaled(channels: int, width: float) -> int:
    """Channel count times the width multiplier, at least 1."""
    return max(1, round(channels * width))


def geometry(spatial_dims: int, window: int, stride: int, padding: int, features: int):
    """The same window/stride/symmetric padding in every spatial dim."""
    return PoolGeometry(
        (window,) * spatial_dims, (stride,) * spatial_dims,
        ((padding, padding),) * spatial_dims, features,
    )


def pads(spatial_dims: int, padding: int) -> tuple[tuple[int, int], ...]:
    return ((padding, padding),) * spatial_dims
