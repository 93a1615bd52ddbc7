"""How long `tricklab runs` takes over 1,000 run folders (target <= 1.5 s).

One real small run is trained first (the tests' tiny recipe on the committed
Fashion-MNIST fixture, `--epochs` epochs, so its `result.json` holds that much
history), then copied into `--runs` run folders under ten group folders, each
with its own `result.json` (status, epochs, metrics and wall time varied) and
the rest of the run hard-linked (checkpoints, model, plots: each folder looks
like a real run to `os.scandir`). One run in a hundred lost its `result.json`
(killed), so the incomplete rows are in the table too.

Each command runs as a user would, a fresh process each time, and the median
wall time of `--repeats` runs is printed next to the two references measured
in the same run: `python -c pass` (the interpreter alone) and `tricklab --help`
(the command line itself), and the listing alone, in process (`find_runs`).
The file cache is warm (the folders were just written), as it is for a user
who lists the runs they just made.

Run: `.venv/bin/python benchmarks/runs_table.py [--runs 1000] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
FIXTURES = REPOSITORY / "tests" / "data" / "fixtures"
TRICKLAB = [sys.executable, "-m", "tricklab"]
TINY = {
    "name": "tiny",
    "data": {"dataset": "fashion_mnist", "validation": 500, "scale": "unit"},
    "model": {"input_shape": [28, 28], "layers": [
        "flatten",
        {"dense": {"units": 16, "activation": "relu", "kernel_initializer": "he_normal"}},
        {"dense": {"units": 10, "activation": "softmax"}},
    ]},
    "train": {"optimizer": {"name": "sgd", "learning_rate": 0.01}, "batch_size": 32,
              "metrics": ["accuracy"]},
}
"""The tests' tiny recipe (`tests/conftest.py`), a second an epoch."""
TARGET_S = 1.5


def train_one(folder: Path, epochs: int, environment: dict[str, str]) -> Path:
    """One real run, trained by the command line."""
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": epochs}}))
    run = folder / "trained"
    done = subprocess.run([*TRICKLAB, "train", str(recipe), "--out", str(run), "--quiet"],
                          env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training the run to copy failed: {done.stderr[-1000:]}")
    return run


def copy_runs(run: Path, root: Path, count: int) -> None:
    """`count` run folders under `root/group-<i>/`, each a varied copy of `run`."""
    result = json.loads((run / "result.json").read_text())
    chance = random.Random(0)
    for index in range(count):
        target = root / f"group-{index % 10}" / f"run-{index:04d}"
        shutil.copytree(run, target, copy_function=os.link,
                        ignore=shutil.ignore_patterns("result.json"))
        if index % 100 == 99:
            continue  # killed before its result was written
        varied = dict(result)
        varied["status"] = chance.choice(["completed"] * 8 + ["stopped_early", "diverged"])
        varied["epochs_run"] = chance.randint(1, result["epochs_run"])
        varied["wall_time_s"] = round(chance.uniform(5, 5000), 3)
        varied["metrics"] = {key: value * chance.uniform(0.8, 1.2)
                             for key, value in result["metrics"].items()}
        (target / "result.json").write_text(json.dumps(varied, indent=2))


def timed(command: list[str], environment: dict[str, str], rows: int | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-500:]}")
    if rows is not None and len(done.stdout.splitlines()) != rows:
        raise SystemExit(f"{' '.join(command)} printed {len(done.stdout.splitlines())} lines, "
                         f"not {rows}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        environment = {**os.environ, "TRICKLAB_DATA": str(FIXTURES),
                       "TRICKLAB_CACHE": str(folder / "cache")}
        run = train_one(folder, args.epochs, environment)
        root = folder / "runs"
        copy_runs(run, root, args.runs)
        size = len((run / "result.json").read_bytes())
        cases = {
            "python -c pass": ([sys.executable, "-c", "pass"], None),
            "tricklab --help": ([*TRICKLAB, "--help"], None),
            "tricklab runs FOLDER": ([*TRICKLAB, "runs", str(root)], args.runs + 1),
            "... --json": ([*TRICKLAB, "runs", str(root), "--json"], None),
            "... --sort -metric --filter": ([*TRICKLAB, "runs", str(root), "--sort", "-metric",
                                             "--filter", "status=completed"], None),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):  # interleaved, so drift of the machine affects all alike
            for name, (command, rows) in cases.items():
                times[name].append(timed(command, environment, rows))
        sys.path.insert(0, str(REPOSITORY / "src"))
        from tricklab.run.runs_table import find_runs

        scans = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            found = find_runs(root)
            scans.append(time.perf_counter() - started)
        assert len(found) == args.runs
    medians = {name: statistics.median(values) for name, values in times.items()}
    interpreter, helped = medians["python -c pass"], medians["tricklab --help"]
    print(f"{args.runs} run folders (result.json {size / 1024:.1f} KiB, {args.epochs} epochs "
          f"of history); median of {args.repeats} runs each; load average "
          f"{os.getloadavg()[0]:.2f}")
    for name, median in medians.items():
        line = (f"{name:30s} {median:6.3f} s  {median / helped:5.2f}x --help  "
                f"{median - interpreter:+6.3f} s over python")
        if name.startswith(("tricklab runs", "...")):
            line += f"  (target <= {TARGET_S} s) {'ok' if median <= TARGET_S else 'OVER'}"
        print(line)
    scan = statistics.median(scans)
    print(f"{'find_runs, in process':30s} {scan:6.3f} s  "
          f"({scan / args.runs * 1e6:.0f} µs a run folder)")


if __name__ == "__main__":
    main()
