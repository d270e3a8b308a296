"""Input pipeline: named datasets served as in-memory float arrays, epoch batches, augmentation.

Every dataset here is small enough to live in host memory as one array per split; batches
are cut from a per-epoch permutation drawn from `numpy.random.default_rng((seed, epoch))`,
so an epoch's order depends only on the seed and the epoch number (resumable, and the same
on every host of a multi-host run). Augmentation runs on device inside the jitted train
step, from an explicit JAX key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

# Serving geometry for `digits`: each 8x8 pixel becomes a 2x2 block (16x16, exact, no
# interpolation), centred in LeNet-5's 32x32 input with an 8-pixel zero border, so shifts
# of up to 8 pixels never cut the digit off.
DIGITS_UPSAMPLE = 2
DIGITS_BORDER = 8
DIGITS_GREY_LEVELS = 16  # source values are 0..16


@dataclasses.dataclass(frozen=True)
class Split:
    """One split in memory: images (N, H, W, C) float32 in [0, 1], labels (N,) int32."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the trainer needs to know about a dataset before reading it."""

    num_classes: int
    image_shape: tuple[int, int, int]
    read: Callable[[str, str], Split]  # (data_dir, split) -> Split


def digits_to_lenet_input(images: np.ndarray) -> np.ndarray:
    """Maps raw digits (N, 8, 8, 1) with grey levels 0..16 to (N, 32, 32, 1) float32 in [0, 1].

    value = level / 16; each pixel is repeated into a 2x2 block (8x8 -> 16x16), then zero
    padded by 8 pixels on every side (16x16 -> 32x32). Zero is the background grey level.
    """
    x = np.asarray(images, np.float32) / DIGITS_GREY_LEVELS
    x = x.repeat(DIGITS_UPSAMPLE, axis=1).repeat(DIGITS_UPSAMPLE, axis=2)
    b = DIGITS_BORDER
    return np.pad(x, ((0, 0), (b, b), (b, b), (0, 0)))


def _read_digits(data_dir: str, split: str) -> Split:
    from poolnets.data import digits

    images, labels, _ = digits.read_split(data_dir, split)
    return Split(digits_to_lenet_input(images), labels)


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(num_classes=10, image_shape=(32, 32, 1), read=_read_digits),
}


def dataset_names() -> list[str]:
    """Names accepted by `get_spec` and `load_split`."""
    return sorted(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The `DatasetSpec` of `name`; ValueError naming the valid choices otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choices: {', '.join(dataset_names())}")
    return DATASETS[name]


def default_data_dir() -> str:
    """Where datasets are prepared when the config gives no `data_dir`.

    `$TFDS_DATA_DIR` if set, else `~/tensorflow_datasets` (TFDS's own default).
    """
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def load_split(name: str, split: str, data_dir: str | None = None) -> Split:
    """Reads split `split` of dataset `name`, preparing it under `data_dir` on first use."""
    return get_spec(name).read(data_dir or default_data_dir(), split)


def epoch_batches(
    data: Split, batch_size: int, *, seed: int, epoch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled full batches of one epoch: yields (images (B, ...), labels (B,)).

    The final partial batch is dropped, so every step has the same shape (one compile).
    """
    order = np.random.default_rng((seed, epoch)).permutation(len(data))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        yield data.images[idx], data.labels[idx]


def eval_batches(
    data: Split, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """All examples in order, in fixed-size batches: yields (images, labels, mask (B,) bool).

    The last batch is padded with copies of example 0 whose mask is False, so every example
    counts exactly once and every batch has the same shape.
    """
    n = len(data)
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        mask = idx < n
        idx = np.where(mask, idx, 0)
        yield data.images[idx], data.labels[idx], mask


def random_shift(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
    """Translates each image by its own integer offset in [-max_shift, max_shift]^2.

    images: (B, H, W, C) -> (B, H, W, C). Pixels shifted in from outside are zero; with the
    digits border (8 px) and max_shift <= 8 no part of a digit is lost.
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
