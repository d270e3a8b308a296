"""Input pipeline: named datasets, seeded batches on Grain, host sharding, device prefetch.

Training batches (`train_batches`) are a `grain.MapDataset` indexed by step: step s is cut
from the permutation `numpy.random.default_rng((seed, epoch)).permutation(N)` of its epoch,
so the order depends only on the seed and the epoch number, every host of a multi-host run
agrees on the global batch and reads only its own contiguous slice of it, and Grain's
worker processes (`workers`) can read and decode any batch independently. The iterator's
state (`get_state`/`set_state`) goes into every checkpoint, so a resumed run continues with
the very next batch. Augmentation of in-memory datasets runs on device inside the jitted
train step (`poolnets.data.augment`); streamed ones are decoded and augmented on the host.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import grain
import numpy as np

from poolnets.data.augment import Preprocess
from poolnets.data.sources import Split

# Serving geometry for `digits`: each 8x8 pixel becomes a 2x2 block (16x16, exact, no
# interpolation), centred in LeNet-5's 32x32 input with an 8-pixel zero border, so shifts
# of up to 8 pixels never cut the digit off.
DIGITS_UPSAMPLE = 2
DIGITS_BORDER = 8
DIGITS_GREY_LEVELS = 16  # source values are 0..16


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the trainer needs to know about a dataset before reading it.

    image_shape: the model input (H, W, C) after `preprocess`; stored_shape: a batch row as
    served to the step (None: image_shape). read(data_dir, split) -> Split or StreamingSplit.
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    read: Callable[[str, str], Any]
    preprocess: Preprocess = Preprocess()
    splits: tuple[str, str] = ("train", "test")
    stored_shape: tuple[int, int, int] | None = None
    stored_dtype: str = "uint8"


def digits_to_lenet_levels(images: np.ndarray) -> np.ndarray:
    """Maps raw digits (N, 8, 8, 1) with grey levels 0..16 to (N, 32, 32, 1) uint8 levels,
    as `digits` is stored (a quarter of float32's bytes to gather and hand to the step,
    whose preprocessing scales them by 1/16).

    Each pixel is repeated into a 2x2 block (8x8 -> 16x16), then zero padded by 8 pixels
    on every side (16x16 -> 32x32). Zero is the background grey level.
    """
    x = np.asarray(images, np.uint8)
    x = x.repeat(DIGITS_UPSAMPLE, axis=1).repeat(DIGITS_UPSAMPLE, axis=2)
    b = DIGITS_BORDER
    return np.pad(x, ((0, 0), (b, b), (b, b), (0, 0)))


def digits_to_lenet_input(images: np.ndarray) -> np.ndarray:
    """Raw digits (N, 8, 8, 1) -> (N, 32, 32, 1) float32 in [0, 1]: value = level / 16 of
    `digits_to_lenet_levels`, what LeNet-5 sees before augmentation."""
    return digits_to_lenet_levels(images).astype(np.float32) / DIGITS_GREY_LEVELS


def _read_digits(data_dir: str, split: str) -> Split:
    from poolnets.data import digits

    images, labels, _ = digits.read_split(data_dir, split)
    return Split(digits_to_lenet_levels(images), labels)


def _read_textures(data_dir: str, split: str) -> Split:
    from poolnets.data import textures

    del data_dir  # generated in memory, deterministic
    return Split(*textures.read_split(split))


def _tfds(name: str, *, streaming: bool = False) -> Callable[[str, str], Any]:
    def read(data_dir: str, split: str) -> Any:
        from poolnets.data import sources

        reader = sources.read_streaming if streaming else sources.read_in_memory
        return reader(name, split, data_dir)

    return read


# Channel statistics of the training images, as commonly published (torchvision examples).
_MNIST = Preprocess(scale=1 / 255, pad=2, mean=(0.1307,), std=(0.3081,))
_FASHION = Preprocess(scale=1 / 255, pad=2, mean=(0.2860,), std=(0.3530,))
_CIFAR10 = Preprocess(scale=1 / 255, max_shift=4, flip=True,
                      mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
_CIFAR100 = Preprocess(scale=1 / 255, max_shift=4, flip=True,
                       mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762))
_IMAGENET = Preprocess(scale=1 / 255, flip=True,
                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(10, (32, 32, 1), _read_digits,
                          Preprocess(scale=1 / DIGITS_GREY_LEVELS, max_shift=2)),
    "textures": DatasetSpec(8, (32, 32, 1), _read_textures, stored_dtype="float32"),
    "mnist": DatasetSpec(10, (32, 32, 1), _tfds("mnist"), _MNIST, stored_shape=(28, 28, 1)),
    "fashion_mnist": DatasetSpec(10, (32, 32, 1), _tfds("fashion_mnist"), _FASHION,
                                 stored_shape=(28, 28, 1)),
    "cifar10": DatasetSpec(10, (32, 32, 3), _tfds("cifar10"), _CIFAR10),
    "cifar100": DatasetSpec(100, (32, 32, 3), _tfds("cifar100"), _CIFAR100),
    "imagenette": DatasetSpec(10, (224, 224, 3), _tfds("imagenette", streaming=True),
                              _IMAGENET, splits=("train", "validation")),
    "imagenet2012": DatasetSpec(1000, (224, 224, 3), _tfds("imagenet2012", streaming=True),
                                _IMAGENET, splits=("train", "validation")),
}


def dataset_names() -> list[str]:
    """Names accepted by `dataset_spec` and `load_split` ("synthetic" included)."""
    return sorted([*DATASETS, "synthetic"])


def get_spec(name: str) -> DatasetSpec:
    """The `DatasetSpec` of a stored dataset `name`; ValueError naming the choices otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choices: {', '.join(dataset_names())}")
    return DATASETS[name]


