"""Global heads: reduce a feature map `(N, *spatial, C)` to a vector `(N, D)`.

The model's classifier (a Dense layer or an MLP) follows the head. Pools are looked up in
`poolnets.pooling` by name at call time so this file imports before they exist.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax.numpy as jnp

from poolnets.nn.downsample import _pooling_fn


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """What a model tells its head.

    spatial_dims: number of spatial dims of the feature map.
    flatten_size: for "flatten", the adaptive-average grid taken first (torchvision VGG's
        7x7 `avgpool`); None flattens the map as it is (LeNet).
    """

    spatial_dims: int
    flatten_size: tuple[int, ...] | None = None


class NamedGlobalPool(nn.Module):
    """Head calling `poolnets.pooling.<fn_name>(x) -> (N, C)` by name (registry use; the
    user-facing module with a `kind` is `poolnets.nn.GlobalPool`)."""

    fn_name: str

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        del train
        return _pooling_fn(self.fn_name)(x)


class AvgMax(nn.Module):
    """0.5 * (global average + global max) -> (N, C), as timm's "avgmax"."""

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        del train
        return 0.5 * (_pooling_fn("global_avg_pool")(x) + _pooling_fn("global_max_pool")(x))


class CatAvgMax(nn.Module):
    """[global average, global max] concatenated -> (N, 2C), as timm's "catavgmax"."""

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        del train
        avg = _pooling_fn("global_avg_pool")(x)
        return jnp.concatenate([avg, _pooling_fn("global_max_pool")(x)], axis=-1)


class SpatialPyramid(nn.Module):
    """Spatial pyramid pooling (He et al. 2014, arXiv:1406.4729) -> (N, C * sum(l**d))."""

    levels: tuple[int, ...] = (1, 2, 4)

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        del train
        return _pooling_fn("spatial_pyramid_pool")(x, levels=self.levels, mode="max")


class Flatten(nn.Module):
    """Classic flatten (LeNet, VGG) -> (N, prod(spatial) * C), in channels-last order.

    With `output_size`, an adaptive average pool to that grid comes first (torchvision VGG),
    which makes the classifier's input size independent of the image size. Note that
    torchvision flattens (C, H, W); converting its first classifier weight needs a transpose.
    """

    output_size: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        del train
        if self.output_size is not None:
            x = _pooling_fn("adaptive_avg_pool")(x, self.output_size)
        # An explicit width: reshape(N, -1) cannot infer it for an empty batch (0 / 0).
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))
