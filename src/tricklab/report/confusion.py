"""Which classes a classifier confuses: the confusion matrix, per-class precision and recall.

Row `i`, column `j` of the matrix counts the samples of true class `i`
predicted as class `j` (scikit-learn's `confusion_matrix` convention). Class
`c`'s precision is `M[c, c] / Σ_i M[i, c]` (of the samples predicted `c`, the
share that are `c`), its recall `M[c, c] / Σ_j M[c, j]` (of the samples of
class `c`, the share found); either is `None` when its denominator is 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from tricklab.report.figure import plt, save_png


def confusion_matrix(labels: ArrayLike, predicted: ArrayLike, classes: int) -> np.ndarray:
    """Counts `[classes, classes]`: rows the true class, columns the predicted one.

    Args:
        labels: True class indices.
        predicted: Predicted class indices, as many.
        classes: Number of classes.
    """
    pairs = np.asarray(labels, dtype=np.int64) * classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def per_class_scores(matrix: np.ndarray, class_names: list[str]) -> dict[str, dict[str, Any]]:
    """Each class's `precision`, `recall` and `support` (its true samples), by class name."""
    found = np.diag(matrix)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    return {
        name: {
            "precision": float(found[c] / predicted[c]) if predicted[c] else None,
            "recall": float(found[c] / support[c]) if support[c] else None,
            "support": int(support[c]),
        }
        for c, name in enumerate(class_names)
    }


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: list[str], path: str | Path, title: str = ""
) -> Path:
    """Draw the matrix, each row as shares of its true class, counts written in; write a PNG.

    The colour of a cell is its share of the true class's samples; up to 20
    classes each cell's count is written in and the x-axis caption explains the
    colour, beyond that a colour bar does.

    Args:
        matrix: `confusion_matrix`'s counts.
        class_names: The classes, in label order.
        path: Where to write the PNG (atomically).
        title: Figure title. Defaults to `""`.
    """
    classes = len(class_names)
    support = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, support, out=np.zeros(matrix.shape), where=support > 0)
    size = min(4 + 0.45 * classes, 20)
    written = classes <= 20  # the counts fit in the cells
    # A colour bar costs as much as the rest of the figure together; where the counts are
    # written in, the caption says what the colour means instead.
    figure, axes = plt.subplots(figsize=(size + (0 if written else 1.5), size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if not written:
        figure.colorbar(image, ax=axes, label="share of the true class")
    ticks = np.arange(classes)
    labels = class_names if classes <= 40 else [""] * classes
    axes.set_xticks(ticks, labels, rotation=90 if classes > 6 else 0)
    axes.set_yticks(ticks, labels)
    axes.set_xlabel("predicted class" + ("\n(colour: share of the true class, white to blue "
                                         "for 0 to 1)" if written else ""))
    axes.set_ylabel("true class")
    if written:
        for i in range(classes):
            for j in range(classes):
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                          color="white" if shares[i, j] > 0.5 else "black")
    axes.set_title(title or "confusion matrix")
    figure.tight_layout()
    return save_png(figure, path)
