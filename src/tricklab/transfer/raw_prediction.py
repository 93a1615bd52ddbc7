"""Predictions on raw rows, images or arrays, one row per sample, with class names.

`predict_raw(model, inputs)` is what `tricklab predict RUN --input FILE` runs: the
inputs are read and prepared by the run's `preprocessing.json` (see
`tricklab.data.raw_inputs`), passed through the model (`predict`, with Monte
Carlo dropout for `mc_samples` > 1), and returned as a pandas `DataFrame`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from tricklab.data.preprocessing import Preprocessing
from tricklab.data.raw_inputs import read_inputs
from tricklab.errors import UserInputError
from tricklab.transfer.mc_dropout import Prediction, predict


def predict_raw(
    model: nn.Module,
    inputs: Any,
    mc_samples: int | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    preprocessing: Preprocessing | None = None,
) -> pd.DataFrame:
    """Predict raw inputs prepared exactly as the model's training data was.

    Keras equivalent: `model.predict(x)` on a model whose preprocessing layers
    are part of it; here the preprocessing is the run's `preprocessing.json`.

    Args:
        model: A model from `tricklab.load_model(run_dir / "model")`, which carries
            its `preprocessing`.
        inputs: A `.csv`, `.tsv` or `.parquet` file or a `DataFrame` (a table run);
            a folder of images, of class subfolders, an image file or a list of
            them (an image run); an `.npz` file or a NumPy array of raw inputs
            (any run but a table's). See `tricklab.data.raw_inputs`.
        mc_samples: Stochastic passes with dropout active (MC dropout). Defaults
            to `None` (one deterministic pass).
        batch_size: Samples per forward pass. Defaults to `1024`.
        seed: Seed of the dropout masks. Defaults to `0`.
        preprocessing: Overrides the model's own. Defaults to `None` (the model's).

    Returns:
        One row per sample: `id` (a table's row index from 0, an image's path
        in the folder, an array's index), `label` when the inputs have labels
        (the class name, or the target value), `predicted` (the class name, or the
        value; `predicted_<k>` for a regression with several outputs), then for a
        classifier `probability_<class>` for each class (a sigmoid model's two
        classes included); with `mc_samples` > 1 also `std` (the deviation over
        the passes of the predicted class's probability, or of the value) and,
        for a classifier, `entropy` (of the mean probabilities, in nats).

    Raises:
        UserInputError: The model has no preprocessing, or the inputs do not match
            the training data (see `tricklab.data.raw_inputs.read_inputs`).
    """
    preprocessing = preprocessing or getattr(model, "preprocessing", None)
    if preprocessing is None:
        raise UserInputError(
            "predict_raw: the model has no preprocessing.json; load a model `tricklab train` "
            "saved (RUN_DIR/model), or pass preprocessing="
        )
    raw = read_inputs(preprocessing, inputs)
    classes = preprocessing.class_names
    try:
        prediction = predict(model, raw.x, mc_samples, batch_size, seed,
                             outputs="probabilities" if classes else "values")
    except ValueError as error:
        raise UserInputError(f"predict_raw: {error}") from None
    return prediction_table(prediction, raw.ids, raw.labels, classes)


def prediction_table(
    prediction: Prediction, ids: np.ndarray | list[str], labels: np.ndarray | None,
    class_names: list[str],
) -> pd.DataFrame:
    """One row per sample of `prediction`, with the columns `predict_raw` describes.

    Args:
        prediction: What `predict` returned (values for a regression).
        ids: One name or index per sample.
        labels: Class indices or target values, or `None`.
        class_names: The classes in label order; empty for a regression.

    Raises:
        UserInputError: The model outputs another number of probabilities than
            there are classes.
    """
    mean, std = prediction.mean.numpy(), prediction.std.numpy()
    columns: dict[str, Any] = {"id": ids}
    if class_names:
        if mean.shape[1] == 1:  # a sigmoid: the probability of class 1
            mean = np.concatenate([1 - mean, mean], axis=1)
            std = np.concatenate([std, std], axis=1)
        if mean.shape[1] != len(class_names):
            raise UserInputError(
                f"predict: the model outputs {mean.shape[1]} probabilities but the run has "
                f"{len(class_names)} classes"
            )
        # Categoricals: the class names are stored once, not once per row.
        if labels is not None:
            columns["label"] = pd.Categorical.from_codes(labels, class_names)
        columns["predicted"] = pd.Categorical.from_codes(mean.argmax(axis=1), class_names)
        columns.update({f"probability_{name}": mean[:, index]
                        for index, name in enumerate(class_names)})
        if prediction.samples > 1:
            assert prediction.entropy is not None
            columns["std"] = std[np.arange(len(mean)), columns["predicted"].codes]
            columns["entropy"] = prediction.entropy.numpy()
        return pd.DataFrame(columns)
    values = mean.reshape(len(mean), -1)
    if labels is not None:
        labels = labels.reshape(len(labels), -1)
        columns.update({"label": labels[:, 0]} if labels.shape[1] == 1 else
                       {f"label_{k}": labels[:, k] for k in range(labels.shape[1])})
    if values.shape[1] == 1:
        columns["predicted"] = values[:, 0]
    else:
        columns.update({f"predicted_{k}": values[:, k] for k in range(values.shape[1])})
    if prediction.samples > 1:
        columns["std"] = std.reshape(len(std), -1).mean(axis=1)
    return pd.DataFrame(columns)
