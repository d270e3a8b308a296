"""Robustness: accuracy under corruptions swept over a severity range.

Corruptions act on (N, H, W, C) float images in [0, 1] and keep that range:
    gaussian_noise(x, sigma)      clip(x + sigma * z, 0, 1), z ~ N(0, 1) per pixel
    salt_and_pepper(x, amount)    each pixel (all channels together) set to 0 or 1 (equal
                                  odds) with probability `amount`
    rotate(x, degrees)            rotation about the image centre, bilinear, zero fill
    scale(x, factor)              zoom about the image centre (factor > 1 enlarges),
                                  bilinear, zero fill
Severity 0 (or factor 1) returns the input unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates


def gaussian_noise(images: np.ndarray, sigma: float, key: jax.Array) -> np.ndarray:
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma!r}")
    noise = np.asarray(jax.random.normal(key, np.shape(images)), np.float32)
    return np.clip(np.asarray(images, np.float32) + sigma * noise, 0.0, 1.0)


def salt_and_pepper(images: np.ndarray, amount: float, key: jax.Array) -> np.ndarray:
    if not 0 <= amount <= 1:
        raise ValueError(f"amount must be in [0, 1], got {amount!r}")
    images = np.asarray(images, np.float32)
    k1, k2 = jax.random.split(key)
    hit = np.asarray(jax.random.uniform(k1, images.shape[:-1] + (1,)) < amount)
    salt = np.asarray(jax.random.bernoulli(k2, 0.5, images.shape[:-1] + (1,)), np.float32)
    return np.where(hit, salt, images)


def _warp(images: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """out[y, x] = in[matrix @ (y - cy, x - cx) + (cy, cx)], bilinear, zero outside."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    h, w = images.shape[1:3]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    src = np.tensordot(matrix, np.stack([yy, xx]), axes=1) + np.array([cy, cx])[:, None, None]

    def one(channel: jax.Array) -> jax.Array:
        return map_coordinates(channel, list(jnp.asarray(src)), order=1, mode="constant")

    per_channel = jax.vmap(jax.vmap(one, in_axes=-1, out_axes=-1))
    return np.asarray(jax.jit(per_channel)(jnp.asarray(images)))


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """Counter-clockwise rotation (as displayed with row 0 at the top) by `degrees`."""
    if degrees == 0:
        return np.asarray(images, np.float32)
    t = np.deg2rad(degrees)
    # Output pixel (y, x) reads the input at the inverse rotation of its offset.
    return _warp(images, np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]))


def scale(images: np.ndarray, factor: float) -> np.ndarray:
    """Zoom by `factor` about the centre (0.8: the digit shrinks to 80%)."""
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor!r}")
    if factor == 1:
        return np.asarray(images, np.float32)
    return _warp(images, np.eye(2) / factor)


CORRUPTIONS: dict[str, tuple[str, Callable]] = {
    "gaussian_noise": ("sigma", gaussian_noise),
    "salt_and_pepper": ("fraction of pixels", salt_and_pepper),
    "rotation": ("degrees", rotate),
    "scaling": ("zoom factor", scale),
}


def corrupt(name: str, images: np.ndarray, severity: float, key: jax.Array) -> np.ndarray:
    """Applies corruption `name` (a key of CORRUPTIONS) at `severity`."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choices: {sorted(CORRUPTIONS)}")
    fn = CORRUPTIONS[name][1]
    if name in ("gaussian_noise", "salt_and_pepper"):
        return fn(images, severity, key)
    return fn(images, severity)


def accuracy_under(classify: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                   labels: np.ndarray, name: str, severities: Sequence[float],
                   key: jax.Array) -> np.ndarray:
    """Accuracy at each severity of corruption `name` (one fresh key per severity)."""
    keys = jax.random.split(key, len(severities))
    return np.asarray([
        float(np.mean(classify(corrupt(name, images, s, k)) == np.asarray(labels)))
        for s, k in zip(severities, keys, strict=True)
    ])
