"""Fashion-MNIST prepared from local IDX files (no download), read like every TFDS dataset.

Source: Zalando Research's Fashion-MNIST (H. Xiao, K. Rasul, R. Vollgraf, 2017,
arXiv:1708.07747; MIT licence; https://github.com/zalandoresearch/fashion-mnist): 60,000
training and 10,000 test 28x28 grey product photos, 10 classes (6,000 / 1,000 each), shipped
as four IDX files. Debian and Ubuntu package those files (`apt-get install
dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist/).

Where the files are looked for: `$POOLNETS_FASHION_MNIST_DIR` if set, else the Debian
package's directory. Each file may be gzipped as published (`*-ubyte.gz`) or not (`*-ubyte`).

Every file is checked before anything is written: gzip integrity, the IDX magic number (2051
for images, 2049 for labels: unsigned bytes, 3 or 1 dimensions), the dimensions (N x 28 x
28), the payload size implied by the header (no truncation, no trailing bytes), the counts
(60,000 / 10,000, the same in the image and label file of a split), the labels (0..9) and the
per-class counts (6,000 / 1,000). Any failure is a one-line `SourceError` naming the file.

The files are then written as TFDS's own `fashion_mnist` dataset (same name, version,
features and splits as `tfds build fashion_mnist --file_format=array_record`), so
`tfds.data_source("fashion_mnist", data_dir=...)` reads them and a copy prepared elsewhere by
TFDS is read the same way. TFDS writes into a temporary directory and renames it into place
only when every split is written, so a failed preparation leaves nothing that looks prepared.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from poolnets.data.sources import DatasetUnavailable, _quiet, exclusive_lock

NAME = "fashion_mnist"
NUM_CLASSES = 10
SIZE = 28
IMAGE_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
COUNTS = {"train": 60_000, "test": 10_000}
FILES = {  # split -> (images, labels), the names Zalando publishes (without .gz)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
DIR_ENV = "POOLNETS_FASHION_MNIST_DIR"
INSTALL_HINT = (
    f"install the Debian/Ubuntu package (`apt-get install dataset-fashion-mnist`, files in "
    f"{DEBIAN_DIR}), or download the four files from "
    f"https://github.com/zalandoresearch/fashion-mnist into a directory and set ${DIR_ENV} "
    f"to it")


class SourceError(DatasetUnavailable, ValueError):
    """A Fashion-MNIST source file that is missing, unreadable or not what it should be."""


def source_dir() -> str:
    """The directory holding the four IDX files: $POOLNETS_FASHION_MNIST_DIR or Debian's."""
    return os.environ.get(DIR_ENV) or DEBIAN_DIR


def find_files(directory: str) -> dict[str, tuple[str, str]]:
    """split -> (images path, labels path) in `directory`, each `<name>.gz` or `<name>`.

    SourceError listing every missing file (and how to get them) if any is absent.
    """
    found: dict[str, str] = {}
    for name in (n for pair in FILES.values() for n in pair):
        for candidate in (f"{name}.gz", name):
            if os.path.isfile(os.path.join(directory, candidate)):
                found[name] = os.path.join(directory, candidate)
                break
    missing = [f"{n}.gz" for pair in FILES.values() for n in pair if n not in found]
    if missing:
        where = (f"{directory} does not exist" if not os.path.isdir(directory)
                 else f"missing in {directory}: {', '.join(missing)}")
        raise SourceError(f"Fashion-MNIST files not found ({where}); {INSTALL_HINT}")
    return {split: (found[i], found[label]) for split, (i, label) in FILES.items()}


def _read_bytes(path: str) -> bytes:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read()
        with open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as error:
        # gzip raises BadGzipFile (an OSError) for a bad header, EOFError when cut short
        # and zlib.error for damaged deflate data; all mean the same to the user.
        raise SourceError(f"{path}: cannot be read as "
                          f"{'gzip' if path.endswith('.gz') else 'a file'} "
                          f"({type(error).__name__}: {error})") from None


