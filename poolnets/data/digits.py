"""The bundled `digits` dataset as a TensorFlow Datasets builder (no download, no TensorFlow).

Source: the 1,797 handwritten digits of the UCI "Optical Recognition of Handwritten Digits"
data set (E. Alpaydin and C. Kaynak, 1998; https://doi.org/10.24432/C50P49), as shipped inside
scikit-learn's wheel (`sklearn.datasets.load_digits` reads `sklearn/datasets/data/digits.csv.gz`
from the installed package, so preparing the dataset never touches the network). Each image is
8x8 with 17 grey levels (0..16): a 32x32 bitmap downsampled into non-overlapping 4x4 blocks that
count the "on" pixels. Classes: the digits 0..9 (174..183 images each).

Stored features (8x8 is the real resolution; `poolnets.data.pipeline` serves it at 32x32):
    image  uint8  (8, 8, 1)  grey level 0..16
    label  int64  ()         0..9
    index  int32  ()         row in `load_digits()`, so every record traces back to its source

Split (deterministic and stratified, no random generator involved): within each class, take
the images in scikit-learn's order and send every fifth one (rank 4, 9, 14, ... within its
class) to `test`; the rest are `train`. That gives 355 test and 1,442 train images, each class
contributing floor(n_class / 5) test images.

Records are written in TFDS's array_record format and read back with `tfds.data_source`, which
needs neither TensorFlow nor tf.data. Preparation (about a second) happens on first use under
`data_dir/digits/`; it is idempotent and guarded by an exclusive file lock, so concurrent first
uses (e.g. two pytest-xdist workers) prepare it exactly once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from poolnets.data.sources import exclusive_lock

NUM_CLASSES = 10
TEST_EVERY = 5  # every TEST_EVERY-th image of each class goes to the test split
SPLITS = ("train", "test")


def stratified_test_mask(labels: np.ndarray, test_every: int = TEST_EVERY) -> np.ndarray:
    """Boolean mask (N,) that is True where an example belongs to the test split.

    Within each class, example k (0-based rank in the given order) is a test example
    iff k % test_every == test_every - 1, so each class contributes floor(n_c / test_every).
    """
    labels = np.asarray(labels)
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank_in_class[where] = np.arange(len(where))
    return rank_in_class % test_every == test_every - 1


def load_source() -> tuple[np.ndarray, np.ndarray]:
    """The raw source arrays: images (1797, 8, 8) uint8 in 0..16, labels (1797,) int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)


class Digits(tfds.core.GeneratorBasedBuilder):
    """UCI optical handwritten digits (8x8, 17 grey levels), as bundled with scikit-learn."""

    VERSION = tfds.core.Version("1.0.0")
    # TFDS derives `code_path` through `importlib_resources`, a backport that is not a
    # dependency of tensorflow-datasets on Python >= 3.9; giving the path directly avoids it.
    code_path = epath.Path(__file__)
    RELEASE_NOTES = {"1.0.0": "First release: stratified 1442/355 train/test split."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                    "index": tfds.features.Tensor(shape=(), dtype=np.int32),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            citation=(
                "@misc{alpaydin1998optical, author={Alpaydin, E. and Kaynak, C.},"
                " title={Optical Recognition of Handwritten Digits},"
                " howpublished={UCI Machine Learning Repository}, year={1998},"
                " doi={10.24432/C50P49}}"
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
        del dl_manager  # nothing to download: the data ships inside scikit-learn
        images, labels = load_source()
        is_test = stratified_test_mask(labels)
        return {
            "train": self._generate_examples(images, labels, np.flatnonzero(~is_test)),
            "test": self._generate_examples(images, labels, np.flatnonzero(is_test)),
        }

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        for i in indices:
            yield int(i), {
                "image": images[i][..., None],
                "label": int(labels[i]),
                "index": np.int32(i),
            }

    # TFDS announces every preparation as "Downloading and preparing dataset Unknown size"
    # and a "downloaded and prepared" line; neither is true of a dataset that ships inside
    # scikit-learn, so `prepare` says what happens instead.
    def _log_download_bytes(self) -> None:
        pass

    def _log_download_done(self) -> None:
        pass


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """Hides absl warnings while the builder looks for and writes the dataset: on a first use
    TFDS warns "Variant folder ... has no dataset_info.json" about the version folder that
    the preparation is about to fill."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def prepare(data_dir: str) -> Digits:
    """Prepares `digits` under `data_dir` if it is not there yet; returns the builder.

    Safe against concurrent callers: the first one holding the lock writes the files (TFDS
    writes into a temporary directory and renames it into place), the others then find the
    prepared dataset and only read it.
    """
    os.makedirs(data_dir, exist_ok=True)
    with exclusive_lock(os.path.join(data_dir, "digits.lock")), _quiet_absl():
        builder = Digits(data_dir=data_dir, file_format="array_record")
        if not builder.is_prepared():
            print(f"poolnets: preparing the bundled digits dataset (no download) in {data_dir}",
                  file=sys.stderr)
            tfds.display_progress_bar(False)
            try:
                builder.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False)
                )
            finally:
                tfds.display_progress_bar(True)
    return builder


def read_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads a whole split into memory, sorted by source index.

    Returns (images (N, 8, 8, 1) uint8, labels (N,) int32, index (N,) int32).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a digits split; choices: {', '.join(SPLITS)}")
    source = prepare(data_dir).as_data_source(split=split)
    records = source.__getitems__(range(len(source)))
    index = np.array([r["index"] for r in records], dtype=np.int32)
    order = np.argsort(index, kind="stable")
    images = np.stack([r["image"] for r in records])[order]
    labels = np.array([r["label"] for r in records], dtype=np.int32)[order]
    return images, labels, index[order]
