"""The confusion matrix and per-class scores, checked against scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from tricklab.report.confusion import confusion_matrix, per_class_scores, plot_confusion_matrix

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("classes", [2, 3, 12])
def test_matrix_and_scores_equal_scikit_learns(classes):
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, 500)
    predicted = np.where(rng.random(500) < 0.6, labels, rng.integers(0, classes, 500))
    predicted[predicted == classes - 1] = 0  # a class never predicted: precision undefined
    matrix = confusion_matrix(labels, predicted, classes)
    expected = sklearn_confusion_matrix(labels, predicted, labels=range(classes))
    assert np.array_equal(matrix, expected)
    names = [f"class {c}" for c in range(classes)]
    scores = per_class_scores(matrix, names)
    precision, recall, _, support = precision_recall_fscore_support(
        labels, predicted, labels=range(classes), zero_division=np.nan)
    for c, name in enumerate(names):
        if np.isnan(precision[c]):
            assert scores[name]["precision"] is None
        else:
            assert scores[name]["precision"] == pytest.approx(precision[c])
        assert scores[name]["recall"] == pytest.approx(recall[c])
        assert scores[name]["support"] == support[c]


def test_plot_is_a_png(tmp_path):
    matrix = confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], 3)
    path = plot_confusion_matrix(matrix, ["cat", "dog", "bird"], tmp_path / "m.png", "pets")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
