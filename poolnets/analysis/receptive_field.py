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

from poolnets.analysis.taps import tapped_call


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
