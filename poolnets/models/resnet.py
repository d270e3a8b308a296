"""ResNet (He et al. 2016, "Deep residual learning for image recognition", CVPR), torchvision's
ImageNet layout (v1.5: the bottleneck's stride sits on its 3x3 conv).

Convolutions have no bias and are followed by BatchNorm (scale and bias); the classifier is a
Dense layer with bias. `downsample` swaps the stem's 3x3/2 pad-1 max pool. With
`downsample_blocks=True` each stride-2 convolution of the residual stages becomes a stride-1
convolution followed by the chosen downsampling layer (3x3/2 pad 1, so lengths match the
strided conv), and the projection shortcut pools before its 1x1 conv, as in antialiased CNNs
(Zhang 2019, "Making convolutional networks shift-invariant again", ICML).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from poolnets.models._common import (
    check_channels,
    check_config,
    check_head_width,
    check_input,
    conv_step,
    geometry,
    pads,
    pool_step,
    scaled,
)
from poolnets.nn.heads import HeadSpec
from poolnets.nn.registry import make_downsample, make_head

ModuleDef = Any
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's


def zero_pad_shortcut(x: jnp.ndarray, features: int, strided: bool) -> jnp.ndarray:
    """Option A shortcut (He et al. 2016, section 4.2): subsample, then zero-pad channels."""
    if strided:
        x = x[(slice(None),) + (slice(None, None, 2),) * (x.ndim - 2)]
    extra = features - x.shape[-1]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(extra // 2, extra - extra // 2)])


class ResidualBlock(nn.Module):
    """Basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) block.

    strides: 1 or 2. pool: None keeps a stride-2 conv; a downsample name replaces it by a
    stride-1 conv plus that layer. shortcut: "projection" (1x1 conv + norm, torchvision) or
    "zero_pad" (option A: no parameters).
    """

    features: int
    strides: int
    conv: ModuleDef
    norm: ModuleDef
    spatial_dims: int
    bottleneck: bool = False
    pool: str | None = None
    shortcut: str = "projection"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        d, out = self.spatial_dims, self.features * (4 if self.bottleneck else 1)
        pooled = self.strides > 1 and self.pool is not None
        stride = (1 if pooled else self.strides,) * d

        def downsample(y, name):
            geo = geometry(d, 3, self.strides, 1, y.shape[-1])
            return make_downsample(self.pool, geo, dtype=self.dtype, module_name=name)(
                y, train=train)

        def conv_bn_relu(y, k, i, strided):
            s = stride if strided else (1,) * d
            y = self.conv(self.features, (k,) * d, s, padding=pads(d, k // 2), name=f"conv{i}")(y)
            y = nn.relu(self.norm(name=f"bn{i}")(y))
            return downsample(y, "pool") if strided and pooled else y

        if self.bottleneck:
            y = conv_bn_relu(conv_bn_relu(x, 1, 1, False), 3, 2, True)
            y = self.norm(name="bn3")(self.conv(out, (1,) * d, name="conv3")(y))
        else:
            y = conv_bn_relu(x, 3, 1, True)
            y = self.conv(out, (3,) * d, padding=pads(d, 1), name="conv2")(y)
            y = self.norm(name="bn2")(y)
        residual = x
        if self.strides > 1 or x.shape[-1] != out:
            if pooled:
                residual = downsample(residual, "shortcut_pool")
            if self.shortcut == "zero_pad":
                residual = zero_pad_shortcut(residual, out, self.strides > 1 and not pooled)
            else:
                residual = self.conv(out, (1,) * d, stride, name="proj_conv")(residual)
                residual = self.norm(name="proj_bn")(residual)
        return nn.relu(y + residual)


class ResNet(nn.Module):
    """ImageNet ResNet on `x: (N, *spatial, C)` -> logits `(N, num_classes)`.

    downsample None means "max" (the stem pool). head None means "avg". width multiplies
    every channel count (base 64). conv/norm: module classes used for every conv/norm layer.
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    bottleneck: bool = False
    num_classes: int = 1000
    downsample: str | None = None
    head: str | None = None
    dtype: Any = jnp.float32
    spatial_dims: int = 2
    width: float = 1.0
    downsample_blocks: bool = False
    conv: ModuleDef = nn.Conv
    norm: ModuleDef = nn.BatchNorm

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        ds, hd, d = self.downsample or "max", self.head or "avg", self.spatial_dims
        check_config("resnet", num_classes=self.num_classes, downsample=ds, head=hd,
                     spatial_dims=d, dtype=self.dtype, width=self.width)
        stage_step = pool_step(ds, 3, 2, 1) if self.downsample_blocks else conv_step(3, 2, 1)
        chain = [conv_step(7, 2, 3), pool_step(ds, 3, 2, 1)]
        chain += [stage_step] * (len(self.stage_sizes) - 1)
        check_input(x, model="resnet", spatial_dims=d, chain=chain)
        check_channels(self, x, "stem_conv")
        input_shape = x.shape
        conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype,
                                 kernel_init=conv_init)
        norm = functools.partial(self.norm, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, dtype=self.dtype)
        stem = scaled(64, self.width)
        x = conv(stem, (7,) * d, (2,) * d, padding=pads(d, 3), name="stem_conv")(x)
        x = nn.relu(norm(name="stem_bn")(x))
        x = make_downsample(ds, geometry(d, 3, 2, 1, stem), dtype=self.dtype,
                            module_name="stem_pool")(x, train=train)
        for i, size in enumerate(self.stage_sizes):
            for j in range(size):
                x = ResidualBlock(
                    scaled(64 * 2**i, self.width), 2 if i > 0 and j == 0 else 1, conv, norm, d,
                    bottleneck=self.bottleneck, pool=ds if self.downsample_blocks else None,
                    dtype=self.dtype, name=f"stage{i + 1}_block{j}",
                )(x, train=train)
        x = make_head(hd, HeadSpec(d), module_name="head")(x, train=train)
        check_head_width(self, x, layer="fc", model="resnet", chain=chain,
                         input_shape=input_shape, plain_flatten=hd == "flatten")
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2))
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True)
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), bottleneck=True)
ResNet152 = functools.partial(ResNet, stage_sizes=(3, 8, 36, 3), bottleneck=True)
