"""`tricklab predict`: a finished run's (Monte Carlo dropout) predictions, scored by confidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tricklab import atomic
from tricklab.errors import UserInputError
from tricklab.recipe import load_recipe
from tricklab.report.uncertainty import confidence_bins, plot_accuracy_vs_confidence, tail_accuracy
from tricklab.run.rundir import RunDirectory
from tricklab.run.runner import load_data
from tricklab.transfer import load_model, predict

PREDICTIONS_FILE = "predictions.json"
"""Written into the run directory."""

PLOT_FILE = "accuracy_vs_confidence.png"
"""Written into the run directory's `plots/`."""

SPLITS = ("test", "val", "train")

TAIL_FRACTION = 0.1
"""Share of the samples in the least and the most confident tails that `predictions.json` scores."""


def predict_run(
    run_dir: str | Path,
    mc_samples: int | None = None,
    split: str = "test",
    batch_size: int = 1024,
    seed: int = 0,
) -> dict[str, Any]:
    """Predict a split of a finished run's data with its final model; score accuracy by confidence.

    Loads the run's resolved `recipe.yaml`, its data and `model/`, runs
    `tricklab.transfer.predict` (Monte Carlo dropout for `mc_samples` > 1), and
    writes `predictions.json` and `plots/accuracy_vs_confidence.png` into the
    run directory, atomically. A sample's prediction is the argmax of the mean
    probabilities (`p̄ > 0.5` for a sigmoid model, as the accuracy metric
    decides) and its confidence the largest mean probability (`max(p̄, 1 − p̄)`).

    Args:
        run_dir: The run directory `tricklab train` filled.
        mc_samples: Stochastic passes with dropout active. Defaults to `None`
            (one deterministic pass).
        split: Which part of the data: `test`, `val` or `train`. Defaults to `"test"`.
        batch_size: Samples per forward pass. Defaults to `1024`.
        seed: Seed of the dropout masks (the global RNG is left untouched). Defaults to `0`.

    Returns:
        The content of `predictions.json`: `split`, `mc_samples` (passes averaged),
        `seed`, `count` (samples predicted), `accuracy` (of the mean prediction),
        `mean_entropy` (nats), `mean_std` (over samples and classes),
        `confidence_bins` (see `tricklab.report.uncertainty.confidence_bins`),
        `tail_fraction`, and the accuracies of that fraction of least and of
        most confident samples, `least_confident_accuracy` and `most_confident_accuracy`.

    Raises:
        UserInputError: A bad argument, a missing run directory or recipe, a run
            without `model/` (not finished), or a split the run's data lacks.
    """
    run = RunDirectory(run_dir)
    if mc_samples is not None and mc_samples < 1:
        raise UserInputError(f"--mc-samples: expected an integer >= 1, got {mc_samples}")
    if batch_size < 1:
        raise UserInputError(f"--batch-size: expected an integer >= 1, got {batch_size}")
    if split not in SPLITS:
        raise UserInputError(f"--split: unknown split '{split}'; expected {', '.join(SPLITS)}")
    if not run.path.is_dir():
        raise UserInputError(f"{run.path}: no such run directory (expected one `tricklab train` "
                             "wrote, with recipe.yaml and model/)")
    if not run.recipe_path.is_file():
        raise UserInputError(f"{run.recipe_path}: not found; {run.path} is not a run directory")
    model_dir = run.path / "model"
    if not model_dir.is_dir():
        raise UserInputError(f"{model_dir}: not found; the run has not finished (a completed "
                             "run saves its final model there)")
    recipe = load_recipe(run.recipe_path)
    part = getattr(load_data(recipe), split)
    if part is None:
        raise UserInputError(f"--split {split}: the run's data has no validation part "
                             "(data.validation is 0); use test or train")
    model = load_model(model_dir)
    try:
        prediction = predict(model, part.x, mc_samples, batch_size, seed)
    except ValueError as error:
        raise UserInputError(f"{model_dir}: {error}") from None
    mean = prediction.mean
    if mean.shape[1] == 1:
        predicted = (mean[:, 0] > 0.5).long()
        confidence = torch.maximum(mean[:, 0], 1 - mean[:, 0])
    else:
        confidence, predicted = mean.max(dim=1)
    correct = (predicted == part.y.to(predicted.device)).numpy()
    least, most = tail_accuracy(confidence.numpy(), correct, TAIL_FRACTION)
    summary = {
        "split": split,
        "mc_samples": prediction.samples,
        "seed": seed,
        "count": len(part),
        "accuracy": float(correct.mean()),
        "mean_entropy": float(prediction.entropy.mean()),
        "mean_std": float(prediction.std.mean()),
        "confidence_bins": confidence_bins(confidence.numpy(), correct),
        "tail_fraction": TAIL_FRACTION,
        "least_confident_accuracy": least,
        "most_confident_accuracy": most,
    }
    plot_accuracy_vs_confidence(
        confidence.numpy(), correct, run.plots / PLOT_FILE,
        title=f"{recipe.name}: {split}, {prediction.samples} pass(es)",
        label="max mean probability",
    )
    # Last, as result.json is: a predictions.json always has its plot beside it.
    atomic.write_json(run.path / PREDICTIONS_FILE, summary)
    return summary
