"""Public datasets through `tfds.testing.mock_data` (no files, no network), preprocessing,
host-side ImageNet transforms, sharding, prefetching and the synthetic dataset."""

import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from poolnets.data import (
    Preprocess,
    Split,
    dataset_spec,
    epoch_batches,
    eval_batches,
    get_spec,
    load_split,
    preprocess,
    random_flip,
    train_batches,
)
from poolnets.data.sources import (
    DatasetUnavailable,
    StreamingSplit,
    random_resized_crop,
    resize_centre_crop,
)


@pytest.mark.parametrize(
    ("name", "stored", "classes"),
    [("mnist", (28, 28, 1), 10), ("fashion_mnist", (28, 28, 1), 10),
     ("cifar10", (32, 32, 3), 10), ("cifar100", (32, 32, 3), 100)],
)
def test_small_public_datasets_read_whole_as_uint8(tmp_path, name, stored, classes):
    with tfds.testing.mock_data(num_examples=6):
        for split in ("train", "test"):
            data = load_split(name, split, str(tmp_path))
            assert isinstance(data, Split) and len(data) == 6
            assert data.images.shape == (6, *stored) and data.images.dtype == np.uint8
            assert data.labels.dtype == np.int32
            assert ((0 <= data.labels) & (data.labels < classes)).all()
    spec = get_spec(name)
    model_input = preprocess(jnp.asarray(data.images), None, spec.preprocess)
    assert model_input.shape == (6, *spec.image_shape) and model_input.dtype == jnp.float32
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("name", ["imagenette", "imagenet2012"])
def test_imagenet_style_datasets_stream_224_crops(tmp_path, name):
    with tfds.testing.mock_data(num_examples=5):
        train = load_split(name, "train", str(tmp_path))
        test = load_split(name, "test", str(tmp_path))  # TFDS "validation"
        assert isinstance(train, StreamingSplit) and len(train) == len(test) == 5
        images, labels = train.take(np.array([4, 0, 2]), (0, 0, 0))
        again, _ = train.take(np.array([4, 0, 2]), (0, 0, 0))
        other, _ = train.take(np.array([4, 0, 2]), (0, 1, 0))
        evaluated, _ = test.take(np.array([1, 3]))
    assert images.shape == (3, 224, 224, 3) and images.dtype == np.uint8
    assert labels.shape == (3,) and labels.dtype == np.int32
    np.testing.assert_array_equal(images, again)  # seeded by (seed, epoch, index)
    assert not np.array_equal(images, other)
    assert evaluated.shape == (2, 224, 224, 3)


