"""Time one optimizer step of every tricklab optimizer against torch.optim on the chapter's MLP.

The model is the chapter's Fashion-MNIST network (Flatten, Dense 784->300,
LeakyReLU(0.3), Dense 300->100, LeakyReLU(0.3), Dense 100->10). Gradients are
fixed random tensors, so only `optimizer.step()` is timed. Implementations are
timed in interleaved rounds (so drift of the machine hits all alike), each
round a block of steps; the median per-step time over rounds is reported with
the ratio tricklab / torch.

Every optimizer tricklab implements is timed against `torch.optim.Adam`
(foreach), the common yardstick of a per-step cost, with a target ratio of 1.5;
where PyTorch has a counterpart (Adagrad, RMSprop, AdamW, NAdam, Adamax) it is
timed against that too, for information. FTRL has no PyTorch counterpart.

Usage: python benchmarks/optimizer_step.py [--rounds 100] [--steps 20] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from tricklab.optim import SGD, Adagrad, Adam, Adamax, AdamW, Ftrl, Nadam, RMSprop


class ClippedStep:
    """A torch optimizer preceded by `clip_grad_norm_`, the usual PyTorch way to clip.

    Args:
        optimizer: The optimizer to step after clipping.
        max_norm: Global L2 norm the gradients are clipped to.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_norm: float) -> None:
        self.optimizer = optimizer
        self.max_norm = max_norm
        self.params = [p for group in optimizer.param_groups for p in group["params"]]

    def step(self) -> None:
        """Clip the gradients in place, then step."""
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm, foreach=True)
        self.optimizer.step()


Factory = Callable[[list[nn.Parameter]], torch.optim.Optimizer | ClippedStep]

# (label, tricklab factory, torch reference factory, target ratio or None)
PAIRS: list[tuple[str, Factory, Factory, float | None]] = [
    (
        "sgd (momentum 0) vs torch SGD foreach",
        lambda p: SGD(p, learning_rate=1e-3),
        lambda p: torch.optim.SGD(p, lr=1e-3, foreach=True),
        1.1,
    ),
    (
        "sgd (momentum 0) vs torch SGD default",
        lambda p: SGD(p, learning_rate=1e-3),
        lambda p: torch.optim.SGD(p, lr=1e-3),
        None,
    ),
    (
        "sgd (momentum 0.9, nesterov) vs torch SGD foreach",
        lambda p: SGD(p, learning_rate=1e-3, momentum=0.9, nesterov=True),
        lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, nesterov=True, foreach=True),
        None,
    ),
    (
        "adam vs torch Adam foreach",
        lambda p: Adam(p),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "adam vs torch Adam default",
        lambda p: Adam(p),
        lambda p: torch.optim.Adam(p),
        None,
    ),
    (
        "adam (amsgrad) vs torch Adam amsgrad foreach",
        lambda p: Adam(p, amsgrad=True),
        lambda p: torch.optim.Adam(p, amsgrad=True, foreach=True),
        None,
    ),
    (
        "adam (global_clipnorm) vs clip_grad_norm_ + torch Adam foreach",
        lambda p: Adam(p, global_clipnorm=1.0),
        lambda p: ClippedStep(torch.optim.Adam(p, foreach=True), max_norm=1.0),
        None,
    ),
    (
        "sgd (momentum 0.9, weight_decay) vs torch Adam foreach",
        lambda p: SGD(p, learning_rate=1e-3, momentum=0.9, weight_decay=0.004),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "adagrad vs torch Adam foreach",
        lambda p: Adagrad(p),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "adagrad vs torch Adagrad foreach",
        lambda p: Adagrad(p),
        lambda p: torch.optim.Adagrad(p, lr=1e-3, initial_accumulator_value=0.1, foreach=True),
        None,
    ),
    (
        "rmsprop vs torch Adam foreach",
        lambda p: RMSprop(p),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "rmsprop (momentum 0.9, centered) vs torch Adam foreach",
        lambda p: RMSprop(p, momentum=0.9, centered=True),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "rmsprop (momentum 0.9, centered) vs torch RMSprop foreach",
        lambda p: RMSprop(p, momentum=0.9, centered=True),
        lambda p: torch.optim.RMSprop(
            p, lr=1e-3, alpha=0.9, momentum=0.9, centered=True, foreach=True
        ),
        None,
    ),
    (
        "adamw vs torch Adam foreach",
        lambda p: AdamW(p),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "adamw vs torch AdamW foreach",
        lambda p: AdamW(p),
        lambda p: torch.optim.AdamW(p, weight_decay=0.004, foreach=True),
        None,
    ),
    (
        "nadam vs torch Adam foreach",
        lambda p: Nadam(p),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "nadam vs torch NAdam foreach",
        lambda p: Nadam(p),
        lambda p: torch.optim.NAdam(p, momentum_decay=1.0, foreach=True),
        None,
    ),
    (
        "adamax vs torch Adam foreach",
        lambda p: Adamax(p),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "adamax vs torch Adamax foreach",
        lambda p: Adamax(p),
        lambda p: torch.optim.Adamax(p, lr=1e-3, foreach=True),
        None,
    ),
    (
        "ftrl vs torch Adam foreach",
        lambda p: Ftrl(p),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "ftrl (l1, l2, shrinkage, beta) vs torch Adam foreach",
        lambda p: Ftrl(
            p,
            l1_regularization_strength=1e-3,
            l2_regularization_strength=1e-3,
            l2_shrinkage_regularization_strength=1e-3,
            beta=0.1,
        ),
        lambda p: torch.optim.Adam(p, foreach=True),
        1.5,
    ),
    (
        "ftrl (learning_rate_power -0.3) vs torch Adam foreach",
        lambda p: Ftrl(p, learning_rate_power=-0.3),
        lambda p: torch.optim.Adam(p, foreach=True),
        None,
    ),
]


