"""What logging to MLflow costs a 10-epoch run: `tricklab train` with and without `--mlflow`.

The chapter notebook's recipe (Leaky ReLU and He initialization, 10 epochs) on
the real Fashion-MNIST where this machine has it (`tricklab data locate
fashion_mnist`); otherwise the test fixture's 2,000 images with a network wide
enough that a run takes 20 s or more. Each run is a whole `tricklab train`
command in a child process, so MLflow's import, the run's creation, one
`log_batch` per epoch and the artifacts at the end all count. Runs with and
without `--mlflow sqlite:///...` take turns (this machine's speed drifts); the
ratio is of the medians.

The store is made before the pairs, by a first logged run timed on its own:
MLflow creates its tables once per store, which is a cost of the store, not of
each run. Last, the tracking alone is timed in a fresh process, without the
training around it (a busy machine blurs a difference of seconds between whole
runs): importing MLflow, creating the run with its params, one `log_batch` per
epoch, then the final metrics and artifacts of a finished run directory. Under
`tricklab train --mlflow` this work is done by a logging process started before
PyTorch is imported, mostly while the command imports PyTorch, loads the data
and trains: the total is what tracking would add done in line, an upper bound.

Run: `.venv/bin/python benchmarks/mlflow_overhead.py [--pairs 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
RECIPE = REPOSITORY / "recipes" / "chapter11" / "leaky_relu_he.yaml"
FIXTURES = REPOSITORY / "tests" / "data" / "fixtures"
# Without the real data: the fixture's images through a wider network, so a run lasts >= 20 s.
WIDE = ["--set", "data.validation=500",
        "--set", "model.layers=[flatten, {dense: {units: 2048, activation: relu}}, "
        "{dense: {units: 2048, activation: relu}}, {dense: {units: 10, activation: softmax}}]"]


def train(folder: Path, name: str, extra: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU time (user + system) of one `tricklab train` command.

    The CPU time is the command's own: it does not wait for its logging process,
    whose work `tracking_alone` times.
    """
    command = [sys.executable, "-m", "tricklab", "train", str(RECIPE), "--out",
               str(folder / name), "--quiet", *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or "warning" in done.stderr:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def tracking_alone(run_dir: Path, uri: str) -> dict[str, float]:
    """Seconds of each part of what `--mlflow` does for `run_dir`'s run, in this fresh process."""
    import yaml

    # Imported by the run without MLflow too (with torch): not a cost of the tracking.
    from tricklab.run.mlflow_client import MlflowRun, mlflow_calls, recipe_target

    started = time.perf_counter()
    with mlflow_calls():  # imports MLflow
        pass
    times = {"import MLflow": time.perf_counter() - started}
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    run = MlflowRun(recipe_target(uri, recipe), recipe, run_dir)
    started = time.perf_counter()
    run.start()
    times["create the run, log the params"] = time.perf_counter() - started
    history = result["history"]
    started = time.perf_counter()
    for epoch in range(len(history["loss"])):  # one call per epoch, as during training
        run.log_epochs(history, [epoch])
    times[f"log {len(history['loss'])} epochs"] = time.perf_counter() - started
    started = time.perf_counter()
    run.finish(result)
    times["final metrics, artifacts, end"] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--tracking-alone", nargs=2, metavar=("RUN_DIR", "URI"),
                        help="(internal) time the tracking of RUN_DIR alone, as JSON")
    args = parser.parse_args()
    if args.tracking_alone:
        print(json.dumps(tracking_alone(Path(args.tracking_alone[0]), args.tracking_alone[1])))
        return
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    from tricklab.data import locate

    extra: list[str] = []
    if locate("fashion_mnist") is None:
        env["TRICKLAB_DATA"] = str(FIXTURES)
        extra = WIDE
        print("Fashion-MNIST is not on this machine: the fixture's 2,000 images, 2048-wide MLP")
    else:
        print(f"{RECIPE.relative_to(REPOSITORY)} on Fashion-MNIST ({locate('fashion_mnist')})")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        store = ["--mlflow", f"sqlite:///{folder / 'mlflow.db'}"]
        first, _ = train(folder, "first", [*extra, *store], env)
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "logged": []}
        for pair in range(args.pairs):
            # Who goes first alternates too, so a drift does not favour either side.
            order = [("plain", []), ("logged", store)][:: 1 if pair % 2 == 0 else -1]
            for kind, option in order:
                seconds, cpu = train(folder, f"{kind}-{pair}", [*extra, *option], env)
                runs[kind].append((seconds, cpu))
                print(f"  pair {pair + 1}: {kind:<6} {seconds:6.1f} s wall, {cpu:6.1f} s CPU",
                      flush=True)
        alone = subprocess.run(
            [sys.executable, __file__, "--tracking-alone", str(folder / "plain-0"),
             store[1]], capture_output=True, text=True, env=env, check=True)
        parts = json.loads(alone.stdout.splitlines()[-1])
    base = statistics.median(wall for wall, _ in runs["plain"])
    for index, what in enumerate(("wall", "CPU")):
        plain = [run[index] for run in runs["plain"]]
        logged = [run[index] for run in runs["logged"]]
        # The runs of a pair ran next to each other: their ratio is the least blurred by drift.
        pairs = statistics.median(b / a for a, b in zip(plain, logged, strict=True))
        print(f"{what:<4}: median without {statistics.median(plain):6.1f} s, with "
              f"{statistics.median(logged):6.1f} s; ratio of medians "
              f"{statistics.median(logged) / statistics.median(plain):.3f}, median ratio "
              f"within a pair {pairs:.3f}  (target <= 1.05)")
    print(f"first run into a new store: {first:6.1f} s wall ({first - base:+.1f} s over the "
          "median without: MLflow creating its tables, once per store)")
    print("the tracking alone, in a fresh process:")
    for part, seconds in parts.items():
        print(f"  {part:<32} {seconds:6.2f} s")
    total = sum(parts.values())
    print(f"  {'total':<32} {total:6.2f} s = {total / base:.3f} of the median run without "
          "(what it would add done in line; `train` does it in a process of its own, at a "
          "lower priority)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
