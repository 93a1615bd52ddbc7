"""`tricklab predict --input` on 100,000 CSV rows vs loading them (target: ratio <= 2).

The table is `csv_load.py`'s (50 numeric columns, 2 categorical, a 5-class
`label`), generated from a fixed seed. A run is trained for one epoch on its
first 5,000 rows (a 64-unit MLP); then, with the file in the page cache and
each called once untimed, alternately:

- predict: `predict_run(run, inputs=FILE, output=...)`, all that
  `tricklab predict RUN --input FILE` does after its imports: the run's model
  and `preprocessing.json` loaded, the file read with pandas, checked and encoded
  with the training vocabularies and statistics, the model's forward passes, the
  per-row CSV (id, label, predicted class, five probabilities), the confusion
  matrix plot and the JSON summary written;
- load: `load_dataset("csv", path=FILE, target="label")`, the same rows read,
  split, encoded and scaled as a recipe's data.

Printed are the medians and predict / load, the median of the ratios of
adjacent pairs.

Run: `.venv/bin/python benchmarks/csv_predict.py [--rows 100000] [--repeats 9]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from csv_load import NUMERIC, paired_ratio, timed, write_table

from tricklab.data import load_dataset
from tricklab.recipe import recipe_from_dict
from tricklab.run import train_recipe
from tricklab.run.predict import predict_run

TRAINING_ROWS = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = folder / "rows.csv"
        write_table(path, args.rows)
        pd.read_csv(path, engine="pyarrow").head(TRAINING_ROWS).to_csv(
            folder / "train.csv", index=False)
        recipe = recipe_from_dict({
            "name": "predict-benchmark", "seed": 0,
            "data": {"dataset": "csv", "path": str(folder / "train.csv"), "target": "label"},
            "model": {"layers": [{"dense": {"units": 64, "activation": "relu"}},
                                 {"dense": {"units": 5, "activation": "softmax"}}]},
            "train": {"optimizer": {"name": "adam"}, "epochs": 1, "batch_size": 64},
        })
        start = time.perf_counter()
        run = train_recipe(recipe, out=folder / "run", progress="none").run_dir
        print(f"torch {torch.__version__}, pandas {pd.__version__}, threads "
              f"{torch.get_num_threads()}; run trained on {TRAINING_ROWS} rows in "
              f"{time.perf_counter() - start:.1f} s")
        output = folder / "predictions.csv"

        def predict() -> dict:
            return predict_run(run, inputs=path, output=output)

        def load() -> object:
            return load_dataset("csv", path=str(path), target="label")

        summary = predict()
        load()
        print(f"{path.stat().st_size / 1e6:.0f} MB CSV, {args.rows} rows, {NUMERIC} numeric + 2 "
              f"categorical columns; predicted accuracy {summary['accuracy']:.3f}, "
              f"{output.stat().st_size / 1e6:.1f} MB of predictions")
        predicting, loading = [], []
        for _ in range(args.repeats):  # alternated so drift affects both alike
            predicting.append(timed(predict))
            loading.append(timed(load))
    predict_s, load_s = statistics.median(predicting), statistics.median(loading)
    ratio = paired_ratio(predicting, loading)
    print(f"load_dataset csv      : {load_s:7.3f} s (median of {args.repeats})")
    print(f"predict_run --input   : {predict_s:7.3f} s (median of {args.repeats})")
    print(f"ratio predict / load = {ratio:.3f}, median of paired ratios  (target <= 2: "
          f"{'ok' if ratio <= 2 else 'MISSED'})")


if __name__ == "__main__":
    main()
