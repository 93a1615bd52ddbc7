"""What keeping the best epoch's model (`model_best/`) costs the chapter's run.

The chapter's Leaky ReLU/He recipe (`recipes/chapter11/leaky_relu_he.yaml`:
784-300-100-10, SGD, batch 32) on the real Fashion-MNIST where this machine has
it (55,000 training images), else on the test fixture's 2,000 images, trained
by `train_recipe` in this process for `--epochs` epochs with one torch thread.
The keeper is part of every run, so its cost is measured inside the run, in
the same run as the reference, the epoch:

- the keeper's epoch-end hook (the copy of the weights in memory when the
  value improves, which it does at every epoch of this run), per epoch,
  against the epoch's time;
- writing `model_best/` once at the end, against one epoch;
- writing `checkpoints/best.pt` (done once per best epoch, two epochs after
  it, when its own checkpoint is about to be pruned), against one epoch.

Run: `.venv/bin/python benchmarks/best_checkpoint.py [--epochs 3]`.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
RECIPE = REPOSITORY / "recipes" / "chapter11" / "leaky_relu_he.yaml"
FIXTURES = REPOSITORY / "tests" / "data" / "fixtures"


def timed(spent: dict[str, float], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    """`method`, adding the seconds each call takes to `spent[name]`."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    arguments = parser.parse_args()

    from tricklab.data import locate

    if locate("fashion_mnist") is None:
        os.environ["TRICKLAB_DATA"] = str(FIXTURES)
    import torch

    from tricklab.recipe import load_recipe
    from tricklab.run import load_data, runner
    from tricklab.train.best_weights import BestWeights

    torch.set_num_threads(1)
    recipe = load_recipe(RECIPE, [f"train.epochs={arguments.epochs}"])
    splits = load_data(recipe)
    spent: dict[str, float] = {}
    seen: dict[str, Any] = {}
    original_hook = BestWeights.on_epoch_end

    def hook(self: BestWeights, trainer: Any, epoch: int, logs: dict[str, float]) -> None:
        seen.update(keeper=self, trainer=trainer)
        original_hook(self, trainer, epoch, logs)

    BestWeights.on_epoch_end = timed(spent, "hook", hook)  # type: ignore[method-assign]
    runner.write_best = timed(spent, "write", runner.write_best)  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as folder:
        outcome = runner.train_recipe(recipe, out=Path(folder) / "run", progress="none",
                                      splits=splits)
        epochs = outcome.result["history"]["time_s"]
        keeper, trainer = seen["keeper"], seen["trainer"]
        spills = []
        for _ in range(5):
            keeper._spilled = None
            started = time.perf_counter()
            keeper._spill(trainer)
            spills.append(time.perf_counter() - started)
    epoch = statistics.median(epochs)
    print(f"data: {splits.name}, {len(splits.train.y)} training images; "
          f"{len(epochs)} epochs, median epoch {epoch:.3f} s; best epoch "
          f"{outcome.result['best']['epoch']} (improved at every epoch: "
          f"{outcome.result['best']['epoch'] == len(epochs)})")
    print(f"keeper's epoch-end hook: {spent['hook'] / len(epochs) * 1e3:.2f} ms per epoch, "
          f"{spent['hook'] / sum(epochs):.5f} of the epochs' time")
    print(f"model_best/ written once at the end: {spent['write'] * 1e3:.1f} ms, "
          f"{spent['write'] / epoch:.4f} of one epoch")
    spill = statistics.median(spills)
    print(f"checkpoints/best.pt (once per best epoch that lasts two epochs): "
          f"{spill * 1e3:.1f} ms, {spill / epoch:.4f} of one epoch")


if __name__ == "__main__":
    main()
