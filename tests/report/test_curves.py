"""The per-run learning curves: one panel per measure, training and validation together."""

from __future__ import annotations

from PIL import Image

from tricklab.report.curves import plot_learning_curves


def test_a_run_that_diverged_after_its_last_validation_is_still_drawn(tmp_path):
    # Diverged in epoch 3: its loss was logged, its validation never ran.
    history = {"loss": [0.9, 0.6, float("nan")], "accuracy": [0.6, 0.7, 0.1],
               "val_loss": [0.8, 0.7], "val_accuracy": [0.65, 0.72], "lr": [0.1, 0.1, 0.1]}
    path = plot_learning_curves(history, tmp_path / "plots" / "learning_curves.png", "run")
    with Image.open(path) as image:
        width, height = image.size
    assert width > 2 * height  # two panels side by side: loss and accuracy
