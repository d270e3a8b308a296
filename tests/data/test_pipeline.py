"""Serving geometry, batching, Grain iterator state and shift augmentation of the input
pipeline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from poolnets.data import (
    Split,
    dataset_names,
    digits_to_lenet_input,
    digits_to_lenet_levels,
    epoch_batches,
    eval_batches,
    get_spec,
    load_split,
    preprocess,
    random_shift,
    train_batches,
)


def test_digits_served_at_32x32_with_border_as_grey_levels(digits_dir):
    data = load_split("digits", "test", digits_dir)
    assert data.images.shape == (355, 32, 32, 1) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int32
    assert data.images.min() == 0 and data.images.max() == 16
    border = np.ones((32, 32), bool)
    border[8:24, 8:24] = False
    assert not data.images[:, border].any()
    # the step's preprocessing (no augmentation) gives digits_to_lenet_input's [0, 1] values
    raw = data.images[:, 8:24:2, 8:24:2]  # one pixel of each 2x2 block: the 8x8 source
    x = preprocess(data.images, None, get_spec("digits").preprocess)
    np.testing.assert_array_equal(np.asarray(x), digits_to_lenet_input(raw))


def test_upsampling_brute_force():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 17, size=(3, 8, 8, 1)).astype(np.uint8)
    out = digits_to_lenet_input(raw)
    expected = np.zeros((3, 32, 32, 1), np.float32)
    for n in range(3):
        for i in range(16):
            for j in range(16):
                expected[n, 8 + i, 8 + j, 0] = raw[n, i // 2, j // 2, 0] / 16
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(digits_to_lenet_levels(raw), expected * 16)


def test_unknown_dataset_names_choices():
    assert dataset_names() == ["cifar10", "cifar100", "digits", "fashion_mnist", "imagenet2012",
                               "imagenette", "mnist", "synthetic", "textures"]
    with pytest.raises(ValueError, match=r"unknown dataset 'svhn'; choices: cifar10, cifar100"):
        get_spec("svhn")


def _toy(n=10):
    return Split(np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1), np.arange(n, dtype=np.int32))


def test_epoch_batches_permute_and_drop_remainder():
    batches = list(epoch_batches(_toy(10), 3, seed=0, epoch=0))
    assert len(batches) == 3
    labels = np.concatenate([b[1] for b in batches])
    assert len(set(labels)) == 9  # distinct examples, one dropped
    again = np.concatenate([b[1] for b in epoch_batches(_toy(10), 3, seed=0, epoch=0)])
    np.testing.assert_array_equal(labels, again)
    other = np.concatenate([b[1] for b in epoch_batches(_toy(10), 3, seed=0, epoch=1)])
    assert not np.array_equal(labels, other)


def _labels(batches, count=None):
    return [labels for _, labels in (batches if count is None else
                                     (next(batches) for _ in range(count)))]


def test_train_batches_run_through_epochs_in_epoch_batches_order_and_resume_from_state():
    expected = [labels for e in range(3) for _, labels in epoch_batches(_toy(10), 3, seed=4,
                                                                        epoch=e)]
    placed = []

    def place(images, labels):
        placed.append(len(labels))
        return images, labels

    first = iter(train_batches(_toy(10), 3, seed=4, num_steps=8, place=place, prefetch=2))
    head = _labels(first, 5)  # across the epoch boundary at step 3
    state = first.get_state()  # after 5 consumed, whatever the prefetch thread read ahead
    first.close()
    again = iter(train_batches(_toy(10), 3, seed=4, num_steps=8))
    again.set_state(state)
    np.testing.assert_array_equal(head + _labels(again), expected[:8])
    assert placed[:5] == [3] * 5


def test_train_batches_state_resumes_with_another_host_count():
    one = iter(train_batches(_toy(12), 4, seed=1, num_steps=6))
    _labels(one, 4)
    state = one.get_state()
    rest = _labels(one)
    hosts = []
    for index in range(2):
        shard = iter(train_batches(_toy(12), 4, seed=1, num_steps=6, shard=(index, 2)))
        shard.set_state(state)
        hosts.append(_labels(shard))
    np.testing.assert_array_equal(np.concatenate(hosts, axis=1), rest)


def test_train_batches_in_two_worker_processes_resume_exactly():
    expected = _labels(train_batches(_toy(10), 3, seed=2, num_steps=5))
    first = iter(train_batches(_toy(10), 3, seed=2, num_steps=5, workers=2))
    head = _labels(first, 2)
    state = first.get_state()
    first.close()
    again = iter(train_batches(_toy(10), 3, seed=2, num_steps=5, workers=2))
    again.set_state(state)
    np.testing.assert_array_equal(head + _labels(again), expected)
    again.close()


@pytest.mark.parametrize("workers", [-1, 1.5, None])
def test_train_batches_bad_workers(workers):
    with pytest.raises(ValueError, match=rf"workers must be a non-negative int, got {workers}"):
        train_batches(_toy(10), 3, seed=0, num_steps=2, workers=workers)


def test_eval_batches_cover_every_example_once():
    seen = []
    for images, labels, mask in eval_batches(_toy(10), 4):
        assert images.shape[0] == labels.shape[0] == mask.shape[0] == 4
        seen.extend(labels[mask])
    assert seen == list(range(10))


def test_random_shift_matches_numpy_reference():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(6, 7, 5, 2)).astype(np.float32)
    key = jax.random.key(3)
    max_shift = 2
    out = np.asarray(random_shift(key, jnp.asarray(images), max_shift))
    offsets = np.asarray(jax.random.randint(key, (6, 2), 0, 2 * max_shift + 1))
    for n in range(6):
        dy, dx = offsets[n] - max_shift  # content moves by (-dy, -dx)
        for i in range(7):
            for j in range(5):
                si, sj = i + dy, j + dx
                inside = 0 <= si < 7 and 0 <= sj < 5
                expected = images[n, si, sj] if inside else np.zeros(2, np.float32)
                np.testing.assert_array_equal(out[n, i, j], expected)


def test_random_shift_zero_is_identity_and_bad_shift_raises():
    x = jnp.ones((2, 4, 4, 1))
    assert random_shift(jax.random.key(0), x, 0) is x
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(jax.random.key(0), x, -1)
