"""What logging to MLflow costs a 10-epoch run: `tricklab train` with and without `--mlflow` (target <= 5%).

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
each run.

Run: `.venv/bin/python benchmarks/mlflow_overhead.py [--pairs 3]`.
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

REPOSITORY = Path(__file__).resolve().parent.parent
RECIPE = REPOSITORY / "recipes" / "chapter11" / "leaky_relu_he.yaml"
FIXTURES = REPOSITORY / "tests" / "data" / "fixtures"
# Without the real data: the fixture's images through a wider network, so a run lasts >= 20 s.
WIDE = ["--set", "data.validation=500",
        "--set", "model.layers=[flatten, {dense: {units: 2048, activation: relu}}, "
        "{dense: {units: 2048, activation: relu}}, {dense: {units: 10, activation: softmax}}]"]


def train(folder: Path, name: str, extra: list[str], env: dict[str, str]) -> float:
    """Wall time of one `tricklab train` command, in seconds."""
    command = [sys.executable, "-m", "tricklab", "train", str(RECIPE), "--out",
               str(folder / name), "--quiet", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or "warning" in done.stderr:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
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
        first = train(folder, "first", [*extra, *store], env)
        plain, logged = [], []
        for pair in range(args.pairs):
            # Who goes first alternates too, so a drift does not favour either side.
            order = [("plain", []), ("logged", store)][:: 1 if pair % 2 == 0 else -1]
            for kind, option in order:
                seconds = train(folder, f"{kind}-{pair}", [*extra, *option], env)
                (plain if kind == "plain" else logged).append(seconds)
                print(f"  pair {pair + 1}: {kind:<6} {seconds:6.1f} s", flush=True)
    base, tracked = statistics.median(plain), statistics.median(logged)
    print(f"without --mlflow: median {base:6.1f} s over {len(plain)} runs")
    print(f"with --mlflow   : median {tracked:6.1f} s over {len(logged)} runs")
    print(f"ratio           : {tracked / base:.3f}  (target <= 1.05)")
    print(f"first run into a new store: {first:6.1f} s ({first - base:+.1f} s over the median "
          "without: MLflow creating its tables, once per store)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
