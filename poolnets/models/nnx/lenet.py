"""LeNet-5, modern and as published (LeCun et al. 1998, "Gradient-based learning applied to
document recognition", Proc. IEEE 86(11)), as NNX modules. Layer names follow the paper:
C1, S2, C3, S4, C5, F6, output. Both take 32x32 inputs by default; the published "flatten"
head fixes the input size to the `input_size` the model is built for.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from poolnets.models.nnx.contract import (
    Stage,
    ZooModel,
    check_width,
    head_width,
    scaled,
)
from poolnets.models.nnx.layers import (
    HeadSite,
    Point,
    make_batch_norm,
    make_downsample,
    make_head,
)

# Channel statistics of MNIST's training images, as commonly published (torchvision examples).
MNIST_CFG = dict(mean=(0.1307,), std=(0.3081,), crop_pct=1.0, interpolation="bilinear",
                 source=None)


class LeNet5(ZooModel):
    """Modern LeNet-5: ReLU, 2x2/2 max pools, C3 fully connected to S2. 61,706 params.

    C1 conv5x5 6 -> S2 pool -> C3 conv5x5 16 -> S4 pool -> head -> C5 Dense 120 -> F6 Dense
    84 -> output Dense. The published head is "flatten" (C5 as a dense layer on the 5x5x16
    map equals the paper's 5x5 convolution). downsample/head None mean "max"/"flatten".
    width multiplies every hidden width. batch_norm=True (not in the paper) puts a BatchNorm
    between C1 / C3 and their ReLU, and drops those convolutions' biases, which it cancels.
    """

    model_name = "lenet5"
    classifier_attr = "output"

    def __init__(self, *, num_classes: int = 10, rngs: nnx.Rngs, in_channels: int = 1,
                 input_size: Any = None, downsample: str | None = None,
                 head: str | None = None, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, spatial_dims: int = 2, width: float = 1.0,
                 batch_norm: bool = False):
        size = self.begin(num_classes=num_classes, in_channels=in_channels, dtype=dtype,
                          param_dtype=param_dtype, input_size=input_size, default_size=32,
                          spatial_dims=spatial_dims)
        width = check_width(self.model_name, width)
        d, ds = spatial_dims, downsample or "max"
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        c1, c3 = scaled(6, width), scaled(16, width)
        self.batch_norm = batch_norm
        bias = dict(use_bias=False) if batch_norm else {}
        self.C1 = nnx.Conv(in_channels, c1, (5,) * d, padding="VALID", **bias, **kw)
        self.S2 = make_downsample(ds, Point(2, 2, 0, d, c1, **kw))
        self.C3 = nnx.Conv(c1, c3, (5,) * d, padding="VALID", **bias, **kw)
        if batch_norm:
            self.C1_norm = make_batch_norm(c1, dtype=dtype, param_dtype=param_dtype)
            self.C3_norm = make_batch_norm(c3, dtype=dtype, param_dtype=param_dtype)
        self.S4 = make_downsample(ds, Point(2, 2, 0, d, c3, **kw))
        self.head = make_head(head or "flatten", HeadSite(c3, self.final_spatial(size), **kw))
        h = head_width(self.head, c3, self.final_spatial(size))
        self.C5 = nnx.Linear(h, scaled(120, width), **kw)
        self.F6 = nnx.Linear(scaled(120, width), scaled(84, width), **kw)
        self.output = nnx.Linear(scaled(84, width), num_classes, **kw)
        self.finish_contract(num_classes=num_classes, in_channels=in_channels,
                             input_size=size, cfg=MNIST_CFG)

    def stages(self) -> list[Stage]:
        relu = jax.nn.relu
        n1, n3 = ((self.C1_norm,), (self.C3_norm,)) if self.batch_norm else ((), ())
        return [Stage("C1", self.C1.out_features, (self.C1, *n1, relu)),
                Stage("S2", self.C1.out_features, (self.S2,)),
                Stage("C3", self.C3.out_features, (self.C3, *n3, relu)),
                Stage("S4", self.C3.out_features, (self.S4,))]

    def classifier_ops(self) -> list:
        relu = jax.nn.relu
        return [self.C5, relu, self.F6, relu, self.output]


# Table I of the paper: the S2 maps each C3 map reads.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5),
)


class TableConv(nnx.Module):
    """Convolution whose output map j reads only the input maps `table[j]` (VALID padding).

    Only the connected filters are parameters: `kernel` (*window, connections) and `bias`
    (outputs), scattered into a dense kernel (*window, C_in, C_out) with zeros elsewhere.
    Each output map's LeCun-normal fan-in counts only the input maps its table row connects.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], in_features: int,
                 window: tuple[int, ...], *, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
        self.table, self.in_features, self.window, self.dtype = table, in_features, window, dtype
        self.out_features = len(table)
        dst = np.array([j for j, row in enumerate(table) for _ in row])
        fan_in = np.prod(window) * np.array([len(row) for row in table])[dst]
        draw = jax.random.normal(rngs.params(), (*window, len(dst)), param_dtype)
        self.kernel = nnx.Param(draw / np.sqrt(fan_in).astype(param_dtype))
        self.bias = nnx.Param(jnp.zeros((len(table),), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        src = np.array([i for row in self.table for i in row])
        dst = np.array([j for j, row in enumerate(self.table) for _ in row])
        dense = jnp.zeros((*self.window, self.in_features, len(self.table)), jnp.float32)
        dense = dense.at[..., src, dst].set(self.kernel[...])
        spatial = "DHW"[-len(self.window):]
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), dense.astype(self.dtype), (1,) * len(self.window), "VALID",
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        )
        return y + self.bias[...].astype(self.dtype)

    def output_spatial(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(n - k + 1 for n, k in zip(spatial, self.window, strict=True))


def squash(x: jax.Array) -> jax.Array:
    """The paper's sigmoid, A * tanh(S * x) with A = 1.7159, S = 2/3 (appendix A)."""
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


class LeNet5_1998(LeNet5):
    """LeNet-5 as published: scaled tanh, trainable subsampling, C3's connection table.

    C1 (156) + S2 (12) + C3 (1,516) + S4 (32) + C5 (48,120) + F6 (10,164) = 60,000 trainable
    parameters, as the paper states. The paper's output layer (10 Euclidean RBF units with
    fixed bitmap centres) is a trainable Dense layer here (850 params for 10 classes), so
    the model trains with softmax cross-entropy. downsample None means "subsample" (then
    squashed); any other choice replaces S2/S4 and is not squashed. head None: "flatten".
    """

    model_name = "lenet5_1998"

    def __init__(self, *, num_classes: int = 10, rngs: nnx.Rngs, in_channels: int = 1,
                 input_size: Any = None, downsample: str | None = None,
                 head: str | None = None, dtype: Any = jnp.float32,
                 param_dtype: Any = jnp.float32, spatial_dims: int = 2):
        size = self.begin(num_classes=num_classes, in_channels=in_channels, dtype=dtype,
                          param_dtype=param_dtype, input_size=input_size, default_size=32,
                          spatial_dims=spatial_dims)
        d, ds = spatial_dims, downsample or "subsample"
        self.squash_pools = ds == "subsample"
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.C1 = nnx.Conv(in_channels, 6, (5,) * d, padding="VALID", **kw)
        self.S2 = make_downsample(ds, Point(2, 2, 0, d, 6, **kw))
        self.C3 = TableConv(C3_TABLE, 6, (5,) * d, **kw)
        self.S4 = make_downsample(ds, Point(2, 2, 0, d, 16, **kw))
        self.head = make_head(head or "flatten", HeadSite(16, self.final_spatial(size), **kw))
        h = head_width(self.head, 16, self.final_spatial(size))
        self.C5 = nnx.Linear(h, 120, **kw)
        self.F6 = nnx.Linear(120, 84, **kw)
        self.output = nnx.Linear(84, num_classes, **kw)
        self.finish_contract(num_classes=num_classes, in_channels=in_channels,
                             input_size=size, cfg=MNIST_CFG)

    def stages(self) -> list[Stage]:
        pooled = (squash,) if self.squash_pools else ()
        return [Stage("C1", 6, (self.C1, squash)), Stage("S2", 6, (self.S2, *pooled)),
                Stage("C3", 16, (self.C3, squash)), Stage("S4", 16, (self.S4, *pooled))]

    def classifier_ops(self) -> list:
        return [self.C5, squash, self.F6, squash, self.output]
