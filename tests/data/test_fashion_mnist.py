"""Fashion-MNIST from local IDX files: the reader and its checks on tiny hand-written files,
preparation into TFDS's `fashion_mnist` layout, and (where the Debian package's files are
installed, and always under CI=true) the real dataset and a short training run on it."""

import gzip
import os
import pathlib

import numpy as np
import pytest

from poolnets.data import fashion_mnist as fm
from poolnets.data import get_spec, load_split
from poolnets.data.sources import DatasetUnavailable

NAMES = [name for pair in fm.FILES.values() for name in pair]


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return (magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
            + payload)


def tiny_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)
    return images, labels


def write(path: pathlib.Path, data: bytes, compress: bool = True) -> str:
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return str(path)


def write_pair(directory: pathlib.Path, split: str, images: np.ndarray, labels: np.ndarray,
               compress: bool = True) -> tuple[str, str]:
    image_name, label_name = fm.FILES[split]
    return (write(directory / image_name,
                  idx_bytes(fm.IMAGE_MAGIC, images.shape, images.tobytes()), compress),
            write(directory / label_name,
                  idx_bytes(fm.LABEL_MAGIC, labels.shape, labels.tobytes()), compress))


TINY = {"train": 20, "test": 10}


@pytest.fixture
def tiny_source(tmp_path, monkeypatch):
    """A directory with the four files for a 20 / 10 example Fashion-MNIST."""
    monkeypatch.setattr(fm, "COUNTS", TINY)
    directory = tmp_path / "source"
    directory.mkdir()
    arrays = {split: tiny_split(n, seed) for seed, (split, n) in enumerate(TINY.items())}
    for split, (images, labels) in arrays.items():
        write_pair(directory, split, images, labels, compress=split == "train")
    return directory, arrays


