"""`tricklab predict`: a finished run's predictions, one row per sample, scored when labelled.

Two sources of samples: a part of the run's own data (`--split`, prepared as
in training), or new raw inputs (`--input`: a table, an `.npz` file, a folder
of images), prepared by the run's `model/preprocessing.json`. Either way the
result is a CSV file with one row per sample (see
`tricklab.transfer.raw_prediction.prediction_table`) and, beside it, a JSON
summary of the same name; with labels, a classifier's summary holds the
confusion matrix and each class's precision and recall, drawn as a PNG beside
them, and the accuracy by confidence (`plots/accuracy_vs_confidence.png` of
the run for its own data).

Every check comes before the first file is written; the CSV and the plot are
written first and the JSON last, each atomically, and a file there already is
replaced only when tricklab wrote it (a predictions CSV or summary).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.csv
import torch

from tricklab import atomic
from tricklab.data.raw_inputs import read_inputs
from tricklab.errors import UserInputError
from tricklab.recipe import load_recipe
from tricklab.report.confusion import confusion_matrix, per_class_scores, plot_confusion_matrix
from tricklab.report.uncertainty import confidence_bins, plot_accuracy_vs_confidence, tail_accuracy
from tricklab.run.best_model import BEST_DIR, missing_best
from tricklab.run.rundir import RunDirectory
from tricklab.run.runner import load_data
from tricklab.transfer import Prediction, load_model, predict
from tricklab.transfer.raw_prediction import prediction_table

PREDICTIONS_FILE = "predictions.json"
"""The summary, written beside the CSV (by default in the run directory)."""

ROWS_FILE = "predictions.csv"
"""One row per sample, by default in the run directory."""

PLOT_FILE = "accuracy_vs_confidence.png"
"""Written into the run directory's `plots/` for the run's own data."""

CONFUSION_SUFFIX = "_confusion_matrix.png"
"""The confusion matrix plot is the CSV's name with this ending, beside it."""

SPLITS = ("test", "val", "train")

TAIL_FRACTION = 0.1
"""Share of the samples in the least and the most confident tails that the summary scores."""


