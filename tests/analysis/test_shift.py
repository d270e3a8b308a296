"""Shifts: translation against np.roll / hand cases, and consistency 1 for a model that is
exactly invariant to circular shifts (global average of a pointwise convolution)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from poolnets.analysis.fit import make_predict
from poolnets.analysis.shift import (
    accuracy_vs_shift,
    random_shift_pairs,
    shift_consistency,
    shift_images,
)
from poolnets.training.state import create_train_state


def test_shift_images_modes():
    rng = np.random.default_rng(0)
    x = rng.random((2, 6, 7, 3)).astype(np.float32)
    for dy, dx in [(0, 0), (2, -3), (-5, 6), (1, 1)]:
        np.testing.assert_array_equal(shift_images(x, dy, dx, "circular"),
                                      np.roll(x, (dy, dx), axis=(1, 2)))
        z = shift_images(x, dy, dx, "zeros")
        for y in range(6):
            for xx in range(7):
                sy, sx = y - dy, xx - dx
                want = x[:, sy, sx] if 0 <= sy < 6 and 0 <= sx < 7 else 0
                np.testing.assert_array_equal(z[:, y, xx], want)
    assert not shift_images(x, 6, 0).any()
    with pytest.raises(ValueError, match="mode"):
        shift_images(x, 1, 1, "wrap")


class PointwiseGAP(nnx.Module):
    def __init__(self, *, rngs):
        self.pointwise = nnx.Conv(3, 8, (1, 1), rngs=rngs)
        self.out = nnx.Linear(8, 5, rngs=rngs)

    def __call__(self, x, train=None):
        x = jax.nn.relu(self.pointwise(x))
        return self.out(jnp.mean(x, axis=(1, 2)))


def _classifier(model, x):
    graphdef, state = create_train_state(model, optax.sgd(0.1), jax.random.key(3),
                                         x.shape[1:])
    predict = make_predict(graphdef)
    return lambda images: np.asarray(predict(state, images)).argmax(-1)


def test_invariant_model_has_consistency_one():
    x = np.asarray(jax.random.uniform(jax.random.key(0), (40, 8, 8, 3)))
    classify = _classifier(PointwiseGAP, x)
    key = jax.random.key(1)
    assert shift_consistency(classify, x, key, max_shift=5, draws=3, mode="circular") == 1.0
    labels = classify(x)
    acc = accuracy_vs_shift(classify, x, labels, range(-4, 5), axis="xy", mode="circular")
    np.testing.assert_array_equal(acc, np.ones(9))


def test_sensitive_model_is_inconsistent():
    # Class = whether the top-left pixel exceeds 0.5, on i.i.d. uniform pixels: two shifts
    # agree with probability 1/49 + (48/49) / 2 = 0.510 for shifts up to 3 px.
    x = np.asarray(jax.random.uniform(jax.random.key(0), (400, 8, 8, 1)))

    def classify(images):
        return (images[:, 0, 0, 0] > 0.5).astype(int)

    c = shift_consistency(classify, x, jax.random.key(1), max_shift=3, draws=4, mode="circular")
    assert c == pytest.approx(1 / 49 + 24 / 49, abs=0.04)
    acc = accuracy_vs_shift(classify, x, classify(x), [0, 1], mode="circular")
    assert acc[0] == 1.0 and acc[1] < 0.9


def test_shift_pairs_range():
    pairs = random_shift_pairs(jax.random.key(0), 500, 2, 3)
    assert pairs.shape == (3, 500, 2, 2)
    assert set(np.unique(pairs)) == {-2, -1, 0, 1, 2}
    with pytest.raises(ValueError, match="max_shift"):
        random_shift_pairs(jax.random.key(0), 5, -1, 1)
