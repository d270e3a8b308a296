"""LeNet-5, modern and as published (LeCun et al. 1998, "Gradient-based learning applied to
document recognition", Proc. IEEE 86(11)).

Both take 32x32 inputs (any size from 16 works; the flatten head then sees another size).
Layer names follow the paper: C1, S2, C3, S4, C5, F6, output.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from poolnets.models._common import (
    check_channels,
    check_config,
    check_head_width,
    check_input,
    conv_step,
    geometry,
    pool_step,
    scaled,
)
from poolnets.nn.heads import HeadSpec
from poolnets.nn.registry import make_downsample, make_head


def _chain(downsample: str):
    return [conv_step(5), pool_step(downsample, 2, 2), conv_step(5), pool_step(downsample, 2, 2)]


class LeNet5(nn.Module):
    """Modern LeNet-5: ReLU, 2x2/2 max pools, C3 fully connected to S2. 61,706 params.

    C1 conv5x5 6 -> S2 pool -> C3 conv5x5 16 -> S4 pool -> head -> C5 Dense 120 -> F6 Dense 84
    -> output Dense. The published head is "flatten" (C5 as a dense layer on the 5x5x16 map
    equals the paper's 5x5 convolution); other heads reduce the map first.
    downsample/head None mean "max"/"flatten". width multiplies every hidden width.
    """

    num_classes: int = 10
    downsample: str | None = None
    head: str | None = None
    dtype: Any = jnp.float32
    spatial_dims: int = 2
    width: float = 1.0

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        ds, hd, d = self.downsample or "max", self.head or "flatten", self.spatial_dims
        check_config("lenet5", num_classes=self.num_classes, downsample=ds, head=hd,
                     spatial_dims=d, dtype=self.dtype, width=self.width)
        check_input(x, model="lenet5", spatial_dims=d, chain=_chain(ds))
        check_channels(self, x, "C1")
        input_shape = x.shape
        c1, c3 = scaled(6, self.width), scaled(16, self.width)
        x = nn.relu(nn.Conv(c1, (5,) * d, padding="VALID", dtype=self.dtype, name="C1")(x))
        x = make_downsample(ds, geometry(d, 2, 2, 0, c1), dtype=self.dtype, module_name="S2")(
            x, train=train)
        x = nn.relu(nn.Conv(c3, (5,) * d, padding="VALID", dtype=self.dtype, name="C3")(x))
        x = make_downsample(ds, geometry(d, 2, 2, 0, c3), dtype=self.dtype, module_name="S4")(
            x, train=train)
        x = make_head(hd, HeadSpec(d), module_name="head")(x, train=train)
        check_head_width(self, x, layer="C5", model="lenet5", chain=_chain(ds),
                         input_shape=input_shape, plain_flatten=hd == "flatten")
        x = nn.relu(nn.Dense(scaled(120, self.width), dtype=self.dtype, name="C5")(x))
        x = nn.relu(nn.Dense(scaled(84, self.width), dtype=self.dtype, name="F6")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)


# Table I of the paper: the S2 maps each C3 map reads.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5),
)


class TableConv(nn.Module):
    """Convolution whose output map j reads only the input maps `table[j]` (VALID padding).

    Only the connected filters are parameters: kernel (*window, connections), bias (outputs).
    They are scattered into a dense kernel (*window, C_in, C_out) with zeros elsewhere.
    """

    table: tuple[tuple[int, ...], ...]
    in_features: int
    window: tuple[int, ...]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        src = np.array([i for row in self.table for i in row])
        dst = np.array([j for j, row in enumerate(self.table) for _ in row])
        fan_in = np.prod(self.window) * np.array([len(row) for row in self.table])[dst]

        def lecun_normal(key, shape, dtype=jnp.float32):
            # Each output map's fan-in counts only the input maps its table row connects.
            return jax.random.normal(key, shape, dtype) / np.sqrt(fan_in).astype(dtype)

        weights = self.param("kernel", lecun_normal, (*self.window, len(src)), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (len(self.table),), jnp.float32)
        dense = jnp.zeros((*self.window, self.in_features, len(self.table)), jnp.float32)
        dense = dense.at[..., src, dst].set(weights)
        spatial = "DHW"[-len(self.window):]
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), dense.astype(self.dtype), (1,) * len(self.window), "VALID",
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
        )
        return y + bias.astype(self.dtype)


def squash(x: jnp.ndarray) -> jnp.ndarray:
    """The paper's sigmoid, A * tanh(S * x) with A = 1.7159, S = 2/3 (appendix A)."""
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


class LeNet5_1998(nn.Module):
    """LeNet-5 as published: scaled tanh, trainable subsampling, C3's connection table.

    C1 (156) + S2 (12) + C3 (1,516) + S4 (32) + C5 (48,120) + F6 (10,164) = 60,000 trainable
    parameters, as the paper states. The paper's output layer is 10 Euclidean RBF units with
    fixed (untrained) 7x12 bitmap centres; here a trainable Dense layer (84 * num_classes +
    num_classes params, 850 for 10 classes) gives the logits instead, so the model trains with
    plain softmax cross-entropy. downsample None means "subsample" (coefficient * mean + bias
    per map, then the squashing function); any other choice replaces S2/S4 and is not
    squashed. head None means "flatten" (C5 as a dense layer).
    """

    num_classes: int = 10
    downsample: str | None = None
    head: str | None = None
    dtype: Any = jnp.float32
    spatial_dims: int = 2

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
        ds, hd, d = self.downsample or "subsample", self.head or "flatten", self.spatial_dims
        check_config("lenet5_1998", num_classes=self.num_classes, downsample=ds, head=hd,
                     spatial_dims=d, dtype=self.dtype)
        check_input(x, model="lenet5_1998", spatial_dims=d, chain=_chain(ds))
        check_channels(self, x, "C1")
        input_shape = x.shape

        def subsample(y, name):
            geo = geometry(d, 2, 2, 0, y.shape[-1])
            y = make_downsample(ds, geo, dtype=self.dtype, module_name=name)(y, train=train)
            return squash(y) if ds == "subsample" else y

        x = squash(nn.Conv(6, (5,) * d, padding="VALID", dtype=self.dtype, name="C1")(x))
        x = subsample(x, "S2")
        x = squash(TableConv(C3_TABLE, 6, (5,) * d, dtype=self.dtype, name="C3")(x))
        x = subsample(x, "S4")
        x = make_head(hd, HeadSpec(d), module_name="head")(x, train=train)
        check_head_width(self, x, layer="C5", model="lenet5_1998", chain=_chain(ds),
                         input_shape=input_shape, plain_flatten=hd == "flatten")
        x = squash(nn.Dense(120, dtype=self.dtype, name="C5")(x))
        x = squash(nn.Dense(84, dtype=self.dtype, name="F6")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)
