"""CIFAR ResNets of He et al. 2016 ("Deep residual learning for image recognition", CVPR,
section 4.2): a 3x3 conv of 16 channels, three stages of n basic blocks with 16/32/64
channels (depth 6n + 2), global average pool and a Dense classifier; option A shortcuts
(subsample and zero-pad channels, no parameters).

The stride-2 convolutions opening stages 2 and 3 are this family's only downsampling points,
so `downsample` applies to them: None keeps the published stride-2 convs; a name makes each a
stride-1 conv followed by that layer (3x3/2 pad 1), and the shortcut pools the same way
before zero-padding.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from poolnets.models._common import (
    check_channels,
    check_config,
    check_head_width,
    check_input,
    conv_step,
    pads,
    pool_step,
    scaled,
)
from poolnets.models.resnet import ResidualBlock, conv_init
from poolnets.nn.heads import HeadSpec
from poolnets.nn.registry import make_head


class CifarResNet(nn.Module):
    """ResNet-(6n+2) on `x: (N, *spatial, C)` (32x32 in the paper) -> `(N, num_classes)`.

    head None means "avg". width multiplies the 16/32/64 channel counts.
    """

    depth: int = 20
    num_classes: int = 10
    downsample: str | None = None
    head: str | None = None
    dtype: Any = jnp.float32
    spatial_dims: int = 2
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        hd, d = self.head or "avg", self.spatial_dims
        check_config("cifar_resnet", num_classes=self.num_classes,
                     downsample=self.downsample or "max", head=hd, spatial_dims=d,
                     dtype=self.dtype, width=self.width)
        if (self.depth - 2) % 6 or self.depth < 8:
            raise ValueError(f"cifar_resnet: depth must be 6n + 2 with n >= 1, got {self.depth}")
        ds = self.downsample
        step = conv_step(3, 2, 1) if ds is None else pool_step(ds, 3, 2, 1)
        chain = [conv_step(3, 1, 1), step, step]
        check_input(x, model="cifar_resnet", spatial_dims=d, chain=chain)
        check_channels(self, x, "stem_conv")
        input_shape = x.shape
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=self.dtype)
        x = conv(scaled(16, self.width), (3,) * d, padding=pads(d, 1), name="stem_conv")(x)
        x = nn.relu(norm(name="stem_bn")(x))
        for i in range(3):
            for j in range((self.depth - 2) // 6):
                x = ResidualBlock(
                    scaled(16 * 2**i, self.width), 2 if i > 0 and j == 0 else 1, conv, norm, d,
                    pool=self.downsample, shortcut="zero_pad", dtype=self.dtype,
                    name=f"stage{i + 1}_block{j}",
                )(x, train=train)
        x = make_head(hd, HeadSpec(d), module_name="head")(x, train=train)
        check_head_width(self, x, layer="fc", model="cifar_resnet", chain=chain,
                         input_shape=input_shape, plain_flatten=hd == "flatten")
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


def cifar_resnet(depth: int) -> functools.partial:
    return functools.partial(CifarResNet, depth=depth)
