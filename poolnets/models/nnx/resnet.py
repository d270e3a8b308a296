"""ResNet (He et al. 2016, "Deep residual learning for image recognition", CVPR) as NNX
modules, torchvision's ImageNet layout (v1.5: the bottleneck's stride sits on its 3x3
conv), and the residual block the CIFAR ResNets share.

Convolutions have no bias and are followed by BatchNorm (`layers.make_batch_norm`);
the classifier is a Dense layer with bias. `downsample` swaps the stem's 3x3/2 pad-1 max
pool. With `downsample_blocks=True` each stride-2 convolution of the residual stages
becomes a stride-1 convolution followed by the chosen downsampling layer (3x3/2 pad 1,
so lengths match the strided conv), and the projection shortcut pools before its 1x1
conv, as in antialiased CNNs (Zhang 2019, "Making convolutional networks shift-invariant
again", ICML).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.models.nnx.contract import (
    Stage,
    TrainAware,
    ZooModel,
    check_width,
    head_width,
    ops_spatial,
    run_ops,
    scaled,
)
from poolnets.models.nnx.layers import HeadSite, Point, make_batch_norm, make_downsample, make_head

conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's
IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=0.875,
                interpolation="bilinear")


def zero_pad_shortcut(x: jax.Array, features: int, strided: bool) -> jax.Array:
    """Option A shortcut (He et al. 2016, section 4.2): subsample, then zero-pad channels."""
    if strided:
        x = x[(slice(None),) + (slice(None, None, 2),) * (x.ndim - 2)]
    extra = features - x.shape[-1]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(extra // 2, extra - extra // 2)])


class Builder:
    """Makes the convolutions and norms of one model (its dtypes, init and rngs)."""

    def __init__(self, spatial_dims: int, dtype: Any, param_dtype: Any, rngs: nnx.Rngs):
        self.d, self.dtype, self.param_dtype, self.rngs = spatial_dims, dtype, param_dtype, rngs

    def conv(self, cin: int, cout: int, k: int, stride: int = 1,
             padding: Any = None) -> nnx.Conv:
        pads = "SAME" if padding is None else ((padding, padding),) * self.d
        return nnx.Conv(cin, cout, (k,) * self.d, (stride,) * self.d, padding=pads,
                        use_bias=False, kernel_init=conv_init, dtype=self.dtype,
                        param_dtype=self.param_dtype, rngs=self.rngs)

    def norm(self, c: int) -> nnx.BatchNorm:
        return make_batch_norm(c, dtype=self.dtype, param_dtype=self.param_dtype)

    def point(self, window: int, stride: int, padding: int, features: int) -> Point:
        return Point(window, stride, padding, self.d, features, self.dtype, self.param_dtype,
                     self.rngs)


class ResidualBlock(TrainAware):
    """Basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1 with 4x expansion) block.

    strides: 1 or 2. pool: None keeps a stride-2 conv; a downsample name replaces it by a
    stride-1 conv plus that layer. shortcut: "projection" (1x1 conv + norm, torchvision) or
    "zero_pad" (option A: no parameters).
    """

    def __init__(self, b: Builder, in_features: int, features: int, strides: int, *,
                 bottleneck: bool = False, pool: str | None = None,
                 shortcut: str = "projection"):
        out = features * (4 if bottleneck else 1)
        pooled = strides > 1 and pool is not None
        s = 1 if pooled else strides
        self.bottleneck, self.shortcut, self.out_features = bottleneck, shortcut, out
        self.pooled, self.strided = pooled, strides > 1
        if bottleneck:
            self.conv1, self.bn1 = b.conv(in_features, features, 1, 1, 0), b.norm(features)
            self.conv2, self.bn2 = b.conv(features, features, 3, s, 1), b.norm(features)
            self.conv3, self.bn3 = b.conv(features, out, 1), b.norm(out)
        else:
            self.conv1, self.bn1 = b.conv(in_features, features, 3, s, 1), b.norm(features)
            self.conv2, self.bn2 = b.conv(features, out, 3, 1, 1), b.norm(out)
        if pooled:
            self.pool = make_downsample(pool, b.point(3, strides, 1, features))
        self.has_shortcut = strides > 1 or in_features != out
        if self.has_shortcut and pooled:
            self.shortcut_pool = make_downsample(pool, b.point(3, strides, 1, in_features))
        if self.has_shortcut and shortcut != "zero_pad":
            self.proj_conv, self.proj_bn = b.conv(in_features, out, 1, s), b.norm(out)

    def main_ops(self) -> list:
        relu, pool = jax.nn.relu, [self.pool] if self.pooled else []
        if self.bottleneck:
            return [self.conv1, self.bn1, relu, self.conv2, self.bn2, relu, *pool,
                    self.conv3, self.bn3]
        return [self.conv1, self.bn1, relu, *pool, self.conv2, self.bn2]

    def __call__(self, x: jax.Array, *, train: bool | None = None) -> jax.Array:
        y = run_ops(self.main_ops(), x, train)
        residual = x
        if self.has_shortcut:
            if self.pooled:
                residual = run_ops([self.shortcut_pool], residual, train)
            if self.shortcut == "zero_pad":
                residual = zero_pad_shortcut(residual, self.out_features,
                                             self.strided and not self.pooled)
            else:
                residual = run_ops([self.proj_conv, self.proj_bn], residual, train)
        return jax.nn.relu(y + residual)

    def output_spatial(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return ops_spatial(self.main_ops(), tuple(spatial))


class ResNet(ZooModel):
    """ImageNet ResNet on `x: (N, *spatial, C)` -> logits `(N, num_classes)`.

    downsample None means "max" (the stem pool). head None means "avg". width multiplies
    every channel count (base 64). Stages: stem (conv, norm, ReLU: reduction 2), then
    stage1 (stem pool and the first blocks, 4) to stage4 (32).
    """

    model_name = "resnet"

    def __init__(self, *, num_classes: int = 1000, rngs: nnx.Rngs, in_channels: int = 3,
                 input_size: Any = None, downsample: str | None = None,
                 head: str | None = None, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, spatial_dims: int = 2, width: float = 1.0,
                 stage_sizes: Sequence[int] = (2, 2, 2, 2), bottleneck: bool = False,
                 downsample_blocks: bool = False, source: str | None = None):
        size = self.begin(num_classes=num_classes, in_channels=in_channels, dtype=dtype,
                          param_dtype=param_dtype, input_size=input_size, default_size=224,
                          spatial_dims=spatial_dims)
        width = check_width(self.model_name, width)
        b, ds = Builder(spatial_dims, dtype, param_dtype, rngs), downsample or "max"
        stem = scaled(64, width)
        self.stem_conv, self.stem_bn = b.conv(in_channels, stem, 7, 2, 3), b.norm(stem)
        self.stem_pool = make_downsample(ds, b.point(3, 2, 1, stem))
        self.stage_sizes = tuple(stage_sizes)
        c = stem
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                block = ResidualBlock(b, c, scaled(64 * 2**i, width), 2 if i and not j else 1,
                                      bottleneck=bottleneck,
                                      pool=ds if downsample_blocks else None)
                setattr(self, f"stage{i + 1}_block{j}", block)
                c = block.out_features
        self.head = make_head(head or "avg", HeadSite(c, self.final_spatial(size),
                                                      dtype=dtype, param_dtype=param_dtype,
                                                      rngs=rngs))
        width_out = head_width(self.head, c, self.final_spatial(size))
        self.fc = self.new_linear(width_out, num_classes, rngs)
        self.finish_contract(num_classes=num_classes, in_channels=in_channels,
                             input_size=size, cfg=dict(IMAGENET, source=source))

    def stages(self) -> list[Stage]:
        stem = self.stem_conv.out_features
        out = [Stage("stem", stem, (self.stem_conv, self.stem_bn, jax.nn.relu))]
        for i, n in enumerate(self.stage_sizes):
            blocks = tuple(getattr(self, f"stage{i + 1}_block{j}") for j in range(n))
            lead = (self.stem_pool,) if i == 0 else ()
            out.append(Stage(f"stage{i + 1}", blocks[-1].out_features, lead + blocks))
        return out

    def classifier_ops(self) -> list:
        return [self.fc]


def _torchvision(name: str) -> str:
    return f"torchvision.models.{name}(weights='IMAGENET1K_V1')"


RESNETS = {
    "resnet18": dict(stage_sizes=(2, 2, 2, 2)),
    "resnet34": dict(stage_sizes=(3, 4, 6, 3)),
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), bottleneck=True),
    "resnet101": dict(stage_sizes=(3, 4, 23, 3), bottleneck=True),
    "resnet152": dict(stage_sizes=(3, 8, 36, 3), bottleneck=True),
}
for _name, _fields in RESNETS.items():
    _fields["source"] = _torchvision(_name)