def seed_model() -> nn.Sequential:
    """The chapter's 784-300-100-10 MLP with LeakyReLU(0.3)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 300),
        nn.LeakyReLU(0.3),
        nn.Linear(300, 100),
        nn.LeakyReLU(0.3),
        nn.Linear(100, 10),
    )


def prepared(factory: Factory) -> torch.optim.Optimizer | ClippedStep:
    """A fresh model with fixed gradients and its optimizer, warmed up."""
    torch.manual_seed(0)
    params = list(seed_model().parameters())
    for param in params:
        param.grad = torch.randn_like(param) * 1e-2
    optimizer = factory(params)
    for _ in range(20):
        optimizer.step()
    return optimizer


def block_time(optimizer: torch.optim.Optimizer | ClippedStep, steps: int) -> float:
    """Seconds per step over one block of `steps` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps


def compare(tricklab: Factory, reference: Factory, rounds: int, steps: int) -> tuple[float, float]:
    """Median seconds per step of both, timed in alternating blocks."""
    ours, theirs = prepared(tricklab), prepared(reference)
    ours_times, theirs_times = [], []
    for round_index in range(rounds):
        # Alternate who goes first so cache warmth from the other favours neither.
        first_ours = round_index % 2 == 0
        if first_ours:
            ours_times.append(block_time(ours, steps))
        theirs_times.append(block_time(theirs, steps))
        if not first_ours:
            ours_times.append(block_time(ours, steps))
    return statistics.median(ours_times), statistics.median(theirs_times)


def main() -> None:
    """Run every pair and print per-step times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100, help="timed blocks per optimizer")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per block")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: cores)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds x {args.steps} steps, median per step"
    )
    print(f"{'comparison':<62} {'tricklab':>10} {'torch':>10} {'ratio':>7}  target")
    for label, tricklab, reference, target in PAIRS:
        ours, theirs = compare(tricklab, reference, args.rounds, args.steps)
        ratio = ours / theirs
        verdict = "" if target is None else f"<= {target}: {'ok' if ratio <= target else 'MISSED'}"
        print(f"{label:<62} {ours * 1e6:>8.1f}us {theirs * 1e6:>8.1f}us {ratio:>7.3f}  {verdict}")


if __name__ == "__main__":
    main()
