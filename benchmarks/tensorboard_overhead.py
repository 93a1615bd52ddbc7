"""What TensorBoard costs an epoch of the chapter's run, and what its histograms add to the doctor.

The chapter's Leaky ReLU/He recipe (`recipes/chapter11/leaky_relu_he.yaml`:
784-300-100-10, SGD, batch 32) on the real Fashion-MNIST where this machine has
it (55,000 training images; `tricklab data locate fashion_mnist`), else on the
test fixture's 2,000 images. Each run is `train_recipe` in this process, with
`--epochs` epochs (`--set train.epochs=N`), one torch thread, the data loaded
once (as a study's worker has it). Two comparisons, each `--repeats` pairs of
runs; the runs of a pair take turns going first (this machine's speed drifts):

- TensorBoard on vs `--no-tensorboard` (target: <= 1.02 per epoch);
- `--doctor` with TensorBoard (its histograms and update ratios) vs `--doctor
  --no-tensorboard` (target: <= 1.05 per epoch).

Per pair, the ratio of the epochs' time (the training loop, which runs the
logger's epoch-end hooks) and of the whole run (evaluation, the model, plots,
the final events); the medians of the paired ratios are the figures. As a
check that does not depend on the machine's drift, the time spent in the
logger's own hooks is summed too (its writer's thread is not in it) and shown
per epoch against the epoch's time. Importing TensorBoard's writer, once per
process, is timed apart in a fresh process.

Run: `.venv/bin/python benchmarks/tensorboard_overhead.py [--epochs 2] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Scripts in this folder run with it on sys.path: the call timer is the best-model benchmark's.
from best_checkpoint import timed

REPOSITORY = Path(__file__).resolve().parent.parent
RECIPE = REPOSITORY / "recipes" / "chapter11" / "leaky_relu_he.yaml"
FIXTURES = REPOSITORY / "tests" / "data" / "fixtures"


def hook_seconds() -> dict[str, float]:
    """Wrap the logger's hooks so that the seconds spent in them add up in the returned dict."""
    from tricklab.train.tensorboard import TensorBoardLogger

    spent = {"seconds": 0.0}
    for name in ("on_train_begin", "on_epoch_end", "finish"):
        setattr(TensorBoardLogger, name, timed(spent, "seconds", getattr(TensorBoardLogger, name)))
    return spent


def import_seconds() -> float:
    """Seconds to import TensorBoard's writer in a fresh process that has tricklab's trainer."""
    code = ("import time, tricklab.run.runner; t = time.perf_counter(); "
            "import torch.utils.tensorboard; print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    overrides = [f"train.epochs={args.epochs}"]
    from tricklab.data import locate

    if locate("fashion_mnist") is None:
        os.environ["TRICKLAB_DATA"] = str(FIXTURES)
        overrides.append("data.validation=500")
    import torch

    from tricklab.recipe import load_recipe
    from tricklab.run.runner import load_data, train_recipe

    torch.set_num_threads(1)
    recipe = load_recipe(RECIPE, overrides)
    splits = load_data(recipe)
    spent = hook_seconds()
    print(f"torch {torch.__version__}, 1 thread, {len(splits.train.y)} training images, "
          f"{args.epochs} epochs per run, {args.repeats} pairs per comparison, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        runs = 0

        def run(doctor: bool, tensorboard: bool) -> tuple[float, float, float]:
            """(seconds per epoch, seconds of the whole run, seconds in the logger's hooks)."""
            nonlocal runs
            runs += 1
            before = spent["seconds"]
            started = time.perf_counter()
            outcome = train_recipe(recipe, out=Path(folder) / str(runs), progress="none",
                                   splits=splits, doctor=doctor, tensorboard=tensorboard)
            whole = time.perf_counter() - started
            return (outcome.result["wall_time_s"] / args.epochs, whole,
                    spent["seconds"] - before)

        run(False, True)  # warm-up: imports, first allocations
        for doctor, target in ((False, 1.02), (True, 1.05)):
            epoch_ratios, whole_ratios, hooks, epochs_off = [], [], [], []
            for repeat in range(args.repeats):
                order = (False, True) if repeat % 2 == 0 else (True, False)
                timed = {tensorboard: run(doctor, tensorboard) for tensorboard in order}
                (off_epoch, off_whole, _), (on_epoch, on_whole, hook) = timed[False], timed[True]
                epoch_ratios.append(on_epoch / off_epoch)
                whole_ratios.append(on_whole / off_whole)
                hooks.append(hook / args.epochs)
                epochs_off.append(off_epoch)
            name = "doctor + TensorBoard vs doctor" if doctor else "TensorBoard vs none"
            epoch = statistics.median(epochs_off)
            print(f"{name:31s}: epoch ratio {statistics.median(epoch_ratios):.3f} "
                  f"(pairs {', '.join(f'{r:.3f}' for r in epoch_ratios)}; target <= {target}), "
                  f"whole run {statistics.median(whole_ratios):.3f}; "
                  f"{epoch:.2f} s/epoch without, logger's hooks "
                  f"{statistics.median(hooks) * 1000:.1f} ms/epoch = "
                  f"{statistics.median(hooks) / epoch * 100:.2f}% of an epoch")
    print(f"importing torch.utils.tensorboard once per process: {import_seconds():.2f} s")


if __name__ == "__main__":
    main()
