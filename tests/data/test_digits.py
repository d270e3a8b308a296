"""The digits TFDS builder: counts, stratified split, values, determinism, TF-free reading."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import load_digits

from poolnets.data import digits


@pytest.fixture(scope="module")
def splits(digits_dir):
    return {s: digits.read_split(digits_dir, s) for s in digits.SPLITS}


@pytest.fixture(scope="module")
def source():
    d = load_digits()
    return d.images, d.target


def test_counts_cover_all_1797_once(splits):
    train_idx, test_idx = splits["train"][2], splits["test"][2]
    assert len(train_idx) == 1442 and len(test_idx) == 355
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, test_idx])), np.arange(1797))


def test_records_match_sklearn_source(splits, source):
    images, target = source
    for split in digits.SPLITS:
        x, y, idx = splits[split]
        assert x.shape == (len(idx), 8, 8, 1) and x.dtype == np.uint8
        np.testing.assert_array_equal(x[..., 0], images[idx].astype(np.uint8))
        np.testing.assert_array_equal(y, target[idx])


def test_value_range_is_17_grey_levels(splits):
    values = np.unique(np.concatenate([splits[s][0].ravel() for s in digits.SPLITS]))
    np.testing.assert_array_equal(values, np.arange(17))


def test_split_is_stratified(splits, source):
    _, target = source
    per_class = np.bincount(target, minlength=10)
    test_per_class = np.bincount(splits["test"][1], minlength=10)
    np.testing.assert_array_equal(test_per_class, per_class // 5)
    # every class keeps its share of the test split within one image of exact proportion
    assert np.all(np.abs(test_per_class - per_class / 5) < 1)


def test_stratified_mask_rule_brute_force():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=101)
    mask = digits.stratified_test_mask(labels, test_every=3)
    seen = {}
    for i, label in enumerate(labels):
        rank = seen.get(label, 0)
        assert mask[i] == (rank % 3 == 2)
        seen[label] = rank + 1


def test_split_is_deterministic_across_fresh_preparations(tmp_path, splits):
    again = digits.read_split(str(tmp_path), "test")
    for a, b in zip(again, splits["test"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_unknown_split(digits_dir):
    with pytest.raises(ValueError, match=r"split='validation'.*choices: train, test"):
        digits.read_split(digits_dir, "validation")


def test_tfds_reads_it_without_tensorflow(tmp_path):
    """Fresh interpreter: prepare through poolnets, read through `tfds.data_source`,
    concurrently from two processes on an empty data dir; TensorFlow never gets imported."""
    script = textwrap.dedent(
        """
        import sys
        import tensorflow_datasets as tfds
        from poolnets.data import digits
        digits.prepare(sys.argv[1])
        source = tfds.data_source("digits", data_dir=sys.argv[1])
        assert len(source["train"]) == 1442 and len(source["test"]) == 355
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("ok")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip().endswith("ok")
    version_dir = tmp_path / "digits" / "1.0.0"
    assert sorted(os.listdir(version_dir)) == [
        "dataset_info.json",
        "digits-test.array_record-00000-of-00001",
        "digits-train.array_record-00000-of-00001",
        "features.json",
    ]
    # no leftover incomplete.* directory from a second preparation
    assert os.listdir(tmp_path / "digits") == ["1.0.0"]


def test_import_poolnets_data_does_not_import_tfds():
    code = (
        "import sys, poolnets.data, poolnets.training;"
        " print('tensorflow_datasets' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