def test_missing_dataset_names_the_fix(tmp_path):
    hint = r"'cifar10' is not prepared in .*tfds build cifar10 --data_dir=.* --file_format"
    with pytest.raises(DatasetUnavailable, match=hint):
        load_split("cifar10", "train", str(tmp_path))
    with pytest.raises(DatasetUnavailable, match=r"downloads/manual/"):
        load_split("imagenet2012", "train", str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing created, nothing downloaded


def test_preprocess_matches_numpy_reference():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    spec = Preprocess(scale=1 / 255, pad=2, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    out = np.asarray(preprocess(jnp.asarray(images), None, spec))
    x = np.pad(images / 255, ((0, 0), (2, 2), (2, 2), (0, 0)))
    np.testing.assert_allclose(out, (x - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0], rtol=1e-5,
                               atol=1e-6)


def test_random_flip_mirrors_exactly_the_drawn_images():
    images = jnp.asarray(np.random.default_rng(1).normal(size=(64, 3, 4, 2)), jnp.float32)
    key = jax.random.key(7)
    out = np.asarray(random_flip(key, images))
    flipped = np.asarray(jax.random.bernoulli(key, 0.5, (64, 1, 1, 1)))[:, 0, 0, 0]
    np.testing.assert_array_equal(out[flipped], np.asarray(images)[flipped][:, :, ::-1])
    np.testing.assert_array_equal(out[~flipped], np.asarray(images)[~flipped])
    assert 16 < flipped.sum() < 48


def test_resize_centre_crop_geometry():
    # a 300x400 image whose pixels encode their column: shorter side 300 -> 256 (x 0.8533),
    # width 400 -> 341, centre 224 columns start at (341 - 224) // 2 = 58.
    columns = np.tile(np.linspace(0, 255, 400).astype(np.uint8)[None, :, None], (300, 1, 3))
    out = resize_centre_crop(columns, 256, 224)
    assert out.shape == (224, 224, 3)
    scale = 400 / 341
    expected_first = (58 + 0.5) * scale - 0.5  # bilinear sampling position, source pixels
    assert abs(int(out[112, 0, 0]) - expected_first * 255 / 399) <= 2
    flat = np.full((50, 80, 3), 9, np.uint8)
    assert (resize_centre_crop(flat, 256, 224) == 9).all()


def test_random_resized_crop_full_scale_is_a_resize():
    image = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    out = random_resized_crop(image, np.random.default_rng(0), 20, scale=(1.0, 1.0),
                              ratio=(1.0, 1.0))
    from PIL import Image

    expected = np.asarray(Image.fromarray(image).resize((20, 20), Image.BILINEAR))
    np.testing.assert_array_equal(out, expected)
    crops = {random_resized_crop(image, np.random.default_rng(s), 8).tobytes() for s in range(5)}
    assert len(crops) == 5


def _toy(n=20):
    return Split(np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1), np.arange(n, dtype=np.int32))


def test_host_shards_partition_the_global_batch_and_start_skips():
    whole = [labels for _, labels in epoch_batches(_toy(), 8, seed=3, epoch=1)]
    shards = [[labels for _, labels in epoch_batches(_toy(), 8, seed=3, epoch=1,
                                                       shard=(i, 2))] for i in range(2)]
    for b, global_labels in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([shards[0][b], shards[1][b]]),
                                      global_labels)
    resumed = [labels for _, labels in epoch_batches(_toy(), 8, seed=3, epoch=1, start=1)]
    np.testing.assert_array_equal(resumed, whole[1:])
    evaluated = [lab[m] for i in range(2) for _, lab, m in eval_batches(_toy(), 8, shard=(i, 2))]
    assert sorted(np.concatenate(evaluated).tolist()) == list(range(20))


class _BrokenDisk(Split):
    """A split whose reads fail from the second batch on."""

    def take(self, idx, augment_seed=None):
        if augment_seed[2] > 0:
            raise OSError("disk gone")
        return super().take(idx)


def test_prefetched_batches_keep_order_and_reraise_read_errors():
    whole = [labels for e in range(2) for _, labels in epoch_batches(_toy(), 8, seed=3, epoch=e)]
    got = [labels for _, labels in train_batches(_toy(), 8, seed=3, num_steps=4, prefetch=3)]
    np.testing.assert_array_equal(got, whole)
    batches = iter(train_batches(_BrokenDisk(_toy().images, _toy().labels), 8, seed=0,
                                 num_steps=4, prefetch=2))
    next(batches)
    with pytest.raises(OSError, match="disk gone"):
        next(batches)
    batches.close()


def test_synthetic_dataset_from_config():
    cfg = ml_collections.ConfigDict(
        {"image_shape": (12, 10, 3), "num_classes": 7, "num_train": 9, "num_test": 4})
    spec = dataset_spec("synthetic", cfg)
    train = spec.read("unused", "train")
    assert train.images.shape == (9, 12, 10, 3) and train.images.dtype == np.uint8
    assert spec.num_classes == 7 and spec.image_shape == (12, 10, 3)
    assert train.labels.max() < 7
    cfg.image_shape = (12, 10)
    with pytest.raises(ValueError, match=r"synthetic.image_shape=\(12, 10\)"):
        dataset_spec("synthetic", cfg)
