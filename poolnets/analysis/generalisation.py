"""Generalisation at a fixed training budget: the train-test accuracy gap."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def accuracy(classify: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
             labels: np.ndarray) -> float:
    """Fraction of `images` whose predicted class equals `labels`."""
    labels = np.asarray(labels)
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(f"need as many labels as images (>0), got {len(images)} images and "
                         f"{len(labels)} labels")
    return float(np.mean(np.asarray(classify(images)) == labels))


def gap_from_predictions(train_pred: np.ndarray, train_labels: np.ndarray,
                         test_pred: np.ndarray, test_labels: np.ndarray) -> dict[str, float]:
    """`train_test_gap` from predicted classes already computed."""
    tr = accuracy(lambda _: train_pred, train_pred, train_labels)
    te = accuracy(lambda _: test_pred, test_pred, test_labels)
    return {"train_accuracy": tr, "test_accuracy": te, "gap": tr - te}


def train_test_gap(classify: Callable[[np.ndarray], np.ndarray], train: tuple, test: tuple
                   ) -> dict[str, float]:
    """{"train_accuracy", "test_accuracy", "gap"}: gap = train - test, both measured in
    evaluation mode (no augmentation, no dropout) after training. train/test: (images,
    labels)."""
    tr, te = accuracy(classify, *train), accuracy(classify, *test)
    return {"train_accuracy": tr, "test_accuracy": te, "gap": tr - te}
