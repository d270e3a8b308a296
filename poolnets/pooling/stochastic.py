"""Stochastic pooling (Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep
Convolutional Neural Networks", ICLR 2013).

Each window's activations define a distribution `p_i = a_i / sum_j a_j`. In training
(`key` given) the pool outputs one activation sampled from `p`; in evaluation (`key=None`)
it outputs the probability-weighted average `sum_i p_i a_i`, which is the expectation
of the training output.

Non-positive activations (the paper pools ReLU outputs): weights are `max(a_i, 0)`, so
negative taps are never sampled and do not enter the average. A window with no positive
activation (e.g. all zero) uses uniform probabilities over its taps: the training output
is a uniformly drawn tap and the evaluation output the window mean (0 for an all-zero
window). Evaluation is always the expectation of training. Padded taps are never part of
a window. A NaN in a window makes its output NaN in both modes: evaluation's weighted sum
propagates it, and training draws the window's first NaN (so the gradient flows to it,
as `max_pool` routes to a NaN) rather than a finite element.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from poolnets.pooling.geometry import IntOrSeq, Padding, as_array
from poolnets.pooling.window_taps import (
    check_key,
    compute_dtype,
    gather_window_taps,
    require_float,
    research_geometry,
    uniform_noise,
    valid_tap_mask,
)


def window_probabilities(taps: jax.Array, mask: Any) -> jax.Array:
    """Sampling probabilities over the last (tap) axis, as in the module docstring."""
    weights = jnp.where(mask, jnp.maximum(taps, 0), 0)
    total = jnp.sum(weights, axis=-1, keepdims=True)
    positive = total > 0
    # Double `where` keeps gradients finite for windows without positive mass.
    share = weights / jnp.where(positive, total, 1)
    uniform = jnp.broadcast_to(mask / mask.sum(axis=-1, keepdims=True), taps.shape)
    return jnp.where(positive, share, uniform.astype(taps.dtype))


def stochastic_pool(
    x: jax.Array,
    window_shape: IntOrSeq,
    strides: IntOrSeq | None = None,
    padding: Padding = 0,
    *,
    key: jax.Array | None = None,
) -> jax.Array:
    """Stochastic pooling (Zeiler & Fergus 2013): `(*batch, *spatial, C) -> (*batch, *out, C)`.

    With `p_i = max(a_i, 0) / sum_j max(a_j, 0)` over a window (uniform if the sum is 0):

    * `key` given (training; one PRNG key, typed or legacy uint32 `(2,)`): `y = a_l`,
      `l ~ Categorical(p)`, drawn independently for every window and feature; the
      gradient flows to the sampled element.
    * `key=None` (evaluation): `y = sum_i p_i a_i`.

    Geometry as in `poolnets.pooling.geometry` (no dilation/ceil mode, padding at most half
    the window, padded taps excluded): `out = floor((L + lo + hi - k) / s) + 1`. Float
    inputs; half precision runs in float32.
    """
    x = as_array(x, "stochastic_pool")
    require_float(x, "stochastic_pool")
    if key is not None:
        check_key(key, "stochastic_pool")
    geometry = research_geometry(x, window_shape, strides, padding)
    taps = gather_window_taps(x.astype(compute_dtype(x.dtype)), geometry)
    mask = valid_tap_mask(geometry)
    probs = window_probabilities(taps, mask)
    if key is None:
        return jnp.sum(probs * taps, axis=-1).astype(x.dtype)
    # Gumbel-max sampling: argmax(log p + g) ~ Categorical(p); zero-probability taps never win.
    logits = jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1)), -jnp.inf)
    # A NaN's weight is NaN, which made the window uniform: it must win the draw instead.
    logits = jnp.where(jnp.isnan(taps) & mask, jnp.inf, logits)
    noise = jnp.maximum(uniform_noise(key, probs.shape, probs.dtype), jnp.finfo(probs.dtype).tiny)
    gumbel = -jnp.log(-jnp.log(noise))
    choice = jnp.argmax(jax.lax.stop_gradient(logits) + gumbel, axis=-1)
    return jnp.take_along_axis(taps, choice[..., None], axis=-1)[..., 0].astype(x.dtype)