def dataset_spec(name: str, synthetic: Any = None) -> DatasetSpec:
    """`get_spec(name)`, or for "synthetic" a spec built from `synthetic` (a config group
    with image_shape (H, W, C), num_classes, num_train, num_test)."""
    if name != "synthetic":
        return get_spec(name)
    shape = tuple(synthetic.image_shape)
    if len(shape) != 3 or any(not isinstance(d, int) or d <= 0 for d in shape):
        raise ValueError(f"synthetic.image_shape={shape!r} must be 3 positive ints (H, W, C)")
    for field in ("num_classes", "num_train", "num_test"):
        if not isinstance(synthetic[field], int) or synthetic[field] <= 0:
            raise ValueError(f"synthetic.{field}={synthetic[field]!r} must be a positive int")
    sizes = {"train": synthetic.num_train, "test": synthetic.num_test}

    def read(data_dir: str, split: str) -> Split:
        from poolnets.data.sources import synthetic_split

        del data_dir
        return synthetic_split(shape, synthetic.num_classes, sizes[split],
                               seed=0 if split == "train" else 1)

    return DatasetSpec(synthetic.num_classes, shape, read, Preprocess(scale=1 / 255))


def default_data_dir() -> str:
    """Where datasets are prepared when the config gives no `data_dir`.

    `$TFDS_DATA_DIR` if set, else `~/tensorflow_datasets` (TFDS's own default).
    """
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def load_split(name: str, split: str, data_dir: str | None = None) -> Any:
    """Reads split `split` ("train" or "test"; "test" is the evaluation split, e.g. ImageNet's
    "validation") of stored dataset `name` from `data_dir`."""
    spec = get_spec(name)
    split = dict(zip(("train", "test"), spec.splits, strict=True)).get(split, split)
    return spec.read(data_dir or default_data_dir(), split)


def _shard(idx: np.ndarray, shard: tuple[int, int]) -> np.ndarray:
    index, count = shard
    per = len(idx) // count
    return idx[index * per:(index + 1) * per]