def read_idx(path: str, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """An IDX file of unsigned bytes as a uint8 array (N, *item_shape).

    SourceError naming `path` unless the magic number is `magic`, the dimensions after the
    first are `item_shape`, and the payload is exactly as long as the header says.
    """
    data = _read_bytes(path)
    ndim = 1 + len(item_shape)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SourceError(f"{path}: truncated: {len(data)} bytes, shorter than the "
                          f"{header}-byte IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise SourceError(f"{path}: IDX magic number {found} (0x{found:08x}), expected "
                          f"{magic} (0x{magic:08x}: unsigned bytes, {ndim}-D)")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if dims[1:] != item_shape:
        raise SourceError(f"{path}: IDX dimensions {dims}, expected (N, "
                          f"{', '.join(map(str, item_shape))})")
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "trailing bytes"
        raise SourceError(f"{path}: {problem}: {len(data)} bytes, the header {dims} implies "
                          f"{expected}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def read_pair(images_path: str, labels_path: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """One split's (images (count, 28, 28) uint8, labels (count,) uint8), fully checked:
    `count` examples in each file, labels 0..9, count / 10 examples of every class."""
    images = read_idx(images_path, IMAGE_MAGIC, (SIZE, SIZE))
    labels = read_idx(labels_path, LABEL_MAGIC, ())
    if len(images) != len(labels):
        raise SourceError(f"{labels_path}: {len(labels)} labels for the {len(images)} "
                          f"images of {images_path}")
    if len(images) != count:
        raise SourceError(f"{images_path}: {len(images)} images, expected {count}")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise SourceError(f"{labels_path}: label {int(labels.max())} out of range "
                          f"0..{NUM_CLASSES - 1}")
    per_class = np.bincount(labels, minlength=NUM_CLASSES)
    if (per_class != count // NUM_CLASSES).any():
        raise SourceError(f"{labels_path}: examples per class {per_class.tolist()}, "
                          f"expected {count // NUM_CLASSES} each")
    return images, labels


def load_source(directory: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """split -> (images, labels) from the IDX files in `directory` (default `source_dir()`),
    every file checked (`read_pair`) before any is used."""
    paths = find_files(directory or source_dir())
    return {split: read_pair(*paths[split], COUNTS[split]) for split in FILES}


def _builder_class() -> type:
    """TFDS's `fashion_mnist` builder, reading the local arrays instead of downloading.

    Built on first use so that importing this module does not import TFDS's catalogue.
    `skip_registration`: the name `fashion_mnist` stays TFDS's own builder, which is what
    `tfds.data_source` instantiates to read what this one wrote.
    """
    from etils import epath
    from PIL import Image
    from tensorflow_datasets.image_classification.mnist import FashionMNIST

    class LocalFashionMNIST(FashionMNIST, skip_registration=True):
        name = NAME
        code_path = epath.Path(__file__)  # see poolnets.data.digits: avoids a backport

        def __init__(self, *, source: dict, **kwargs: Any) -> None:
            self._source = source
            super().__init__(**kwargs)

        def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
            del dl_manager  # nothing to download: the arrays are already read and checked
            return {split: self._generate_examples(*self._source[split]) for split in FILES}

        def _generate_examples(self, images: np.ndarray, labels: np.ndarray
                               ) -> Iterator[tuple[int, dict[str, Any]]]:
            # PIL images: TFDS encodes a numpy image to PNG with TensorFlow, a PIL one with PIL
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                yield i, {"image": Image.fromarray(image, mode="L"), "label": int(label)}

        # TFDS would announce a download; `prepare` says what happens instead.
        def _log_download_bytes(self) -> None:
            pass

        def _log_download_done(self) -> None:
            pass

    return LocalFashionMNIST


def is_prepared(data_dir: str) -> bool:
    """Whether TFDS finds a prepared `fashion_mnist` (any file format) under `data_dir`."""
    import tensorflow_datasets as tfds

    try:
        with _quiet():  # absl warnings about a missing or empty version folder
            return tfds.builder(NAME, data_dir=data_dir).is_prepared()
    except Exception:  # noqa: BLE001 -- an unreadable dataset_info is "not prepared"
        return False


def prepare(data_dir: str, directory: str | None = None) -> None:
    """Writes `fashion_mnist` as array_record under `data_dir` from the IDX files in
    `directory` (default `source_dir()`), unless it is prepared there already.

    The files are read and checked completely first (SourceError, nothing written); the
    exclusive lock makes concurrent first uses prepare it once.
    """
    import tensorflow_datasets as tfds

    os.makedirs(data_dir, exist_ok=True)
    with exclusive_lock(os.path.join(data_dir, f"{NAME}.lock")):
        if is_prepared(data_dir):
            return
        directory = directory or source_dir()
        source = load_source(directory)
        print(f"poolnets: preparing {NAME} from {directory} (no download) in {data_dir}",
              file=sys.stderr)
        tfds.display_progress_bar(False)
        try:
            # quiet: TFDS warns that the version folder it is about to fill has no
            # dataset_info.json, which is true and expected on a first preparation
            with _quiet():
                builder = _builder_class()(source=source, data_dir=data_dir,
                                           file_format="array_record")
                builder.download_and_prepare(
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        finally:
            tfds.display_progress_bar(True)
