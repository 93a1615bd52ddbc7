"""Accuracy against confidence: does the model know when it is wrong?

Samples are sorted by how confident the model is, least first, and cut into
bins of equal size; a model whose uncertainty means something is less accurate
in its least confident bins. Confidence is any score where higher means surer:
the largest mean probability, or minus the predictive entropy (Monte Carlo
dropout's, see `tricklab.transfer.predict`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from rich.table import Table

from tricklab.report.figure import plt, save_png


def _sorted_correct(confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and correctness as arrays, least confident first (ties keep their order)."""
    scores = np.asarray(confidence, dtype=np.float64).reshape(-1)
    hits = np.asarray(correct, dtype=bool).reshape(-1)
    if scores.shape != hits.shape or scores.size == 0:
        raise ValueError(
            f"confidence and correct must be non-empty and of one length, "
            f"got {scores.size} and {hits.size}"
        )
    order = np.argsort(scores, kind="stable")
    return scores[order], hits[order]


def confidence_bins(
    confidence: ArrayLike, correct: ArrayLike, bins: int = 10
) -> list[dict[str, Any]]:
    """Accuracy in equal-count bins of confidence, least confident bin first.

    The samples, sorted by confidence, are split into `bins` consecutive groups
    whose sizes differ by at most one (`numpy.array_split`); bin `b` reports
    its size, its lowest, mean and highest confidence, and its accuracy (the
    fraction of its samples predicted correctly).

    Args:
        confidence: One score per sample, higher meaning surer (e.g. the largest
            mean probability, or minus the entropy).
        correct: Whether each sample's prediction is right.
        bins: Number of bins; fewer when there are fewer samples. Defaults to `10`.

    Returns:
        One dict per bin: `bin`, `count`, `confidence_min`, `confidence_mean`,
        `confidence_max`, `accuracy`.

    Raises:
        ValueError: If the inputs are empty or of different lengths, or `bins` < 1.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    scores, hits = _sorted_correct(confidence, correct)
    groups = zip(
        np.array_split(scores, min(bins, scores.size)),
        np.array_split(hits, min(bins, scores.size)),
        strict=True,
    )
    return [
        {
            "bin": index,
            "count": int(group.size),
            "confidence_min": float(group[0]),
            "confidence_mean": float(group.mean()),
            "confidence_max": float(group[-1]),
            "accuracy": float(group_hits.mean()),
        }
        for index, (group, group_hits) in enumerate(groups)
    ]


def tail_accuracy(
    confidence: ArrayLike, correct: ArrayLike, fraction: float = 0.1
) -> tuple[float, float]:
    """Accuracy of the least and of the most confident `fraction` of the samples.

    Each tail holds `max(1, round(fraction · N))` samples; ties in confidence
    are broken by the samples' order.

    Args:
        confidence: One score per sample, higher meaning surer.
        correct: Whether each sample's prediction is right.
        fraction: Share of the samples in each tail, in (0, 1]. Defaults to `0.1`.

    Returns:
        `(least confident accuracy, most confident accuracy)`.

    Raises:
        ValueError: If the inputs are empty or of different lengths, or `fraction`
            is outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    _, hits = _sorted_correct(confidence, correct)
    size = max(1, round(fraction * hits.size))
    return float(hits[:size].mean()), float(hits[-size:].mean())


def confidence_bins_table(rows: list[dict[str, Any]]) -> Table:
    """The `confidence_bins` rows for the terminal (`tricklab predict`).

    Args:
        rows: What `confidence_bins` returns.
    """
    table = Table(header_style="bold")
    for column in ("bin", "samples", "confidence", "accuracy"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(str(row["bin"]), str(row["count"]),
                      f"{row['confidence_min']:.3f}-{row['confidence_max']:.3f}",
                      f"{row['accuracy']:.3f}")
    return table


def plot_accuracy_vs_confidence(
    confidence: ArrayLike,
    correct: ArrayLike,
    path: str | Path,
    bins: int = 10,
    title: str = "",
    label: str = "confidence",
) -> Path:
    """Draw accuracy per confidence bin, and the error rate of the least confident; write a PNG.

    Left: the accuracy of each equal-count bin (`confidence_bins`), least
    confident first, with the overall accuracy as a dashed line. Right: the
    fraction of wrong predictions among the q least confident samples as q
    grows from one sample to all of them, which ends at the overall error rate;
    a useful confidence starts the curve high.

    Args:
        confidence: One score per sample, higher meaning surer.
        correct: Whether each sample's prediction is right.
        path: Where to write the PNG (atomically).
        bins: Number of equal-count bins. Defaults to `10`.
        title: Figure title, e.g. the run name. Defaults to `""`.
        label: What the confidence is, for the axis. Defaults to `"confidence"`.
    """
    table = confidence_bins(confidence, correct, bins)
    _, hits = _sorted_correct(confidence, correct)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    positions = [row["bin"] for row in table]
    left.bar(positions, [row["accuracy"] for row in table], color="tab:blue", alpha=0.8)
    left.axhline(hits.mean(), color="tab:gray", linestyle="--", label="overall accuracy")
    left.set_xticks(positions, [f"{row['confidence_mean']:.2g}" for row in table],
                    rotation=45 if len(table) > 6 else 0)
    left.set_xlabel(f"{label}: mean of each equal-count bin, least confident first")
    left.set_ylabel("accuracy")
    left.set_ylim(0, 1.05)
    left.grid(alpha=0.3, axis="y")
    left.legend(loc="lower right")
    shares = np.arange(1, hits.size + 1) / hits.size
    error_rates = np.cumsum(~hits) / np.arange(1, hits.size + 1)
    right.plot(shares * 100, error_rates, color="tab:red")
    right.axhline(1 - hits.mean(), color="tab:gray", linestyle="--", label="overall error rate")
    right.set_xlabel(f"least confident samples, % (by {label})")
    right.set_ylabel("fraction wrong among them")
    right.set_ylim(0, 1.05)
    right.grid(alpha=0.3)
    right.legend(loc="upper right")
    figure.suptitle(title or f"accuracy vs {label}")
    figure.tight_layout()
    return save_png(figure, path)

