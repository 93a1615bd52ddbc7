"""One training epoch of LeNet-5 (recipes/architectures/lenet5.yaml): tricklab vs hand-written.

The same network, SGD with momentum at batch 128 on the 55,000 Fashion-MNIST
training images (the recipe's 1cycle schedule left out of both), built twice
in this run:

- tricklab: `build_model` from the recipe's layer list, channels-last inputs
  `[N, 28, 28, 1]` as the recipe gives them, `Trainer.fit` with accuracy.
- hand-written: `torch.nn` modules on `[N, 1, 28, 28]` inputs prepared once,
  `torch.optim.SGD`, a `randperm` loop, no metrics.

Prints tricklab / hand-written per epoch (target <= 1.10). With `--device cuda`
(on a machine with a GPU) it also times tricklab in bf16 with channels-last
memory format against fp32.

Run: `.venv/bin/python benchmarks/lenet5_epoch.py [--repeats 3] [--device cuda]`.
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
from tricklab.recipe import load_recipe
from tricklab.train import Trainer

RECIPE = "recipes/architectures/lenet5.yaml"
BATCH = 128


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_written_epoch(x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ).to(x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    synchronize(x.device)
    start = time.perf_counter()
    order = torch.randperm(x.shape[0], generator=generator).to(x.device)
    for begin in range(0, x.shape[0], BATCH):
        index = order[begin : begin + BATCH]
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(x.device)
    return time.perf_counter() - start


def tricklab_epoch(
    x: torch.Tensor, y: torch.Tensor, seed: int, precision: str = "fp32",
    channels_last: bool = False,
) -> float:
    recipe = load_recipe(RECIPE)
    torch.manual_seed(seed)
    model = build_model(recipe.model.input_shape, recipe.model.layers).to(x.device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer({"sgd": {"learning_rate": 0.05, "momentum": 0.9}},
                               model.parameters())
    trainer = Trainer(model, optimizer, metrics=["accuracy"], seed=seed, progress="none",
                      precision=precision)
    synchronize(x.device)
    start = time.perf_counter()
    trainer.fit(x, y, epochs=1, batch_size=BATCH)
    synchronize(x.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    device = torch.device(args.device)
    splits = load_dataset("fashion_mnist", validation=5000, scale="unit")
    channels_last_x = splits.train.x[..., None].to(device)  # as the recipe's [28, 28, 1]
    channels_first_x = splits.train.x[:, None].contiguous().to(device)
    y = splits.train.y.to(device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
          f"samples {len(y)}")
    hand_written_epoch(channels_first_x[:5000], y[:5000], 0)  # warm-up of both paths
    tricklab_epoch(channels_last_x[:5000], y[:5000], 0)
    hand, ours = [], []
    for repeat in range(args.repeats):  # interleaved so drift affects both alike
        hand.append(hand_written_epoch(channels_first_x, y, repeat))
        ours.append(tricklab_epoch(channels_last_x, y, repeat))
    hand_s, ours_s = statistics.median(hand), statistics.median(ours)
    print(f"hand-written loop : {hand_s:7.3f} s/epoch (median of {args.repeats})")
    print(f"tricklab fit      : {ours_s:7.3f} s/epoch (median of {args.repeats})")
    print(f"ratio tricklab / hand-written = {ours_s / hand_s:.3f}  (target <= 1.10)")
    if device.type == "cuda":
        fast = statistics.median(
            tricklab_epoch(channels_last_x, y, repeat, "bf16", channels_last=True)
            for repeat in range(args.repeats)
        )
        print(f"tricklab bf16 + channels_last: {fast:7.3f} s/epoch; "
              f"fp32 / (bf16 + channels_last) = {ours_s / fast:.2f}x")


if __name__ == "__main__":
    main()
