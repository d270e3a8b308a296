"""The procedural `textures` dataset: deterministic, balanced, in range, and its classes
differ in local statistics, not in brightness or contrast."""

import numpy as np
import pytest

from poolnets.data import dataset_names, get_spec, load_split, textures


def test_splits_deterministic_balanced_and_in_range():
    images, labels = textures.make_split(48, seed=3)
    again, _ = textures.make_split(48, seed=3)
    np.testing.assert_array_equal(images, again)
    prefix, _ = textures.make_split(16, seed=3)
    np.testing.assert_array_equal(prefix, images[:16])  # image i depends on (seed, i) only
    other, _ = textures.make_split(16, seed=4)
    assert not np.allclose(other, prefix)
    assert images.shape == (48, 32, 32, 1) and images.dtype == np.float32
    assert labels.dtype == np.int32 and np.bincount(labels).tolist() == [6] * 8
    assert images.min() >= 0 and images.max() <= 1


def test_classes_share_brightness_but_differ_in_spectrum():
    images, labels = textures.make_split(160, seed=0)
    x = images[..., 0]
    means = np.array([x[labels == c].mean() for c in range(8)])
    assert np.ptp(means) < 0.03  # brightness carries (almost) no class information
    power = np.abs(np.fft.fft2(x - x.mean((1, 2), keepdims=True))) ** 2
    near = slice(3, 6)  # frequencies 3..5 / 32 around the period-8 stripes' 4 / 32
    rows = power[:, near, :2].sum((1, 2))  # energy varying down the rows: horizontal stripes
    cols = power[:, :2, near].sum((1, 2))  # energy varying along a row: vertical stripes
    assert np.median(rows[labels == 0] / cols[labels == 0]) > 10
    assert np.median(cols[labels == 2] / rows[labels == 2]) > 10
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32)))
    high = (power * (f > 0.25)).sum((1, 2)) / power.sum((1, 2))
    assert high[labels == 7].mean() > 1.3 * high[labels == 6].mean()  # white vs smooth noise


def test_registered_dataset_and_bad_arguments():
    assert "textures" in dataset_names()
    spec = get_spec("textures")
    assert spec.num_classes == 8 and spec.image_shape == (32, 32, 1)
    test = load_split("textures", "test")
    assert len(test) == textures.SPLITS["test"][0]
    with pytest.raises(ValueError, match="split"):
        textures.read_split("validation")
    with pytest.raises(ValueError, match="n must"):
        textures.make_split(0, seed=0)
    with pytest.raises(ValueError, match="label"):
        textures.make_image(8, np.random.default_rng(0))
