"""An MLP epoch on a CSV table: the recipe path vs the same tensors through `Trainer.fit`.

Target: ratio <= 1.05, i.e. the data layer adds nothing per step.

The table is `csv_load.py`'s, 50,000 rows by default: 50 numeric and 2
categorical columns (86 encoded features), a 5-class integer target. A recipe
reads it with `data: {dataset: csv, path: ..., target: label}` and trains a
86-128-64-5 ReLU MLP with Adam at batch 32, validation rows evaluated after
each epoch. Both sides train the same model from the same seed on the same
tensors (`tricklab.run.runner.load_data` loads the recipe's data once), with
torch's default threads:

- recipe: `tricklab.train_recipe(recipe, splits=...)`, a full run directory
  with its checkpoint after every epoch, as `tricklab train` runs it;
- direct: `build_model` + `make_optimizer` + `Trainer.fit(x, y,
  validation_data=...)` on the recipe's loaded training and validation tensors.

Each round trains both for `--epochs` epochs, alternating; each epoch's time is
its `time_s` in the history (the training steps and the validation pass, not
setup or checkpoint writing), the first epoch of every fit is left out as a
warm-up, and the medians of the rest are compared. The final training losses
of both are printed to show that they did the same work.

Run: `.venv/bin/python benchmarks/csv_epoch.py [--rows 50000] [--rounds 8] [--epochs 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from csv_load import write_table

from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.recipe import recipe_from_dict
from tricklab.run.runner import load_data, train_recipe
from tricklab.train import Trainer

LAYERS = [
    {"dense": {"units": 128, "activation": "relu"}},
    {"dense": {"units": 64, "activation": "relu"}},
    {"dense": {"units": 5, "activation": "softmax"}},
]
BATCH = 32


def direct_fit(recipe, splits) -> dict[str, list[float]]:
    """The recipe's model, optimizer, loss, metrics and seed through `Trainer.fit` alone."""
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model.input_shape, recipe.model.layers)
    optimizer = make_optimizer(dict(recipe.train.optimizer), model.parameters())
    trainer = Trainer(model, optimizer, loss=recipe.train.loss, metrics=recipe.train.metrics,
                      seed=recipe.seed, progress="none")
    return trainer.fit(splits.train.x, splits.train.y, epochs=recipe.train.epochs,
                       batch_size=recipe.train.batch_size,
                       validation_data=(splits.val.x, splits.val.y)).history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="per fit, the first one a warm-up")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        write_table(path, args.rows)
        recipe = recipe_from_dict({
            "name": "csv-epoch", "seed": 0,
            "data": {"dataset": "csv", "path": str(path), "target": "label"},
            "model": {"layers": LAYERS},
            "train": {"loss": "sparse_categorical_crossentropy",
                      "optimizer": {"name": "adam", "learning_rate": 1e-3},
                      "batch_size": BATCH, "epochs": args.epochs, "metrics": ["accuracy"]},
        })
        splits = load_data(recipe)
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.rows} rows -> "
              f"{len(splits.train.y)} training, {len(splits.val.y)} validation rows of "
              f"{splits.input_shape[0]} features; batch {BATCH}, {args.rounds} rounds of "
              f"{args.epochs} epochs")
        seconds: dict[str, list[float]] = {"recipe": [], "direct": []}
        losses = {}
        for round_ in range(args.rounds):  # alternated so drift affects both alike
            outcome = train_recipe(recipe, out=Path(folder) / f"run-{round_}", progress="none",
                                   splits=splits)
            history = outcome.result["history"]
            seconds["recipe"] += history["time_s"][1:]
            losses["recipe"] = history["loss"][-1]
            history = direct_fit(recipe, splits)
            seconds["direct"] += history["time_s"][1:]
            losses["direct"] = history["loss"][-1]
    recipe_s, direct_s = statistics.median(seconds["recipe"]), statistics.median(seconds["direct"])
    count = len(seconds["recipe"])
    print(f"Trainer.fit, same tensors : {direct_s:7.3f} s/epoch (median of {count})")
    print(f"train_recipe, csv dataset : {recipe_s:7.3f} s/epoch (median of {count})")
    ratio = recipe_s / direct_s
    print(f"ratio recipe / Trainer.fit = {ratio:.3f}  (target <= 1.05: "
          f"{'ok' if ratio <= 1.05 else 'MISSED'})")
    print(f"final training loss: recipe {losses['recipe']:.6f}, direct {losses['direct']:.6f}")


if __name__ == "__main__":
    main()