def predict_run(
    run_dir: str | Path,
    mc_samples: int | None = None,
    split: str = "test",
    batch_size: int = 1024,
    seed: int = 0,
    inputs: str | Path | None = None,
    output: str | Path | None = None,
    best: bool = False,
) -> dict[str, Any]:
    """Predict a part of a finished run's data, or new raw inputs, with its final (or best) model.

    A sample's prediction is the argmax of the mean probabilities (`p̄ > 0.5`
    for a sigmoid model, as the accuracy metric decides) and its confidence the
    largest mean probability; a regression's is the mean output.

    Args:
        run_dir: The run directory `tricklab train` filled.
        mc_samples: Stochastic passes with dropout active. Defaults to `None`
            (one deterministic pass).
        split: Which part of the run's data, `test`, `val` or `train`, when
            `inputs` is `None`. Defaults to `"test"`.
        batch_size: Samples per forward pass. Defaults to `1024`.
        seed: Seed of the dropout masks (the global RNG is left untouched). Defaults to `0`.
        inputs: New raw inputs: a `.csv`/`.tsv`/`.parquet` table, an `.npz` file,
            an image or a folder of images (or of class subfolders). Defaults to
            `None` (the run's `split`).
        output: The CSV to write, ending in `.csv`. Defaults to `None`:
            `predictions.csv` in the run directory.
        best: Predict with the best epoch's model, `model_best/`
            (`tricklab.run.best_model`), instead of the final one. Defaults to `False`.

    Returns:
        The summary written beside the CSV (`predictions.json` by default):
        `split` or `input`, `model` (`model` or `model_best`), `rows` (the CSV),
        `mc_samples`, `seed`, `count`, and `labelled`. With labels, a
        classifier's `accuracy`, `confusion_matrix` (rows the true class),
        `per_class` (precision, recall, support by class name),
        `confidence_bins`, `tail_fraction` and the accuracies of the least and
        the most confident tails; a regression's `mae` and `rmse`. A
        classifier's `mean_entropy` (nats) and `mean_std` (over samples and
        classes) in every case.

    Raises:
        UserInputError: A bad argument, a missing run directory or recipe, a run
            without `model/` (not finished), without `model_best/` (with `best`),
            or without `preprocessing.json` (for `inputs`), a split the run's data
            lacks, inputs that do not match the training data, an `output`
            tricklab did not write.
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
    model_dir = run.path / (BEST_DIR if best else "model")
    if best and not model_dir.is_dir():
        raise UserInputError(missing_best(run.path))
    if not model_dir.is_dir():
        raise UserInputError(f"{model_dir}: not found; the run has not finished (a completed "
                             "run saves its final model there)")
    rows = Path(output) if output is not None else run.path / ROWS_FILE
    summary_path = rows.with_suffix(".json")
    confusion_path = rows.with_name(rows.stem + CONFUSION_SUFFIX)
    _check_output(rows, summary_path, confusion_path, inputs)
    recipe = load_recipe(run.recipe_path)
    model = load_model(model_dir)
    if inputs is not None:
        if model.preprocessing is None:
            raise UserInputError(
                f"{model_dir}: has no preprocessing.json, which predicting new inputs needs; "
                "train the run again with this tricklab"
            )
        preprocessing = model.preprocessing
        raw = read_inputs(preprocessing, inputs)
        ids, x, labels = raw.ids, raw.x, raw.labels
        class_names = preprocessing.class_names
    else:
        data = load_data(recipe)
        part = getattr(data, split)
        if part is None:
            raise UserInputError(f"--split {split}: the run's data has no validation part "
                                 "(data.validation is 0); use test or train")
        ids, x, labels = np.arange(len(part)), part.x, part.y.numpy()
        class_names = data.class_names
    try:
        prediction = predict(model, x, mc_samples, batch_size, seed,
                             outputs="probabilities" if class_names else "values")
    except ValueError as error:
        raise UserInputError(f"{model_dir}: {error}") from None
    table = prediction_table(prediction, ids, labels, class_names)
    summary: dict[str, Any] = {
        **({"input": str(inputs)} if inputs is not None else {"split": split}),
        "model": model_dir.name, "rows": str(rows), "mc_samples": prediction.samples,
        "seed": seed, "count": len(ids),
        "labelled": labels is not None,
    }
    # The rows are written on a second thread while the plots render: pyarrow formats the
    # numbers without holding the GIL, and both take about as long.
    with ThreadPoolExecutor(max_workers=1) as writer:
        written = writer.submit(atomic.write_with, rows, lambda file: write_rows(table, file))
        if class_names:
            summary.update(_classification(prediction, labels, class_names))
            if labels is not None:
                matrix = np.array(summary["confusion_matrix"])
                where = f"{recipe.name}: {summary.get('split') or Path(str(inputs)).name}"
                plot_confusion_matrix(matrix, class_names, confusion_path, title=where)
                if inputs is None:
                    predicted, confidence = _predicted(prediction)
                    plot_accuracy_vs_confidence(
                        confidence, predicted == labels, run.plots / PLOT_FILE,
                        title=f"{where}, {prediction.samples} pass(es)",
                        label="max mean probability",
                    )
        elif labels is not None:
            errors = (prediction.mean.numpy().reshape(len(labels), -1)
                      - labels.reshape(len(labels), -1))
            summary.update(mae=float(np.abs(errors).mean()),
                           rmse=float(np.sqrt((errors**2).mean())))
        written.result()
    # Last, as result.json is: a summary always has its rows and plots beside it.
    atomic.write_json(summary_path, summary)
    return summary


def write_rows(table: pd.DataFrame, file: IO[bytes]) -> None:
    """Write `table` as CSV with pyarrow, which formats numbers several times faster than pandas.

    Text values are quoted (pyarrow's "needed" style quotes every string); the
    header is left bare unless a class name holds a comma, a quote or a line break.
    """
    plain = not any(set(str(column)) & set(',"\r\n') for column in table.columns)
    options = pyarrow.csv.WriteOptions(quoting_header="none" if plain else "needed")
    pyarrow.csv.write_csv(pyarrow.Table.from_pandas(table, preserve_index=False), file, options)


def _check_output(rows: Path, summary: Path, confusion: Path, inputs: Any) -> None:
    """Refuse an output that is not a `.csv`, is the input, or would replace a file not ours."""
    if rows.suffix.lower() != ".csv":
        raise UserInputError(f"--output: {rows} must end in .csv (one row per sample)")
    if not rows.parent.is_dir():
        raise UserInputError(f"--output: folder not found: {rows.parent}")
    if inputs is not None and Path(inputs).resolve() in {p.resolve() for p in (rows, summary)}:
        raise UserInputError(f"--output: {rows} would replace the input {inputs}; choose another")
    if rows.exists() and not _our_rows(rows):
        raise UserInputError(
            f"--output: {rows} exists and is not a predictions file tricklab wrote; choose "
            "another name or move it away"
        )
    if summary.exists() and not _our_summary(summary):
        raise UserInputError(
            f"--output: {summary} (the summary beside {rows.name}) exists and is not one "
            "tricklab wrote; choose another name or move it away"
        )
    if confusion.exists() and not (rows.exists() or summary.exists()):
        raise UserInputError(
            f"--output: {confusion} (the plot beside {rows.name}) exists and tricklab did not "
            "write it; choose another name or move it away"
        )


def _our_rows(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as file:
            return file.readline().startswith(("id,", '"id",')) and file.readline() != ""
    except (OSError, UnicodeDecodeError):
        return False


def _our_summary(path: Path) -> bool:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(document, dict) and {"mc_samples", "seed", "count"} <= document.keys()


def _predicted(prediction: Prediction) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's predicted class and its confidence, the largest mean probability."""
    mean = prediction.mean
    if mean.shape[1] == 1:
        predicted = (mean[:, 0] > 0.5).long()
        confidence = torch.maximum(mean[:, 0], 1 - mean[:, 0])
    else:
        confidence, predicted = mean.max(dim=1)
    return predicted.numpy(), confidence.numpy()


def _classification(
    prediction: Prediction, labels: np.ndarray | None, class_names: list[str]
) -> dict[str, Any]:
    """A classifier's summary: spread always; accuracy, matrix and tails with labels."""
    scores: dict[str, Any] = {
        "mean_entropy": float(prediction.entropy.mean()),
        "mean_std": float(prediction.std.mean()),
    }
    if labels is None:
        return scores
    predicted, confidence = _predicted(prediction)
    correct = predicted == labels
    matrix = confusion_matrix(labels, predicted, len(class_names))
    least, most = tail_accuracy(confidence, correct, TAIL_FRACTION)
    return {
        **scores,
        "accuracy": float(correct.mean()),
        "per_class": per_class_scores(matrix, class_names),
        "confusion_matrix": matrix.tolist(),
        "confidence_bins": confidence_bins(confidence, correct),
        "tail_fraction": TAIL_FRACTION,
        "least_confident_accuracy": least,
        "most_confident_accuracy": most,
    }
