"""Grad-CAM heatmaps (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization", ICCV) for any Flax NNX model and any named layer.

For class c with logit y_c and the layer's activation A (N, *spatial, K):
    alpha_k = mean over spatial positions of dy_c / dA_k
    cam     = ReLU(sum_k alpha_k * A_k)            (N, *spatial)
then resized to the input's spatial size (bilinear) and, optionally, scaled to max 1 per
image. The layer is tapped with `poolnets.analysis.taps` (a subclass swapped in on a copy).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from poolnets.analysis.taps import output_and_layer_grad


@functools.partial(jax.jit, static_argnums=(0, 1))
def _act_and_grad(graphdef: nnx.GraphDef, layer: str, state: Any, images: jax.Array,
                  classes: jax.Array) -> tuple[jax.Array, jax.Array]:
    def target(y: jax.Array) -> jax.Array:
        return jnp.sum(jnp.take_along_axis(y.astype(jnp.float32), classes[:, None], -1))

    model = nnx.merge(graphdef, state)
    act, grad, _ = output_and_layer_grad(model, images, layer, target)
    return act, grad


def grad_cam(model: nnx.Module, images: jax.Array, layer: str,
             classes: jax.Array | None = None, *, upsample: bool = True,
             normalize: bool = True) -> jax.Array:
    """Grad-CAM maps (N, *spatial) for `images` (N, *spatial, C) at `layer`.

    classes: (N,) int class per image; None uses each image's predicted class.
    upsample: resize to the input's spatial size (bilinear); else the layer's own size.
    normalize: divide each map by its maximum (maps that are all zero stay zero).
    """
    images = jnp.asarray(images, jnp.float32)
    if images.ndim < 3:
        raise ValueError(f"images must be (N, *spatial, C), got shape {images.shape}")
    if classes is None:
        from poolnets.analysis.taps import tapped_call

        logits, _ = tapped_call(model, images, layer)
        classes = jnp.argmax(logits, -1)
    classes = jnp.asarray(classes)
    if classes.shape != images.shape[:1]:
        raise ValueError(f"classes must have shape {images.shape[:1]}, got {classes.shape}")

    graphdef, state = nnx.split(model)
    act, grad = _act_and_grad(graphdef, layer, state, images, classes)
    spatial_axes = tuple(range(1, act.ndim - 1))
    alpha = jnp.mean(grad, axis=spatial_axes, keepdims=True)
    cam = jax.nn.relu(jnp.sum(alpha * act.astype(jnp.float32), axis=-1))
    if upsample:
        cam = jax.image.resize(cam, (cam.shape[0], *images.shape[1:-1]), "bilinear")
        cam = jax.nn.relu(cam)
    if normalize:
        peak = jnp.max(cam, axis=tuple(range(1, cam.ndim)), keepdims=True)
        cam = jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1.0), 0.0)
    return cam
