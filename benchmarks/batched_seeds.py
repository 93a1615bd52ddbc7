"""S seeds of the chapter notebook's model trained as one batched model vs one run at a time.

The Leaky ReLU network of the chapter's notebook (recipes/chapter11/leaky_relu_he.yaml:
784-300-100-10 Leaky ReLU, SGD at 1e-3, batch 32, accuracy) trained for one epoch on the first
`--samples` Fashion-MNIST training images and validated on the 5,000
validation images, for each of `--seeds` seeds. Throughput is seed-epochs per
second; every figure is measured in this run, on this machine:

- one at a time, this process: a `tricklab.train.Trainer` per seed, one after
  another, with torch's threads (`--threads`, default torch's own), timed on the
  first `--one-at-a-time` seeds (independent runs: their throughput does not
  depend on how many are timed);
- batched, this process: one `tricklab.train.BatchedSeedsTrainer` training
  every seed at once (made by `tricklab.run.batched_recipes.batched_trainer`: the
  recipe checked by `batchable`, the models built), same threads;
- on a CPU, the study's strategy, one forked worker process per core
  (`--workers`) with one torch thread each, the seeds shared among them: each
  worker's seeds one at a time, then each worker's seeds as one batched model.

Target on a GPU: batched / one at a time >= 10. On a CPU the verdict compares
the two process-pool rows: whether batching pays where the study already keeps
every core busy with separate runs. Several torch threads on cores that other
work also uses can slow the in-process rows a great deal; the one-thread
process rows are immune to that.

Run: `.venv/bin/python benchmarks/batched_seeds.py [--device cuda] [--seeds 20] [--samples 11000]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from tricklab.data import load_dataset
from tricklab.nn import build_model
from tricklab.optim import make_optimizer
from tricklab.recipe import load_recipe
from tricklab.run.batched_recipes import batched_trainer
from tricklab.train import Trainer

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "chapter11" / "leaky_relu_he.yaml"
WARM_UP_SAMPLES = 1000
PAYS = 1.2
"""Speed-up over the separate processes from which batching is worth it on a CPU."""

_data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
"""The data, set before the worker processes fork, so they inherit it without a copy."""


def separate_run(seed: int, device: str) -> None:
    """One seed's epoch as its own run: the model built after `torch.manual_seed(seed)`."""
    recipe = load_recipe(RECIPE)
    torch.manual_seed(seed)
    model = build_model(recipe.model.input_shape, recipe.model.layers).to(device)
    optimizer = make_optimizer(dict(recipe.train.optimizer), model.parameters())
    trainer = Trainer(model, optimizer, metrics=recipe.train.metrics, seed=seed, progress="none")
    trainer.fit(*_data["train"], epochs=1, batch_size=recipe.train.batch_size,
                validation_data=_data["val"])


def batched_run(seeds: list[int], device: str) -> None:
    """Every seed's epoch in one batched model."""
    recipe = load_recipe(RECIPE)
    trainer = batched_trainer(recipe, seeds, device)
    trainer.fit(*_data["train"], epochs=1, batch_size=recipe.train.batch_size,
                validation_data=_data["val"])


def worker_separate(seeds: list[int]) -> None:
    """A study worker's share of the seeds, one run after another, on one torch thread."""
    torch.set_num_threads(1)
    for seed in seeds:
        separate_run(seed, "cpu")


def worker_batched(seeds: list[int]) -> None:
    """A study worker's share of the seeds as one batched model, on one torch thread."""
    torch.set_num_threads(1)
    batched_run(seeds, "cpu")


def _worker_pid(_: int) -> int:
    return os.getpid()


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def in_processes(work: Callable[[list[int]], None], seeds: list[int], workers: int) -> float:
    """Seconds for `workers` forked processes to do `work` on their shares of `seeds`."""
    shares = [seeds[index::workers] for index in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        # Started before the clock: a study's pool is up once for all its runs.
        list(pool.map(_worker_pid, range(workers)))
        return timed(lambda: list(pool.map(work, shares)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--samples", type=int, default=11000,
                        help="training images per epoch (default 11000; 55000 is all)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--one-at-a-time", type=int, default=4, metavar="N",
                        help="seeds trained one at a time in this process; the throughput "
                             "of independent runs does not depend on their number (default 4)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="processes of the CPU study strategy (default: one per core)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of this process (default: torch's own)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    splits = load_dataset("fashion_mnist", validation=5000, scale="unit")
    seeds = list(range(args.seeds))

    _data["train"] = (splits.train.x[:WARM_UP_SAMPLES], splits.train.y[:WARM_UP_SAMPLES])
    _data["val"] = (splits.val.x[:WARM_UP_SAMPLES], splits.val.y[:WARM_UP_SAMPLES])
    separate_run(0, args.device)
    batched_run(seeds[:2], args.device)
    _data["train"] = (splits.train.x[: args.samples], splits.train.y[: args.samples])
    _data["val"] = (splits.val.x, splits.val.y)

    name = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} cores"
    print(f"torch {torch.__version__}, {args.device} ({name}), {torch.get_num_threads()} torch "
          f"threads in this process; one epoch of the chapter notebook's model on "
          f"{len(_data['train'][1])} training images, validated on {len(_data['val'][1])}")
    alone = seeds[: args.one_at_a_time]
    rows = [
        (f"one at a time, this process ({len(alone)} seeds)",
         len(alone), timed(lambda: [separate_run(seed, args.device) for seed in alone])),
        (f"batched, this process ({len(seeds)} seeds)",
         len(seeds), timed(lambda: batched_run(seeds, args.device))),
    ]
    if args.device == "cpu":
        workers = args.workers
        rows += [
            (f"one at a time, {workers} processes x 1 thread ({len(seeds)} seeds)",
             len(seeds), in_processes(worker_separate, seeds, workers)),
            (f"batched, {workers} processes x 1 thread ({len(seeds)} seeds)",
             len(seeds), in_processes(worker_batched, seeds, workers)),
        ]
    throughput = {label: count / seconds for label, count, seconds in rows}
    for label, count, seconds in rows:
        print(f"  {label:52s} {seconds:7.2f} s  {count / seconds:6.2f} seed-epochs/s")
    speeds = list(throughput.values())
    print(f"speed-up batched / one at a time, this process = {speeds[1] / speeds[0]:.2f}"
          + ("  (aim >= 10)" if args.device == "cuda" else ""))
    if args.device == "cpu":
        ratio = speeds[3] / speeds[2]
        verdict = "pays" if ratio >= PAYS else "does not pay"
        print(f"speed-up batched / one at a time, {args.workers} processes = {ratio:.2f}  "
              f"(the study's CPU strategy; batching {verdict} on this CPU, {PAYS} needed)")


if __name__ == "__main__":
    main()
