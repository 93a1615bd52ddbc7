"""A 4-variant × 3-seed × 1-epoch study of the chapter notebook's MLP: process pool vs one process.

The Leaky ReLU network of the chapter's notebook (recipes/chapter11/leaky_relu_he.yaml:
784-300-100-10 Leaky ReLU, SGD, batch 32, the 55,000 Fashion-MNIST training images) in
four optimizer variants, three seeds each, one epoch per run. Measured in this run:

- the study as `tricklab study` runs it: a pool of one-thread worker processes,
  one per core, every result written to the study store;
- the same 12 runs one after another in this process with torch's default
  threads, the dataset loaded once for all of them (the best a loop can do).

Target: sequential time / study time >= 1.7 on 2 cores.

Run: `.venv/bin/python benchmarks/study_speed.py [--workers N]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml

from tricklab.recipe import recipe_from_dict
from tricklab.recipe.study import load_study
from tricklab.run.runner import load_data, train_recipe
from tricklab.run.study import run_study

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "chapter11" / "leaky_relu_he.yaml"
VARIANTS = {
    "sgd": {},
    "momentum": {"set": {"train.optimizer": {"name": "sgd", "learning_rate": 0.001,
                                             "momentum": 0.9}}},
    "nesterov": {"set": {"train.optimizer": {"name": "sgd", "learning_rate": 0.001,
                                             "momentum": 0.9, "nesterov": True}}},
    "adam": {"set": {"train.optimizer": {"name": "adam"}}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        spec = {"name": "speed", "base": str(RECIPE), "seeds": 3, "budget": {"epochs": 1},
                "variants": VARIANTS}
        path = Path(folder) / "speed.yaml"
        path.write_text(yaml.safe_dump(spec))
        study = load_study(path)
        runs = [study.plan(v, s) for v in study.spec["variants"] for s in study.spec["seeds"]]
        print(f"torch {torch.__version__}, {os.cpu_count()} cores, {len(runs)} runs of 1 epoch")

        start = time.perf_counter()
        splits = load_data(recipe_from_dict(runs[0].recipe))
        for run in runs:
            train_recipe(recipe_from_dict(run.recipe), out=Path(folder) / "loop" / run.run_id,
                         progress="none", splits=splits)
        sequential = time.perf_counter() - start
        print(f"one process, {torch.get_num_threads()} threads: {sequential:7.1f} s")

        start = time.perf_counter()
        outcome = run_study(path, out=Path(folder) / "study", workers=args.workers,
                            progress="none")
        parallel = time.perf_counter() - start
        assert outcome.counts == {"completed": len(runs)}, outcome.counts
        print(f"study, {args.workers} workers:      {parallel:7.1f} s")
        print(f"speed-up: {sequential / parallel:.2f}x  (target >= 1.7)")


if __name__ == "__main__":
    main()
