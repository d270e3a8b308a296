"""VGG (Simonyan & Zisserman 2014, arXiv:1409.1556), torchvision's layout.

3x3 pad-1 convolutions (with bias; BatchNorm after each in the "_bn" variants), five 2x2/2
downsampling points, then torchvision's head: adaptive average pool to 7x7 (per spatial dim),
flatten, and the classifier Dense 4096 - ReLU - Dropout - Dense 4096 - ReLU - Dropout - Dense.
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
from poolnets.models.nnx.vgg import CONFIGS, POOL  # the layer lists, stated once
from poolnets.nn.heads import HeadSpec
from poolnets.nn.registry import make_downsample, make_head

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's
_dense_init = nn.initializers.normal(0.01)  # torchvision's


class VGG(nn.Module):
    """VGG on `x: (N, *spatial, C)` -> logits `(N, num_classes)`; input at least 32 per dim.

    downsample None means "max" (the paper's 2x2/2 max pools; every choice gets that
    geometry). head None or "flatten" means torchvision's adaptive 7x7 average pool + flatten
    (7 per spatial dim); other heads reduce the last feature map to a vector before the same
    MLP classifier. width multiplies every conv width and the classifier's hidden width.
    """

    config: Sequence[Any] = CONFIGS["vgg16"]
    batch_norm: bool = False
    num_classes: int = 1000
    downsample: str | None = None
    head: str | None = None
    dtype: Any = jnp.float32
    spatial_dims: int = 2
    width: float = 1.0
    hidden: int = 4096
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        ds, hd, d = self.downsample or "max", self.head or "flatten", self.spatial_dims
        check_config("vgg", num_classes=self.num_classes, downsample=ds, head=hd,
                     spatial_dims=d, dtype=self.dtype, width=self.width)
        chain = [pool_step(ds, 2, 2) if c == POOL else conv_step(3, 1, 1) for c in self.config]
        check_input(x, model="vgg", spatial_dims=d, chain=chain)
        check_channels(self, x, "conv0")
        input_shape = x.shape
        conv = functools.partial(nn.Conv, kernel_size=(3,) * d, padding=pads(d, 1),
                                 dtype=self.dtype, kernel_init=_conv_init)
        n_conv = n_pool = 0
        for c in self.config:
            if c == POOL:
                geo = geometry(d, 2, 2, 0, x.shape[-1])
                layer = make_downsample(ds, geo, dtype=self.dtype, module_name=f"pool{n_pool}")
                x = layer(x, train=train)
                n_pool += 1
                continue
            x = conv(scaled(c, self.width), name=f"conv{n_conv}")(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                 dtype=self.dtype, name=f"bn{n_conv}")(x)
            x = nn.relu(x)
            n_conv += 1
        spec = HeadSpec(d, (7,) * d if hd == "flatten" else None)
        x = make_head(hd, spec, module_name="head")(x, train=train)
        check_head_width(self, x, layer="fc0", model="vgg", chain=chain,
                         input_shape=input_shape, plain_flatten=False)  # 7x7 adaptive first
        dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=_dense_init)
        for i in range(2):
            x = nn.relu(dense(scaled(self.hidden, self.width), name=f"fc{i}")(x))
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return dense(self.num_classes, name="classifier")(x)


def vgg(depth: int, batch_norm: bool = False) -> functools.partial:
    """The configuration of VGG-`depth` (11, 13, 16, 19), optionally with BatchNorm."""
    return functools.partial(VGG, config=CONFIGS[f"vgg{depth}"], batch_norm=batch_norm)
