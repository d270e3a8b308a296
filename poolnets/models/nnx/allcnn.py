"""All-CNN-C (Springenberg, Dosovitskiy, Brox & Riedmiller 2014, "Striving for simplicity:
the all convolutional net", arXiv:1412.6806, Tables 1-2) as an NNX module.

On 32x32 inputs: dropout 0.2 on the input; conv3x3 96, conv3x3 96, downsampling point (a
3x3 stride-2 conv of 96 channels in All-CNN-C), dropout 0.5; conv3x3 192 twice,
downsampling point (192 channels), dropout 0.5; conv3x3 192 (no padding: 8x8 -> 6x6),
conv1x1 192, conv1x1 num_classes; global average over the 6x6 class maps. All convs have
bias and ReLU, including the class-map conv as in the paper's table. 1,369,738 parameters
for 10 classes. Downsampling points use 3x3/2 pad 1, the paper's Model C pool.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.models.nnx.cifar_resnet import CIFAR10
from poolnets.models.nnx.contract import (
    Stage,
    ZooModel,
    check_positive_int,
    check_width,
    head_width,
    scaled,
)
from poolnets.models.nnx.layers import HeadSite, Point, make_downsample, make_head

# He et al. 2015 initialisation: without normalisation, LeCun-normal's variance halves per
# ReLU layer and nine layers plus dropout leave almost no signal to learn from.
he_normal = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")


class AllCNN(ZooModel):
    """All-CNN-C on `x: (N, *spatial, C)` -> `(N, num_classes)`; input at least 9 per dim.

    downsample None means "strided_conv" (the published model); "max" gives the paper's
    Model C pooling. head None means "avg" over the class maps; a head whose output is not
    num_classes wide (catavgmax, spp, flatten) is followed by a Dense `classifier`. width
    multiplies the 96/192 channel counts. class_map_relu=False drops the ReLU on the class
    maps. Stages: stage1 (reduction 2), stage2 (4), class_maps (4, num_classes channels).
    `forward_head(pre_logits=True)` gives the head's output (the class maps pooled).
    """

    model_name = "allcnn_c"
    classifier_attr = "classifier"

    def __init__(self, *, num_classes: int = 10, rngs: nnx.Rngs, in_channels: int = 3,
                 input_size: Any = None, downsample: str | None = None,
                 head: str | None = None, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, spatial_dims: int = 2, width: float = 1.0,
                 input_dropout: float = 0.2, dropout: float = 0.5,
                 class_map_relu: bool = True):
        size = self.begin(num_classes=num_classes, in_channels=in_channels, dtype=dtype,
                          param_dtype=param_dtype, input_size=input_size, default_size=32,
                          spatial_dims=spatial_dims)
        width = check_width(self.model_name, width)
        d, ds = spatial_dims, downsample or "strided_conv"
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.class_map_relu, self.head_name, self.spatial_dims = class_map_relu, head, d
        self.drop_in = nnx.Dropout(input_dropout, rngs=rngs)
        c, n = in_channels, 0
        for i, width_i in enumerate((96, 192)):
            out = scaled(width_i, width)
            for _ in range(2):
                setattr(self, f"conv{n}", self._conv(c, out, 3, 1, rngs))
                c, n = out, n + 1
            setattr(self, f"pool{i}", make_downsample(ds, Point(3, 2, 1, d, c, **kw)))
            setattr(self, f"drop{i}", nnx.Dropout(dropout, rngs=rngs))
        self.conv4 = self._conv(c, scaled(192, width), 3, 0, rngs)
        self.conv5 = self._conv(scaled(192, width), scaled(192, width), 1, 0, rngs)
        self.input_size = size  # the tail's head site needs it
        self._build_tail(num_classes, rngs)
        self.finish_contract(num_classes=num_classes, in_channels=in_channels,
                             input_size=size, cfg=CIFAR10)

    def _conv(self, cin: int, cout: int, k: int, pad: int, rngs: nnx.Rngs) -> nnx.Conv:
        d = self.spatial_dims
        return nnx.Conv(cin, cout, (k,) * d, padding=((pad, pad),) * d, kernel_init=he_normal,
                        dtype=self.dtype, param_dtype=self.param_dtype, rngs=rngs)

    def _build_tail(self, num_classes: int, rngs: nnx.Rngs) -> None:
        """The class-map conv, the head and (when the head's width is not num_classes) the
        classifier: everything `num_classes` shapes."""
        self.conv6 = self._conv(self.conv5.out_features, num_classes, 1, 0, rngs)
        final = self.final_spatial(self.input_size)
        self.head = make_head(self.head_name or "avg", HeadSite(
            num_classes, final, dtype=self.dtype, param_dtype=self.param_dtype, rngs=rngs))
        h = head_width(self.head, num_classes, final)
        self.classifier = None if h == num_classes else self.new_linear(h, num_classes, rngs)

    def stages(self) -> list[Stage]:
        relu = jax.nn.relu
        c1, c2 = self.conv1.out_features, self.conv3.out_features
        class_relu = (relu,) if self.class_map_relu else ()
        return [
            Stage("stage1", c1, (self.drop_in, self.conv0, relu, self.conv1, relu, self.pool0,
                                 self.drop0)),
            Stage("stage2", c2, (self.conv2, relu, self.conv3, relu, self.pool1, self.drop1)),
            Stage("class_maps", self.conv6.out_features,
                  (self.conv4, relu, self.conv5, relu, self.conv6, *class_relu)),
        ]

    def classifier_ops(self) -> list:
        return [] if self.classifier is None else [self.classifier]

    def reset_classifier(self, num_classes: int, *, rngs: nnx.Rngs | None = None) -> None:
        """The class maps are num_classes wide, so the class-map conv, the head and the
        classifier are rebuilt (fresh weights)."""
        num_classes = check_positive_int(self.model_name, "num_classes", num_classes)
        self._build_tail(num_classes, rngs or nnx.Rngs(0))
        self.num_classes = num_classes
        self._head_spatial = self.fixed_head_spatial()
