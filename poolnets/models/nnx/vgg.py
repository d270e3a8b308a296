"""VGG (Simonyan & Zisserman 2014, arXiv:1409.1556) as NNX modules, torchvision's layout.

3x3 pad-1 convolutions (with bias; BatchNorm after each in the "_bn" variants), five 2x2/2
downsampling points, then torchvision's head: adaptive average pool to 7x7 (per spatial
dim), flatten, and the classifier Dense 4096 - ReLU - Dropout - Dense 4096 - ReLU -
Dropout - Dense.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.models.nnx.contract import Stage, ZooModel, check_width, head_width, scaled
from poolnets.models.nnx.layers import HeadSite, Point, make_batch_norm, make_downsample, make_head
from poolnets.models.nnx.resnet import IMAGENET

POOL = "M"  # marks a downsampling point in a configuration
CONFIGS: dict[str, tuple[Any, ...]] = {
    "vgg11": (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    "vgg13": (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL,
              512, 512, 512, POOL),
    "vgg19": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL,
              512, 512, 512, 512, POOL),
}
conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's
dense_init = nnx.initializers.normal(0.01)  # torchvision's


class VGG(ZooModel):
    """VGG on `x: (N, *spatial, C)` -> logits `(N, num_classes)`; input at least 32 per dim.

    downsample None means "max" (the paper's 2x2/2 max pools; every choice gets that
    geometry). head None or "flatten" means torchvision's adaptive 7x7 average pool +
    flatten (7 per spatial dim); other heads reduce the last feature map to a vector before
    the same MLP classifier. width multiplies every conv width and the classifier's hidden
    width. Stages stage1..stage5 end at the downsampling points (reductions 2 to 32).
    """

    model_name = "vgg"
    classifier_attr = "classifier"
    classifier_init = staticmethod(dense_init)

    def __init__(self, *, num_classes: int = 1000, rngs: nnx.Rngs, in_channels: int = 3,
                 input_size: Any = None, downsample: str | None = None,
                 head: str | None = None, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, spatial_dims: int = 2, width: float = 1.0,
                 config: Sequence[Any] = CONFIGS["vgg16"], batch_norm: bool = False,
                 hidden: int = 4096, dropout: float = 0.5, source: str | None = None):
        size = self.begin(num_classes=num_classes, in_channels=in_channels, dtype=dtype,
                          param_dtype=param_dtype, input_size=input_size, default_size=224,
                          spatial_dims=spatial_dims)
        width = check_width(self.model_name, width)
        d, ds = spatial_dims, downsample or "max"
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.config, self.batch_norm = tuple(config), batch_norm
        c, n_conv, n_pool = in_channels, 0, 0
        for item in self.config:
            if item == POOL:
                setattr(self, f"pool{n_pool}", make_downsample(ds, Point(2, 2, 0, d, c, **kw)))
                n_pool += 1
                continue
            out = scaled(item, width)
            setattr(self, f"conv{n_conv}", nnx.Conv(c, out, (3,) * d, padding=((1, 1),) * d,
                                                    kernel_init=conv_init, **kw))
            if batch_norm:
                setattr(self, f"bn{n_conv}", make_batch_norm(out, dtype=dtype,
                                                        param_dtype=param_dtype))
            c, n_conv = out, n_conv + 1
        final = self.final_spatial(size)
        self.head = make_head(head or "flatten", HeadSite(c, final, (7,) * d, **kw))
        h = scaled(hidden, width)
        self.fc0 = nnx.Linear(head_width(self.head, c, final), h, kernel_init=dense_init, **kw)
        self.fc1 = nnx.Linear(h, h, kernel_init=dense_init, **kw)
        self.drop0 = nnx.Dropout(dropout, rngs=rngs)
        self.drop1 = nnx.Dropout(dropout, rngs=rngs)
        self.classifier = self.new_linear(h, num_classes, rngs, dense_init)
        self.finish_contract(num_classes=num_classes, in_channels=in_channels,
                             input_size=size, cfg=dict(IMAGENET, source=source))

    def stages(self) -> list[Stage]:
        out, ops, n_conv, n_pool, c = [], [], 0, 0, 0
        for item in self.config:
            if item == POOL:
                ops.append(getattr(self, f"pool{n_pool}"))
                n_pool += 1
                out.append(Stage(f"stage{n_pool}", c, tuple(ops)))
                ops = []
                continue
            conv = getattr(self, f"conv{n_conv}")
            norm = (getattr(self, f"bn{n_conv}"),) if self.batch_norm else ()
            ops += [conv, *norm, jax.nn.relu]
            c, n_conv = conv.out_features, n_conv + 1
        if ops:  # a configuration that does not end at a downsampling point
            out.append(Stage(f"stage{n_pool + 1}", c, tuple(ops)))
        return out

    def classifier_ops(self) -> list:
        relu = jax.nn.relu
        return [self.fc0, relu, self.drop0, self.fc1, relu, self.drop1, self.classifier]


def _vgg(depth: int, batch_norm: bool) -> dict[str, Any]:
    name = f"vgg{depth}{'_bn' if batch_norm else ''}"
    return dict(config=CONFIGS[f"vgg{depth}"], batch_norm=batch_norm,
                source=f"torchvision.models.{name}(weights='IMAGENET1K_V1')")


VGGS = {f"vgg{n}{'_bn' if bn else ''}": _vgg(n, bn) for n in (11, 13, 16, 19)
        for bn in (False, True)}
