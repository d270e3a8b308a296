"""A CNN with a chosen number of pooling stages, for "accuracy vs number of pooling stages".

`PoolStack(channels=(8, 16, 16, 32), pooled_stages=k)`: 3x3 'SAME' convolution + ReLU per
stage; the first k stages end with a 2x2/2 downsampling layer from the registry
(`downsample`, default "max"); then global average pooling and a Dense classifier. With a
global-average head the parameter count does not depend on k, so only the resolution at
which the later convolutions work (and the receptive field) changes with k.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from poolnets.analysis.receptive_field import Layer
from poolnets.nn.downsample import PoolGeometry
from poolnets.nn.registry import check_downsample, make_downsample


class PoolStack(nn.Module):
    """conv3x3(c_i) + ReLU [+ 2x2/2 downsample for i < pooled_stages], global avg, Dense."""

    num_classes: int = 10
    channels: Sequence[int] = (8, 16, 16, 32)
    pooled_stages: int = 2
    downsample: str = "max"

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        if not 0 <= self.pooled_stages <= len(self.channels):
            raise ValueError(f"pooled_stages must be in 0..{len(self.channels)}, got "
                             f"{self.pooled_stages!r}")
        check_downsample(self.downsample)
        for i, c in enumerate(self.channels):
            x = nn.relu(nn.Conv(c, (3, 3), padding="SAME", name=f"conv{i}")(x))
            if i < self.pooled_stages:
                geometry = PoolGeometry((2, 2), (2, 2), ((0, 0), (0, 0)), c)
                x = make_downsample(self.downsample, geometry, dtype=jnp.float32,
                                    module_name=f"pool{i}")(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="classifier")(x)


def pool_stack_layers(num_stages: int, pooled_stages: int) -> list[Layer]:
    """The analytic-receptive-field chain of a PoolStack with 2x2/2 pools."""
    layers = []
    for i in range(num_stages):
        layers.append(Layer(f"conv{i}", 3, 1, 1))
        if i < pooled_stages:
            layers.append(Layer(f"pool{i}", 2, 2, 0))
    return layers
