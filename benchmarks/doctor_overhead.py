"""What the doctor's probes cost the chapter notebook's model: epoch time and memory, probed or not.

Time: the Leaky ReLU network of the chapter's notebook (784-300-100-10 Leaky ReLU, SGD,
batch 32, 55,000 Fashion-MNIST images) is trained three ways in this run: without probes; with
`tricklab.doctor.watch` at its default (adaptive) interval; with a probe at
every step. This machine's speed drifts, so the three models take turns every
100 steps (as in `regularization_overhead.py`) and each ratio is a total time
over the plain model's. Target: default interval <= 1.25; every step is reported.

Memory: `tricklab train --doctor` for 10 epochs in a child process, against the
same run without `--doctor`, peak RSS read from the kernel. Target: growth <= 100 MB.

Run: `.venv/bin/python benchmarks/doctor_overhead.py [--epochs 2] [--memory-epochs 10]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

# Scripts in this folder run with it on sys.path: the chapter notebook's model and the
# child-process memory probe are the other benchmarks' own.
from epoch_speed import LAYERS
from train_memory import RECIPE, child_peak_mb

from tricklab.data import load_dataset
from tricklab.doctor import DoctorCallback, watch
from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.train import Trainer

BATCH = 32
CHUNK = 100 * BATCH


def trainer(every: int | bool | None) -> Trainer:
    """A fresh trainer of the chapter notebook's model; `every=False` trains without a probe."""
    torch.manual_seed(0)
    model = build_model([28, 28], LAYERS)
    callbacks = []
    if every is not False:
        callbacks.append(DoctorCallback(watch(model, every=every).attach()))
    optimizer = make_optimizer("sgd", model.parameters(), learning_rate=1e-3)
    return Trainer(model, optimizer, metrics=["accuracy"], callbacks=callbacks, seed=0,
                   progress="none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--memory-epochs", type=int, default=10)
    args = parser.parse_args()
    splits = load_dataset("fashion_mnist", validation=5000, scale="unit")
    x, y = splits.train.x, splits.train.y
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, samples {len(y)}")
    variants = {"plain": trainer(False), "doctor (default)": trainer(None),
                "doctor (every step)": trainer(1)}
    for each in variants.values():  # warm-up
        each.fit(x[:CHUNK], y[:CHUNK], epochs=1, batch_size=BATCH)
    seconds = dict.fromkeys(variants, 0.0)
    for _ in range(args.epochs):
        for begin in range(0, len(y), CHUNK):
            for name, each in variants.items():
                start = time.perf_counter()
                each.fit(x[begin : begin + CHUNK], y[begin : begin + CHUNK], epochs=1,
                         batch_size=BATCH)
                seconds[name] += time.perf_counter() - start
    for name, total in seconds.items():
        target = "  (target <= 1.25)" if name == "doctor (default)" else ""
        print(f"{name:20s}: {total / args.epochs:7.3f} s/epoch  "
              f"ratio to plain {total / seconds['plain']:.3f}{target}")

    with tempfile.TemporaryDirectory() as folder:
        run = ["-m", "tricklab", "train", str(RECIPE), "--set",
               f"train.epochs={args.memory_epochs}", "--quiet"]
        plain = child_peak_mb([*run, "--out", f"{folder}/plain"])
        doctor = child_peak_mb([*run, "--out", f"{folder}/doctor", "--doctor"])
    print(f"peak RSS, {args.memory_epochs} epochs: {plain:.0f} MB without the doctor, "
          f"{doctor:.0f} MB with it: growth {doctor - plain:.0f} MB  (target <= 100 MB)")


if __name__ == "__main__":
    main()
