"""Task-B epoch with A's frozen layers cached vs run every step (target: speed-up >= 3x).

The book's B-on-A model (task A's 784-300-100-50-50-50 SELU layers, frozen,
plus a new sigmoid output) trains its first phase on task B: 200 training
images, the ~1,000 sandal and shirt images of the 5,000-image validation split
evaluated after each epoch, batch 32, SGD. With the cache, the frozen layers
run once per `fit` over the training and validation images and each epoch
trains the head alone; without it (`cache_frozen_features=False`) every step
runs the whole network. Both trainers alternate, one 4-epoch fit each per
round, so drift of the machine affects both alike. Printed: the median epoch
time of each and their ratio, the whole 4-epoch phase (caching included), and
whether both reach the same losses.

Run: `.venv/bin/python benchmarks/feature_cache.py`.
"""

from __future__ import annotations

import statistics
import time

import torch

from tricklab.data import load_dataset
from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.train import Trainer
from tricklab.transfer import reuse_layers

TASK_A = [
    "flatten",
    *({"dense": {"units": units, "activation": "selu"}} for units in (300, 100, 50, 50, 50)),
    {"dense": {"units": 8, "activation": "softmax"}},
]
ROUNDS, EPOCHS = 7, 4


def phase(cache: bool, data) -> tuple[list[float], float, list[float]]:
    """One frozen phase: per-epoch seconds, the whole fit's seconds, and the losses."""
    torch.manual_seed(0)
    model_a = build_model([28, 28], TASK_A)
    model = reuse_layers(model_a, ":-1", [{"dense": {"units": 1, "activation": "sigmoid"}}],
                         trainable=False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    trainer = Trainer(model, make_optimizer("sgd", parameters, learning_rate=1e-3),
                      loss="binary_crossentropy", metrics=["accuracy"], seed=0,
                      progress="none", cache_frozen_features=cache)
    start = time.perf_counter()
    result = trainer.fit(data.train.x, data.train.y, epochs=EPOCHS, batch_size=32,
                         validation_data=(data.val.x, data.val.y))
    return result.history["time_s"], time.perf_counter() - start, result.history["val_loss"]


def main() -> None:
    data = load_dataset("fashion_mnist", validation=5000,
                        split={"kind": "fashion_mnist_task_a_b", "task": "b"})
    print(f"task B: {len(data.train.y)} training, {len(data.val.y)} validation images; "
          f"{torch.get_num_threads()} threads; {ROUNDS} rounds of {EPOCHS} epochs each")
    epochs: dict[bool, list[float]] = {True: [], False: []}
    fits: dict[bool, list[float]] = {True: [], False: []}
    losses = {}
    for _ in range(ROUNDS):
        for cache in (True, False):
            per_epoch, whole, losses[cache] = phase(cache, data)
            epochs[cache] += per_epoch
            fits[cache].append(whole)
    cached, plain = statistics.median(epochs[True]), statistics.median(epochs[False])
    print(f"epoch, median: cached {cached * 1e3:.2f} ms, uncached {plain * 1e3:.2f} ms; "
          f"speed-up {plain / cached:.2f}x  (target >= 3x)")
    cached_fit, plain_fit = statistics.median(fits[True]), statistics.median(fits[False])
    print(f"{EPOCHS}-epoch phase incl. caching, median: cached {cached_fit * 1e3:.1f} ms, "
          f"uncached {plain_fit * 1e3:.1f} ms; speed-up {plain_fit / cached_fit:.2f}x")
    pairs = zip(losses[True], losses[False], strict=True)
    same = all(abs(cached - plain) <= 1e-5 * abs(plain) for cached, plain in pairs)
    print(f"same validation losses (rel. 1e-5): {same}")


if __name__ == "__main__":
    main()