@pytest.mark.parametrize("compress", [True, False])
def test_read_pair_returns_the_arrays_written(tmp_path, compress):
    images, labels = tiny_split(20, 0)
    paths = write_pair(tmp_path, "train", images, labels, compress)
    got_images, got_labels = fm.read_pair(*paths, count=20)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def bad_file_cases():
    images, labels = tiny_split(20, 0)
    good_images = idx_bytes(fm.IMAGE_MAGIC, images.shape, images.tobytes())
    good_labels = idx_bytes(fm.LABEL_MAGIC, labels.shape, labels.tobytes())
    zipped = gzip.compress(good_images)
    corrupted = bytearray(zipped)
    corrupted[len(corrupted) // 2] ^= 0xFF
    unbalanced = labels.copy()
    unbalanced[unbalanced == 3] = 4
    out_of_range = labels.copy()
    out_of_range[0] = 10
    # (name, image file bytes, label file bytes, file named, message)
    return [
        ("gzip cut short", zipped[:-100], None, 0, r"cannot be read as gzip \(EOFError"),
        ("gzip damaged", bytes(corrupted), None, 0, r"cannot be read as gzip"),
        ("not gzip", good_images, None, 0, r"cannot be read as gzip \(BadGzipFile"),
        ("header cut", gzip.compress(good_images[:10]), None, 0,
         r"truncated: 10 bytes, shorter than the 16-byte IDX header"),
        ("payload cut", gzip.compress(good_images[:-1]), None, 0,
         r"truncated: 15695 bytes, the header \(20, 28, 28\) implies 15696"),
        ("trailing bytes", gzip.compress(good_images + b"\0"), None, 0,
         r"trailing bytes: 15697 bytes"),
        ("labels as images", gzip.compress(good_labels), None, 0,
         r"IDX magic number 2049 \(0x00000801\), expected 2051"),
        ("images as labels", None, gzip.compress(good_images), 1,
         r"IDX magic number 2051 \(0x00000803\), expected 2049"),
        ("wrong size", gzip.compress(idx_bytes(fm.IMAGE_MAGIC, (20, 27, 28),
                                               images[:, :27].tobytes())), None, 0,
         r"IDX dimensions \(20, 27, 28\), expected \(N, 28, 28\)"),
        ("fewer labels", None, gzip.compress(idx_bytes(fm.LABEL_MAGIC, (19,),
                                                       labels[:19].tobytes())), 1,
         r"19 labels for the 20 images of .*train-images-idx3-ubyte.gz"),
        ("label 10", None, gzip.compress(idx_bytes(fm.LABEL_MAGIC, (20,),
                                                   out_of_range.tobytes())), 1,
         r"label 10 out of range 0..9"),
        ("classes unbalanced", None, gzip.compress(idx_bytes(fm.LABEL_MAGIC, (20,),
                                                             unbalanced.tobytes())), 1,
         r"examples per class \[2, 2, 2, 0, 4, 2, 2, 2, 2, 2\], expected 2 each"),
    ]


@pytest.mark.parametrize("case", bad_file_cases(), ids=lambda case: case[0])
def test_bad_file_is_a_one_line_error_naming_it(tmp_path, case):
    _, image_bytes, label_bytes, named, message = case
    paths = list(write_pair(tmp_path, "train", *tiny_split(20, 0)))
    for i, data in enumerate((image_bytes, label_bytes)):
        if data is not None:
            pathlib.Path(paths[i]).write_bytes(data)
    with pytest.raises(fm.SourceError, match=message) as error:
        fm.read_pair(*paths, count=20)
    text = str(error.value)
    assert text.startswith(f"{paths[named]}: ") and "\n" not in text
    assert isinstance(error.value, ValueError) and isinstance(error.value, DatasetUnavailable)


def test_count_other_than_the_published_one_is_an_error(tmp_path):
    paths = write_pair(tmp_path, "test", *tiny_split(20, 0))
    with pytest.raises(fm.SourceError, match=r"t10k-images-idx3-ubyte.gz: 20 images, "
                                             r"expected 10000"):
        fm.read_pair(*paths, count=10_000)


def test_missing_files_are_listed_with_where_to_get_them(tmp_path):
    write_pair(tmp_path, "train", *tiny_split(20, 0))
    with pytest.raises(fm.SourceError) as error:
        fm.find_files(str(tmp_path))
    text = str(error.value)
    missing = "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"
    assert f"missing in {tmp_path}: {missing}); install" in text
    assert "apt-get install dataset-fashion-mnist" in text
    assert "https://github.com/zalandoresearch/fashion-mnist" in text and "\n" not in text
    with pytest.raises(fm.SourceError, match=r"nowhere does not exist\); install"):
        fm.find_files(str(tmp_path / "nowhere"))


def test_source_directory_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(fm.DIR_ENV, raising=False)
    assert fm.source_dir() == "/usr/share/datasets/fashion-mnist"
    monkeypatch.setenv(fm.DIR_ENV, str(tmp_path))
    assert fm.source_dir() == str(tmp_path)


def multiset(images: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """The examples as sorted bytes: TFDS stores a split in its own shuffled order."""
    rows = images.reshape(len(labels), -1)
    return sorted(row.tobytes() + bytes([int(label)]) for row, label in
                  zip(rows, labels, strict=True))


def test_prepared_tiny_dataset_is_read_back_by_tfds(tiny_source, tmp_path, monkeypatch):
    directory, arrays = tiny_source
    monkeypatch.setenv(fm.DIR_ENV, str(directory))
    data_dir = str(tmp_path / "data")
    for split, (images, labels) in arrays.items():
        data = load_split("fashion_mnist", split, data_dir)  # prepares on first use
        assert data.images.shape == (len(labels), 28, 28, 1) and data.images.dtype == np.uint8
        assert multiset(data.images, data.labels) == multiset(images, labels)
    assert fm.is_prepared(data_dir)
    os.remove(f"{directory}/t10k-labels-idx1-ubyte")  # prepared: the sources are not read
    assert len(load_split("fashion_mnist", "test", data_dir)) == TINY["test"]


def test_bad_source_leaves_nothing_behind(tiny_source, tmp_path):
    directory, _ = tiny_source
    (directory / "t10k-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03")
    data_dir = tmp_path / "data"
    with pytest.raises(fm.SourceError, match=r"t10k-images-idx3-ubyte: truncated"):
        fm.prepare(str(data_dir), str(directory))
    assert not (data_dir / "fashion_mnist").exists() and not fm.is_prepared(str(data_dir))


def test_failure_while_writing_leaves_nothing_that_looks_prepared(tiny_source, tmp_path):
    _, arrays = tiny_source
    images, labels = arrays["test"]
    bad = {"train": arrays["train"], "test": (images, np.full_like(labels, 11))}
    builder = fm._builder_class()(source=bad, data_dir=str(tmp_path), file_format="array_record")
    with pytest.raises(ValueError):  # TFDS's ClassLabel refuses 11 while writing
        builder.download_and_prepare()
    assert not fm.is_prepared(str(tmp_path))
    assert not list((tmp_path / "fashion_mnist").glob("*/dataset_info.json"))
    assert not [p for p in (tmp_path / "fashion_mnist").glob("*") if p.is_dir()]


def real_source_or_skip() -> str:
    """The real files' directory; skip (reason printed by -ra) when they are absent, except
    under CI=true, where they must be there (.ci/run installs them)."""
    try:
        fm.find_files(fm.source_dir())
    except fm.SourceError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no Fashion-MNIST: {error}")
        pytest.skip(f"real Fashion-MNIST absent: {error}")
    return fm.source_dir()


@pytest.fixture(scope="session")
def real_data_dir(tmp_path_factory):
    """Real Fashion-MNIST prepared once per session (the lock serialises xdist workers)."""
    real_source_or_skip()
    data_dir = str(tmp_path_factory.getbasetemp().parent / "fashion_mnist_data")
    fm.prepare(data_dir)
    return data_dir


def test_real_dataset_is_the_published_one(real_data_dir):
    source = fm.load_source()
    for split, count in (("train", 60_000), ("test", 10_000)):
        data = load_split("fashion_mnist", split, real_data_dir)
        assert data.images.shape == (count, 28, 28, 1) and data.images.dtype == np.uint8
        assert np.bincount(data.labels).tolist() == [count // 10] * 10
        assert multiset(data.images, data.labels) == multiset(*source[split])
    # The served normalisation is the training set's own (all 60000 x 28 x 28 pixels / 255).
    pixels = source["train"][0] / 255.0
    spec = get_spec("fashion_mnist").preprocess
    assert (spec.scale, spec.pad) == (1 / 255, 2)  # 28x28 zero-padded to LeNet's 32x32
    assert spec.mean == (round(pixels.mean(), 4),) and spec.std == (round(pixels.std(), 4),)


def lenet_recipe():
    """configs/fashion_lenet.py as a module."""
    import importlib.util

    recipe = pathlib.Path(__file__).parents[2] / "configs" / "fashion_lenet.py"
    spec = importlib.util.spec_from_file_location("fashion_lenet", recipe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lenet_recipe_is_under_100k_parameters_as_its_docstring_says():
    # the model train.py builds from the config (abstractly: nothing is computed)
    import jax
    from flax import nnx

    from poolnets.training.loop import create_model

    recipe = lenet_recipe()
    build = create_model(recipe.get_config(), 10, (32, 32, 1))
    model = nnx.eval_shape(lambda: build(rngs=nnx.Rngs(0)))
    count = sum(v.size for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert count < 100_000  # issue 19: the benchmark table's "under 100K parameters" class
    assert f"{count:,} parameters" in " ".join(recipe.__doc__.split())


@pytest.mark.slow
def test_short_real_training_run_learns(real_data_dir, tmp_path):
    from poolnets.training import train_and_evaluate

    config = lenet_recipe().get_config()
    config.data_dir = real_data_dir
    config.num_steps = 300  # 0.64 epoch of the recipe's batch 128
    config.warmup_epochs = 0.0  # the recipe's warmup (one epoch) would outlast the run
    config.augment.enabled = False  # augmentation pays off over epochs, not 300 steps
    config.tensorboard = False
    summary = train_and_evaluate(config, str(tmp_path / "run"), show_progress=False)
    assert summary["test_accuracy"] >= 0.80, summary  # 0.8687 measured; the full recipe 0.927
