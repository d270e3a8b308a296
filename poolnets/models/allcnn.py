"""All-CNN-C (Springenberg, Dosovitskiy, Brox & Riedmiller 2014, "Striving for simplicity:
the all convolutional net", arXiv:1412.6806, Tables 1-2).

On 32x32 inputs: dropout 0.2 on the input; conv3x3 96, conv3x3 96, downsampling point (a
3x3 stride-2 conv of 96 channels in All-CNN-C), dropout 0.5; conv3x3 192 twice, downsampling
point (192 channels), dropout 0.5; conv3x3 192 (no padding: 8x8 -> 6x6), conv1x1 192,
conv1x1 num_classes; global average over the 6x6 class maps. All convs have bias and ReLU,
including the class-map conv as in the paper's table. 1,369,738 parameters for 10 classes
(the paper gives "1.3M"). Downsampling points use 3x3/2 pad 1, the paper's Model C pool.
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
    geometry,
    pads,
    pool_step,
    scaled,
)
from poolnets.nn.heads import HeadSpec
from poolnets.nn.registry import make_downsample, make_head

# He et al. 2015 initialisation: without normalisation, LeCun-normal's variance halves per
# ReLU layer and nine layers plus dropout leave almost no signal to learn from.
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class AllCNN(nn.Module):
    """All-CNN-C on `x: (N, *spatial, C)` -> `(N, num_classes)`; input at least 9 per dim.

    downsample None means "strided_conv" (the published model); "max" gives the paper's
    Model C pooling. head None means "avg" over the class maps; a head whose output is not
    num_classes wide (catavgmax, spp, flatten) is followed by a Dense layer to num_classes.
    width multiplies the 96/192 channel counts. class_map_relu=False drops the ReLU on the
    class maps (common in reimplementations; the paper's table has it). Trained briefly with
    SGD and no normalisation, this model starts slowly (the paper trains 350 epochs).
    """

    num_classes: int = 10
    downsample: str | None = None
    head: str | None = None
    dtype: Any = jnp.float32
    spatial_dims: int = 2
    width: float = 1.0
    input_dropout: float = 0.2
    dropout: float = 0.5
    class_map_relu: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        ds, hd, d = self.downsample or "strided_conv", self.head or "avg", self.spatial_dims
        check_config("allcnn_c", num_classes=self.num_classes, downsample=ds, head=hd,
                     spatial_dims=d, dtype=self.dtype, width=self.width)
        chain = [pool_step(ds, 3, 2, 1), pool_step(ds, 3, 2, 1), conv_step(3)]
        check_input(x, model="allcnn_c", spatial_dims=d, chain=chain)
        check_channels(self, x, "conv0")
        input_shape = x.shape
        drop = functools.partial(nn.Dropout, deterministic=not train)
        n = 0

        def conv(y, features, k=3, pad=1, relu=True):
            nonlocal n
            y = nn.Conv(features, (k,) * d, padding=pads(d, pad), dtype=self.dtype,
                        kernel_init=he_normal, name=f"conv{n}")(y)
            n += 1
            return nn.relu(y) if relu else y

        x = drop(self.input_dropout)(x)
        for i, c in enumerate((96, 192)):
            c = scaled(c, self.width)
            x = conv(conv(x, c), c)
            x = make_downsample(ds, geometry(d, 3, 2, 1, c), dtype=self.dtype,
                                module_name=f"pool{i}")(x, train=train)
            x = drop(self.dropout)(x)
        x = conv(x, scaled(192, self.width), pad=0)
        x = conv(x, scaled(192, self.width), k=1, pad=0)
        x = conv(x, self.num_classes, k=1, pad=0, relu=self.class_map_relu)
        x = make_head(hd, HeadSpec(d), module_name="head")(x, train=train)
        check_head_width(self, x, layer="classifier", model="allcnn_c", chain=chain,
                         input_shape=input_shape, plain_flatten=hd == "flatten")
        if x.shape[-1] != self.num_classes:
            x = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)
        return x
