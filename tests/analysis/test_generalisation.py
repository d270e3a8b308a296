"""Train-test gap on a classifier with a known answer."""

import numpy as np
import pytest

from poolnets.analysis.generalisation import accuracy, gap_from_predictions, train_test_gap


def test_gap_of_a_memoriser():
    # Predicts the stored label for images it has seen and class 0 otherwise.
    rng = np.random.default_rng(0)
    train_x, test_x = rng.random((50, 3)), rng.random((40, 3))
    train_y, test_y = rng.integers(0, 4, 50), np.array([0] * 10 + [1] * 30)
    memory = {x.tobytes(): y for x, y in zip(train_x, train_y, strict=True)}

    def classify(images):
        return np.array([memory.get(x.tobytes(), 0) for x in images])

    got = train_test_gap(classify, (train_x, train_y), (test_x, test_y))
    assert got == {"train_accuracy": 1.0, "test_accuracy": 0.25, "gap": 0.75}
    assert gap_from_predictions(classify(train_x), train_y, classify(test_x), test_y) == got
    with pytest.raises(ValueError, match="labels"):
        accuracy(classify, train_x, test_y)
