"""Translation: accuracy as a function of shift, and shift consistency.

Shift consistency (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again",
ICML): the probability that the classifier gives the same class to two independently and
randomly shifted copies of an image. Shifts here are integer translations of the whole
image, either circular (`jnp.roll`) or with zero fill (pixels entering from outside are 0).
For the bundled digits (an 8-pixel zero border) both agree for shifts up to 8 pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

MODES = ("circular", "zeros")


def shift_images(images: np.ndarray, dy: int, dx: int, mode: str = "zeros") -> np.ndarray:
    """Translates (N, H, W, C) images by dy rows down and dx columns right."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    if mode == "circular":
        return np.roll(images, (dy, dx), axis=(1, 2))
    h, w = images.shape[1:3]
    out = np.zeros_like(images)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_y, dst_y = slice(max(-dy, 0), h - max(dy, 0)), slice(max(dy, 0), h - max(-dy, 0))
    src_x, dst_x = slice(max(-dx, 0), w - max(dx, 0)), slice(max(dx, 0), w - max(-dx, 0))
    out[:, dst_y, dst_x] = images[:, src_y, src_x]
    return out


Classify = Callable[[np.ndarray], np.ndarray]  # images (N, H, W, C) -> classes (N,)


def accuracy_vs_shift(classify: Classify, images: np.ndarray, labels: np.ndarray,
                      shifts: Sequence[int], *, axis: str = "x",
                      mode: str = "zeros") -> np.ndarray:
    """Accuracy at each shift (pixels) along `axis` ("x", "y" or "xy" for diagonal)."""
    if axis not in ("x", "y", "xy"):
        raise ValueError(f"axis must be 'x', 'y' or 'xy', got {axis!r}")
    labels = np.asarray(labels)
    acc = []
    for s in shifts:
        dy, dx = (s if "y" in axis else 0), (s if "x" in axis else 0)
        acc.append(float(np.mean(classify(shift_images(images, dy, dx, mode)) == labels)))
    return np.asarray(acc)


def random_shift_pairs(key: jax.Array, n: int, max_shift: int, draws: int) -> np.ndarray:
    """(draws, n, 2, 2) integer offsets (pair member, (dy, dx)) uniform in
    [-max_shift, max_shift]: the shifts `shift_consistency` uses."""
    if not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")
    return np.asarray(jax.random.randint(key, (draws, n, 2, 2), -max_shift, max_shift + 1))


def shifted_batch(images: np.ndarray, offsets: np.ndarray, mode: str = "zeros") -> np.ndarray:
    """Image i shifted by offsets[i] = (dy, dx): (N, H, W, C)."""
    return np.stack([shift_images(img[None], int(dy), int(dx), mode)[0]
                     for img, (dy, dx) in zip(images, offsets, strict=True)])


def shift_consistency(classify: Classify, images: np.ndarray, key: jax.Array, *,
                      max_shift: int = 4, draws: int = 2, mode: str = "zeros") -> float:
    """P(class(shift_a(x)) == class(shift_b(x))), shifts a, b independent and uniform in
    [-max_shift, max_shift]^2, estimated over every image and `draws` pairs per image."""
    pairs = random_shift_pairs(key, len(images), max_shift, draws)
    same = []
    for draw in pairs:
        a = classify(shifted_batch(images, draw[:, 0], mode))
        b = classify(shifted_batch(images, draw[:, 1], mode))
        same.append(a == b)
    return float(np.mean(same))
