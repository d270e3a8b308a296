"""Corruptions: identities at severity zero, exact rotations and zooms on hand cases,
noise statistics."""

import jax
import numpy as np
import pytest

from poolnets.analysis import robustness as rb


@pytest.fixture
def images():
    return np.asarray(jax.random.uniform(jax.random.key(0), (3, 9, 9, 2)), np.float32)


def test_zero_severity_is_identity(images):
    key = jax.random.key(1)
    np.testing.assert_array_equal(rb.gaussian_noise(images, 0.0, key), images)
    np.testing.assert_array_equal(rb.salt_and_pepper(images, 0.0, key), images)
    np.testing.assert_array_equal(rb.rotate(images, 0), images)
    np.testing.assert_array_equal(rb.scale(images, 1.0), images)


def test_rotation_by_quarter_turns_is_exact(images):
    # Counter-clockwise as displayed (row 0 on top) is np.rot90 over (rows, cols).
    np.testing.assert_allclose(rb.rotate(images, 90), np.rot90(images, 1, axes=(1, 2)),
                               atol=1e-5)
    np.testing.assert_allclose(rb.rotate(images, 180), images[:, ::-1, ::-1], atol=1e-5)


def test_scale_by_two_reads_the_centre():
    x = np.zeros((1, 9, 9, 1), np.float32)
    x[0, 4, 4] = 1.0
    x[0, 3, 4] = 0.5  # one pixel above the centre
    y = rb.scale(x, 2.0)
    # Output (y, x) reads input (4 + (y - 4) / 2, ...): row 2 reads row 3, row 4 reads row 4,
    # row 3 reads row 3.5 (bilinear: (0.5 + 1) / 2).
    assert y[0, 4, 4, 0] == pytest.approx(1.0)
    assert y[0, 2, 4, 0] == pytest.approx(0.5)
    assert y[0, 3, 4, 0] == pytest.approx(0.75)
    small = rb.scale(x, 0.5)  # zooming out: content outside the input becomes 0
    assert small[0, 4, 4, 0] == pytest.approx(1.0) and small[0, 0, 0, 0] == 0


def test_noise_statistics():
    x = np.full((20, 16, 16, 1), 0.5, np.float32)
    g = rb.gaussian_noise(x, 0.1, jax.random.key(0))
    assert g.min() >= 0 and g.max() <= 1
    assert np.std(g - x) == pytest.approx(0.1, rel=0.05)
    sp = rb.salt_and_pepper(x, 0.2, jax.random.key(1))
    hit = sp != 0.5
    assert hit.mean() == pytest.approx(0.2, abs=0.02)
    assert set(np.unique(sp[hit])) == {0.0, 1.0}


def test_accuracy_under_and_errors(images):
    labels = np.zeros(3, int)
    acc = rb.accuracy_under(lambda x: np.zeros(len(x), int), images, labels, "rotation",
                            [0, 10], jax.random.key(0))
    np.testing.assert_array_equal(acc, [1.0, 1.0])
    with pytest.raises(ValueError, match="corruption"):
        rb.corrupt("blur", images, 1, None)
    with pytest.raises(ValueError, match="sigma"):
        rb.gaussian_noise(images, -1, jax.random.key(0))
    with pytest.raises(ValueError, match="amount"):
        rb.salt_and_pepper(images, 1.5, jax.random.key(0))
    with pytest.raises(ValueError, match="factor"):
        rb.scale(images, 0)
