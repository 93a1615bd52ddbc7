"""Learning curves: loss and accuracy per epoch, training and validation, as the book plots them."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from tricklab.report.figure import plt, save_png


def plot_learning_curves(
    history: dict[str, list[float]], path: str | Path, title: str = ""
) -> Path:
    """Draw loss (left) and every other metric (right) against the epoch, then write a PNG.

    Args:
        history: Per-epoch lists as `FitResult.history` holds them (`loss`,
            `val_loss`, `accuracy`, `val_accuracy`, ...).
        path: Where to write the PNG (atomically).
        title: Figure title, e.g. the run name. Defaults to `""`.
    """
    metric_names = [
        key for key in history if not key.startswith("val_") and key not in ("loss", "lr", "time_s")
    ]
    panels = ["loss", *metric_names]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for axis, key in zip(axes[0], panels, strict=True):
        # Each series over its own epochs: a run that diverged has no validation of its last.
        train = history.get(key, [])
        axis.plot(range(1, len(train) + 1), train, marker="o", label=f"train {key}")
        if f"val_{key}" in history:
            validation = history[f"val_{key}"]
            axis.plot(range(1, len(validation) + 1), validation, marker="s",
                      label=f"validation {key}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 2.5
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_png(figure, path)
