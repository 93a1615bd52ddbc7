"""What l2 regularizers and max-norm constraints add to an epoch of the chapter notebook's model.

The same 784-300-100-10 Leaky ReLU network, SGD at batch 32 on the 55,000
Fashion-MNIST training images, trained four ways in this run: plain; with
`kernel_regularizer: l2(0.01)` on every dense layer; with
`kernel_constraint: max_norm(1.0)` on every dense layer; with both. Target:
each technique's ratio to plain <= 1.15.

Each variant is also written by hand in PyTorch, the least eager PyTorch can
do for it: after `backward()`, `w.grad += 2a·w` for all kernels in one
multi-tensor operation and `a·Σw²` as one dot product per kernel (for the
loss reported, as Keras reports it); after the step, each kernel rescaled by
`clamp(‖row‖, 0, c) / (ε + ‖row‖)`. Its ratios show what the techniques cost
in PyTorch itself on this machine, the floor for tricklab's.

This machine's speed drifts by tens of percent over seconds, so each epoch is
cut into chunks of 100 steps and the eight models take turns chunk by chunk:
every model sees the same slow and fast moments, and a ratio is the total time
of a variant's epochs over its plain model's total.

Run: `.venv/bin/python benchmarks/regularization_overhead.py [--epochs 3]`.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

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


class HandWritten:
    """The chapter notebook's model in plain PyTorch, with l2 and max-norm written out by hand."""

    def __init__(self, l2: float = 0.0, max_norm: float | None = None) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 300), nn.LeakyReLU(0.2), nn.Linear(300, 100),
            nn.LeakyReLU(0.2), nn.Linear(100, 10),
        )
        self.kernels = [layer.weight for layer in self.model if isinstance(layer, nn.Linear)]
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        self.generator = torch.Generator().manual_seed(0)
        self.l2, self.max_norm = l2, max_norm

    def fit(self, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int) -> None:
        del epochs  # one, as the chunks are trained
        order = torch.randperm(len(y), generator=self.generator)
        loss_sum = torch.zeros((), dtype=torch.float64)
        for begin in range(0, len(y), batch_size):
            index = order[begin : begin + batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.model(x[index]), y[index])
            loss.backward()
            with torch.no_grad():
                if self.l2:
                    torch._foreach_add_([w.grad for w in self.kernels], self.kernels,
                                        alpha=2 * self.l2)
                    loss = loss.detach() + self.l2 * sum(
                        torch.dot(w.view(-1), w.view(-1)) for w in self.kernels)
                self.optimizer.step()
                if self.max_norm is not None:
                    for w in self.kernels:
                        norms = torch.linalg.vector_norm(w, dim=1, keepdim=True)
                        w.mul_(norms.clamp(0.0, self.max_norm).div_(norms.add_(1e-7)))
            loss_sum.add_(loss.detach(), alpha=len(index))


HAND_WRITTEN = {"plain": {}, "l2": {"l2": 0.01}, "max_norm": {"max_norm": 1.0},
                "l2 + max_norm": {"l2": 0.01, "max_norm": 1.0}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    splits = load_dataset("fashion_mnist", validation=5000, scale="unit")
    x, y = splits.train.x, splits.train.y
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, samples {len(y)}, "
          f"{args.epochs} epochs in chunks of {CHUNK // BATCH} steps")
    models = {("tricklab", name): trainer(extra) for name, extra in VARIANTS.items()}
    models |= {("by hand", name): HandWritten(**options) for name, options in HAND_WRITTEN.items()}
    for model in models.values():  # warm-up
        model.fit(x[:CHUNK], y[:CHUNK], epochs=1, batch_size=BATCH)
    seconds = dict.fromkeys(models, 0.0)
    for _ in range(args.epochs):
        for begin in range(0, len(y), CHUNK):
            chunk_x, chunk_y = x[begin : begin + CHUNK], y[begin : begin + CHUNK]
            for key, model in models.items():
                start = time.perf_counter()
                model.fit(chunk_x, chunk_y, epochs=1, batch_size=BATCH)
                seconds[key] += time.perf_counter() - start
    steps = args.epochs * -(-len(y) // BATCH)
    for name in VARIANTS:
        ours, hand = seconds["tricklab", name], seconds["by hand", name]
        ours_plain, hand_plain = seconds["tricklab", "plain"], seconds["by hand", "plain"]
        line = (f"{name:14s}: tricklab {ours / args.epochs:6.3f} s/epoch, ratio to plain "
                f"{ours / ours_plain:.3f}; by hand {hand / args.epochs:6.3f} s/epoch, ratio "
                f"{hand / hand_plain:.3f}")
        if name != "plain":
            added, added_by_hand = (ours - ours_plain) / steps, (hand - hand_plain) / steps
            line += (f"; added per step {added * 1e6:5.1f} us vs by hand "
                     f"{added_by_hand * 1e6:5.1f} us  (target: tricklab ratio <= 1.15)")
        print(line)


if __name__ == "__main__":
    main()
