"""On-device preprocessing inside the jitted steps: scale, pad, shift/crop, flip, normalise.

A batch arrives as stored (uint8: 0..255, or 0..16 for `digits`; float32 in [0, 1] for
`textures`); the step turns it into normalised float32 with `preprocess`. Augmentation
draws from an explicit JAX key, so a step's randomness is a function of (seed, step) and
survives resume.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How a dataset's stored batch becomes model input (all static, hashable).

    x = stored * scale; x = zero-pad(x, pad) (e.g. MNIST 28 -> 32 for LeNet-5);
    train only: x = random_shift(x, max_shift) (zero fill: pad-and-random-crop), and a
    horizontal flip with probability 1/2 if flip; finally x = (x - mean) / std per channel.
    """

    scale: float = 1.0
    pad: int = 0
    max_shift: int = 0
    flip: bool = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)


def random_shift(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
    """Translates each image by its own integer offset in [-max_shift, max_shift]^2.

    images: (B, H, W, C) -> (B, H, W, C). Pixels shifted in from outside are zero, so this
    is the "pad by max_shift, random crop back to H x W" augmentation of CIFAR recipes.
    """
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")
    if images.ndim != 4:
        raise ValueError(f"images must be (B, H, W, C), got shape {images.shape}")
    if max_shift == 0:
        return images
    batch, height, width, channels = images.shape
    s = max_shift
    padded = jnp.pad(images, ((0, 0), (s, s), (s, s), (0, 0)))
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * s + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (height, width, channels)
        )

    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirrors each image (B, H, W, C) left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1], images)


def preprocess(images: jax.Array, key: jax.Array | None, spec: Preprocess) -> jax.Array:
    """Stored batch (B, H, W, C) -> normalised float32 model input; key=None: evaluation."""
    x = images.astype(jnp.float32) * spec.scale
    if spec.pad:
        p = spec.pad
        x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    if key is not None:
        # the shift uses `key` itself (the stream the digits default was measured with)
        x = random_shift(key, x, spec.max_shift)
        if spec.flip:
            x = random_flip(jax.random.fold_in(key, 1), x)
    mean = jnp.asarray(spec.mean, jnp.float32)
    std = jnp.asarray(spec.std, jnp.float32)
    return (x - mean) / std
