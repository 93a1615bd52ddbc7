"""One epoch of the chapter notebook's MLP: tricklab's `fit` vs a hand-written loop vs the floor.

The model is the chapter's 784-300-100-10 Leaky ReLU network trained with SGD
at batch 32 on the 55,000 Fashion-MNIST training images. Three figures, all
measured in this run on this machine:

- tricklab / hand-written PyTorch loop (same model, optimizer, batches): target <= 1.10
- tricklab / floor, the floor being the epoch's matrix-multiply FLOPs divided by
  the GFLOP/s of a large float32 matmul: aim <= 2.5

Run: `.venv/bin/python benchmarks/epoch_speed.py [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from tricklab.data import load_dataset
from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.train import Trainer

LAYERS = [
    "flatten",
    {"dense": {"units": 300, "kernel_initializer": "he_normal"}},
    "leaky_relu",
    {"dense": {"units": 100, "kernel_initializer": "he_normal"}},
    "leaky_relu",
    {"dense": {"units": 10, "activation": "softmax"}},
]
SIZES = [(784, 300), (300, 100), (100, 10)]
BATCH = 32


def epoch_flops(samples: int) -> float:
    """Forward 2·in·out per layer; backward the weight gradient (2·in·out) for every
    layer and the input gradient (2·in·out) for all but the first (its input needs none)."""
    forward = sum(2 * i * o for i, o in SIZES)
    backward = forward + sum(2 * i * o for i, o in SIZES[1:])
    return float(samples) * (forward + backward)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def hand_written_epoch(x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300),
        nn.LeakyReLU(0.3),
        nn.Linear(300, 100),
        nn.LeakyReLU(0.3),
        nn.Linear(100, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    order = torch.randperm(x.shape[0], generator=generator)
    for begin in range(0, x.shape[0], BATCH):
        index = order[begin : begin + BATCH]
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def tricklab_epoch(x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    torch.manual_seed(seed)
    model = build_model([28, 28], LAYERS)
    optimizer = make_optimizer({"sgd": {"learning_rate": 1e-3}}, model.parameters())
    trainer = Trainer(model, optimizer, metrics=["accuracy"], seed=seed, progress="none")
    start = time.perf_counter()
    trainer.fit(x, y, epochs=1, batch_size=BATCH)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    splits = load_dataset("fashion_mnist", validation=5000, scale="unit")
    x, y = splits.train.x, splits.train.y
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, samples {len(y)}")
    hand_written_epoch(x[:5000], y[:5000], 0)  # warm-up of both paths
    tricklab_epoch(x[:5000], y[:5000], 0)
    hand, ours = [], []
    for repeat in range(args.repeats):  # interleaved so drift affects both alike
        hand.append(hand_written_epoch(x, y, repeat))
        ours.append(tricklab_epoch(x, y, repeat))
    gflops = matmul_gflops()
    floor = epoch_flops(len(y)) / (gflops * 1e9)
    hand_s, ours_s = statistics.median(hand), statistics.median(ours)
    print(f"large matmul: {gflops:.1f} GFLOP/s; epoch FLOPs {epoch_flops(len(y)) / 1e9:.1f} G")
    print(f"hand-written loop : {hand_s:7.3f} s/epoch (median of {args.repeats})")
    print(f"tricklab fit      : {ours_s:7.3f} s/epoch (median of {args.repeats})")
    print(f"matmul floor      : {floor:7.3f} s/epoch")
    print(f"ratio tricklab / hand-written = {ours_s / hand_s:.3f}  (target <= 1.10)")
    print(f"ratio tricklab / floor        = {ours_s / floor:.3f}  (aim <= 2.5)")


if __name__ == "__main__":
    main()