def epoch_batches(
    data: Any, batch_size: int, *, seed: int, epoch: int, start: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled full batches of one epoch from batch `start` on: yields (images, labels).

    batch_size is global; with shard=(i, n) each yield is host i's contiguous 1/n of the
    global batch (only those rows are read). The final partial batch is dropped, so every
    step has the same shape (one compile). The same batches as `train_batches`, in one
    thread, for callers that need no checkpointable iterator.
    """
    batches = _TrainBatches(data, batch_size, seed, (epoch + 1) * (len(data) // batch_size),
                            shard)
    for step in range(epoch * batches.steps_per_epoch + start, len(batches)):
        yield batches[step]


class _TrainBatches(grain.MapDataset):
    """Host batch `step` of a run, for step in [0, num_steps): a pure function of
    (seed, step), so any process can produce any batch in any order.

    Step s is batch s % steps_per_epoch of epoch s // steps_per_epoch, cut from
    `default_rng((seed, epoch)).permutation(len(data))`; the shard takes its contiguous
    share of the global batch.
    """

    def __init__(self, data: Any, batch_size: int, seed: int, num_steps: int,
                 shard: tuple[int, int]):
        super().__init__()
        self.data, self.batch_size, self.seed, self.shard = data, batch_size, seed, shard
        self.num_steps = num_steps
        self.steps_per_epoch = len(data) // batch_size
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, permutation), reused

    def __len__(self) -> int:
        return self.num_steps

    def __getitem__(self, step: Any) -> Any:
        if isinstance(step, slice):
            return self.slice(step)
        epoch, k = divmod(int(step), self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng((self.seed, epoch)).permutation(
                len(self.data)))
        begin = k * self.batch_size
        idx = _shard(self._order[1][begin:begin + self.batch_size], self.shard)
        return self.data.take(idx, (self.seed, epoch, begin))


def _allow_grain_workers() -> None:
    """Grain's worker processes read absl flags; a caller that did not parse flags (a
    library user, the tests) gets their defaults, as `absl.app.run` would give."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def train_batches(
    data: Any, batch_size: int, *, seed: int, num_steps: int,
    shard: tuple[int, int] = (0, 1), workers: int = 0,
    place: Callable[..., Any] | None = None, prefetch: int = 0,
) -> grain.IterDataset:
    """The run's training batches, steps 0..num_steps-1, as a checkpointable Grain dataset.

    Epochs follow each other (a run crosses epoch boundaries in one iterator). Batches are
    read (and for `StreamingSplit`, decoded and augmented) in `workers` processes (0: in
    this process); `place(images, labels)` (e.g. onto a device mesh) runs in a background
    thread `prefetch` batches ahead (0: no thread, in the caller's). The iterator's
    `get_state()` after step s resumes at step s with `set_state` in a pipeline built with
    the same `workers`, whatever the shard and the prefetch.
    """
    if not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative int, got {workers!r}")
    dataset = _TrainBatches(data, batch_size, seed, num_steps, shard).to_iter_dataset(
        grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
    if workers:
        _allow_grain_workers()
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    if place is not None:
        dataset = dataset.map(lambda batch: place(*batch))
    if not prefetch:  # same iterator state, without the wrapper's per-batch deep copy of it
        return dataset
    return grain.experimental.ThreadPrefetchIterDataset(dataset, prefetch_buffer_size=prefetch)


def eval_batches(
    data: Any, batch_size: int, *, shard: tuple[int, int] = (0, 1)
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """All examples in order, in fixed-size batches: yields (images, labels, mask (B,) bool).

    The last batch is padded with copies of example 0 whose mask is False, so every example
    counts exactly once and every batch has the same shape. shard as in `train_batches`.
    """
    n = len(data)
    for begin in range(0, n, batch_size):
        idx = _shard(np.arange(begin, begin + batch_size), shard)
        mask = idx < n
        images, labels = data.take(np.where(mask, idx, 0))
        yield images, labels, mask
