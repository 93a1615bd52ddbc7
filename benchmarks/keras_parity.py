"""Learning curves of the chapter notebook's model: tricklab vs Keras 3 itself, across seeds.

Keras 3 runs here on its PyTorch backend (`pip install keras`; KERAS_BACKEND=torch),
so both sides see the same data, the same machine and the same arithmetic
library; what differs is everything tricklab re-implements: initializers,
layer defaults, the SGD rule, the loss, the order of operations. For each
epoch the script prints the mean and standard deviation over seeds of the
validation loss and accuracy on both sides, and the difference of the means
in units of its standard error. "Same learning curve within seed-to-seed
spread" means |z| < 3 at every epoch.

Run: `.venv/bin/python benchmarks/keras_parity.py [--seeds 3] [--epochs 10]`.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np

from tricklab.data import load_dataset
from tricklab.recipe import load_recipe
from tricklab.run import build
from tricklab.train import Trainer

RECIPE = os.path.join(os.path.dirname(__file__), "..", "recipes", "chapter11", "leaky_relu_he.yaml")


def keras_curves(data, seed: int, epochs: int) -> dict[str, list[float]]:
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.layers.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(300, kernel_initializer="he_normal"),
        keras.layers.LeakyReLU(),
        keras.layers.Dense(100, kernel_initializer="he_normal"),
        keras.layers.LeakyReLU(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=keras.optimizers.SGD(learning_rate=1e-3), metrics=["accuracy"])
    history = model.fit(data.train.x.numpy(), data.train.y.numpy(), epochs=epochs, batch_size=32,
                        validation_data=(data.val.x.numpy(), data.val.y.numpy()), verbose=0)
    return {key: [float(v) for v in history.history[key]] for key in ("val_loss", "val_accuracy")}


def tricklab_curves(data, seed: int, epochs: int) -> dict[str, list[float]]:
    recipe = load_recipe(RECIPE, [f"seed={seed}", f"train.epochs={epochs}"])
    model, optimizer = build(recipe)
    trainer = Trainer(model, optimizer, metrics=["accuracy"], seed=seed, progress="none")
    result = trainer.fit(data.train.x, data.train.y, epochs=epochs, batch_size=32,
                         validation_data=(data.val.x, data.val.y))
    return {key: result.history[key] for key in ("val_loss", "val_accuracy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    data = load_dataset("fashion_mnist", validation=5000, scale="unit")
    seeds = range(args.seeds)
    ours = [tricklab_curves(data, seed, args.epochs) for seed in seeds]
    theirs = [keras_curves(data, seed, args.epochs) for seed in seeds]
    worst = 0.0
    for key in ("val_loss", "val_accuracy"):
        print(f"\n{key}: epoch | tricklab mean ± sd | keras mean ± sd | z")
        for epoch in range(args.epochs):
            a = [run[key][epoch] for run in ours]
            b = [run[key][epoch] for run in theirs]
            sd_a, sd_b = statistics.stdev(a), statistics.stdev(b)
            error = math.sqrt(sd_a**2 / len(a) + sd_b**2 / len(b)) or float("nan")
            z = (statistics.mean(a) - statistics.mean(b)) / error
            worst = max(worst, abs(z)) if not np.isnan(z) else worst
            print(f"{epoch + 1:3d} | {statistics.mean(a):.4f} ± {sd_a:.4f} | "
                  f"{statistics.mean(b):.4f} ± {sd_b:.4f} | {z:+.2f}")
    print(f"\nlargest |z| over epochs and metrics: {worst:.2f} (same curve within spread: < 3)")


if __name__ == "__main__":
    main()
