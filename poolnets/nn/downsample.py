"""Flax wrappers that turn a pooling geometry into a downsampling layer.

Every module here is built from a `PoolGeometry` (the window, stride and padding a model
uses at one of its downsampling points) and is called as `module(x, train=...)` with
`x: (N, *spatial, C)`. Pure pools are looked up in `poolnets.pooling` by name at call time,
so this file imports before any particular pool exists.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class PoolGeometry:
    """One downsampling point of a model, per spatial dim.

    window, strides: one int per spatial dim; padding: one `(low, high)` pair per spatial dim;
    features: channel count C of the input (learned downsamplers keep it).
    """

    window: tuple[int, ...]
    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    features: int

    @property
    def spatial_dims(self) -> int:
        return len(self.window)


def pooled_length(n: int, window: int, stride: int, padding: tuple[int, int]) -> int:
    """Output length of a floor-mode window op: floor((n + lo + hi - window) / stride) + 1.

    A result below 1 means the input is too small for the window.
    """
    lo, hi = padding
    return (n + lo + hi - window) // stride + 1


def same_length(n: int, window: int, stride: int, padding: tuple[int, int]) -> int:
    """Output length of a layer that keeps the resolution."""
    del window, stride, padding
    return n


def ceil_length(n: int, window: int, stride: int, padding: tuple[int, int]) -> int:
    """Output length ceil(n / stride) of an output-size pool standing in for a strided one."""
    del window, padding
    return -(-n // stride)


def _pooling_fn(fn_name: str):
    # Imported lazily: the pooling package is filled by several helpers and a registry entry
    # must not break `import poolnets.nn` while its pool is being written.
    from poolnets import pooling

    fn = getattr(pooling, fn_name, None)
    if fn is None:
        raise NotImplementedError(f"poolnets.pooling has no {fn_name!r} (not implemented yet)")
    return fn


class WindowedPool(nn.Module):
    """Applies `poolnets.pooling.<fn_name>(x, window_shape, strides, padding, **kwargs)`.

    `random=True` marks a random pool: in training it receives `key=` from the "pool" RNG
    stream, in evaluation `key=None` (the pool's deterministic behaviour).
    """

    fn_name: str
    geometry: PoolGeometry
    kwargs: tuple[tuple[str, Any], ...] = ()
    random: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        extra = dict(self.kwargs)
        if self.random:
            extra["key"] = self.make_rng("pool") if train else None
        g = self.geometry
        return _pooling_fn(self.fn_name)(
            x, window_shape=g.window, strides=g.strides, padding=g.padding, **extra
        )


class ResizingPool(nn.Module):
    """Applies `poolnets.pooling.<fn_name>(x, output_size, **kwargs)` with
    `output_size[i] = ceil(L[i] / strides[i])` (e.g. fractional max pooling); the window and
    padding of the geometry are not used. `random` as in `WindowedPool`.
    """

    fn_name: str
    geometry: PoolGeometry
    kwargs: tuple[tuple[str, Any], ...] = ()
    random: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        extra = dict(self.kwargs)
        if self.random:
            extra["key"] = self.make_rng("pool") if train else None
        spatial = x.shape[-1 - self.geometry.spatial_dims : -1]
        strides = self.geometry.strides
        size = tuple(ceil_length(n, 0, s, (0, 0)) for n, s in zip(spatial, strides, strict=True))
        return _pooling_fn(self.fn_name)(x, size, **extra)


class StridedConv(nn.Module):
    """All-CNN style learned downsampling (Springenberg et al. 2014, arXiv:1412.6806).

    A convolution with the pool's window, stride and padding and as many output channels as
    input channels, followed by the activation the model uses after its convolutions.
    """

    geometry: PoolGeometry
    dtype: Any = jnp.float32
    activation: Any = nn.relu

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        del train
        g = self.geometry
        y = nn.Conv(g.features, g.window, g.strides, padding=g.padding, dtype=self.dtype)(x)
        return self.activation(y)


class Identity(nn.Module):
    """Keeps the resolution: the "none" choice."""

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        del train
        return x


class TrainableSubsample(nn.Module):
    """LeNet-5 subsampling (LeCun et al. 1998, Proc. IEEE 86(11), section II-B).

    y[..., c] = coef[c] * mean(window of x[..., c]) + bias[c]: two parameters per map. The
    paper adds the four inputs; the mean differs by the constant 1/4 that `coef` absorbs.
    The squashing function the paper applies afterwards belongs to the model.
    """

    geometry: PoolGeometry
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        del train
        g = self.geometry
        coef = self.param("coef", nn.initializers.ones, (g.features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (g.features,), jnp.float32)
        pooled = _pooling_fn("avg_pool")(
            x, window_shape=g.window, strides=g.strides, padding=g.padding
        )
        return pooled * coef.astype(x.dtype) + bias.astype(x.dtype)
