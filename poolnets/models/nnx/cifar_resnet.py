"""CIFAR ResNets of He et al. 2016 ("Deep residual learning for image recognition", CVPR,
section 4.2) as NNX modules: a 3x3 conv of 16 channels, three stages of n basic blocks
with 16/32/64 channels (depth 6n + 2), global average pool and a Dense classifier; option
A shortcuts (subsample and zero-pad channels, no parameters).

The stride-2 convolutions opening stages 2 and 3 are this family's only downsampling
points, so `downsample` applies to them: None keeps the published stride-2 convs; a name
makes each a stride-1 conv followed by that layer (3x3/2 pad 1), and the shortcut pools
the same way before zero-padding.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.models.nnx.contract import Stage, ZooModel, check_width, head_width, scaled
from poolnets.models.nnx.layers import HeadSite, check_downsample, make_head
from poolnets.models.nnx.resnet import Builder, ResidualBlock

# Channel statistics of CIFAR-10's training images, as commonly published.
CIFAR10 = dict(mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), crop_pct=1.0,
               interpolation="bilinear", source=None)


class CifarResNet(ZooModel):
    """ResNet-(6n+2) on `x: (N, *spatial, C)` (32x32 in the paper) -> `(N, num_classes)`.

    head None means "avg". width multiplies the 16/32/64 channel counts. Stages: stem
    (reduction 1), stage1 (1), stage2 (2), stage3 (4).
    """

    model_name = "cifar_resnet"

    def __init__(self, *, num_classes: int = 10, rngs: nnx.Rngs, in_channels: int = 3,
                 input_size: Any = None, downsample: str | None = None,
                 head: str | None = None, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, spatial_dims: int = 2, width: float = 1.0,
                 depth: int = 20):
        size = self.begin(num_classes=num_classes, in_channels=in_channels, dtype=dtype,
                          param_dtype=param_dtype, input_size=input_size, default_size=32,
                          spatial_dims=spatial_dims)
        width = check_width(self.model_name, width)
        if isinstance(depth, bool) or not isinstance(depth, int) or (depth - 2) % 6 or depth < 8:
            raise ValueError(f"cifar_resnet: depth must be 6n + 2 with n >= 1, got {depth!r}")
        if downsample is not None:
            check_downsample(downsample)
        self.blocks_per_stage = (depth - 2) // 6
        b = Builder(spatial_dims, dtype, param_dtype, rngs)
        c = scaled(16, width)
        self.stem_conv, self.stem_bn = b.conv(in_channels, c, 3, 1, 1), b.norm(c)
        for i in range(3):
            for j in range(self.blocks_per_stage):
                block = ResidualBlock(b, c, scaled(16 * 2**i, width), 2 if i and not j else 1,
                                      pool=downsample, shortcut="zero_pad")
                setattr(self, f"stage{i + 1}_block{j}", block)
                c = block.out_features
        final = self.final_spatial(size)
        self.head = make_head(head or "avg", HeadSite(c, final, dtype=dtype,
                                                      param_dtype=param_dtype, rngs=rngs))
        self.fc = self.new_linear(head_width(self.head, c, final), num_classes, rngs)
        self.finish_contract(num_classes=num_classes, in_channels=in_channels,
                             input_size=size, cfg=CIFAR10)

    def stages(self) -> list[Stage]:
        out = [Stage("stem", self.stem_conv.out_features,
                     (self.stem_conv, self.stem_bn, jax.nn.relu))]
        for i in range(3):
            blocks = tuple(getattr(self, f"stage{i + 1}_block{j}")
                           for j in range(self.blocks_per_stage))
            out.append(Stage(f"stage{i + 1}", blocks[-1].out_features, blocks))
        return out

    def classifier_ops(self) -> list:
        return [self.fc]


CIFAR_RESNETS = {f"resnet{n}": dict(depth=n) for n in (20, 32, 44, 56, 110)}
