"""A CNN with a chosen number of pooling stages, for "accuracy vs number of pooling stages".

`PoolStack(channels=(8, 16, 16, 32), pooled_stages=k, rngs=...)` (Flax NNX): 3x3 'SAME'
convolution + ReLU per stage; the first k stages end with a 2x2/2 downsampling layer from
the zoo's registry (`downsample`, default "max"); then global average pooling and a Linear
classifier. With a global-average head the parameter count does not depend on k, so only
the resolution at which the later convolutions work (and the receptive field) changes with k.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.analysis.receptive_field import Layer
from poolnets.models.nnx.contract import apply_op
from poolnets.models.nnx.layers import Point, check_downsample, make_downsample


class PoolStack(nnx.Module):
    """conv3x3(c_i) + ReLU [+ 2x2/2 downsample for i < pooled_stages], global avg, Linear."""

    def __init__(self, num_classes: int = 10, channels: Sequence[int] = (8, 16, 16, 32),
                 pooled_stages: int = 2, downsample: str = "max", in_channels: int = 1, *,
                 rngs: nnx.Rngs):
        channels = tuple(channels)
        if (isinstance(pooled_stages, bool) or not isinstance(pooled_stages, int)
                or not 0 <= pooled_stages <= len(channels)):
            raise ValueError(f"pooled_stages must be in 0..{len(channels)}, got "
                             f"{pooled_stages!r}")
        check_downsample(downsample)
        self.channels, self.pooled_stages = channels, pooled_stages
        c_in = in_channels
        for i, c in enumerate(channels):
            setattr(self, f"conv{i}", nnx.Conv(c_in, c, (3, 3), padding="SAME", rngs=rngs))
            if i < pooled_stages:
                setattr(self, f"pool{i}",
                        make_downsample(downsample, Point(2, 2, 0, 2, c, rngs=rngs)))
            c_in = c
        self.classifier = nnx.Linear(c_in, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        for i in range(len(self.channels)):
            x = jax.nn.relu(getattr(self, f"conv{i}")(x))
            if i < self.pooled_stages:
                x = apply_op(getattr(self, f"pool{i}"), x, train)
        return self.classifier(jnp.mean(x, axis=(1, 2)))


def pool_stack_layers(num_stages: int, pooled_stages: int) -> list[Layer]:
    """The analytic-receptive-field chain of a PoolStack with 2x2/2 pools."""
    layers = []
    for i in range(num_stages):
        layers.append(Layer(f"conv{i}", 3, 1, 1))
        if i < pooled_stages:
            layers.append(Layer(f"pool{i}", 2, 2, 0))
    return layers
