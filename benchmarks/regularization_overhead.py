"""What l2 regularizers and max-norm constraints add to an epoch of the seed-000 model.

The same 784-300-100-10 Leaky ReLU network, SGD at batch 32 on the 55,000
Fashion-MNIST training images, trained four ways in this run: plain; with
`kernel_regularizer: l2(0.01)` on every dense layer; with
`kernel_constraint: max_norm(1.0)` on every dense layer; with both. Target:
each technique's ratio to plain <= 1.15.

This machine's speed drifts by tens of percent over seconds, so each epoch is
cut into chunks of 100 steps and the four models take turns chunk by chunk:
every model sees the same slow and fast moments, and a ratio is the total time
of a variant's epochs over the plain model's total.

Run: `.venv/bin/python benchmarks/regularization_overhead.py [--epochs 3]`.
"""

from __future__ import annotations

import argparse
import time

import torch

from tricklab.data import load_dataset
from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.train import Trainer

BATCH = 32
CHUNK = 100 * BATCH


def layers(extra: dict) -> list:
    def dense(units: int, **options: object) -> dict:
        return {"dense": {"units": units, "kernel_initializer": "he_normal", **extra, **options}}

    return ["flatten", dense(300), "leaky_relu", dense(100), "leaky_relu",
            dense(10, activation="softmax")]


L2 = {"kernel_regularizer": {"l2": {"l2": 0.01}}}
MAX_NORM = {"kernel_constraint": {"max_norm": {"max_value": 1.0}}}
VARIANTS = {"plain": {}, "l2": L2, "max_norm": MAX_NORM, "l2 + max_norm": L2 | MAX_NORM}


def trainer(extra: dict) -> Trainer:
    torch.manual_seed(0)
    model = build_model([28, 28], layers(extra))
    optimizer = make_optimizer("sgd", model.parameters(), learning_rate=1e-3)
    return Trainer(model, optimizer, metrics=["accuracy"], seed=0, progress="none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    splits = load_dataset("fashion_mnist", validation=5000, scale="unit")
    x, y = splits.train.x, splits.train.y
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, samples {len(y)}, "
          f"{args.epochs} epochs in chunks of {CHUNK // BATCH} steps")
    trainers = {name: trainer(extra) for name, extra in VARIANTS.items()}
    for each in trainers.values():  # warm-up
        each.fit(x[:CHUNK], y[:CHUNK], epochs=1, batch_size=BATCH)
    seconds = dict.fromkeys(VARIANTS, 0.0)
    for _ in range(args.epochs):
        for begin in range(0, len(y), CHUNK):
            chunk_x, chunk_y = x[begin : begin + CHUNK], y[begin : begin + CHUNK]
            for name, each in trainers.items():
                start = time.perf_counter()
                each.fit(chunk_x, chunk_y, epochs=1, batch_size=BATCH)
                seconds[name] += time.perf_counter() - start
    for name, total in seconds.items():
        target = "" if name == "plain" else "  (target <= 1.15)"
        print(f"{name:14s}: {total / args.epochs:7.3f} s/epoch  "
              f"ratio to plain {total / seconds['plain']:.3f}{target}")


if __name__ == "__main__":
    main()
