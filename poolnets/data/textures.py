"""`textures`: a procedurally generated texture classification set (no download).

Each image is 32x32x1 float32 in [0, 1]. The class is carried by local statistics only: every
image is a stationary random field with a random phase/position (and a little orientation
and frequency jitter), then standardised to the same mean (0.5) and standard deviation
(0.15) and given pixel noise, so neither brightness, contrast nor position says the class.

    0 grating, horizontal stripes, period ~8 px     4 checkerboard, period ~8 px
    1 grating, horizontal stripes, period ~4 px     5 sparse bright dots (3x3), ~3% of pixels
    2 grating, vertical stripes, period ~8 px       6 smooth noise (white noise blurred, sigma 2)
    3 grating, diagonal stripes, period ~6 px       7 white noise

`make_split(n, seed)` is deterministic in (n, seed): image i is drawn from
`numpy.random.default_rng((seed, i))`, so a split's first k images do not depend on n.
Classes are balanced (label i % 8). Splits: train = 1,600 images (seed 0), test = 400 (seed 1).
"""

from __future__ import annotations

import numpy as np

SIZE = 32
NUM_CLASSES = 8
CLASS_NAMES = ("grating_h_8", "grating_h_4", "grating_v_8", "grating_d_6", "checker_8",
               "dots", "smooth_noise", "white_noise")
SPLITS = {"train": (1600, 0), "test": (400, 1)}
MEAN, STD, PIXEL_NOISE = 0.5, 0.15, 0.2


def _grating(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, angle: float,
             period: float) -> np.ndarray:
    angle = np.deg2rad(angle + rng.uniform(-10, 10))
    period *= rng.uniform(0.9, 1.1)
    u = np.cos(angle) * yy + np.sin(angle) * xx
    return np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi))


def _blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """Circular Gaussian blur through the FFT (the field stays stationary)."""
    f = np.fft.fftfreq(SIZE)
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(field) * gain))


def _texture(label: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    if label in (0, 1, 2, 3):
        angle, period = {0: (0, 8), 1: (0, 4), 2: (90, 8), 3: (45, 6)}[label]
        return _grating(rng, yy, xx, angle, period)
    if label == 4:
        period = 8 * rng.uniform(0.9, 1.1)
        oy, ox = rng.uniform(0, period, 2)
        return np.sign(np.sin(np.pi * (yy + oy) / (period / 2))
                       * np.sin(np.pi * (xx + ox) / (period / 2)))
    if label == 5:
        centres = rng.random((SIZE, SIZE)) < 0.03 / 9  # 3x3 dots covering ~3% of pixels
        field = np.zeros((SIZE, SIZE))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                field += np.roll(centres, (dy, dx), axis=(0, 1))
        if not field.any():
            field[rng.integers(SIZE), rng.integers(SIZE)] = 1
        return field
    white = rng.standard_normal((SIZE, SIZE))
    return _blur(white, 2.0) if label == 6 else white


def make_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """One (32, 32) float32 image of class `label`, standardised, noised, clipped to [0, 1]."""
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in 0..{NUM_CLASSES - 1}, got {label!r}")
    field = _texture(label, rng)
    field = (field - field.mean()) / max(field.std(), 1e-8)
    image = MEAN + STD * field + PIXEL_NOISE * rng.standard_normal((SIZE, SIZE))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def make_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 32, 32, 1) float32 in [0, 1], labels (n,) int32), deterministic."""
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    labels = np.arange(n, dtype=np.int32) % NUM_CLASSES
    images = np.stack([make_image(int(c), np.random.default_rng((seed, i)))
                       for i, c in enumerate(labels)])
    return images[..., None], labels


def read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The fixed "train" or "test" split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return make_split(*SPLITS[split])
