"""Accuracy against confidence: the binned table by hand, and a real PNG."""

from __future__ import annotations

import io

import matplotlib.image
import pytest
from rich.console import Console

from tricklab.report.uncertainty import (
    confidence_bins,
    confidence_bins_table,
    plot_accuracy_vs_confidence,
    tail_accuracy,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Sorted by confidence: 0.1 ✗, 0.2 ✗, 0.3 ✓ | 0.5 ✗, 0.6 ✓, 0.7 ✓ | 0.8 ✓, 0.9 ✓
CONFIDENCE = [0.9, 0.1, 0.6, 0.3, 0.8, 0.2, 0.5, 0.7]
CORRECT = [True, False, True, True, True, False, False, True]


def test_bins_by_hand():
    table = confidence_bins(CONFIDENCE, CORRECT, bins=3)
    # array_split of 8 into 3: sizes 3, 3, 2, least confident first.
    assert [row["count"] for row in table] == [3, 3, 2]
    assert [row["bin"] for row in table] == [0, 1, 2]
    assert [row["accuracy"] for row in table] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert [row["confidence_min"] for row in table] == pytest.approx([0.1, 0.5, 0.8])
    assert [row["confidence_max"] for row in table] == pytest.approx([0.3, 0.7, 0.9])
    assert [row["confidence_mean"] for row in table] == pytest.approx([0.2, 0.6, 0.85])


def test_terminal_table_shows_each_bin():
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(confidence_bins_table(confidence_bins(CONFIDENCE, CORRECT, bins=3)))
    lines = [line.strip("│ ").split() for line in console.export_text().splitlines()]
    assert ["0", "│", "3", "│", "0.100-0.300", "│", "0.333"] in lines
    assert ["2", "│", "2", "│", "0.800-0.900", "│", "1.000"] in lines


def test_more_bins_than_samples_gives_one_per_sample():
    table = confidence_bins([0.4, 0.2], [True, False], bins=10)
    assert [(row["count"], row["accuracy"]) for row in table] == [(1, 0.0), (1, 1.0)]


def test_tails_by_hand():
    # A quarter of 8 is 2 samples per tail: 0.1 ✗, 0.2 ✗ and 0.8 ✓, 0.9 ✓.
    assert tail_accuracy(CONFIDENCE, CORRECT, fraction=0.25) == (0.0, 1.0)
    # 10% of 8 rounds to 1 sample.
    assert tail_accuracy(CONFIDENCE, CORRECT) == (0.0, 1.0)
    # Half: 0.1 ✗, 0.2 ✗, 0.3 ✓, 0.5 ✗ and 0.6 ✓, 0.7 ✓, 0.8 ✓, 0.9 ✓.
    assert tail_accuracy(CONFIDENCE, CORRECT, fraction=0.5) == (0.25, 1.0)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="of one length, got 2 and 3"):
        confidence_bins([0.1, 0.2], [True, False, True])
    with pytest.raises(ValueError, match="non-empty"):
        confidence_bins([], [])
    with pytest.raises(ValueError, match="bins must be at least 1"):
        confidence_bins(CONFIDENCE, CORRECT, bins=0)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        tail_accuracy(CONFIDENCE, CORRECT, fraction=0)


def test_plot_writes_a_png(tmp_path):
    path = plot_accuracy_vs_confidence(CONFIDENCE, CORRECT, tmp_path / "plots" / "acc.png",
                                       bins=3, title="hand-made")
    data = path.read_bytes()
    assert path == tmp_path / "plots" / "acc.png"
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert matplotlib.image.imread(path).ndim == 3  # decodes as an image
    assert [p.name for p in path.parent.iterdir()] == ["acc.png"]  # no temporary file left
