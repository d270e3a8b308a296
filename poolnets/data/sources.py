"""Public TFDS datasets read without TensorFlow, and the synthetic dataset.

Reading goes through `tfds.data_source(..., download=False, try_gcs=False)`, i.e. TFDS's
random-access path over array_record files: no network, no TensorFlow, no tf.data. TFDS
prepares most public datasets as TFRecord by default, which only TensorFlow can read, so
prepare them with `file_format=array_record` (message below). Small datasets (MNIST,
Fashion-MNIST, CIFAR) are read whole into host memory as uint8; ImageNet-sized ones are
decoded batch by batch (`StreamingSplit`), with the host-side crop/resize of their recipe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """One split in memory: images (N, H, W, C) (float32 in [0, 1] or uint8), labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray, augment_seed: tuple | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Rows `idx`; in-memory data is augmented on device, so augment_seed is unused."""
        del augment_seed
        return self.images[idx], self.labels[idx]


class DatasetUnavailable(RuntimeError):
    """A dataset that is not prepared (in a readable format) under the data_dir."""


def prepare_hint(name: str, data_dir: str) -> str:
    manual = (f" ImageNet cannot be downloaded by TFDS: first put ILSVRC2012_img_train.tar "
              f"and ILSVRC2012_img_val.tar in {data_dir}/downloads/manual/."
              if name == "imagenet2012" else "")
    return (f"prepare it where there is network access (TFDS's builder may need TensorFlow "
            f"there) with `tfds build {name} --data_dir={data_dir} "
            f"--file_format=array_record`, then copy {data_dir}/{name} to the training "
            f"machine and set config.data_dir (or $TFDS_DATA_DIR).{manual}")


# Datasets poolnets writes itself from files already on the machine (module with `prepare`),
# when they are not prepared in the data_dir yet.
LOCAL_PREPARERS = {"fashion_mnist": "poolnets.data.fashion_mnist"}


@contextlib.contextmanager
def exclusive_lock(path: str) -> Iterator[None]:
    """Holds an exclusive `flock` on `path` (created if missing) for the duration: the
    local preparers (digits, fashion_mnist) run once when several processes start at once."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_source(name: str, split: str, data_dir: str) -> Any:
    """`tfds.data_source` for a prepared array_record dataset; DatasetUnavailable otherwise.

    A dataset in LOCAL_PREPARERS that is not prepared yet is prepared from local files first.
    """
    import tensorflow_datasets as tfds

    try:
        with _quiet():
            return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                                    try_gcs=False)
    except Exception as error:  # noqa: BLE001 -- every failure here means "not readable"
        try:
            with _quiet():
                builder = tfds.builder(name, data_dir=data_dir)
                prepared = builder.is_prepared()
                file_format = builder.info.file_format
        except Exception:  # noqa: BLE001
            prepared, file_format = False, None
        if prepared and file_format is not None and "array_record" not in str(file_format):
            raise DatasetUnavailable(
                f"dataset {name!r} in {data_dir} is prepared as {file_format}, which needs "
                f"TensorFlow to read; {prepare_hint(name, data_dir)}") from None
        if prepared:
            raise DatasetUnavailable(f"dataset {name!r} in {data_dir} cannot be read "
                                     f"({type(error).__name__}: {error})") from None
        if name in LOCAL_PREPARERS:
            importlib.import_module(LOCAL_PREPARERS[name]).prepare(data_dir)
            with _quiet():
                return tfds.data_source(name, split=split, data_dir=data_dir, download=False,
                                        try_gcs=False)
        raise DatasetUnavailable(
            f"dataset {name!r} is not prepared in {data_dir}; {prepare_hint(name, data_dir)}"
        ) from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hides TFDS's absl warnings while probing (a missing dataset gets our message)."""
    from absl import logging

    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _records(source: Any, indices: Any) -> list[dict]:
    try:
        return source.__getitems__(list(indices))
    except TypeError:  # tfds.testing.mock_data's source has no batched read
        return [source[int(i)] for i in indices]


def read_in_memory(name: str, split: str, data_dir: str) -> Split:
    """A whole split as uint8 images (N, H, W, C) and int32 labels, in stored order."""
    source = open_source(name, split, data_dir)
    records = _records(source, range(len(source)))
    images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
    labels = np.array([r["label"] for r in records], np.int32)
    return Split(images, labels)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def random_resized_crop(image: np.ndarray, rng: np.random.Generator, size: int,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """torchvision's RandomResizedCrop: area fraction ~ U(scale), log aspect ~ U(log ratio),
    up to 10 tries, else a centre crop at the nearest allowed aspect; resized bilinearly."""
    height, width = image.shape[:2]
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        w = round(np.sqrt(target * aspect))
        h = round(np.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return _resize(image[top:top + h, left:left + w], (size, size))
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return _resize(image[top:top + h, left:left + w], (size, size))


def resize_centre_crop(image: np.ndarray, resize: int, size: int) -> np.ndarray:
    """Shorter side -> `resize` (bilinear, aspect kept), then the central size x size."""
    height, width = image.shape[:2]
    scale = resize / min(height, width)
    h, w = max(size, round(height * scale)), max(size, round(width * scale))
    image = _resize(image, (h, w))
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


@dataclasses.dataclass
class StreamingSplit:
    """A split decoded on demand: `take(idx, augment_seed)` -> (uint8 (B, S, S, 3), labels).

    Training (augment_seed given): random-resized crop to `size`, each example's draws from
    `default_rng((*augment_seed, index))`, so a batch is the same whoever decodes it and
    whenever (resume, multi-host). Evaluation: resize to `resize`, centre crop `size`.
    Only the requested indices are read and decoded (each host reads its own shard), in
    `threads` threads of the process that asks (a Grain worker when config.data.workers > 0).
    """

    source: Any
    size: int = 224
    resize: int = 256
    threads: int = dataclasses.field(default_factory=lambda: min(8, os.cpu_count() or 1))

    def __len__(self) -> int:
        return len(self.source)

    def take(self, idx: np.ndarray, augment_seed: tuple | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        def one(index: int) -> tuple[np.ndarray, int]:
            record = self.source[int(index)]  # read + decode, in this worker thread
            image = np.asarray(record["image"], np.uint8)
            if image.shape[-1] == 1:
                image = np.repeat(image, 3, axis=-1)
            if augment_seed is None:
                return resize_centre_crop(image, self.resize, self.size), record["label"]
            rng = np.random.default_rng((*augment_seed, int(index)))
            return random_resized_crop(image, rng, self.size), record["label"]

        with ThreadPoolExecutor(self.threads) as pool:
            images, labels = zip(*pool.map(one, idx), strict=True)
        return np.stack(images), np.array(labels, np.int32)


def read_streaming(name: str, split: str, data_dir: str) -> StreamingSplit:
    return StreamingSplit(open_source(name, split, data_dir))


def synthetic_split(image_shape: tuple[int, int, int], num_classes: int, num_examples: int,
                    seed: int) -> Split:
    """Uniform random uint8 images and labels (throughput runs; nothing to learn)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_examples, *image_shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, num_examples).astype(np.int32)
    return Split(images, labels)
