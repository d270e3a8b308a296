"""Receptive fields: analytic per layer, and effective (from input gradients).

Analytic (one spatial dim; the same rule per dim). A layer with kernel k, stride s,
padding p (left) and dilation d maps a unit's receptive field (size r, jump j, start c:
the input coordinate of the centre of the first output unit's field) to
    j_out = j * s
    r_out = r + (k - 1) * d * j
    c_out = c + ((k - 1) * d / 2 - p) * j
starting from the input (r, j, c) = (1, 1, 0.5) in pixel-centre coordinates (pixel i spans
[i, i + 1)); see Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019.

Effective (Luo, Li, Urtasun & Zemel 2016, "Understanding the Effective Receptive Field in
Deep Convolutional Neural Networks", NeurIPS): the gradient of one output unit (centre of a
layer's map, summed over channels) with respect to the input, |.| averaged over images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import poolnets.nnx as pnnx
from poolnets.analysis.taps import tapped_call
from poolnets.models.nnx.layers import Identity, StridedConv, Subsample, conv_geometry
from poolnets.models.nnx.lenet import TableConv


@dataclasses.dataclass(frozen=True)
class Layer:
    """One spatial layer: kernel size, stride, left padding, dilation (same in each dim)."""

    name: str
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def __post_init__(self) -> None:
        for field in ("kernel", "stride", "dilation"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Layer {self.name!r}: {field} must be a positive int, "
                                 f"got {value!r}")
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"Layer {self.name!r}: padding must be a non-negative int, "
                             f"got {self.padding!r}")


@dataclasses.dataclass(frozen=True)
class Field:
    """Receptive field after a layer: size r, jump j (input pixels between neighbouring
    units), start c (input coordinate of the first unit's field centre)."""

    name: str
    size: int
    jump: int
    start: float


def receptive_fields(layers: Sequence[Layer]) -> list[Field]:
    """The receptive field after each layer of a chain (input first, as "input")."""
    fields = [Field("input", 1, 1, 0.5)]
    for layer in layers:
        prev = fields[-1]
        span = (layer.kernel - 1) * layer.dilation
        fields.append(Field(
            layer.name,
            prev.size + span * prev.jump,
            prev.jump * layer.stride,
            prev.start + (span / 2 - layer.padding) * prev.jump,
        ))
    return fields


# Pools whose output unit reads exactly its window (no learned spatial filter beside it):
# their step is their window geometry. Output-size pools (fractional, spectral), LIP (its
# logit convolution widens the field) and unknown modules have no fixed step.
WINDOW_ONLY = (pnnx.MaxPool, pnnx.MinPool, pnnx.AvgPool, pnnx.LPPool, pnnx.GeMPool,
               pnnx.LSEPool, pnnx.SoftPool, pnnx.MedianPool, pnnx.StochasticPool,
               pnnx.MixedPool, pnnx.RandomMixedPool, pnnx.GatedPool, pnnx.TreePool)


def _first(value: Any) -> int:
    """The first spatial dim's entry of an int, per-dim ints or (low, high) pairs (low)."""
    while isinstance(value, Sequence):
        value = value[0]
    return int(value)


def _blur(name: str, filter_size: Any, stride: Any) -> Layer:
    f = _first(filter_size)  # blur_pool pads ((f - 1) // 2, f // 2) before subsampling
    return Layer(name, f, _first(stride), (f - 1) // 2)


def op_layers(name: str, op: Any, spatial: Sequence[int]) -> list[Layer] | None:
    """The analytic steps of one model op at input size `spatial` (its first dim): [] for
    pointwise ops (activations, norms, dropout), None where the field is not a fixed
    window of the input."""
    if isinstance(op, StridedConv):
        op = op.conv
    if isinstance(op, Subsample):
        op = op.pool
    if isinstance(op, nnx.Conv):
        g = conv_geometry(op, tuple(spatial))
        return [Layer(name, g.window[0], g.strides[0], g.pads[0][0], g.dilation[0])]
    if isinstance(op, TableConv):
        return [Layer(name, op.window[0])]
    if isinstance(op, WINDOW_ONLY):
        g = op.geometry((1, *spatial, 1))
        return [Layer(name, g.window_shape[0], g.strides[0], g.requested_padding[0][0],
                      g.dilation[0])]
    if isinstance(op, pnnx.WaveletPool):  # each Haar level reads 2-wide blocks, stride 2
        return [Layer(f"{name}.{level}", 2, 2) for level in range(op.levels)]
    if isinstance(op, pnnx.BlurPool):
        return [_blur(name, op.filter_size, op.stride)]
    if isinstance(op, pnnx.MaxBlurPool):
        return [Layer(f"{name}.dense", _first(op.window_shape), 1, _first(op.padding)),
                _blur(f"{name}.blur", op.filter_size, op.stride)]
    if isinstance(op, Identity) or not isinstance(op, nnx.Module):
        return []
    if isinstance(op, nnx.BatchNorm | nnx.Dropout):
        return []
    return None


def model_layers(model: Any, spatial: Sequence[int], upto: str | None = None
                 ) -> list[Layer] | None:
    """The analytic chain of a zoo model's stages (`model.stages()`, each op as
    `op_layers` reads it) at input size `spatial`, through stage `upto` (None: all); None
    where some op has no fixed window. Layers are named after their stage (and the op's
    index when a stage has several spatial ops)."""
    from poolnets.models.nnx.contract import op_spatial

    layers: list[Layer] = []
    spatial = tuple(spatial)
    for stage in model.stages():
        steps: list[Layer] = []
        for i, op in enumerate(stage.ops):
            found = op_layers(f"{stage.name}.{i}", op, spatial)
            if found is None:
                return None
            steps += found
            spatial = op_spatial(op, spatial)
        if len(steps) == 1:
            steps = [dataclasses.replace(steps[0], name=stage.name)]
        layers += steps
        if stage.name == upto:
            break
    return layers


def effective_receptive_field(model: nnx.Module, images: jax.Array, layer: str,
                              position: Sequence[int] | None = None) -> np.ndarray:
    """Mean |d a / d x| over `images` (N, *spatial, C) -> (*spatial) float64, summed over C.

    a = sum over channels of `layer`'s output at `position` (default: the map's centre,
    index size // 2 per dim), per image. The map is normalised to sum 1.
    """
    images = jnp.asarray(images, jnp.float32)
    graphdef, state = nnx.split(model)

    def unit(state: Any, x: jax.Array) -> jax.Array:
        _, act = tapped_call(nnx.merge(graphdef, state), x, layer)
        where = position if position is not None else [n // 2 for n in act.shape[1:-1]]
        if len(where) != act.ndim - 2:
            raise ValueError(f"position must have {act.ndim - 2} entries, got {position!r}")
        index = (slice(None), *where, slice(None))
        return jnp.sum(act[index].astype(jnp.float32))

    # the state is an argument, not a closure: as constants XLA would fold the whole
    # backward pass at compile time (seconds per layer).
    grad = jax.jit(jax.grad(unit, argnums=1))(state, images)
    heat = np.asarray(jnp.mean(jnp.abs(grad), axis=0).sum(-1), np.float64)
    total = heat.sum()
    return heat / total if total > 0 else heat


def support_extent(heat: np.ndarray, tol: float = 0.0) -> tuple[int, ...]:
    """Per dim, the length of the smallest box holding every entry > tol (0 when none)."""
    nz = np.argwhere(np.asarray(heat) > tol)
    if len(nz) == 0:
        return (0,) * np.ndim(heat)
    return tuple(int(v) for v in nz.max(0) - nz.min(0) + 1)


def mass_area(heat: np.ndarray, mass: float = 0.9) -> int:
    """Fewest pixels holding `mass` of the (non-negative) map's total: the ERF's area."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    flat = np.sort(np.asarray(heat, np.float64).ravel())[::-1]
    total = flat.sum()
    if total <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(flat) / total, mass - 1e-12) + 1)
